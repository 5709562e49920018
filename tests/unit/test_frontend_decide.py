"""The frontend policy: one table per step, then properties over random cycles."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from updraft.frontend.config import FrontendConfig
from updraft.frontend.decide import decide, entry_limits, usable_idle_slots
from updraft.frontend.matching import match
from updraft.frontend.model import (
    Decision,
    EntryAd,
    JobShape,
    Observation,
    PilotSlot,
    Plan,
    SlotKind,
    SlotState,
    SourceProblem,
)
from updraft.protocol import PublishedRequest, RemoveMode
from updraft.records import share_out

NOW = 1_000_000.0
BIG = 100_000
IDLE, BUSY = SlotState.IDLE, SlotState.RUNNING

# A group where every step is neutral unless a case turns it on.
NEUTRAL_GROUP: dict[str, Any] = {
    "match_expr": "true",
    "ramp_up_attenuation": 1,
    "reserve_idle": 0,
    "curb_fraction": 1.0,
    "min_pilot_lifetime_seconds": 1800,
    "limits": {
        "max_idle_pilots": BIG,
        "max_running_pilots": BIG,
        "max_idle_per_entry": BIG,
        "max_running_per_entry": BIG,
    },
    "removal": {"mode": "idle", "max_fraction_per_cycle": 0.1},
}


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, Mapping) and key in out else value
    return out


def config(groups: Mapping[str, Mapping[str, Any]] | None = None, **top: Any) -> FrontendConfig:
    raw = {
        "name": "vo",
        "vo_collector": "127.0.0.1:29618",
        "wms_collector": "127.0.0.1:29619",
        "factories": {"f": {"identity": "u@lab"}},
        "limits": {"max_idle_pilots": BIG, "max_running_pilots": BIG},
        "pool": {"max_idle_pilots": BIG, "max_running_pilots": BIG},
        "groups": {name: merged(NEUTRAL_GROUP, g) for name, g in (groups or {"main": {}}).items()},
    }
    return FrontendConfig.model_validate(merged(raw, top))


def entry(name: str = "e1", cpus: int = 1, **kw: Any) -> EntryAd:
    return EntryAd(name=name, factory="f", attrs={"GLIDEIN_Site": name}, cpus_per_pilot=cpus, **kw)


def jobs(
    idle: int, old_idle: int = 0, running: int = 0, cpus: int = 1, memory: int = 1000, group: str = "main", **attrs: Any
) -> JobShape:
    return JobShape(group, "s1", attrs, idle=idle, old_idle=old_idle, running=running, cpus=cpus, memory_mb=memory)


def slots(
    count: int,
    state: SlotState = BUSY,
    entry_name: str = "e1",
    group: str = "main",
    cpus: int = 1,
    memory: int = 2000,
    to_die: float | None = None,
) -> tuple[PilotSlot, ...]:
    return tuple(PilotSlot(entry_name, "f", group, state, cpus, memory, to_die) for _ in range(count))


@dataclass(frozen=True)
class Case:
    id: str
    shapes: tuple[JobShape, ...]
    idle: int
    bound: tuple[str, ...] = ()
    group: Mapping[str, Any] = field(default_factory=dict)
    top: Mapping[str, Any] = field(default_factory=dict)
    entries: tuple[EntryAd, ...] = (entry(),)
    slots: tuple[PilotSlot, ...] = ()
    pool_idle: int = 0
    pool_running: int = 0
    problems: tuple[SourceProblem, ...] = ()
    remove: RemoveMode = RemoveMode.NONE
    remove_max: int = 0
    key: str = "e1@f"


def run(case: Case) -> Plan:
    observation = Observation(
        shapes=case.shapes,
        entries=case.entries,
        slots=case.slots,
        problems=case.problems,
        pool_idle_pilots=case.pool_idle,
        pool_running_pilots=case.pool_running,
    )
    return decide(observation, config({"main": case.group}, **case.top), NOW)


def the(plan: Plan, key: str = "e1@f", group: str = "main") -> Decision:
    (found,) = [d for d in plan.decisions if d.entry.key == key and d.group == group]
    return found


def check(case: Case) -> Decision:
    decision = the(run(case), case.key)
    assert decision.idle == case.idle, decision.steps
    assert set(case.bound) <= set(decision.bound_by), decision.bound_by
    if not case.bound:
        assert decision.bound_by == ()
    assert (decision.remove, decision.remove_max) == (case.remove, case.remove_max)
    return decision


REQUEST_CASES = [
    Case("attenuation 1 asks for everything", (jobs(40),), 40),
    Case("attenuation 3 asks for a third, rounded up", (jobs(40),), 14, group={"ramp_up_attenuation": 3}),
    Case("multi-core jobs need pilot-equivalents", (jobs(10, cpus=4),), 5, entries=(entry(cpus=8),)),
    Case("reserve for old idle jobs", (jobs(40, old_idle=5),), 16, group={"ramp_up_attenuation": 3, "reserve_idle": 2}),
    Case("no old idle jobs, no reserve", (jobs(10),), 10, group={"reserve_idle": 3}),
    Case(
        "reserve limited by the old jobs' own pilots",
        (jobs(10, old_idle=1, cpus=4),),
        6,
        group={"reserve_idle": 5},
        entries=(entry(cpus=8),),
    ),
    Case("no idle jobs: nothing, even with old-idle reserve", (jobs(0, running=4),), 0, group={"reserve_idle": 3}),
    Case("usable idle slots are capacity", (jobs(10),), 7, slots=slots(3, IDLE)),
    Case("idle slots beyond the need leave no request", (jobs(2),), 0, slots=slots(5, IDLE), remove=RemoveMode.NONE),
    Case(
        "idle slot without enough memory is not capacity",
        (jobs(10, memory=1000),),
        10,
        slots=slots(3, IDLE, memory=500),
    ),
    Case(
        "idle slot without enough cpus is not capacity",
        (jobs(10, cpus=4),),
        5,
        entries=(entry(cpus=8),),
        slots=slots(3, IDLE, cpus=2),
    ),
    Case("idle slot dying too soon is not capacity", (jobs(10),), 10, slots=slots(3, IDLE, to_die=NOW + 600)),
    Case("idle slot living long enough is capacity", (jobs(10),), 7, slots=slots(3, IDLE, to_die=NOW + 7200)),
    Case("idle slot that never said when it dies is capacity", (jobs(10),), 9, slots=slots(1, IDLE)),
    Case("busy slots are not capacity", (jobs(10),), 10, slots=slots(4)),
    Case("fractional need rounds up", (jobs(3, cpus=1),), 1, entries=(entry(cpus=8),)),
]

CAP_CASES = [
    Case(
        "group.max_idle_per_entry",
        (jobs(40),),
        12,
        ("group.max_idle_per_entry",),
        group={"limits": {"max_idle_per_entry": 12}},
    ),
    Case("entry.max_idle", (jobs(40),), 7, ("entry.max_idle",), entries=(entry(max_idle=7),)),
    Case("entry.max_idle 0 is no limit of the factory's", (jobs(40),), 40, entries=(entry(max_idle=0),)),
    Case(
        "entry.max_pilots reached",
        (jobs(40),),
        0,
        ("entry.max_pilots",),
        entries=(entry(max_pilots=5),),
        slots=slots(5),
    ),
    Case(
        "group.max_running_per_entry reached",
        (jobs(40),),
        0,
        ("group.max_running_per_entry",),
        group={"limits": {"max_running_per_entry": 3}},
        slots=slots(3),
    ),
    Case(
        "room left under entry.max_pilots",
        (jobs(40),),
        3,
        ("entry.max_pilots",),
        entries=(entry(max_pilots=8),),
        slots=slots(5),
    ),
    Case(
        "idle slots at the entry's idle maximum",
        (jobs(40),),
        0,
        ("group.max_idle_per_entry",),
        group={"limits": {"max_idle_per_entry": 10}},
        slots=slots(10, IDLE, memory=1),
    ),
]

CURB_CASES = [
    Case(
        "entry.curb on pilots",
        (jobs(10),),
        5,
        ("entry.curb",),
        group={"curb_fraction": 0.8, "limits": {"max_running_per_entry": 100}},
        slots=slots(85),
    ),
    Case(
        "entry.curb on idle slots",
        (jobs(10),),
        5,
        ("entry.curb",),
        group={"curb_fraction": 0.8, "limits": {"max_idle_per_entry": 10}},
        slots=slots(8, IDLE, memory=1),
    ),
    Case(
        "below the curb nothing happens",
        (jobs(10),),
        10,
        group={"curb_fraction": 0.8},
        slots=slots(79),
        top={"limits": {"max_running_pilots": 100}},
    ),
    Case(
        "group.curb on pilots",
        (jobs(10),),
        5,
        ("group.curb",),
        group={"curb_fraction": 0.8, "limits": {"max_running_pilots": 100}},
        slots=slots(85, entry_name="e2"),
    ),
    Case(
        "group.max_running_pilots reached",
        (jobs(10),),
        0,
        ("group.max_running_pilots",),
        group={"limits": {"max_running_pilots": 50}},
        slots=slots(50, entry_name="e2"),
    ),
    Case(
        "group.curb on idle slots",
        (jobs(10),),
        5,
        ("group.curb",),
        group={"curb_fraction": 0.8, "limits": {"max_idle_pilots": 20}},
        slots=slots(16, IDLE, entry_name="e2"),
    ),
    Case(
        "group.max_idle_pilots reached by idle slots",
        (jobs(10),),
        0,
        ("group.max_idle_pilots",),
        group={"limits": {"max_idle_pilots": 4}},
        slots=slots(4, IDLE, entry_name="e2"),
    ),
    Case(
        "frontend.curb on pilots",
        (jobs(10),),
        5,
        ("frontend.curb",),
        group={"curb_fraction": 0.8},
        top={"limits": {"max_running_pilots": 100}},
        slots=slots(85, group="other"),
    ),
    Case(
        "frontend.max_running_pilots reached",
        (jobs(10),),
        0,
        ("frontend.max_running_pilots",),
        top={"limits": {"max_running_pilots": 100}},
        slots=slots(100, group="other"),
    ),
    Case(
        "frontend.max_idle_pilots reached",
        (jobs(10),),
        0,
        ("frontend.max_idle_pilots",),
        top={"limits": {"max_idle_pilots": 5}},
        slots=slots(5, IDLE, group="other"),
    ),
    Case(
        "frontend.curb on idle slots",
        (jobs(10),),
        5,
        ("frontend.curb",),
        group={"curb_fraction": 0.5},
        top={"limits": {"max_idle_pilots": 100}},
        slots=slots(50, IDLE, group="other"),
    ),
    Case(
        "pool.curb on pilots",
        (jobs(10),),
        5,
        ("pool.curb",),
        group={"curb_fraction": 0.8},
        top={"pool": {"max_running_pilots": 100}},
        pool_running=90,
    ),
    Case(
        "pool.max_running_pilots reached",
        (jobs(10),),
        0,
        ("pool.max_running_pilots",),
        top={"pool": {"max_running_pilots": 100}},
        pool_running=100,
    ),
    Case(
        "pool.curb on idle slots",
        (jobs(10),),
        5,
        ("pool.curb",),
        group={"curb_fraction": 0.8},
        top={"pool": {"max_idle_pilots": 100}},
        pool_idle=80,
    ),
    Case(
        "pool.max_idle_pilots reached",
        (jobs(10),),
        0,
        ("pool.max_idle_pilots",),
        top={"pool": {"max_idle_pilots": 100}},
        pool_idle=100,
    ),
    Case(
        "curbs at two levels halve twice",
        (jobs(12),),
        3,
        ("entry.curb", "pool.curb"),
        group={"curb_fraction": 0.8, "limits": {"max_running_per_entry": 100}},
        slots=slots(85),
        top={"pool": {"max_running_pilots": 1000}},
        pool_running=900,
    ),
]

AGGREGATE_CASES = [
    Case(
        "room under the group's running maximum",
        (jobs(10),),
        8,
        ("group.max_running_pilots",),
        group={"limits": {"max_running_pilots": 12}},
        slots=slots(4, entry_name="e2"),
    ),
    Case(
        "room under the pool's idle maximum",
        (jobs(10),),
        5,
        ("pool.max_idle_pilots",),
        top={"pool": {"max_idle_pilots": 100}},
        pool_idle=95,
    ),
    Case(
        "room under the frontend's running maximum",
        (jobs(10),),
        6,
        ("frontend.max_running_pilots",),
        top={"limits": {"max_running_pilots": 10}},
        slots=slots(4, group="other"),
    ),
]

DOWNTIME_CASES = [
    Case("downtime: no idle request", (jobs(10),), 0, ("entry.downtime",), entries=(entry(in_downtime=True),)),
    Case("no jobs at all: nothing", (), 0, slots=slots(2)),
]

REMOVAL_CASES = [
    Case(
        "idle removal when no idle jobs match",
        (jobs(0),),
        0,
        slots=slots(3, IDLE) + slots(2),
        remove=RemoveMode.IDLE,
        remove_max=3,
    ),
    Case("no removal while idle jobs wait", (jobs(1),), 0, slots=slots(3, IDLE)),
    Case("mode none never removes", (), 0, group={"removal": {"mode": "none"}}, slots=slots(3, IDLE) + slots(30)),
    Case(
        "all: a fraction of busy pilots",
        (),
        0,
        group={"removal": {"mode": "all", "max_fraction_per_cycle": 0.1}},
        slots=slots(25),
        remove=RemoveMode.ALL,
        remove_max=2,
    ),
    Case(
        "all: at least one",
        (),
        0,
        group={"removal": {"mode": "all", "max_fraction_per_cycle": 0.1}},
        slots=slots(5),
        remove=RemoveMode.ALL,
        remove_max=1,
    ),
    Case(
        "all with running jobs removes idle only",
        (jobs(0, running=3),),
        0,
        group={"removal": {"mode": "all"}},
        slots=slots(2, IDLE) + slots(3),
        remove=RemoveMode.IDLE,
        remove_max=2,
    ),
    Case("idle mode leaves busy pilots", (), 0, slots=slots(30)),
    Case(
        "unreachable schedd: no removal",
        (),
        0,
        group={"removal": {"mode": "all"}},
        slots=slots(3, IDLE) + slots(30),
        problems=(SourceProblem("schedd1@vo", "timeout", frozenset({"main"})),),
    ),
    Case(
        "unreachable schedd of another group does not matter",
        (),
        0,
        slots=slots(3, IDLE),
        problems=(SourceProblem("schedd9@vo", "timeout", frozenset({"other"})),),
        remove=RemoveMode.IDLE,
        remove_max=3,
    ),
]


@pytest.mark.parametrize(
    "case",
    REQUEST_CASES + CAP_CASES + CURB_CASES + AGGREGATE_CASES + DOWNTIME_CASES + REMOVAL_CASES,
    ids=lambda c: c.id,
)
def test_decision_table(case: Case) -> None:
    check(case)


def test_downtime_keeps_max_pilots_and_says_so() -> None:
    decision = the(run(Case("", (jobs(10),), 0, entries=(entry(in_downtime=True, max_pilots=40),))))
    assert decision.max_pilots == 40
    assert "entry in downtime" in decision.notes


def test_unreachable_schedd_is_named() -> None:
    problem = SourceProblem("schedd1@vo", "timeout", frozenset({"main"}))
    decision = the(run(Case("", (), 0, slots=slots(3, IDLE), problems=(problem,))))
    assert decision.remove is RemoveMode.NONE
    assert "removal disabled: schedd1@vo unreachable" in decision.notes


def test_requests_fall_to_zero_once_the_queue_empties() -> None:
    busy = Case("", (jobs(40, old_idle=10),), 0, group={"reserve_idle": 5}, slots=slots(3))
    assert the(run(busy)).idle == 45
    emptied = replace(busy, shapes=(jobs(0, running=40),))
    assert the(run(emptied)).idle == 0


@pytest.mark.parametrize(
    ("cap", "expected"),
    [(10, [4, 3, 3]), (11, [4, 4, 3]), (0, [0, 0, 0]), (30, [10, 10, 10]), (100, [10, 10, 10])],
)
def test_group_sum_is_scaled_down_by_largest_remainder(cap: int, expected: list[int]) -> None:
    case = Case(
        "",
        (jobs(30, DESIRED="x"),),
        0,
        entries=(entry("a"), entry("b"), entry("c")),
        group={"limits": {"max_idle_pilots": cap}},
    )
    plan = run(case)
    assert [d.idle for d in plan.decisions] == expected
    if sum(expected) < 30:
        assert all(
            "group.max_idle_pilots" in d.bound_by for d, e in zip(plan.decisions, expected, strict=True) if e < 10
        )


def test_frontend_sum_is_shared_across_groups() -> None:
    two: dict[str, dict[str, object]] = {"g1": {}, "g2": {}}
    observation = Observation(shapes=(jobs(10, group="g1"), jobs(10, group="g2")), entries=(entry(),))
    plan = decide(observation, config(two, limits={"max_idle_pilots": 7}), NOW)
    assert [(d.group, d.idle) for d in plan.decisions] == [("g1", 4), ("g2", 3)]
    assert all("frontend.max_idle_pilots" in d.bound_by for d in plan.decisions)


def test_pool_sum_counts_everyone_elses_idle_slots() -> None:
    observation = Observation(shapes=(jobs(10),), entries=(entry("a"), entry("b")), pool_idle_pilots=96)
    plan = decide(observation, config(pool={"max_idle_pilots": 100}), NOW)
    assert sum(d.idle for d in plan.decisions) == 4
    assert all("pool.max_idle_pilots" in d.bound_by for d in plan.decisions)


@pytest.mark.parametrize(
    ("requests", "cap", "expected"),
    [
        ([5, 5], 10, [5, 5]),
        ([5, 5], 5, [3, 2]),
        ([1, 1, 1], 2, [1, 1, 0]),
        ([9, 1], 5, [5, 0]),
        ([0, 4], 2, [0, 2]),
        ([3, 3], -1, [0, 0]),
        ([], 3, []),
    ],
)
def test_share_out(requests: list[int], cap: int, expected: list[int]) -> None:
    assert share_out(requests, cap) == expected


def test_disabled_groups_and_foreign_shapes_are_ignored() -> None:
    groups = {"main": {}, "off": {"enabled": False}}
    observation = Observation(
        shapes=(jobs(5), jobs(50, group="off"), jobs(70, group="unknown")),
        entries=(entry(),),
        slots=slots(2, IDLE, group="off"),
    )
    plan = decide(observation, config(groups), NOW)
    assert [(d.group, d.idle) for d in plan.decisions] == [("main", 5)]
    assert set(plan.unmatched) == {"main"}


def test_plan_reports_unmatched_downtime_and_problems() -> None:
    problem = SourceProblem("wms", "down")
    observation = Observation(
        shapes=(jobs(5, GLIDEIN_Site="nowhere"), jobs(3, DESIRED_Sites="e2"), jobs(4, DESIRED_Sites="e1")),
        entries=(entry("e1"), entry("e2", in_downtime=True)),
        problems=(problem,),
    )
    expr = "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)"
    plan = decide(observation, config({"main": {"match_expr": expr}}), NOW)
    assert (plan.unmatched, plan.in_downtime, plan.problems) == ({"main": 5}, {"main": 3}, (problem,))
    assert [(d.entry.key, d.idle) for d in plan.decisions] == [("e1@f", 4), ("e2@f", 0)]


def test_pilots_of_an_entry_not_advertised_are_never_removed_nor_asked_for() -> None:
    """An entry without an ad may be one whose ad is merely unseen: its pilots stay, nothing is published."""
    observation = Observation(entries=(), slots=slots(2, IDLE, entry_name="gone"), published=())
    decision = the(decide(observation, config(), NOW), "gone@f")
    assert (decision.idle, decision.remove, decision.remove_max, decision.withdrawn) == (0, RemoveMode.NONE, 0, True)
    assert "entry not advertised, and no request for it to keep: nothing asked" in decision.notes


def test_record_holds_inputs_and_ordered_steps() -> None:
    case = Case(
        "",
        (jobs(40, old_idle=5),),
        0,
        group={"ramp_up_attenuation": 3, "reserve_idle": 2, "limits": {"max_idle_per_entry": 12}},
    )
    decision = the(run(case))
    assert [s.name for s in decision.steps] == ["need", "ramp", "reserve", "request", "cap"]
    assert [s.value for s in decision.steps] == [40, 14, 2, 16, 12]
    assert decision.inputs.idle_jobs == 40 and decision.inputs.old_idle_jobs == 5
    assert decision.bound_by == ("group.max_idle_per_entry",)


def test_usable_idle_slots_needs_one_fitting_requirement() -> None:
    idle = slots(1, IDLE, cpus=4, memory=4000) + slots(1, IDLE, cpus=1, memory=8000)
    assert usable_idle_slots(idle, {(4, 1000)}, NOW, 0) == 1
    assert usable_idle_slots(idle, {(4, 1000), (1, 6000)}, NOW, 0) == 2
    assert usable_idle_slots(idle, set(), NOW, 0) == 0


def test_decide_is_deterministic() -> None:
    case = Case(
        "", (jobs(30),), 0, entries=(entry("c"), entry("a"), entry("b")), group={"limits": {"max_idle_pilots": 10}}
    )
    assert run(case) == run(case)
    assert [d.entry.key for d in run(case).decisions] == ["a@f", "b@f", "c@f"]


# --------------------------------------------------------------------------
# Properties over random cycles
# --------------------------------------------------------------------------

SITES = ("A", "B", "C")
EXPRS = (
    "true",
    "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)",
    "MY.RequestMemory <= TARGET.GLIDEIN_MaxMemMBs",
    "TARGET.Missing == 1",
)
GROUPS = ("g0", "g1")
small = st.integers(min_value=0, max_value=30)


@st.composite
def group_configs(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "enabled": draw(st.booleans() | st.just(True)),
        "match_expr": draw(st.sampled_from(EXPRS)),
        "ramp_up_attenuation": draw(st.floats(min_value=1, max_value=5)),
        "reserve_idle": draw(st.integers(0, 5)),
        "curb_fraction": draw(st.floats(min_value=0.1, max_value=1)),
        "min_pilot_lifetime_seconds": draw(st.integers(0, 3600)),
        "limits": {
            "max_idle_pilots": draw(small),
            "max_running_pilots": draw(st.integers(0, 60)),
            "max_idle_per_entry": draw(small),
            "max_running_per_entry": draw(small),
        },
        "removal": {
            "mode": draw(st.sampled_from(("none", "idle", "all"))),
            "max_fraction_per_cycle": draw(st.floats(min_value=0.01, max_value=1)),
        },
    }
    if draw(st.booleans()):
        raw["match_index"] = {"job_attr": "DESIRED_Sites", "entry_attr": "GLIDEIN_Site"}
    return raw


@st.composite
def configs(draw: st.DrawFn) -> FrontendConfig:
    groups = {name: draw(group_configs()) for name in GROUPS[: draw(st.integers(1, 2))]}
    return FrontendConfig.model_validate(
        {
            "name": "vo",
            "vo_collector": "127.0.0.1:29618",
            "wms_collector": "127.0.0.1:29619",
            "factories": {"f": {"identity": "u@lab"}},
            "limits": {"max_idle_pilots": draw(st.integers(0, 60)), "max_running_pilots": draw(st.integers(0, 120))},
            "pool": {"max_idle_pilots": draw(st.integers(0, 80)), "max_running_pilots": draw(st.integers(0, 200))},
            "groups": groups,
        }
    )


@st.composite
def entries(draw: st.DrawFn, name: str) -> EntryAd:
    cpus = draw(st.sampled_from((1, 4, 8)))
    attrs: dict[str, Any] = {"GLIDEIN_MaxMemMBs": cpus * draw(st.sampled_from((1000, 2000)))}
    if draw(st.integers(0, 5)):
        attrs["GLIDEIN_Site"] = draw(st.sampled_from(SITES))
    return EntryAd(
        name=name,
        factory="f",
        attrs=attrs,
        cpus_per_pilot=cpus,
        max_pilots=draw(small),
        max_idle=draw(small),
        in_downtime=draw(st.integers(0, 4)) == 0,
    )


@st.composite
def shapes(draw: st.DrawFn) -> JobShape:
    cpus = draw(st.sampled_from((1, 2, 4, 8)))
    attrs: dict[str, Any] = {}
    if draw(st.integers(0, 3)):
        attrs["DESIRED_Sites"] = ",".join(draw(st.lists(st.sampled_from((*SITES, "Z")), max_size=3)))
    idle = draw(st.integers(0, 200))
    return JobShape(
        group=draw(st.sampled_from((*GROUPS, "stray"))),
        schedd=draw(st.sampled_from(("s1", "s2"))),
        attrs=attrs,
        idle=idle,
        old_idle=draw(st.integers(0, idle)),
        running=draw(st.integers(0, 50)),
        cpus=cpus,
        memory_mb=cpus * draw(st.sampled_from((500, 1500, 3000))),
    )


@st.composite
def pilot_slots(draw: st.DrawFn, names: Sequence[str]) -> PilotSlot:
    return PilotSlot(
        entry=draw(st.sampled_from((*names, "vanished"))),
        factory="f",
        group=draw(st.sampled_from((*GROUPS, "stray"))),
        state=draw(st.sampled_from(tuple(SlotState))),
        cpus=draw(st.sampled_from((1, 4, 8))),
        memory_mb=draw(st.sampled_from((1000, 4000, 16000))),
        to_die=draw(st.none() | st.floats(min_value=NOW - 100, max_value=NOW + 7200)),
    )


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    names = [f"e{i}" for i in range(draw(st.integers(0, 5)))]
    problems = draw(
        st.lists(
            st.builds(
                SourceProblem,
                st.sampled_from(("s1", "s2", "wms")),
                st.just("timeout"),
                st.frozensets(st.sampled_from(GROUPS), max_size=2),
            ),
            max_size=2,
        )
    )
    return Observation(
        shapes=tuple(draw(st.lists(shapes(), max_size=6))),
        entries=tuple(draw(entries(name)) for name in names),
        slots=tuple(draw(st.lists(pilot_slots(names), max_size=25))),
        problems=tuple(problems),
        pool_idle_pilots=draw(st.integers(0, 100)),
        pool_running_pilots=draw(st.integers(0, 250)),
        slots_unread=draw(st.integers(0, 9)) == 0,
        entries_unread=draw(st.integers(0, 9)) == 0,
    )


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _group_slots(observation: Observation, group: str) -> list[PilotSlot]:
    return [s for s in observation.slots if s.group == group]


def _assert_entry_limits(d: Decision, observation: Observation, cfg: FrontendConfig) -> None:
    if d.withdrawn:  # nothing published for it: no request, no removal
        assert (d.idle, d.remove, d.remove_max) == (0, RemoveMode.NONE, 0)
        assert (
            d.entry.key not in {e.key for e in observation.entries}
            or observation.slots_unread
            or observation.entries_unread
        )
        return
    group = cfg.groups[d.group]
    (max_pilots, _), (max_idle, _) = entry_limits(d.entry, group)
    here = [s for s in _group_slots(observation, d.group) if s.entry_key == d.entry.key]
    assert d.idle <= max_idle
    assert d.idle == 0 or len(here) + d.idle <= max_pilots
    assert d.max_pilots == max_pilots


def _assert_sums(plan: Plan, observation: Observation, cfg: FrontendConfig) -> None:
    total = sum(d.idle for d in plan.decisions)
    for name, group in cfg.groups.items():
        in_group = sum(d.idle for d in plan.decisions if d.group == name)
        assert in_group <= group.limits.max_idle_pilots
        assert in_group == 0 or len(_group_slots(observation, name)) + in_group <= group.limits.max_running_pilots
    assert total <= cfg.limits.max_idle_pilots
    assert total == 0 or len(observation.slots) + total <= cfg.limits.max_running_pilots
    assert total == 0 or observation.pool_idle_pilots + total <= cfg.pool.max_idle_pilots
    assert total == 0 or observation.pool_running_pilots + total <= cfg.pool.max_running_pilots


def _check_maxima(plan: Plan, observation: Observation, cfg: FrontendConfig) -> None:
    """Per entry, per group sum, frontend sum, pool: no maximum is ever exceeded."""
    for d in plan.decisions:
        assert cfg.groups[d.group].enabled
        _assert_entry_limits(d, observation, cfg)
    _assert_sums(plan, observation, cfg)


def _check_unmatched_and_downtime(plan: Plan, observation: Observation, cfg: FrontendConfig) -> None:
    """Nothing for an entry no idle job matches; nothing for an entry in downtime."""
    for d in plan.decisions:
        group_shapes = [s for s in observation.shapes if s.group == d.group]
        demand = match(group_shapes, observation.entries, d.group, cfg.groups[d.group]).demands.get(d.entry.key)
        if demand is None or demand.idle_jobs == 0:
            assert d.idle == 0
        if d.entry.in_downtime and not d.withdrawn:
            wished = next((step.value for step in d.steps if step.name in ("request", "hold")), 0)
            assert d.idle == 0 and "entry in downtime" in d.notes
            assert ("entry.downtime" in d.bound_by) == (wished > 0), "a bound only holds back what was wanted"


def _check_decay(plan: Plan, observation: Observation, cfg: FrontendConfig) -> None:
    """Same cycle with the queue emptied: every request is zero at once."""
    emptied = replace(observation, shapes=tuple(replace(s, idle=0, old_idle=0) for s in observation.shapes))
    assert all(d.idle == 0 for d in decide(emptied, cfg, NOW).decisions)


def _check_removal(plan: Plan, observation: Observation, cfg: FrontendConfig) -> None:
    """ALL never exceeds the fraction; nothing is removed for an incomplete group or mode none."""
    incomplete = observation.incomplete_groups
    advertised = {e.key for e in observation.entries}
    for d in plan.decisions:
        mine = [s for s in _group_slots(observation, d.group) if s.entry_key == d.entry.key]
        busy = sum(1 for s in mine if s.state is not SlotState.IDLE)
        idle = len(mine) - busy
        mode = cfg.groups[d.group].removal.mode
        unseen = observation.slots_unread or observation.entries_unread
        if d.group in incomplete or mode == "none" or unseen or d.entry.key not in advertised:
            assert d.remove is RemoveMode.NONE, "missing data never removes"
        if d.remove is RemoveMode.ALL:
            assert mode == "all" and busy > 0
            assert d.remove_max <= max(1, math.floor(cfg.groups[d.group].removal.max_fraction_per_cycle * busy))
        if d.remove is RemoveMode.IDLE:
            assert d.remove_max == idle > 0 and d.inputs.idle_jobs == 0
        if d.remove is RemoveMode.NONE:
            assert d.remove_max == 0


def _check_coverage(plan: Plan, observation: Observation, cfg: FrontendConfig) -> None:
    """One decision per (group, entry), sorted, for every enabled group's pilots."""
    keys = [(d.group, d.entry.key) for d in plan.decisions]
    assert keys == sorted(set(keys))
    for slot in observation.slots:
        if slot.group in cfg.groups and cfg.groups[slot.group].enabled:
            assert (slot.group, slot.entry_key) in keys


