"""The factory policy: one table per rule, then properties over random cycles."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from updraft.factory.decide import (
    backoff_seconds,
    clusters,
    count_pilots,
    decide,
    hold_verdict,
    is_stale,
    pilot_verdict,
)
from updraft.factory.model import (
    IDLE_STATES,
    LIVE_STATES,
    CycleCaps,
    EntryDecision,
    EntryPolicy,
    FactoryPlan,
    FrontendAccess,
    HoldPolicy,
    Limits,
    Pilot,
    PilotCounts,
    PilotState,
    Release,
    Remove,
    Request,
    StaleAges,
    Submit,
)
from updraft.protocol import PilotParams, PublishedRequest
from updraft.records import share_out

NOW = 1_000_000.0
W, P, S, R, H = PilotState.WAITING, PilotState.PENDING, PilotState.STAGING, PilotState.RUNNING, PilotState.HELD
ACCESS = {
    "fe1": FrontendAccess("fe1@lab", frozenset({"sc1", "sc1b"})),
    "fe2": FrontendAccess("fe2@lab", frozenset({"sc2"})),
}
HOLDS = HoldPolicy(recoverable_codes=frozenset({13, 26}), max_releases=2, backoff_seconds=10, max_backoff_seconds=60)
POOL = PilotParams(collector="vo.example.org:9618")


def policy(name: str = "e1", **kw: Any) -> EntryPolicy:
    """An entry where every limit is off unless a case turns it on."""
    return EntryPolicy(name=name, frontends=kw.pop("frontends", ACCESS), holds=kw.pop("holds", HOLDS), **kw)


def request(
    idle: int = 0,
    max_pilots: int = 1000,
    remove: str = "none",
    remove_max: int = 0,
    *,
    entry: str = "e1",
    frontend: str = "fe1",
    group: str = "g1",
    security_class: str = "sc1",
    identity: str | None = "<default>",
) -> Request:
    if identity == "<default>":
        identity = f"{frontend}@lab"
    return Request(entry, frontend, group, security_class, identity, idle, max_pilots, remove, remove_max, POOL)


def pilot(
    job_id: str,
    state: PilotState = W,
    *,
    age: float = 10,
    submitted_age: float | None = None,
    entry: str = "e1",
    frontend: str = "fe1",
    group: str = "g1",
    hold_code: int | None = None,
    num_holds: int = 0,
    hold_age: float | None = None,
) -> Pilot:
    """A pilot `age` seconds into its state; held pilots default to a recoverable first hold."""
    if state is H and hold_code is None:
        hold_code, num_holds = 13, num_holds or 1
    return Pilot(
        job_id=job_id,
        entry=entry,
        frontend=frontend,
        group=group,
        security_class="sc1",
        credential_id="c1",
        state=state,
        entered_state=NOW - age,
        submitted=NOW - (submitted_age if submitted_age is not None else age),
        hold_code=hold_code,
        hold_subcode=0 if hold_code else None,
        num_holds=num_holds,
        last_hold_time=None if hold_age is None else NOW - hold_age,
    )


def pilots(count: int, state: PilotState = W, **kw: Any) -> tuple[Pilot, ...]:
    """Pilots numbered later by `run` (ids only matter where a case names them)."""
    return tuple(pilot("", state, **kw) for _ in range(count))


def numbered(queue: Sequence[Pilot]) -> list[Pilot]:
    """Give unnamed pilots ids 1000.0, 1001.0, ... so every id in a cycle is unique."""
    return [p if p.job_id else replace(p, job_id=f"{1000 + i}.0") for i, p in enumerate(queue)]


def the(plan: FactoryPlan, entry: str = "e1", frontend: str = "fe1", group: str = "g1") -> EntryDecision:
    (found,) = [d for d in plan.decisions if (d.entry, d.frontend, d.group) == (entry, frontend, group)]
    return found


def removed_by_reason(decision: EntryDecision) -> dict[str, tuple[str, ...]]:
    return {a.reason: a.job_ids for a in decision.actions if isinstance(a, Remove)}


@dataclass(frozen=True)
class Case:
    id: str
    pilots: tuple[Pilot, ...] = ()
    requests: tuple[Request, ...] = (request(),)
    policy: EntryPolicy = field(default_factory=policy)
    submit: int = 0
    removed: Mapping[str, int | tuple[str, ...]] = field(default_factory=dict)
    """Per reason: how many, or exactly which ids in order."""
    released: int | tuple[str, ...] = 0
    bound: tuple[str, ...] = ()


def run(case: Case) -> FactoryPlan:
    return decide(case.requests, numbered(case.pilots), {case.policy.name: case.policy}, NOW)


def check(case: Case) -> EntryDecision:
    decision = the(run(case))
    assert decision.submitted == case.submit, decision.steps
    removed = removed_by_reason(decision)
    assert set(removed) == set(case.removed), removed
    for reason, expected in case.removed.items():
        assert (len(removed[reason]) if isinstance(expected, int) else removed[reason]) == expected, reason
    released = decision.released
    assert (len(released) if isinstance(case.released, int) else released) == case.released
    assert set(case.bound) <= set(decision.bound_by), decision.bound_by
    if not case.bound:
        assert decision.bound_by == (), decision.bound_by
    return decision


# --------------------------------------------------------------------------
# Rule 1: accept or reject
# --------------------------------------------------------------------------

SCREEN_CASES = [
    ("accepted", request(5), None),
    ("unknown entry", request(5, entry="nowhere"), "unknown entry 'nowhere'"),
    ("frontend not allowed on the entry", request(5, frontend="fe3"), "frontend 'fe3' is not allowed on entry 'e1'"),
    ("identity of another frontend", request(5, identity="fe2@lab"), "authenticated as 'fe2@lab'"),
    ("no authenticated identity", request(5, identity=None), "authenticated as None"),
    ("security class not allowed", request(5, security_class="sc9"), "security class 'sc9' is not allowed"),
    ("security class of another frontend", request(5, security_class="sc2"), "security class 'sc2'"),
    ("second security class of the frontend", request(5, security_class="sc1b"), None),
    ("unknown remove mode", request(5, remove="some"), "unknown remove mode 'some'"),
    ("negative idle", request(-1), "idle is negative (-1)"),
    ("negative max_pilots", request(5, max_pilots=-2), "max_pilots is negative (-2)"),
    ("negative remove_max", request(5, remove="idle", remove_max=-1), "remove_max is negative (-1)"),
]


@pytest.mark.parametrize(("name", "req", "reason"), SCREEN_CASES, ids=[c[0] for c in SCREEN_CASES])
def test_requests_are_screened(name: str, req: Request, reason: str | None) -> None:
    plan = decide([req], [], {"e1": policy()}, NOW)
    if reason is None:
        assert plan.rejected == () and the(plan, group=req.group).request == req
        assert plan.decisions[0].submitted == 5
    else:
        ((rejection),) = plan.rejected
        assert rejection.request == req and reason in rejection.reason
        assert all(d.submitted == 0 for d in plan.decisions)


def test_a_duplicate_request_keeps_the_first_in_sorted_order() -> None:
    first, second = request(3), request(7)
    for order in ([first, second], [second, first]):
        plan = decide(order, [], {"e1": policy()}, NOW)
        assert the(plan).request == first and the(plan).submitted == 3
        assert [r.request for r in plan.rejected] == [second]
        assert "another request" in plan.rejected[0].reason


def test_a_rejected_request_still_lets_its_pilots_be_cleaned_up() -> None:
    stale = pilot("1.0", W, age=500)
    plan = decide(
        [request(5, identity="mallory@evil")], [stale], {"e1": policy(stale=StaleAges(idle_seconds=100))}, NOW
    )
    decision = the(plan)
    assert decision.request is None and decision.submitted == 0
    assert removed_by_reason(decision) == {"stale idle": ("1.0",)}
    assert any("request rejected: authenticated as 'mallory@evil'" in n for n in decision.notes)


def test_request_from_published_ad_keeps_or_replaces_its_security_class() -> None:
    ad = PublishedRequest("fe1", "g1", "factory", "e1", 4, 9, "idle", 2, "fe1@lab", security_class="sc1b", pilot=POOL)
    assert Request.from_published(ad) == request(4, 9, "idle", 2, security_class="sc1b")
    assert Request.from_published(ad, "sc1") == request(4, 9, "idle", 2)


# --------------------------------------------------------------------------
# Rule 2: counting (stale running and held numbers must be right)
# --------------------------------------------------------------------------

AGES = StaleAges(idle_seconds=100, running_seconds=1000, held_seconds=50)


def test_count_pilots_by_state_and_staleness() -> None:
    queue = [
        *pilots(3, W, age=10),
        *pilots(2, W, age=101),
        pilot("", W, age=100),
        *pilots(2, P, age=150),
        pilot("", S, age=99),
        pilot("", S, age=200),
        *pilots(4, R, age=999),
        *pilots(2, R, age=1000.5),
        pilot("", H, age=49),
        *pilots(3, H, age=51),
        *pilots(5, PilotState.COMPLETED, age=10_000),
        *pilots(6, PilotState.REMOVED, age=10_000),
    ]
    counts = count_pilots(queue, NOW, policy(stale=AGES))
    assert counts == PilotCounts(
        waiting=6, pending=2, staging=2, running=6, held=4, stale_idle=2 + 2 + 1, stale_running=2, stale_held=3
    )
    assert (counts.idle, counts.total) == (10, 20)


def test_count_pilots_without_stale_ages_counts_nothing_stale() -> None:
    queue = [*pilots(2, W, age=10**6), *pilots(2, R, age=10**6), *pilots(1, H, age=10**6)]
    counts = count_pilots(queue, NOW, policy())
    assert counts == PilotCounts(waiting=2, running=2, held=1)


@pytest.mark.parametrize(
    ("state", "age", "stale"),
    [
        (W, 100, False),
        (W, 100.001, True),
        (P, 101, True),
        (S, 101, True),
        (R, 1000, False),
        (R, 1001, True),
        (H, 50, False),
        (H, 51, True),
        (PilotState.COMPLETED, 10**6, False),
    ],
)
def test_stale_is_strictly_older_than_the_state_age(state: PilotState, age: float, stale: bool) -> None:
    assert is_stale(pilot("1.0", state, age=age), NOW, AGES) is stale


def test_counts_are_recorded_as_inputs() -> None:
    case = Case(
        "", pilots=(*pilots(2, W), *pilots(1, P), *pilots(3, R), pilot("", H, hold_age=1)), requests=(request(3, 20),)
    )
    decision = the(run(case))
    counts = decision.inputs.pilots
    assert (counts.waiting, counts.pending, counts.running, counts.held) == (2, 1, 3, 1)
    assert decision.request is not None and decision.request.idle == 3


# --------------------------------------------------------------------------
# Rule 3: submissions and their bounds
# --------------------------------------------------------------------------

OTHER_GROUP = {"group": "g2"}
FE2 = {"frontend": "fe2"}

SUBMIT_CASES = [
    Case("up to the requested idle", pilots(3, W), (request(10),), submit=7),
    Case(
        "waiting, pending and staging are all idle",
        (*pilots(2, W), *pilots(2, P), *pilots(2, S)),
        (request(10),),
        submit=4,
    ),
    Case("running pilots are not idle", pilots(5, R), (request(10),), submit=10),
    Case("enough idle: nothing", pilots(4, P), (request(3),)),
    Case("request.max_pilots", pilots(2, R), (request(10, max_pilots=6),), submit=4, bound=("request.max_pilots",)),
    Case(
        "request.max_pilots counts held pilots",
        (*pilots(2, R), *pilots(2, H, hold_age=1)),
        (request(10, max_pilots=6),),
        submit=2,
        bound=("request.max_pilots",),
    ),
    Case(
        "entry.max_pilots counts every frontend",
        pilots(5, R, **FE2),
        (request(10),),
        policy(limits=Limits(max_pilots=8)),
        submit=3,
        bound=("entry.max_pilots",),
    ),
    Case(
        "entry.max_idle counts every group",
        pilots(1, W, **OTHER_GROUP),
        (request(10),),
        policy(limits=Limits(max_idle=4)),
        submit=3,
        bound=("entry.max_idle",),
    ),
    Case(
        "entry already above max_idle",
        pilots(6, W, **OTHER_GROUP),
        (request(10),),
        policy(limits=Limits(max_idle=4)),
        submit=0,
        bound=("entry.max_idle",),
    ),
    Case(
        "entry.max_held reached",
        pilots(2, H, hold_age=1, **FE2),
        (request(10),),
        policy(limits=Limits(max_held=2)),
        submit=0,
        bound=("entry.max_held",),
    ),
    Case(
        "entry below max_held", pilots(1, H, hold_age=1), (request(10),), policy(limits=Limits(max_held=2)), submit=10
    ),
    Case(
        "held pilots removed this cycle no longer block",
        pilots(2, H, hold_code=99),
        (request(10),),
        policy(limits=Limits(max_held=2)),
        submit=10,
        removed={"unrecoverable hold": 2},
    ),
    Case(
        "released pilots still count as held",
        pilots(2, H, hold_age=100),
        (request(10),),
        policy(limits=Limits(max_held=2)),
        submit=0,
        released=2,
        bound=("entry.max_held",),
    ),
    Case(
        "frontend.max_pilots across its groups",
        pilots(3, R, **OTHER_GROUP),
        (request(10),),
        policy(frontend_limits={"fe1": Limits(max_pilots=5)}),
        submit=2,
        bound=("frontend.max_pilots",),
    ),
    Case(
        "frontend.max_pilots ignores other frontends",
        pilots(30, R, **FE2),
        (request(10),),
        policy(frontend_limits={"fe1": Limits(max_pilots=15)}),
        submit=10,
    ),
    Case(
        "frontend.max_idle",
        pilots(2, P, **OTHER_GROUP),
        (request(10),),
        policy(frontend_limits={"fe1": Limits(max_idle=5)}),
        submit=3,
        bound=("frontend.max_idle",),
    ),
    Case(
        "frontend.max_held",
        pilots(1, H, hold_age=1, **OTHER_GROUP),
        (request(10),),
        policy(frontend_limits={"fe1": Limits(max_held=1)}),
        submit=0,
        bound=("frontend.max_held",),
    ),
    Case(
        "default frontend limits for unlisted frontends",
        (),
        (request(10),),
        policy(frontend_limits={"fe2": Limits(max_idle=50)}, default_frontend_limits=Limits(max_idle=4)),
        submit=4,
        bound=("frontend.max_idle",),
    ),
    Case("downtime: nothing", (), (request(10),), policy(in_downtime=True), bound=("entry.downtime",)),
    Case(
        "entry.max_submits",
        (),
        (request(10),),
        policy(per_cycle=CycleCaps(max_submits=4)),
        submit=4,
        bound=("entry.max_submits",),
    ),
    Case(
        "a zero limit means zero", (), (request(10),), policy(limits=Limits(max_pilots=0)), bound=("entry.max_pilots",)
    ),
    Case(
        "a released pilot queues again and counts as idle",
        pilots(1, H, hold_age=10),
        (request(3),),
        submit=2,
        released=1,
    ),
    Case(
        "stale idle pilots are replaced",
        pilots(2, W, age=500),
        (request(2),),
        policy(stale=StaleAges(idle_seconds=100)),
        submit=2,
        removed={"stale idle": 2},
    ),
    Case(
        "tightest of several bounds names them all",
        pilots(2, R),
        (request(10, max_pilots=6),),
        policy(limits=Limits(max_idle=4), per_cycle=CycleCaps(max_submits=4)),
        submit=4,
        bound=("request.max_pilots", "entry.max_idle", "entry.max_submits"),
    ),
]


@pytest.mark.parametrize("case", SUBMIT_CASES, ids=lambda c: c.id)
def test_submissions(case: Case) -> None:
    check(case)


def test_downtime_is_noted() -> None:
    decision = check(Case("", (), (request(10),), policy(in_downtime=True), bound=("entry.downtime",)))
    assert "entry in downtime: nothing submitted" in decision.notes


@pytest.mark.parametrize(
    ("wanted", "cap", "expected"),
    [
        ([6, 4], 5, [3, 2]),
        ([5, 5, 5], 4, [2, 1, 1]),
        ([1, 9], 5, [1, 4]),
        ([3, 3], 10, [3, 3]),
        ([2, 2], 0, [0, 0]),
        ([2, 2], -3, [0, 0]),
    ],
)
def test_share_out_by_largest_remainder(wanted: list[int], cap: int, expected: list[int]) -> None:
    assert share_out(wanted, cap) == expected


def test_max_submits_is_shared_across_the_requests_of_an_entry() -> None:
    requests = (request(6, group="g1"), request(4, group="g2"), request(5, frontend="fe2", security_class="sc2"))
    plan = decide(requests, [], {"e1": policy(per_cycle=CycleCaps(max_submits=6))}, NOW)
    got = {(d.frontend, d.group): d.submitted for d in plan.decisions}
    assert got == {("fe1", "g1"): 2, ("fe1", "g2"): 2, ("fe2", "g1"): 2}  # 2.4, 1.6, 2.0: the .6 gets the rest
    assert all("entry.max_submits" in d.bound_by for d in plan.decisions)


def test_frontend_room_is_shared_between_its_groups_only() -> None:
    requests = (request(4, group="g1"), request(4, group="g2"), request(4, frontend="fe2", security_class="sc2"))
    plan = decide(requests, [], {"e1": policy(frontend_limits={"fe1": Limits(max_idle=4)})}, NOW)
    got = {(d.frontend, d.group): d.submitted for d in plan.decisions}
    assert got == {("fe1", "g1"): 2, ("fe1", "g2"): 2, ("fe2", "g1"): 4}


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [
        (7, 3, (3, 3, 1)),
        (6, 3, (3, 3)),
        (2, 5, (2,)),
        (0, 4, ()),
        (5, 1, (1, 1, 1, 1, 1)),
    ],
)
def test_clusters(count: int, size: int, expected: tuple[int, ...]) -> None:
    assert clusters(count, size) == expected


def test_submit_action_carries_the_request_security_class_clusters_and_pilot_params() -> None:
    plan = decide([request(7, security_class="sc1b")], [], {"e1": policy(cluster_size=3)}, NOW)
    assert the(plan).actions == (Submit("e1", "fe1", "g1", "sc1b", 7, (3, 3, 1), POOL),)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (PilotParams(), "no UpdraftPilotCollector"),
        (PilotParams(collector="vo.example.org"), "is not host:port"),
        (PilotParams(collector="vo:9618", manifest_url="http://web/m"), "go together"),
        (PilotParams(collector="vo:9618", manifest_url="ftp://web/m", manifest_sha256="a" * 64), "not an http(s) URL"),
        (PilotParams(collector="vo:9618", manifest_url="http://web/m", manifest_sha256="A" * 64), "64 lowercase hex"),
        (PilotParams(collector="vo:9618", group_start="true\nSTART = true"), "line break"),
    ],
)
def test_a_request_whose_pilot_params_no_pilot_can_use_is_refused(params: PilotParams, reason: str) -> None:
    bad = Request("e1", "fe1", "g1", "sc1", "fe1@lab", 3, 10, pilot=params)
    plan = decide([bad], [], {"e1": policy()}, NOW)
    assert plan.actions == ()
    assert len(plan.rejected) == 1 and reason in plan.rejected[0].reason, plan.rejected


def test_cluster_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cluster_size"):
        policy(cluster_size=0)


# --------------------------------------------------------------------------
# Rule 4: removals the request asks for
# --------------------------------------------------------------------------

REMOVAL_CASES = [
    Case(
        "idle mode removes the excess",
        pilots(5, W),
        (request(2, remove="idle", remove_max=10),),
        removed={"excess idle": 3},
    ),
    Case(
        "at most remove_max",
        pilots(5, W),
        (request(2, remove="idle", remove_max=1),),
        removed={"excess idle": 1},
        bound=("request.remove_max",),
    ),
    Case("mode none keeps the excess", pilots(5, W), (request(2, remove="none", remove_max=10),)),
    Case(
        "waiting first, then pending, newest first",
        (
            pilot("1.0", W, submitted_age=50),
            pilot("2.0", W, submitted_age=10),
            pilot("3.0", P, submitted_age=90),
            pilot("4.0", P, submitted_age=5),
            pilot("5.0", S, submitted_age=1),
        ),
        (request(1, remove="idle", remove_max=10),),
        removed={"excess idle": ("2.0", "1.0", "4.0", "3.0")},
    ),
    Case(
        "same age: the higher job id is newer",
        (pilot("9.0", W), pilot("10.0", W), pilot("10.1", W)),
        (request(1, remove="idle", remove_max=10),),
        removed={"excess idle": ("10.1", "10.0")},
    ),
    Case("idle mode never removes running pilots", pilots(5, R), (request(0, remove="idle", remove_max=10),)),
    Case(
        "all mode with idle wanted keeps running pilots",
        (*pilots(3, W), *pilots(5, R)),
        (request(1, remove="all", remove_max=10),),
        removed={"excess idle": 2},
    ),
    Case(
        "all mode with nothing wanted: idle, then newest running",
        (pilot("1.0", W), pilot("2.0", R, age=300), pilot("3.0", R, age=30), pilot("4.0", R, age=100)),
        (request(0, remove="all", remove_max=3),),
        removed={"excess idle": ("1.0",), "remove all": ("3.0", "4.0")},
        bound=("request.remove_max",),
    ),
    Case(
        "all mode leaves held pilots to the hold rules",
        (*pilots(2, R), *pilots(2, H, hold_age=1)),
        (request(0, remove="all", remove_max=10),),
        removed={"remove all": 2},
    ),
    Case(
        "entry.max_removals",
        pilots(5, W),
        (request(0, remove="idle", remove_max=10),),
        policy(per_cycle=CycleCaps(max_removals=2)),
        removed={"excess idle": 2},
        bound=("entry.max_removals",),
    ),
    Case(
        "stale removals come first under max_removals",
        (*pilots(2, W, age=500), *pilots(3, W)),
        (request(0, remove="idle", remove_max=10),),
        policy(per_cycle=CycleCaps(max_removals=3), stale=StaleAges(idle_seconds=100)),
        removed={"stale idle": 2, "excess idle": 1},
        bound=("entry.max_removals",),
    ),
    Case(
        "stale removals reduce the excess",
        (*pilots(2, W, age=500), *pilots(3, W)),
        (request(2, remove="idle", remove_max=10),),
        policy(stale=StaleAges(idle_seconds=100)),
        removed={"stale idle": 2, "excess idle": 1},
    ),
    Case(
        "a release counts towards the excess",
        (*pilots(3, W), pilot("", H, hold_age=100)),
        (request(3, remove="idle", remove_max=10),),
        removed={"excess idle": 1},
        released=1,
    ),
]


@pytest.mark.parametrize("case", REMOVAL_CASES, ids=lambda c: c.id)
def test_request_removals(case: Case) -> None:
    check(case)


def test_removal_cap_is_shared_across_requests() -> None:
    queue = numbered([*pilots(6, W, group="g1"), *pilots(2, W, group="g2")])
    requests = (
        request(0, remove="idle", remove_max=10, group="g1"),
        request(0, remove="idle", remove_max=10, group="g2"),
    )
    plan = decide(requests, queue, {"e1": policy(per_cycle=CycleCaps(max_removals=4))}, NOW)
    assert [len(d.removed) for d in plan.decisions] == [3, 1]


# --------------------------------------------------------------------------
# Rule 5: stale pilots
# --------------------------------------------------------------------------

STALE = policy(stale=StaleAges(idle_seconds=100, running_seconds=1000, held_seconds=50))

STALE_CASES = [
    Case(
        "stale idle",
        (pilot("1.0", W, age=101), pilot("2.0", P, age=300), pilot("3.0", W, age=50)),
        (request(3),),
        STALE,
        submit=2,
        removed={"stale idle": ("2.0", "1.0")},
    ),
    Case("exactly at the limit is not stale", pilots(1, P, age=100), (request(1),), STALE),
    Case(
        "stale running",
        (pilot("1.0", R, age=1001), pilot("2.0", R, age=999)),
        (request(0),),
        STALE,
        removed={"stale running": ("1.0",)},
    ),
    Case(
        "stale held beats a pending release",
        pilots(1, H, age=60, hold_age=60),
        (request(0),),
        STALE,
        removed={"stale held": 1},
    ),
    Case("no ages set: never stale", (*pilots(1, W, age=10**6), *pilots(1, R, age=10**6)), (request(1),)),
    Case("stale pilots of a group without a request", pilots(2, W, age=500), (), STALE, removed={"stale idle": 2}),
    Case(
        "oldest stale first under max_removals",
        (pilot("1.0", R, age=2000), pilot("2.0", W, age=150), pilot("3.0", W, age=900)),
        (request(0),),
        replace(STALE, per_cycle=CycleCaps(max_removals=1)),
        removed={"stale idle": ("3.0",)},
        bound=("entry.max_removals",),
    ),
    Case(
        "stale idle before stale running",
        (pilot("1.0", R, age=5000), pilot("2.0", W, age=150)),
        (request(0),),
        replace(STALE, per_cycle=CycleCaps(max_removals=1)),
        removed={"stale idle": ("2.0",)},
        bound=("entry.max_removals",),
    ),
]


@pytest.mark.parametrize("case", STALE_CASES, ids=lambda c: c.id)
def test_stale_pilots(case: Case) -> None:
    check(case)


# --------------------------------------------------------------------------
# Rule 6: held pilots
# --------------------------------------------------------------------------

HOLD_CASES = [
    Case("recoverable, first hold, backoff passed", pilots(1, H, hold_age=10), released=1),
    Case("backoff not passed: left alone", pilots(1, H, hold_age=9)),
    Case(
        "backoff doubles per release",
        pilots(1, H, num_holds=3, hold_age=39, hold_code=26),
        policy=policy(holds=replace(HOLDS, max_releases=5)),
    ),
    Case(
        "doubled backoff passed",
        pilots(1, H, num_holds=3, hold_age=40, hold_code=26),
        policy=policy(holds=replace(HOLDS, max_releases=5)),
        released=1,
    ),
    Case("unrecoverable code", pilots(1, H, hold_code=7, hold_age=1000), removed={"unrecoverable hold": 1}),
    Case(
        "released max_releases times already", pilots(1, H, num_holds=3, hold_age=1000), removed={"too many holds": 1}
    ),
    Case("one release left", pilots(1, H, num_holds=2, hold_age=1000), released=1),
    Case("no LastHoldTime: the state's time is the hold's", pilots(1, H, age=10), released=1),
    Case(
        "releases per cycle",
        (pilot("1.0", H, hold_age=30), pilot("2.0", H, hold_age=300), pilot("3.0", H, hold_age=100)),
        policy=policy(per_cycle=CycleCaps(max_releases=2)),
        released=("2.0", "3.0"),
        bound=("entry.max_releases",),
    ),
    Case(
        "held removals come before stale ones",
        (pilot("1.0", H, hold_code=7), pilot("2.0", W, age=900)),
        policy=policy(stale=StaleAges(idle_seconds=100), per_cycle=CycleCaps(max_removals=1)),
        removed={"unrecoverable hold": ("1.0",)},
        bound=("entry.max_removals",),
    ),
    Case("held pilots of a group without a request", pilots(1, H, hold_code=7), (), removed={"unrecoverable hold": 1}),
]


@pytest.mark.parametrize("case", HOLD_CASES, ids=lambda c: c.id)
def test_held_pilots(case: Case) -> None:
    check(case)


@pytest.mark.parametrize(("num_holds", "expected"), [(0, 10), (1, 10), (2, 20), (3, 40), (4, 60), (10**6, 60)])
def test_backoff_doubles_up_to_the_maximum(num_holds: int, expected: float) -> None:
    assert backoff_seconds(pilot("1.0", H, num_holds=num_holds), HOLDS) == expected


def test_waiting_holds_are_noted() -> None:
    decision = check(Case("", (pilot("1.0", H, hold_age=4), pilot("2.0", H, hold_age=1))))
    assert "2 held pilots wait out their backoff (the first may be released in 6 s)" in decision.notes


def test_hold_verdict_words() -> None:
    assert hold_verdict(pilot("1.0", H, hold_age=4), NOW, policy()).action == "wait"
    assert hold_verdict(pilot("1.0", H, hold_code=None, hold_age=100), NOW, policy()).action == "release"
    no_code = replace(pilot("1.0", H, hold_age=100), hold_code=None)
    assert hold_verdict(no_code, NOW, policy()).reason == "unrecoverable hold"
    assert pilot_verdict(pilot("1.0", R, age=10**6), NOW, policy()) is None


# --------------------------------------------------------------------------
# Rule 7: pilots with no request this cycle
# --------------------------------------------------------------------------


def test_idle_pilots_without_a_request_are_left_alone() -> None:
    plan = decide([], numbered([*pilots(4, W), *pilots(2, R)]), {"e1": policy()}, NOW)
    decision = the(plan)
    assert decision.request is None and decision.actions == ()
    assert "no accepted request this cycle: 4 idle pilots left alone" in decision.notes


def test_pilots_of_an_unknown_entry_are_only_counted() -> None:
    queue = numbered([*pilots(3, W, entry="gone", age=10**6), pilot("", PilotState.COMPLETED, entry="gone")])
    plan = decide([], queue, {"e1": policy(stale=StaleAges(idle_seconds=1))}, NOW)
    assert plan.decisions == () and plan.unmanaged == {"gone": 3}


def test_record_has_ordered_steps() -> None:
    decision = check(
        Case(
            "",
            pilots(2, R),
            (request(10, max_pilots=6),),
            policy(per_cycle=CycleCaps(max_submits=3)),
            submit=3,
            bound=("request.max_pilots", "entry.max_submits"),
        )
    )
    assert [(s.name, s.value) for s in decision.steps] == [("wanted", 10), ("cap", 4), ("share", 3), ("submit", 3)]
    assert decision.bound_by == ("request.max_pilots", "entry.max_submits")


def test_actions_are_removals_then_releases_then_the_submission() -> None:
    queue = [pilot("1.0", H, hold_code=7), pilot("2.0", H, hold_age=100), pilot("3.0", W, age=500)]
    plan = decide([request(5)], queue, {"e1": policy(stale=StaleAges(idle_seconds=100))}, NOW)
    assert the(plan).actions == (
        Remove(("1.0",), "unrecoverable hold"),
        Remove(("3.0",), "stale idle"),
        Release(("2.0",)),
        Submit("e1", "fe1", "g1", "sc1", 4, (1, 1, 1, 1), POOL),
    )
    assert plan.actions == the(plan).actions


# --------------------------------------------------------------------------
# Rule 8: properties over random cycles
# --------------------------------------------------------------------------

ENTRIES = ("e0", "e1", "e2")
FRONTENDS = ("fe1", "fe2", "fe3")
limit = st.none() | st.integers(0, 12)
ages = st.none() | st.integers(50, 600)


@st.composite
def limits(draw: st.DrawFn) -> Limits:
    return Limits(max_pilots=draw(limit), max_idle=draw(limit), max_held=draw(limit))


@st.composite
def policies(draw: st.DrawFn, name: str) -> EntryPolicy:
    return EntryPolicy(
        name=name,
        limits=draw(limits()),
        frontend_limits=draw(st.dictionaries(st.sampled_from(FRONTENDS), limits(), max_size=2)),
        default_frontend_limits=draw(limits()),
        per_cycle=CycleCaps(max_submits=draw(limit), max_removals=draw(limit), max_releases=draw(limit)),
        cluster_size=draw(st.integers(1, 4)),
        stale=StaleAges(idle_seconds=draw(ages), running_seconds=draw(ages), held_seconds=draw(ages)),
        holds=HoldPolicy(
            recoverable_codes=draw(st.frozensets(st.integers(1, 4)).map(lambda codes: codes | {1})),
            max_releases=draw(st.integers(0, 3)),
            backoff_seconds=draw(st.integers(0, 60)),
            max_backoff_seconds=draw(st.integers(0, 200)),
        ),
        in_downtime=draw(st.integers(0, 4)) == 0,
        frontends={"fe1": ACCESS["fe1"], **({"fe2": ACCESS["fe2"]} if draw(st.booleans()) else {})},
        members=draw(st.none() | st.lists(st.sampled_from("abc"), unique=True, max_size=3).map(tuple)),
        set_policy=draw(st.sampled_from(["least_idle", "round_robin"])),
    )


def _pilot(number: int, fields: tuple[Any, ...]) -> Pilot:
    entry, frontend, group, state, age, queued_for, hold_code, num_holds, hold_age = fields
    return Pilot(
        job_id=f"{number // 3}.{number % 3}",
        entry=entry,
        frontend=frontend,
        group=group,
        security_class="sc1",
        credential_id="c",
        state=state,
        entered_state=NOW - age,
        submitted=NOW - age - queued_for,
        hold_code=hold_code,
        hold_subcode=None,
        num_holds=num_holds,
        last_hold_time=None if hold_age is None else NOW - hold_age,
    )


# Built once: strategies made inside a draw are validated again on every draw, which dominates the run time.
PILOT_FIELDS = st.tuples(
    st.sampled_from(("e0", "e0", "e0", "e1", "e2", "gone")),
    st.sampled_from(("fe1", "fe1", "fe1", "fe2", "fe3")),
    st.sampled_from(("g1", "g2")),
    st.sampled_from(tuple(PilotState)),
    st.integers(0, 400),
    st.integers(0, 100),
    st.sampled_from((None, 1, 1, 1, 2, 5)),
    st.integers(0, 3),
    st.none() | st.integers(0, 400),
)
QUEUES = st.lists(PILOT_FIELDS, max_size=60).map(lambda rows: [_pilot(i, row) for i, row in enumerate(rows)])
REQUEST_FIELDS = st.tuples(
    st.sampled_from(("e0", "e0", "e0", "e1", "e2", "nowhere")),
    st.sampled_from(("fe1", "fe1", "fe1", "fe2", "fe3")),
    st.sampled_from(("g1", "g2")),
    st.sampled_from(("own",) * 8 + ("sc1", "sc2", "sc1b")),
    st.sampled_from(("own",) * 8 + ("fe2@lab", None)),
    st.integers(-1, 8),
    st.integers(0, 30),
    st.sampled_from(("none", "idle", "idle", "all", "all", "all") * 2 + ("bogus",)),
    st.integers(0, 10),
)


def _request(fields: tuple[Any, ...]) -> Request:
    """Mostly the frontend's own identity and security class, sometimes another's or none."""
    entry, frontend, group, security_class, identity, idle, max_pilots, remove, remove_max = fields
    identity = f"{frontend}@lab" if identity == "own" else identity
    security_class = f"sc{frontend[-1]}" if security_class == "own" else security_class
    return Request(entry, frontend, group, security_class, identity, idle, max_pilots, remove, remove_max, POOL)


REQUESTS = st.lists(REQUEST_FIELDS.map(_request), max_size=8)


REMOVE_MODES = st.sampled_from(("none", "idle", "all", "all"))
FEW_IDLE = st.sampled_from((0, 0, 1, 3))


@st.composite
def requests_for(draw: st.DrawFn, queue: list[Pilot]) -> list[Request]:
    """Acceptable requests for the keys of some pilots: without them removals would rarely meet pilots."""
    if not queue:
        return []
    return [
        Request(
            p.entry,
            p.frontend,
            p.group,
            f"sc{p.frontend[-1]}",
            f"{p.frontend}@lab",
            draw(FEW_IDLE),
            draw(st.integers(0, 30)),
            draw(REMOVE_MODES),
            draw(st.integers(0, 10)),
            POOL,
        )
        for p in draw(st.lists(st.sampled_from(queue), max_size=4))
    ]


@st.composite
def cycles(draw: st.DrawFn) -> tuple[list[Request], list[Pilot], dict[str, EntryPolicy]]:
    names = ENTRIES[: draw(st.integers(0, 3))]
    queue = draw(QUEUES)
    return draw(REQUESTS) + draw(requests_for(queue)), queue, {n: draw(policies(n)) for n in names}


@dataclass(frozen=True)
class _After:
    """One scope's pilots once the plan is applied, submissions apart."""

    total: int = 0
    idle: int = 0
    held: int = 0
    submitted: int = 0


