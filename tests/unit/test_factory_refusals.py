"""A refused request is logged once with its reason, not every cycle; monitoring still counts it each cycle."""

from __future__ import annotations

import logging

from updraft.factory.model import FactoryPlan, Rejection, Request
from updraft.factory.report import log_rejections, refusal_lines

NOW = 1_800_000_000.0


def plan_refusing(*reasons: tuple[str, str]) -> FactoryPlan:
    return FactoryPlan(
        NOW,
        rejected=tuple(
            Rejection(Request(entry, "vo1", "main", "default", "frontend@lab", 1, 1), reason)
            for entry, reason in reasons
        ),
    )


def test_a_refusal_is_logged_once_and_again_only_when_its_reason_changes(caplog) -> None:
    caplog.set_level(logging.WARNING, "updraft.factory.report")
    first = plan_refusing(("ce1", "credential refused: tampered"), ("ce2", "no sealed credential"))
    log_rejections(first)
    seen = refusal_lines(first)
    log_rejections(plan_refusing(("ce1", "credential refused: tampered")), seen)
    log_rejections(plan_refusing(("ce1", "credential refused: unknown key")), seen)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "request refused: vo1.main for ce1: credential refused: tampered",
        "request refused: vo1.main for ce2: no sealed credential",
        "request refused: vo1.main for ce1: credential refused: unknown key",
    ]


def test_no_plan_means_nothing_refused() -> None:
    assert refusal_lines(None) == frozenset()


def test_a_flood_of_refusals_is_one_line_with_counts_per_reason_and_frontend(caplog) -> None:
    caplog.set_level(logging.WARNING, "updraft.factory.report")
    reasons = [
        (f"ce{i}", f"authenticated as 'x{i}@lab', but frontend 'vo1' must be 'frontend@lab'") for i in range(1500)
    ]
    reasons += [(f"ce{i}", f"security class 'c{i}' is not allowed on this entry") for i in range(500)]
    log_rejections(plan_refusing(*reasons))
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("2000 requests refused (new this cycle): 1500x authenticated as …, but frontend …")
    assert "(from vo1 1500)" in line and "500x security class … is not allowed" in line
    assert "e.g. vo1.main for ce0: authenticated as 'x0@lab'" in line
    assert len(line) < 2000


def test_the_summary_counts_only_refusals_not_logged_before(caplog) -> None:
    caplog.set_level(logging.WARNING, "updraft.factory.report")
    first = plan_refusing(*[(f"ce{i}", "no sealed credential") for i in range(10)])
    log_rejections(first)
    log_rejections(plan_refusing(*[(f"ce{i}", "no sealed credential") for i in range(12)]), refusal_lines(first))
    assert [r.getMessage()[:40] for r in caplog.records] == [
        "10 requests refused (new this cycle): 10",
        "request refused: vo1.main for ce10: no s",
        "request refused: vo1.main for ce11: no s",
    ]