PROPERTIES = (_check_maxima, _check_unmatched_and_downtime, _check_decay, _check_removal, _check_coverage)


@PROPERTY
@given(observations(), configs())
def test_properties_hold_for_random_cycles(observation: Observation, cfg: FrontendConfig) -> None:
    """All properties on each random cycle: generating cycles costs far more than checking them.

    A failure's traceback names the `_check_*` function that broke.
    """
    plan = decide(observation, cfg, NOW)
    for check_property in PROPERTIES:
        check_property(plan, observation, cfg)


def test_record_counts_slots_by_state_and_their_cores() -> None:
    case = Case(
        "",
        (jobs(4),),
        0,
        slots=(
            *slots(2, SlotState.RUNNING, cpus=8),
            *slots(1, SlotState.FAILED, cpus=4),
            *slots(3, SlotState.IDLE, cpus=2),
        ),
    )
    inputs = the(run(case)).inputs
    assert (inputs.pilots, inputs.idle_slots, inputs.running_slots, inputs.failed_slots) == (6, 3, 2, 1)
    assert inputs.pilot_cores == 2 * 8 + 4 + 3 * 2


# --------------------------------------------------------------------------
# Pilots, not slots
# --------------------------------------------------------------------------


def glidein(
    number: int, busy_dynamic: int, total_cpus: int = 8, entry_name: str = "e1", group: str = "main"
) -> tuple[PilotSlot, ...]:
    """One pilot with a partitionable slot and `busy_dynamic` one-core dynamic slots carved out of it."""
    pilot = f"f/f//{number}.0"
    left = total_cpus - busy_dynamic
    parent = PilotSlot(entry_name, "f", group, IDLE, left, 2000, None, pilot, SlotKind.PARTITIONABLE, total_cpus)
    carved = (
        PilotSlot(entry_name, "f", group, BUSY, 1, 500, None, pilot, SlotKind.DYNAMIC) for _ in range(busy_dynamic)
    )
    return (parent, *carved)


