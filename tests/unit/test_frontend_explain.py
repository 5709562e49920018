"""Explanations say the numbers and the limits, in the order the policy applied them."""

from __future__ import annotations

from typing import Any

import pytest

from updraft.frontend.config import FrontendConfig
from updraft.frontend.decide import decide
from updraft.frontend.explain import explain, explain_plan
from updraft.frontend.model import (
    Decision,
    DecisionInputs,
    EntryAd,
    JobShape,
    Observation,
    PilotSlot,
    Plan,
    SlotState,
    SourceProblem,
)
from updraft.protocol import PublishedRequest, RemoveMode
from updraft.records import Step

NOW = 5_000.0


def config(**group: Any) -> FrontendConfig:
    return FrontendConfig.model_validate(
        {
            "name": "vo",
            "vo_collector": "127.0.0.1:29618",
            "wms_collector": "127.0.0.1:29619",
            "factories": {"lab-factory": {"identity": "u@lab"}},
            "groups": {"main": {"match_expr": "true", **group}},
        }
    )


SITE1 = EntryAd("site1", "lab-factory", {"GLIDEIN_Site": "Site1"}, max_pilots=100)


def explained(observation: Observation, **group: Any) -> str:
    (decision,) = decide(observation, config(**group), NOW).decisions
    return explain(decision)


def test_the_worked_example_reads_like_the_arithmetic() -> None:
    text = explained(
        Observation(shapes=(JobShape("main", "s1", {}, idle=40, old_idle=5),), entries=(SITE1,)),
        ramp_up_attenuation=3,
        reserve_idle=2,
        limits={"max_idle_per_entry": 12},
    )
    lines = text.splitlines()
    assert lines[0] == "group main, entry site1@lab-factory: requested 12 idle (max 100 pilots, removal none)"
    assert lines[1] == "  40 matching idle jobs = 40.0 pilots; 0 usable idle slots (of 0) -> need 40"
    assert lines[2] == "  need 40 / attenuation 3 = 14"
    assert lines[3] == "  +2 reserve for 5 old idle jobs (5.0 pilots)"
    assert lines[4] == "  = 16 before limits"
    assert lines[5] == "  capped at 12 by group.max_idle_per_entry"
    assert lines[-1] == "  bound by: group.max_idle_per_entry"


def test_curb_and_capacity_are_explained() -> None:
    slots = (
        *(PilotSlot("site1", "lab-factory", "main", SlotState.RUNNING, 1, 2000) for _ in range(85)),
        PilotSlot("site1", "lab-factory", "main", SlotState.IDLE, 1, 2000),
    )
    text = explained(
        Observation(shapes=(JobShape("main", "s1", {}, idle=11),), entries=(SITE1,), slots=slots),
        ramp_up_attenuation=1,
        curb_fraction=0.8,
    )
    assert "11 matching idle jobs = 11.0 pilots; 1 usable idle slots (of 1) -> need 10" in text
    assert "halved to 5 by entry.curb: 86 of 100 pilots (curb at 80%)" in text


def test_downtime_and_removal_are_explained() -> None:
    down = EntryAd("site1", "lab-factory", {}, max_pilots=100, in_downtime=True)
    text = explained(Observation(shapes=(JobShape("main", "s1", {}, idle=4),), entries=(down,)), ramp_up_attenuation=1)
    assert "requested 0 idle (max 100 pilots, removal none)" in text
    assert "zero by entry.downtime: entry in downtime" in text
    idle_slots = tuple(PilotSlot("site1", "lab-factory", "main", SlotState.IDLE, 1, 2000) for _ in range(3))
    text = explained(Observation(entries=(SITE1,), slots=idle_slots))
    assert "removal idle, up to 3" in text
    assert "request 0: no idle jobs match" in text
    assert "note: remove up to 3 idle pilots: no idle jobs match" in text


def test_unreachable_schedd_shows_in_the_explanation() -> None:
    problem = SourceProblem("schedd1@vo", "timed out", frozenset({"main"}))
    slots = (PilotSlot("site1", "lab-factory", "main", SlotState.IDLE, 1, 2000),)
    text = explained(Observation(entries=(SITE1,), slots=slots, problems=(problem,)))
    assert "note: removal disabled: schedd1@vo unreachable" in text