def _after(pilots: Sequence[Pilot], decisions: Sequence[EntryDecision]) -> _After:
    removed = {job for d in decisions for job in d.removed}
    released = {job for d in decisions for job in d.released}
    left = [p for p in pilots if p.state in LIVE_STATES and p.job_id not in removed]
    return _After(
        total=len(left),
        idle=sum(p.state in IDLE_STATES or p.job_id in released for p in left),
        held=sum(p.state is H for p in left),
        submitted=sum(d.submitted for d in decisions),
    )


def _assert_within(after: _After, lim: Limits, what: str) -> None:
    """Submitting anything means every limit still holds once the pilots arrive."""
    if after.submitted == 0:
        return
    if lim.max_pilots is not None:
        assert after.total + after.submitted <= lim.max_pilots, what
    if lim.max_idle is not None:
        assert after.idle + after.submitted <= lim.max_idle, what
    if lim.max_held is not None:
        assert after.held < lim.max_held, what


def _check_limits(plan: FactoryPlan, reqs: list[Request], queue: list[Pilot], pols: dict[str, EntryPolicy]) -> None:
    """Entry, per-frontend and request maxima all hold after the actions; no submission in downtime."""
    for name, pol in pols.items():
        here = [p for p in queue if p.entry == name]
        mine = [d for d in plan.decisions if d.entry == name]
        _assert_within(_after(here, mine), pol.limits, f"entry {name}")
        assert not (pol.in_downtime and any(d.submitted for d in mine))
        for frontend in FRONTENDS:
            theirs = [d for d in mine if d.frontend == frontend]
            _assert_within(
                _after([p for p in here if p.frontend == frontend], theirs),
                pol.limits_for(frontend),
                f"frontend {frontend} on {name}",
            )
        for d in mine:
            key = _after([p for p in here if (p.frontend, p.group) == (d.frontend, d.group)], [d])
            if d.submitted:
                assert d.request is not None and key.total + d.submitted <= d.request.max_pilots
                assert key.idle + d.submitted <= d.request.idle