def test_a_partitionable_pilot_and_its_dynamic_slots_are_one_pilot_with_its_total_cores() -> None:
    two_pilots = (*glidein(1, busy_dynamic=2), *glidein(2, busy_dynamic=0))
    inputs = the(run(Case("", (jobs(4),), 0, slots=two_pilots))).inputs
    assert (inputs.pilots, inputs.idle_pilots, inputs.running_slots) == (2, 1, 1)
    assert inputs.idle_slots == 2, "both partitionable slots still have free cores for waiting jobs"
    assert inputs.pilot_cores == 16, "the partitionable totals, never again the dynamic slots' cores"


def test_a_cap_binds_on_pilots_not_on_slots() -> None:
    """The red team's "6 of 6 pilots, at the maximum" with 2 pilots running: the request must not stop at 2."""
    two_pilots = (*glidein(1, busy_dynamic=2), *glidein(2, busy_dynamic=2))
    decision = the(
        run(
            Case(
                "",
                (jobs(40, cpus=8, memory=1000),),
                0,
                entries=(entry(cpus=8),),
                slots=two_pilots,
                group={"limits": {"max_running_per_entry": 6}},
            )
        )
    )
    assert decision.inputs.pilots == 2
    assert decision.idle == 4, decision.steps


def two_node_glidein(number: int, busy_nodes: int) -> tuple[PilotSlot, ...]:
    """One pilot of two 2-core nodes: a startd per node, each with its partitionable slot, the first
    `busy_nodes` of them running a 2-core job; every slot names the same glidein (its job id)."""
    pilot = f"f/f//{number}.0"
    found: list[PilotSlot] = []
    for node in range(2):
        busy = node < busy_nodes
        left = 0 if busy else 2
        found.append(PilotSlot("e1", "f", "main", IDLE, left, 1000, None, pilot, SlotKind.PARTITIONABLE, 2, node))
        if busy:
            found.append(PilotSlot("e1", "f", "main", BUSY, 2, 500, None, pilot, SlotKind.DYNAMIC, node=node))
    return tuple(found)