@pytest.mark.parametrize(
    ("step", "line"),
    [
        (
            Step("scale", 3, "pool.max_idle_pilots: 97 of 100 idle in the pool"),
            "scaled down to 3 by pool.max_idle_pilots: 97 of 100 idle in the pool",
        ),
        (Step("zero", 0, "frontend.max_running_pilots: 10 of 10 pilots"), "zero by frontend.max_running_pilots"),
        (Step("future_step", 2.5, "why"), "future_step = 2.5 (why)"),
        (Step("future_step", 2), "future_step = 2"),
    ],
)
def test_step_wording(step: Step, line: str) -> None:
    decision = Decision("g", SITE1, idle=0, max_pilots=7, remove=RemoveMode.ALL, remove_max=2, steps=(step,))
    text = explain(decision)
    assert line in text
    assert "requested 0 idle (max 7 pilots, removal all, up to 2)" in text


def test_fractional_jobs_keep_one_decimal() -> None:
    decision = Decision(
        "g",
        SITE1,
        idle=1,
        max_pilots=7,
        inputs=DecisionInputs(idle_jobs=10 / 3, idle_pilots_needed=10 / 3),
        steps=(Step("need", 4),),
    )
    assert "3.3 matching idle jobs = 3.3 pilots" in explain(decision)


def test_plan_lists_decisions_unmatched_downtime_and_problems() -> None:
    other = EntryAd("site2", "lab-factory", {}, in_downtime=True)
    observation = Observation(
        shapes=(JobShape("main", "s1", {}, idle=6),),
        entries=(SITE1, other),
        problems=(SourceProblem("schedd2@vo", "connection refused", frozenset({"main"})),),
    )
    plan = decide(observation, config(ramp_up_attenuation=1), NOW)
    text = explain_plan(plan)
    lines = text.splitlines()
    assert lines[0] == "plan at 5000: 1 decisions, 6 idle pilots requested"
    assert "site1@lab-factory" in lines[1] and "idle     6" in lines[1] and "(jobs 6)" in lines[1]
    assert "group main: 0 idle jobs match no entry, 0 only entries in downtime" in text
    assert "problem: schedd2@vo: connection refused (groups main incomplete)" in text


def test_plan_counts_unmatched_and_downtime_jobs() -> None:
    plan = Plan(now=1, unmatched={"main": 7}, in_downtime={"main": 3, "mc": 2})
    text = explain_plan(plan)
    assert "group main: 7 idle jobs match no entry, 3 only entries in downtime" in text
    assert "group mc: 0 idle jobs match no entry, 2 only entries in downtime" in text
    assert text.startswith("plan at 1: 0 decisions, 0 idle pilots requested")


def test_bounds_appear_in_the_compact_line() -> None:
    decision = Decision(
        "main",
        SITE1,
        idle=2,
        max_pilots=9,
        remove=RemoveMode.IDLE,
        remove_max=4,
        bound_by=("group.curb", "pool.max_idle_pilots"),
    )
    text = explain_plan(Plan(now=0, decisions=(decision,)))
    assert "remove idle <= 4 [group.curb, pool.max_idle_pilots]" in text


def test_a_kept_request_and_a_withdrawn_one_say_so() -> None:
    last = PublishedRequest("vo", "main", "lab-factory", "site1", 3, 40, "none", 0, None, time=NOW - 60)
    (kept,) = decide(Observation(published=(last,)), config(), NOW).decisions
    text = explain(kept)
    assert "requested 3 idle (max 40 pilots, removal none, kept: data incomplete since 4940)" in text
    assert "held at 3: kept the last good request (idle 3, max 40): entry no longer advertised" in text
    (gone,) = decide(Observation(published=(last,)), config(), NOW + 10**5).decisions
    assert "no request (withdrawn; nothing submitted, nothing removed)" in explain(gone)
    assert "withdrawn" in explain_plan(decide(Observation(published=(last,)), config(), NOW + 10**5))