def _check_caps(plan: FactoryPlan, reqs: list[Request], queue: list[Pilot], pols: dict[str, EntryPolicy]) -> None:
    """Per-cycle caps per entry; clusters add up and respect the cluster size."""
    for name, pol in pols.items():
        mine = [d for d in plan.decisions if d.entry == name]
        caps = pol.per_cycle
        for cap, used in (
            (caps.max_submits, sum(d.submitted for d in mine)),
            (caps.max_removals, sum(len(d.removed) for d in mine)),
            (caps.max_releases, sum(len(d.released) for d in mine)),
        ):
            assert cap is None or used <= cap
        for action in (a for d in mine for a in d.actions if isinstance(a, Submit)):
            assert sum(action.clusters) == action.count > 0 and max(action.clusters) <= pol.cluster_size
        for decision in mine:
            members = [a.member for a in decision.actions if isinstance(a, Submit)]
            assert len(members) == len(set(members))
            assert set(members) <= ({None} if pol.members is None else set(pol.members))


def _check_ids(plan: FactoryPlan, reqs: list[Request], queue: list[Pilot], pols: dict[str, EntryPolicy]) -> None:
    """Acted-on ids exist, are live, belong to the decision's key; none removed twice or removed and released."""
    by_id = {p.job_id: p for p in queue}
    removed = [job for d in plan.decisions for job in d.removed]
    released = [job for d in plan.decisions for job in d.released]
    assert len(set(removed)) == len(removed) and len(set(released)) == len(released)
    assert not set(removed) & set(released)
    for d in plan.decisions:
        for job in d.removed + d.released:
            found = by_id[job]
            assert found.state in LIVE_STATES and (found.entry, found.frontend, found.group) == (
                d.entry,
                d.frontend,
                d.group,
            )
        assert all(by_id[job].state is H for job in d.released)