def test_a_two_node_pilot_is_one_pilot_of_both_nodes_cores() -> None:
    half_busy = the(
        run(Case("", (jobs(1, cpus=2),), 0, entries=(entry(cpus=2, nodes_per_pilot=2),), slots=two_node_glidein(1, 1)))
    )
    inputs = half_busy.inputs
    assert (inputs.pilots, inputs.idle_pilots, inputs.running_slots, inputs.busy_slots) == (1, 0, 1, 1)
    assert inputs.pilot_cores == 4, "both nodes' cores, once"
    assert inputs.usable_idle_slots == 1 and half_busy.idle == 0, "the idle node takes the waiting job"
    # Both nodes busy, two more 2-core jobs: one more pilot of 2 x 2 cores, which a maximum of 2 pilots
    # allows only when the running one counts once (as two slots it would fill the maximum).
    two_nodes = entry(cpus=2, nodes_per_pilot=2, max_pilots=2)
    full = the(run(Case("", (jobs(2, cpus=2),), 0, entries=(two_nodes,), slots=two_node_glidein(1, busy_nodes=2))))
    assert (full.inputs.pilots, full.inputs.idle_pilots_needed, full.inputs.max_pilots) == (1, 1.0, 2)
    assert full.idle == 1, full.steps


def test_a_nodes_dynamic_slots_count_when_only_that_nodes_partitionable_ad_is_missing() -> None:
    """Node 0's startd is fully seen; node 1's partitionable slot not yet in the collector: its running
    job's cores are all we know of it, and they are not the ones node 0's partitionable slot holds."""
    node0_parent, node0_job, _, node1_job = two_node_glidein(1, busy_nodes=2)
    seen = (node0_parent, node0_job, node1_job)
    inputs = the(run(Case("", (), 0, entries=(entry(cpus=2, nodes_per_pilot=2),), slots=seen))).inputs
    assert (inputs.pilots, inputs.pilot_cores) == (1, 4)


