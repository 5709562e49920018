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