def _check_reasons(plan: FactoryPlan, reqs: list[Request], queue: list[Pilot], pols: dict[str, EntryPolicy]) -> None:
    """Every removal and release is one the rules allow: running pilots only if stale or mode all."""
    by_id = {p.job_id: p for p in queue}
    for d in plan.decisions:
        pol, req = pols[d.entry], d.request
        for action in (a for a in d.actions if isinstance(a, Remove)):
            for found in (by_id[job] for job in action.job_ids):
                verdict = pilot_verdict(found, NOW, pol)
                if action.reason in ("excess idle", "remove all"):
                    assert req is not None and req.remove in ("idle", "all") and verdict is None
                    assert (
                        found.state in IDLE_STATES
                        if action.reason == "excess idle"
                        else (found.state is R and req.remove == "all" and req.idle == 0)
                    )
                else:
                    assert verdict is not None and (verdict.action, verdict.reason) == ("remove", action.reason)
        verdicts = [pilot_verdict(by_id[job], NOW, pol) for job in d.released]
        assert all(verdict is not None and verdict.action == "release" for verdict in verdicts)
        if req is not None:
            asked = sum(
                len(a.job_ids) for a in d.actions if isinstance(a, Remove) and a.reason in ("excess idle", "remove all")
            )
            assert asked <= req.remove_max