def test_an_idle_two_node_pilot_is_one_idle_pilot_to_remove() -> None:
    decision = the(run(Case("", (), 0, entries=(entry(cpus=2, nodes_per_pilot=2),), slots=two_node_glidein(1, 0))))
    assert (decision.inputs.pilots, decision.inputs.idle_pilots, decision.inputs.idle_slots) == (1, 1, 2)
    assert (decision.remove, decision.remove_max) == (RemoveMode.IDLE, 1)


def test_dynamic_slots_alone_count_their_own_cores() -> None:
    """The partitionable slot's ad not there (not yet in the collector): its dynamic slots' cores are all we know."""
    carved = glidein(1, busy_dynamic=3)[1:]
    inputs = the(run(Case("", (jobs(1),), 0, slots=carved))).inputs
    assert (inputs.pilots, inputs.pilot_cores) == (1, 3)


def test_slots_of_unknown_pilots_count_one_pilot_each() -> None:
    inputs = the(run(Case("", (jobs(1),), 0, slots=slots(3, IDLE)))).inputs
    assert (inputs.pilots, inputs.idle_pilots) == (3, 3)


def test_idle_removal_counts_idle_pilots_not_slots() -> None:
    busy_pilot = glidein(1, busy_dynamic=1)  # its partitionable slot is idle, the pilot is not
    idle_pilot = glidein(2, busy_dynamic=0)
    decision = the(run(Case("", (), 0, slots=(*busy_pilot, *idle_pilot))))
    assert (decision.remove, decision.remove_max) == (RemoveMode.IDLE, 1)


# --------------------------------------------------------------------------
# Missing data keeps the last good request
# --------------------------------------------------------------------------


def last(idle: int, max_pilots: int, held_since: float | None = None, at: float = NOW - 60) -> PublishedRequest:
    return PublishedRequest(
        "vo", "main", "f", "e1", idle, max_pilots, "none", 0, "vo@lab", time=at, held_since=held_since
    )


def seen(**changes: Any) -> Observation:
    """A cycle that saw 30 idle jobs, 2 idle pilots and the entry, after publishing idle 5, max 40 a minute ago."""
    base = Observation(
        shapes=(jobs(30),),
        entries=(entry(max_pilots=40),),
        slots=slots(2, IDLE),
        published=(last(5, 40),),
    )
    return replace(base, **changes)


HOLD = config(hold_last_request_seconds=600)


@pytest.mark.parametrize(
    "missing, why",
    [
        ({"entries": ()}, "entry no longer advertised"),
        ({"entries_unread": True, "entries": ()}, "entry ads unreadable"),
        ({"slots_unread": True, "slots": ()}, "pilot slots unreadable"),
        (
            {
                "slots_unread": True,
                "slots": (),
                "shapes": (),
                "problems": (SourceProblem("collector vo", "no answer", frozenset({"main"}), True),),
            },
            "pilot slots unreadable",
        ),
    ],
    ids=["entry gone", "entries unreadable", "slots unreadable", "VO collector unreachable"],
)
def test_missing_entries_or_slots_keep_the_last_request_and_never_remove(missing: dict[str, Any], why: str) -> None:
    decision = the(decide(seen(**missing), HOLD, NOW))
    assert (decision.idle, decision.max_pilots, decision.remove, decision.remove_max) == (5, 40, RemoveMode.NONE, 0)
    assert decision.held_since == NOW - 60 and not decision.withdrawn
    kept = [n for n in decision.notes if n.startswith("kept the last good request (idle 5, max 40)")]
    assert kept and why in kept[0] and "since 1970-01-12T13:45:40Z (60 s of 600 s)" in kept[0], decision.notes
    assert any(n.startswith("removal disabled") and why in n for n in decision.notes)