def _check_requests(plan: FactoryPlan, reqs: list[Request], queue: list[Pilot], pols: dict[str, EntryPolicy]) -> None:
    """Every request is accepted once or rejected; only accepted ones submit; one sorted decision per key."""
    accepted = [d.request for d in plan.decisions if d.request is not None]
    assert sorted(map(repr, accepted + [r.request for r in plan.rejected])) == sorted(map(repr, reqs))
    assert all(d.submitted == 0 for d in plan.decisions if d.request is None)
    keys = [(d.entry, d.frontend, d.group) for d in plan.decisions]
    assert keys == sorted(set(keys))
    live = {(p.entry, p.frontend, p.group) for p in queue if p.state in LIVE_STATES and p.entry in pols}
    assert live <= set(keys)
    assert all(d.request is not None or (d.entry, d.frontend, d.group) in live for d in plan.decisions)


def _check_deterministic(
    plan: FactoryPlan, reqs: list[Request], queue: list[Pilot], pols: dict[str, EntryPolicy]
) -> None:
    """The same cycle in another input order gives the same plan."""
    shuffler = random.Random(len(queue) * 31 + len(reqs))
    queue, reqs = list(queue), list(reqs)
    shuffler.shuffle(queue)
    shuffler.shuffle(reqs)
    assert decide(reqs, queue, pols, NOW) == plan