def test_the_gone_entry_keeps_its_own_maximum_not_the_groups_default() -> None:
    decision = the(decide(seen(entries=()), config(), NOW))
    assert decision.max_pilots == 40 and config().groups["main"].limits.max_running_per_entry == BIG


def test_a_silent_schedd_floors_the_request_at_the_last_one_under_the_limits() -> None:
    problem = SourceProblem("schedd s2", "no answer", frozenset({"main"}), True)
    few_seen = seen(shapes=(jobs(3),), problems=(problem,))
    decision = the(decide(few_seen, HOLD, NOW))
    assert (decision.idle, decision.remove) == (5, RemoveMode.NONE), "3 jobs seen - 2 idle pilots = 1, but 5 kept"
    more_seen = seen(shapes=(jobs(30),), problems=(problem,))
    assert the(decide(more_seen, HOLD, NOW)).idle == 28, "what is seen may raise it"
    capped = the(decide(few_seen, config({"main": {"limits": {"max_idle_per_entry": 3}}}), NOW))
    assert capped.idle == 3 and "group.max_idle_per_entry" in capped.bound_by, "limits still hold a kept request"


def test_the_hold_is_counted_from_when_the_data_was_last_complete() -> None:
    kept_since = seen(entries=(), published=(last(5, 40, held_since=NOW - 500, at=NOW - 60),))
    decision = the(decide(kept_since, HOLD, NOW))
    assert decision.held_since == NOW - 500 and decision.idle == 5
    expired = the(decide(kept_since, HOLD, NOW + 101))
    assert expired.withdrawn and (expired.idle, expired.remove) == (0, RemoveMode.NONE)
    assert any("longer ago than hold_last_request_seconds (600 s)" in note for note in expired.notes)