PROPERTIES = (_check_limits, _check_caps, _check_ids, _check_reasons, _check_requests, _check_deterministic)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cycles())
def test_properties_hold_for_random_cycles(cycle: tuple[list[Request], list[Pilot], dict[str, EntryPolicy]]) -> None:
    """All properties on each random cycle; a failure's traceback names the `_check_*` that broke."""
    reqs, queue, pols = cycle
    plan = decide(reqs, queue, pols, NOW)
    for check_property in PROPERTIES:
        check_property(plan, reqs, queue, pols)


def test_a_per_cycle_cap_the_submissions_do_not_reach_is_not_a_bound() -> None:
    roomy = check(
        Case(
            "",
            pilots(2, R),
            (request(10, max_pilots=6),),
            policy(per_cycle=CycleCaps(max_submits=100)),
            submit=4,
            bound=("request.max_pilots",),
        )
    )
    assert roomy.bound_by == ("request.max_pilots",)
    tie = check(
        Case(
            "",
            pilots(2, R),
            (request(10, max_pilots=6),),
            policy(per_cycle=CycleCaps(max_submits=4)),
            submit=4,
            bound=("entry.max_submits",),
        )
    )
    assert tie.bound_by == ("request.max_pilots", "entry.max_submits")


# --------------------------------------------------------------------------
# Rule 5: an entry set's submissions, spread over its member CEs
# --------------------------------------------------------------------------