def test_past_the_limit_a_silent_schedd_leaves_the_jobs_seen() -> None:
    problem = SourceProblem("schedd s2", "no answer", frozenset({"main"}), True)
    old = seen(shapes=(jobs(3),), problems=(problem,), published=(last(5, 40, held_since=NOW - 700),))
    decision = the(decide(old, HOLD, NOW))
    assert (decision.idle, decision.remove, decision.withdrawn) == (1, RemoveMode.NONE, False)


def test_with_no_request_to_keep_nothing_is_guessed() -> None:
    for blind in (seen(slots_unread=True, published=()), seen(entries_unread=True, published=None)):
        decision = the(decide(blind, HOLD, NOW))
        assert decision.withdrawn and (decision.idle, decision.remove) == (0, RemoveMode.NONE)


def test_data_back_is_decided_as_usual() -> None:
    decision = the(decide(seen(published=(last(5, 40, held_since=NOW - 300),)), HOLD, NOW))
    assert decision.held_since is None and decision.idle == 28 and decision.notes == ()


def test_a_kept_request_never_exceeds_the_groups_own_limits() -> None:
    """The request read back is only as trustworthy as the collector: a forged huge one is cut to the config."""
    forged = seen(entries=(), published=(last(10**6, 10**6),))
    decision = the(
        decide(forged, config({"main": {"limits": {"max_idle_per_entry": 7, "max_running_per_entry": 30}}}), NOW)
    )
    assert (decision.idle, decision.max_pilots) == (7, 30)
    assert decision.bound_by == ("group.max_running_per_entry", "group.max_idle_per_entry")