def at(member: str, count: int, state: PilotState = W, **kw: Any) -> tuple[Pilot, ...]:
    """Pilots of the set "us" queued at one member CE."""
    return tuple(replace(p, member=member) for p in pilots(count, state, entry="us", **kw))


def set_policy(members: tuple[str, ...] = ("a", "b", "c"), how: str = "least_idle", **kw: Any) -> EntryPolicy:
    """Clusters of 10 unless a case says otherwise, so each member's share is one cluster."""
    return policy("us", members=members, set_policy=how, cluster_size=kw.pop("cluster_size", 10), **kw)


def submits(plan: FactoryPlan, frontend: str = "fe1") -> dict[str | None, tuple[int, tuple[int, ...]]]:
    """Per member: (count, clusters) of the Submit for it."""
    return {a.member: (a.count, a.clusters) for a in the(plan, "us", frontend).actions if isinstance(a, Submit)}


def decide_set(queue: Sequence[Pilot], pol: EntryPolicy, idle: int = 9, cycle: int = 0) -> FactoryPlan:
    return decide([request(idle, entry="us")], numbered(queue), {"us": pol}, NOW, cycle)


def test_least_idle_sends_each_pilot_to_the_member_with_the_fewest_idle() -> None:
    plan = decide_set([*at("a", 3), *at("b", 1)], set_policy())
    assert submits(plan) == {"b": (2, (2,)), "c": (3, (3,))}
    assert the(plan, "us").submitted == 5


def test_least_idle_counts_every_frontends_idle_pilots_at_a_member() -> None:
    queue = [*at("a", 3, frontend="fe2"), *at("b", 1)]
    plan = decide([request(5, entry="us")], numbered(queue), {"us": set_policy()}, NOW)
    assert submits(plan) == {"b": (2, (2,)), "c": (2, (2,))}  # 4: fe1 has 1 of its 5 idle
    assert the(plan, "us").inputs.idle_by_member == {"a": 3, "b": 1, "c": 0}


def test_running_and_held_pilots_do_not_count_as_idle_at_a_member() -> None:
    plan = decide_set([*at("a", 5, R), *at("a", 1, H, hold_age=1)], set_policy(), idle=3)
    assert submits(plan) == {"a": (1, (1,)), "b": (1, (1,)), "c": (1, (1,))}


@pytest.mark.parametrize(
    ("cycle", "expected"),
    [
        (0, {"a": (2, (2,)), "b": (1, (1,)), "c": (1, (1,))}),
        (1, {"a": (1, (1,)), "b": (2, (2,)), "c": (1, (1,))}),
        (5, {"a": (1, (1,)), "b": (1, (1,)), "c": (2, (2,))}),  # the cycle wraps around the members
    ],
)
def test_round_robin_deals_from_the_cycle_number_whatever_is_idle(
    cycle: int, expected: dict[str, tuple[int, tuple[int, ...]]]
) -> None:
    plan = decide_set(at("a", 0), set_policy(how="round_robin"), idle=4, cycle=cycle)
    assert submits(plan) == expected
    assert plan.cycle == cycle


@pytest.mark.parametrize("how", ["least_idle", "round_robin"])
def test_a_member_in_downtime_gets_no_pilots(how: str) -> None:
    plan = decide_set(at("b", 4), set_policy(members=("b", "c"), how=how), idle=10)
    assert set(submits(plan)) <= {"b", "c"} and sum(n for n, _ in submits(plan).values()) == 6
    assert the(plan, "us").inputs.members == ("b", "c")


@pytest.mark.parametrize("in_downtime", [True, False])
def test_every_member_in_downtime_submits_nothing_and_says_so(in_downtime: bool) -> None:
    plan = decide_set(at("a", 1), set_policy(members=(), in_downtime=in_downtime), idle=5)
    decision = the(plan, "us")
    assert decision.submitted == 0 and submits(plan) == {}
    assert decision.bound_by == ("entry.downtime",)
    assert any("downtime: nothing submitted" in note for note in decision.notes)


def test_each_members_share_goes_out_in_clusters_of_the_entry_size() -> None:
    plan = decide_set([*at("a", 3), *at("b", 1)], set_policy(cluster_size=2), idle=12)
    assert submits(plan) == {"a": (1, (1,)), "b": (3, (2, 1)), "c": (4, (2, 2))}  # 8 levels them at 4 idle


def test_a_standalone_entry_is_its_own_only_member() -> None:
    plan = decide([request(5)], [], {"e1": policy(cluster_size=2)}, NOW, cycle=3)
    (submit,) = the(plan).actions
    assert isinstance(submit, Submit)
    assert (submit.member, submit.target, submit.clusters) == (None, "e1", (2, 2, 1))
    assert the(plan).inputs.members == ()


def test_two_requests_on_one_set_are_spread_from_the_same_observed_idle() -> None:
    """As the service did: what one request sends this cycle does not move where the next one's go."""
    reqs = [request(2, entry="us"), request(2, entry="us", frontend="fe2", security_class="sc2")]
    plan = decide(reqs, numbered(at("a", 1)), {"us": set_policy(members=("a", "b"))}, NOW)
    assert submits(plan, "fe1") == {"b": (1, (1,))}
    assert submits(plan, "fe2") == {"a": (1, (1,)), "b": (1, (1,))}
