"""The entry health policy: each rule as a table, outcomes counted once, and its memory across restarts."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from updraft.factory import health_store
from updraft.factory.act import ActResult
from updraft.factory.completed import CompletedPilot
from updraft.factory.health import (
    BLACK_HOLE,
    CAUSES,
    GOOD,
    HELD_BATCH_REFUSED,
    HELD_OTHER,
    NO_JOB,
    PILOT_FAILED,
    SLOW_START,
    SUBMIT_FAILED,
    VALIDATION,
    HealthSettings,
    History,
    Probes,
    cycle_evidence,
    decide_health,
    submit_failures,
    with_outcomes,
)
from updraft.factory.health_model import POLICY, EntryHealth, HealthState, Override
from updraft.factory.model import Action, Pilot, PilotState, Remove, Submit
from updraft.glidein.report import PilotReport

NOW = 1_800_000_000.0
S = HealthSettings()
EMPTY = History()
ACTIVE, DEGRADED, BANNED, PROBING = HealthState.ACTIVE, HealthState.DEGRADED, HealthState.BANNED, HealthState.PROBING


ASKING = frozenset({("ce1", "vo", "main")})
"""The test pilots' own (entry, frontend, group) still asks for idle pilots: a pilot with no job there counts."""


def observed_outcomes(*args: object, **more: object) -> dict[str, list[str]]:
    """This cycle's outcomes alone (`cycle_evidence`)."""
    return cycle_evidence(*args, **more).outcomes  # type: ignore[arg-type]


def state(name: HealthState, since: float = NOW - 100_000, entry: str = "ce1", **more: object) -> EntryHealth:
    return EntryHealth(entry, name, "before", since, **more)  # type: ignore[arg-type]


def once(
    previous: EntryHealth | None,
    outcomes: Sequence[str] = (),
    *,
    history: History = EMPTY,
    settings: HealthSettings = S,
    overrides: dict[str, Override] | None = None,
    now: float = NOW,
):
    """One decision for entry ce1."""
    return decide_health(
        {"ce1": previous} if previous else {},
        {"ce1": history},
        {"ce1": outcomes},
        overrides or {},
        {"ce1": settings},
        now,
    )


# --------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cause", CAUSES)
def test_every_cause_degrades_an_active_entry(cause: str) -> None:
    decided = once(state(ACTIVE), [cause] * 3)
    health = decided.health["ce1"]
    assert health.state is DEGRADED and health.since == NOW and health.cap == S.degraded_max_idle
    assert cause in health.reason and "3 of 3 pilots failed" in health.reason
    [change] = decided.transitions
    assert (change.old, change.new, change.by, change.at) == (ACTIVE, DEGRADED, POLICY, NOW)


@pytest.mark.parametrize(
    ("failed", "good", "expected"),
    [
        (2, 0, ACTIVE),  # 2 / max(2, 5) = 0.4: too few outcomes to judge
        (3, 0, DEGRADED),  # 3 / 5 = 0.6
        (5, 5, DEGRADED),  # 0.5 exactly: at the threshold
        (4, 6, ACTIVE),  # 0.4
        (9, 1, DEGRADED),  # 0.9: active never jumps straight to banned
    ],
)
def test_active_degrades_at_the_fraction_over_at_least_min_outcomes(failed: int, good: int, expected) -> None:
    health = once(state(ACTIVE), [VALIDATION] * failed + [GOOD] * good).health["ce1"]
    assert health.state is expected


@pytest.mark.parametrize(
    ("failed", "good", "expected"),
    [
        (8, 2, BANNED),  # 0.8: ban
        (6, 4, DEGRADED),  # 0.6: between recover and ban, stays
        (2, 8, ACTIVE),  # 0.2: recovered
        (0, 5, ACTIVE),  # min_outcomes good ones: recovered
        (0, 4, DEGRADED),  # too few outcomes to call it repaired
        (0, 0, DEGRADED),  # nothing in the window: no evidence of repair
    ],
)
def test_degraded_bans_stays_or_recovers(failed: int, good: int, expected) -> None:
    health = once(state(DEGRADED), [VALIDATION] * failed + [GOOD] * good).health["ce1"]
    assert health.state is expected
    assert health.cap == {BANNED: 0, DEGRADED: S.degraded_max_idle, ACTIVE: None}[expected]


def test_a_degraded_entry_whose_failures_left_the_window_does_not_recover_on_nothing() -> None:
    old = History(bad=(NOW - 3700,) * 6, causes=(VALIDATION,) * 6)
    decision = once(state(DEGRADED), history=old)
    assert decision.health["ce1"].state is DEGRADED and decision.transitions == ()


@pytest.mark.parametrize(
    ("before", "outcomes", "history"),
    [
        (ACTIVE, [], History(bad=(NOW - 60,) * 5, causes=(VALIDATION,) * 5)),  # would degrade
        (DEGRADED, [], History(bad=(NOW - 60,) * 5, causes=(VALIDATION,) * 5)),  # would ban
        (DEGRADED, [], History(good=(NOW - 60,) * 10)),  # would recover
        (PROBING, [], History(good=(NOW - 60,) * 3)),  # probes would have decided
    ],
)
def test_a_cycle_without_its_queue_changes_nothing_on_evidence(
    before: HealthState, outcomes: list[str], history: History
) -> None:
    previous = state(before, since=NOW - 600)
    decision = decide_health({"ce1": previous}, {"ce1": history}, {}, {}, {"ce1": S}, NOW, evidence=False)
    after = decision.health["ce1"]
    assert (after.state, after.since, after.reason) == (before, previous.since, previous.reason)
    assert decision.transitions == ()
    assert decide_health({"ce1": previous}, {"ce1": history}, {}, {}, {"ce1": S}, NOW).transitions, "with evidence"


def test_a_cycle_without_its_queue_still_ends_a_ban() -> None:
    banned = state(BANNED, since=NOW - S.ban_seconds)
    decision = decide_health({"ce1": banned}, {"ce1": EMPTY}, {}, {}, {"ce1": S}, NOW, evidence=False)
    assert decision.health["ce1"].state is PROBING


def test_outcomes_older_than_the_window_no_longer_count() -> None:
    old = History(bad=(NOW - 3601,) * 5, causes=(VALIDATION,) * 5)
    assert once(state(ACTIVE), history=old).health["ce1"].state is ACTIVE
    recent = History(bad=(NOW - 3599,) * 5, causes=(VALIDATION,) * 5)
    assert once(state(ACTIVE), history=recent).health["ce1"].state is DEGRADED


def test_ignored_causes_are_kept_but_not_counted() -> None:
    settings = dataclasses.replace(S, ignore_causes=frozenset({NO_JOB}))
    decided = once(state(ACTIVE), [NO_JOB] * 5, settings=settings)
    assert decided.health["ce1"].state is ACTIVE and decided.transitions == ()
    assert decided.history["ce1"].causes == (NO_JOB,) * 5


def test_no_change_before_the_minimum_time_in_a_state() -> None:
    young = state(DEGRADED, since=NOW - 599)
    decided = once(young, [VALIDATION] * 10)
    health = decided.health["ce1"]
    assert health.state is DEGRADED and health.since == NOW - 599 and decided.transitions == ()
    assert health.next_review == NOW + 1
    assert "banned due, held by the minimum time" in health.reason
    assert any(step.name == "held" and step.value == NOW + 1 for step in decided.records["ce1"])
    later = once(young, [VALIDATION] * 10, now=NOW + 1).health["ce1"]
    assert later.state is BANNED and later.since == NOW + 1


def test_banned_waits_out_the_ban_then_always_probes() -> None:
    banned = state(BANNED, since=NOW - 3599)
    still = once(banned, [GOOD] * 20).health["ce1"]
    assert still.state is BANNED and still.cap == 0 and still.next_review == NOW + 1
    decided = once(banned, [GOOD] * 20, now=NOW + 1)
    probing = decided.health["ce1"]
    assert probing.state is PROBING and probing.cap == S.probe_count and probing.since == NOW + 1
    assert [(t.old, t.new) for t in decided.transitions] == [(BANNED, PROBING)]


@pytest.mark.parametrize(
    ("probes", "expected"),
    [
        ([GOOD, GOOD], ACTIVE),
        ([VALIDATION, VALIDATION], BANNED),
        ([GOOD, VALIDATION], PROBING),  # no majority of 3 yet
        ([GOOD, VALIDATION, GOOD], ACTIVE),
        ([HELD_OTHER, GOOD, SLOW_START], BANNED),
    ],
)
def test_probing_ends_on_a_majority_of_its_probes(probes: list[str], expected: HealthState) -> None:
    since = NOW - 600
    health = once(state(PROBING, since=since), probes).health["ce1"]
    assert health.state is expected


def test_probing_counts_only_outcomes_after_it_began() -> None:
    since = NOW - 600
    leftovers = History(bad=(since,) * 3, causes=(VALIDATION,) * 3)
    assert once(state(PROBING, since=since), history=leftovers).health["ce1"].state is PROBING
    assert once(state(PROBING, since=since), [GOOD, GOOD], history=leftovers).health["ce1"].state is ACTIVE


def test_while_probing_only_the_probes_outcomes_count() -> None:
    since = NOW - 600
    old = Pilot("1.0", "ce1", "vo", "main", "default", "c", PilotState.RUNNING, NOW - 30, NOW - 9000)
    probe = dataclasses.replace(old, job_id="2.0", submitted=int(since))  # QDate: whole seconds
    started = {"ce1": S}
    late = NOW - 30 + S.healthy_after_seconds
    assert observed_outcomes([old, probe], [], started, late - 60, late) == {"ce1": [GOOD, GOOD]}, "active: both"
    assert observed_outcomes([old, probe], [], started, late - 60, late, {"ce1": since}) == {"ce1": [GOOD]}
    report = PilotReport("failed", "validate", "no cvmfs", "f", "ce1", "vo", "main", "3.0", "c")
    done = CompletedPilot("3.0", "ce1", "ce1", "vo", "main", False, int(NOW), int(NOW), report=report)
    assert observed_outcomes([], [done], started, NOW - 60, NOW, {"ce1": since}) == {}, "submitted before: no probe"
    done_probe = dataclasses.replace(done, submitted=int(since) + 5)
    assert observed_outcomes([], [done_probe], started, NOW - 60, NOW, {"ce1": since}) == {"ce1": [VALIDATION]}


def test_no_more_than_probe_count_probes_in_one_probing_period() -> None:
    """Failed probes are not replaced while a verdict waits for the minimum time in a state."""
    since = NOW - 100
    report = PilotReport("failed", "validate", "no cvmfs", "f", "ce1", "vo", "main", "3.0", "c")
    done = [
        CompletedPilot(f"{n}.0", "ce1", "ce1", "vo", "main", False, int(NOW), int(NOW), report=report, submitted=when)
        for n, when in ((1, int(since)), (2, int(since) + 10), (3, int(since) - 4000))
    ]
    seen = cycle_evidence((), done, {"ce1": S}, NOW - 60, NOW, {"ce1": since})
    assert seen.probes == {"ce1": Probes(2, 2)}, "the pilot from before probing is no probe"
    previous = state(PROBING, since=since, cap=3)
    decided = decide_health({"ce1": previous}, {}, seen.outcomes, {}, {"ce1": S}, NOW, probes=seen.probes)
    health = decided.health["ce1"]
    assert health.state is PROBING and "held by the minimum time" in health.reason
    assert health.cap == 1, "one probe left to send of three"
    again = decide_health({"ce1": health}, decided.history, {}, {}, {"ce1": S}, NOW + 60, probes={"ce1": Probes(3, 3)})
    assert again.health["ce1"].cap == 0


def test_a_site_repaired_by_its_probes_is_not_degraded_again_by_the_failures_before_its_ban() -> None:
    """A window longer than the ban still holds the failures that caused it when the probes succeed."""
    settings = HealthSettings(window_seconds=7200)
    banned_at = NOW - 3600
    health = {"ce1": state(BANNED, since=banned_at)}
    history = {"ce1": History(bad=(banned_at,) * 6, causes=(VALIDATION,) * 6)}
    seen: list[tuple[str, str]] = []
    for offset, outcomes in [(0, []), (600, [GOOD, GOOD]), (1200, [GOOD]), (1800, [VALIDATION])]:
        decided = decide_health(health, history, {"ce1": outcomes}, {}, {"ce1": settings}, NOW + offset)
        health, history = decided.health, decided.history
        seen.extend((t.old.value, t.new.value) for t in decided.transitions)
    assert seen == [("banned", "probing"), ("probing", "active")]
    assert history["ce1"] == History(good=(NOW + 600,) * 2 + (NOW + 1200,), bad=(NOW + 1800,), causes=(VALIDATION,))


def test_a_broken_site_goes_active_degraded_banned_probing_banned_and_back() -> None:
    """The lab's story in one table: each step at its earliest moment."""
    health: dict[str, EntryHealth] = {"ce1": state(ACTIVE)}
    history: dict[str, History] = {}
    seen: list[tuple[str, str]] = []
    steps = [
        (0, [VALIDATION] * 3),  # degraded
        (600, [VALIDATION] * 5),  # banned (8 of 8 in the window)
        (600 + 3600, []),  # probing
        (600 + 3600 + 600, [VALIDATION] * 2),  # still failing: banned again
        (600 + 3600 + 600 + 3600, []),  # probing
        (600 + 3600 + 600 + 3600 + 600, [GOOD] * 2),  # repaired: active
    ]
    for offset, outcomes in steps:
        decided = decide_health(health, history, {"ce1": outcomes}, {}, {"ce1": S}, NOW + offset)
        health, history = decided.health, decided.history
        seen.extend((t.old.value, t.new.value) for t in decided.transitions)
    assert seen == [
        ("active", "degraded"),
        ("degraded", "banned"),
        ("banned", "probing"),
        ("probing", "banned"),
        ("banned", "probing"),
        ("probing", "active"),
    ]


def test_an_override_holds_against_the_policy_until_it_expires_then_the_policy_resumes() -> None:
    ban = Override("ce1", BANNED, "CE upgrade", until=NOW + 1000, set_by="alice", set_at=NOW)
    decided = once(state(ACTIVE), [GOOD] * 10, overrides={"ce1": ban})
    health = decided.health["ce1"]
    assert health.state is BANNED and health.override == ban and health.next_review == NOW + 1000
    assert health.reason == "set by alice: CE upgrade" and health.cap == 0
    [change] = decided.transitions
    assert change.by == "alice" and change.new is BANNED
    # the policy would let it out after the ban time: the override still holds
    held = once(health, [GOOD] * 10, overrides={"ce1": ban}, now=NOW + 999).health["ce1"]
    assert held.state is BANNED and held.since == NOW
    # expired: the policy resumes from banned; the ban time (from NOW) is not over yet
    resumed = once(held, overrides={"ce1": ban}, now=NOW + 1000)
    assert resumed.health["ce1"].state is BANNED and resumed.health["ce1"].override is None
    assert "override by alice ended" in resumed.health["ce1"].reason and resumed.transitions == ()
    assert once(resumed.health["ce1"], now=NOW + 3600).health["ce1"].state is PROBING


def test_an_override_to_active_leaves_banned_at_once_and_forgets_the_failures_it_vouched_for() -> None:
    failures = History(bad=(NOW - 10,) * 20, causes=(VALIDATION,) * 20)
    fixed = Override("ce1", ACTIVE, "fixed the CE", until=NOW + 60, set_by="bob", set_at=NOW)
    decided = once(state(BANNED, since=NOW - 10), history=failures, overrides={"ce1": fixed})
    assert decided.health["ce1"].state is ACTIVE and decided.history["ce1"] == History()
    after = decide_health(decided.health, decided.history, {}, {}, {"ce1": S}, NOW + 60)
    assert after.health["ce1"].state is ACTIVE and after.transitions == ()


def test_a_health_policy_switched_off_keeps_the_entry_active() -> None:
    off = dataclasses.replace(S, enabled=False)
    decided = once(state(DEGRADED), [VALIDATION] * 20, settings=off)
    assert decided.health["ce1"].state is ACTIVE and decided.health["ce1"].cap is None
    assert [(t.old, t.new) for t in decided.transitions] == [(DEGRADED, ACTIVE)]


def test_a_new_entry_starts_active_and_a_removed_one_is_forgotten() -> None:
    decided = decide_health({"gone": state(BANNED, entry="gone")}, {}, {}, {}, {"ce1": S}, NOW)
    assert set(decided.health) == {"ce1"} and decided.health["ce1"].state is ACTIVE
    assert decided.health["ce1"].since == NOW


def test_a_new_entry_is_active_since_first_seen_and_held_there_for_the_minimum_time() -> None:
    first = once(None, [VALIDATION] * 5)
    assert first.health["ce1"].state is ACTIVE and first.health["ce1"].next_review == NOW + 600
    assert "degraded due, held by the minimum time" in first.health["ce1"].reason
    later = decide_health(first.health, first.history, {}, {}, {"ce1": S}, NOW + 600)
    assert later.health["ce1"].state is DEGRADED


def test_an_unchanged_entry_keeps_its_record_and_a_changed_one_gets_a_new_one() -> None:
    steady = once(state(ACTIVE), [GOOD])
    again = decide_health(steady.health, steady.history, {}, {}, {"ce1": S}, NOW + 60)
    assert again.health["ce1"] is steady.health["ce1"] and again.transitions == ()
    worse = decide_health(steady.health, steady.history, {"ce1": [VALIDATION]}, {}, {"ce1": S}, NOW + 60)
    assert worse.health["ce1"] is not steady.health["ce1"] and "1 of 2 pilots failed" in worse.health["ce1"].reason


def test_history_keeps_only_history_seconds() -> None:
    history = History(good=(NOW - 90_000, NOW - 10), bad=(NOW - 86_401, NOW - 5), causes=(VALIDATION, HELD_OTHER))
    kept = once(state(ACTIVE), history=history).history["ce1"]
    assert kept == History(good=(NOW - 10,), bad=(NOW - 5,), causes=(HELD_OTHER,))


# --------------------------------------------------------------------------
# Outcomes from what the factory observes
# --------------------------------------------------------------------------


def pilot(job: str, pilot_state: PilotState, entered: float, submitted: float = NOW - 60, **more: object) -> Pilot:
    return Pilot(job, "ce1", "vo", "main", "default", "c", pilot_state, entered, submitted, **more)  # type: ignore[arg-type]


def test_queued_pilots_count_once_when_they_cross_a_moment() -> None:
    pilots = [
        pilot("1.0", PilotState.HELD, NOW - 30, hold_kind="batch_refused", last_hold_time=NOW - 30),
        pilot("2.0", PilotState.RUNNING, NOW - S.healthy_after_seconds - 5),
        pilot("3.0", PilotState.PENDING, NOW - 100, submitted=NOW - S.start_seconds - 5),
        pilot("4.0", PilotState.RUNNING, NOW - 10),  # not long enough yet
        Pilot("5.0", "elsewhere", "vo", "main", "default", "c", PilotState.HELD, NOW - 1, NOW - 1),
    ]
    first = observed_outcomes(pilots, (), {"ce1": S}, NOW - 60, NOW)
    assert sorted(first["ce1"]) == sorted([HELD_BATCH_REFUSED, GOOD, SLOW_START])
    assert "elsewhere" not in first
    assert observed_outcomes(pilots, (), {"ce1": S}, NOW, NOW + 60) == {}, "the next cycle counts none again"


def report(**fields: object) -> PilotReport:
    base: dict[str, object] = {"status": "ok", "failed_step": "", "reason": "", "factory": "f", "entry": "ce1"}
    base |= {"frontend": "vo", "group": "main", "job_id": "1.0", "credential_id": "c", "jobs_run": 3, "lifetime": 100}
    return PilotReport(**(base | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pilot_report", "expected"),
    [
        (report(status="failed", failed_step="validate", jobs_run=0), VALIDATION),
        (report(status="failed", failed_step="blackhole"), BLACK_HOLE),
        (report(status="failed", failed_step="condor"), PILOT_FAILED),
        (report(jobs_run=0), NO_JOB),
        (report(lifetime=100), GOOD),  # short, never seen running long: good now
        (report(lifetime=7200), GOOD),  # long, but not counted while it ran (it ended between two cycles)
        (None, None),  # no report: a pilot the factory removed, no evidence
    ],
)
def test_completed_pilots_count_by_their_report(pilot_report: PilotReport | None, expected: str | None) -> None:
    done = CompletedPilot("1.0", "ce1", "ce1", "vo", "main", False, int(NOW), int(NOW), report=pilot_report)
    found = observed_outcomes((), [done], {"ce1": S}, NOW - 60, NOW, asking=ASKING)
    assert found == ({"ce1": [expected]} if expected else {})


def test_a_good_pilot_that_ends_between_two_cycles_is_counted_once() -> None:
    """Running since NOW, not yet 600 s at the cycle NOW + 590, ended well at NOW + 620: one good."""
    running = pilot("1.0", PilotState.RUNNING, NOW, submitted=NOW - 300)
    seen = cycle_evidence([running], (), {"ce1": S}, NOW + 530, NOW + 590)
    assert seen.outcomes == {} and seen.counted == {}
    counted = seen.counted
    done = CompletedPilot(
        "1.0", "ce1", "ce1", "vo", "main", False, int(NOW + 620), int(NOW + 620), report=report(lifetime=650)
    )
    assert observed_outcomes((), [done], {"ce1": S}, NOW + 590, NOW + 650, counted=counted) == {"ce1": [GOOD]}


@pytest.mark.parametrize(
    ("ending", "outcome"),
    [(report(jobs_run=0, lifetime=1300), NO_JOB), (report(status="failed", failed_step="blackhole"), BLACK_HOLE)],
)
def test_a_pilot_counted_good_while_running_that_ends_badly_has_one_outcome_the_failure(
    ending: PilotReport, outcome: str
) -> None:
    running = pilot("1.0", PilotState.RUNNING, NOW, submitted=NOW - 100)
    seen = cycle_evidence([running], (), {"ce1": S}, NOW + 500, NOW + 700)
    first, counted = seen.outcomes, seen.counted
    assert first == {"ce1": [GOOD]} and counted == {"1.0": NOW + 700}
    decided = decide_health({"ce1": state(ACTIVE)}, {}, first, {}, {"ce1": S}, NOW + 700)
    done = CompletedPilot("1.0", "ce1", "ce1", "vo", "main", False, int(NOW + 1300), int(NOW + 1300), report=ending)
    ended = cycle_evidence((), [done], {"ce1": S}, NOW + 1200, NOW + 1400, counted=counted, asking=ASKING)
    assert ended.outcomes == {"ce1": [outcome]} and ended.retracted == {"ce1": [NOW + 700]}
    again = decide_health(
        decided.health, decided.history, ended.outcomes, {}, {"ce1": S}, NOW + 1400, retracted=ended.retracted
    )
    assert again.history["ce1"] == History(bad=(NOW + 1400,), causes=(outcome,)), "the failure replaced the good"
    assert ended.counted == {}, "settled: forgotten"
    ended_well = dataclasses.replace(done, report=report(lifetime=1300))
    well = cycle_evidence((), [ended_well], {"ce1": S}, NOW + 1200, NOW + 1400, counted=counted, asking=ASKING)
    assert well.outcomes == {} and well.retracted == {}


def test_the_pilots_counted_good_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    memory = health_store.HealthMemory({"ce1": state(ACTIVE)}, {"ce1": History()}, NOW, {"1.0": NOW - 60, "2.3": NOW})
    health_store.save_memory(path, memory)
    assert health_store.load_memory(path) == memory
    evidence = health_store.history_path(path)
    data = json.loads(evidence.read_text())
    del data["counted_good"]
    evidence.write_text(json.dumps(data))
    assert health_store.load_memory(path).counted == {}, "a file from before they were kept"


def test_refused_submissions_become_outcomes_of_their_entry() -> None:
    actions: list[Action] = [
        Submit("ce1", "vo", "main", "default", 5, (5,)),
        Remove(("1.0",), "excess idle"),
        Submit("ce2", "vo", "main", "default", 5, (5,)),
    ]
    refused, accepted = ActResult(errors=("SUBMIT_REQUIREMENT not met",), refused=True), ActResult(submitted=5)
    failures = submit_failures(actions, [refused, ActResult(errors=("remove failed",)), accepted])
    assert failures == {"ce1": [SUBMIT_FAILED]}
    history = with_outcomes({"ce1": History(), "ce2": History()}, failures, NOW)
    assert history["ce1"] == History(bad=(NOW,), causes=(SUBMIT_FAILED,)) and history["ce2"] == History()


@pytest.mark.parametrize(
    ("results", "why"),
    [
        ([ActResult(errors=("cannot locate schedd factory@lab",))], "no schedd is nobody's entry"),
        (
            [ActResult(errors=("credential store: no token for vo.main",)), ActResult(submitted=5)],
            "a description we could not render is our own trouble",
        ),
        (
            [ActResult(errors=("submit to schedd: no answer within 20 s",)), ActResult(submitted=5)],
            "a schedd that did not answer refused nothing",
        ),
        (
            [ActResult(errors=("schedd is shutting down",), refused=True)] * 2,
            "a schedd refusing every entry fails as a whole",
        ),
    ],
)
def test_the_factorys_own_submit_trouble_counts_against_no_entry(results: list[ActResult], why: str) -> None:
    actions: list[Action] = [
        Submit("ce1", "vo", "main", "default", 5, (5,)),
        Submit("ce2", "vo", "main", "default", 5, (5,)),
    ]
    assert submit_failures(actions[: len(results)], results) == {}, why
    assert submit_failures(actions[:1], [ActResult(errors=("refused",), refused=True)]) == {}, (
        "one entry alone: unknown"
    )


# --------------------------------------------------------------------------
# Memory across restarts
# --------------------------------------------------------------------------


def test_states_history_and_since_survive_a_restart(tmp_path: Path) -> None:
    decided = once(state(ACTIVE), [VALIDATION] * 3 + [GOOD])
    override = Override("ce1", BANNED, "x", NOW + 5, "alice", NOW)
    states = {**decided.health, "ce2": state(BANNED, entry="ce2", override=override)}
    memory = health_store.HealthMemory(states, decided.history, NOW)
    path = health_store.memory_path(tmp_path)
    health_store.save_memory(path, memory)
    loaded = health_store.load_memory(path)
    assert loaded.evaluated_at == NOW and loaded.history["ce1"] == decided.history["ce1"]
    assert loaded.states["ce1"] == decided.health["ce1"] and loaded.states["ce1"].state is DEGRADED
    assert loaded.states["ce1"].cap == S.degraded_max_idle and loaded.states["ce1"].next_review == NOW + 600
    assert loaded.states["ce2"].override == override
    # the restarted factory goes on from there: still degraded, no transition, since unchanged
    again = decide_health(loaded.states, loaded.history, {}, {}, {"ce1": S}, NOW + 60)
    assert again.health["ce1"].state is DEGRADED and again.health["ce1"].since == NOW and again.transitions == ()


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"version": 1, "entries": {"ce1": {"state": "sleepy"}}}',
        '{"version": 1, "entries": {"ce1": {"state": "banned", "reason": "", "since": 1, "good": [], '
        '"bad": [3, 2], "causes": ["held"]}}}',
        '{"version": 99}',
    ],
)
def test_a_damaged_memory_is_a_warning_naming_it_and_a_fresh_start(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = health_store.memory_path(tmp_path)
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="updraft.factory.health_store"):
        memory = health_store.load_memory(path)
    assert memory == health_store.HealthMemory()
    assert str(path) in caplog.text and "every entry starts active" in caplog.text


def test_a_missing_memory_is_a_warning_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="updraft.factory.health_store"):
        assert health_store.load_memory(tmp_path / "health.json") == health_store.HealthMemory()
    assert str(tmp_path / "health.json") in caplog.text


def test_the_memory_file_is_written_whole(tmp_path: Path) -> None:
    path = health_store.memory_path(tmp_path)
    health_store.save_memory(path, health_store.HealthMemory({"ce1": state(ACTIVE)}, {}, NOW))
    assert json.loads(path.read_text())["entries"]["ce1"]["state"] == "active"
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["health-history.json", "health.json"], "no temporary left behind"


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


def config_error(tree, text: str) -> str:
    from updraft.errors import ConfigError
    from updraft.factory.config import load_factory_config

    main = tree.factory(("50-health.yaml", text))
    with pytest.raises(ConfigError) as caught:
        load_factory_config(main)
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("health: {degrade_fraction: 1.5}", "health.degrade_fraction", "less than or equal to 1"),
        ("health: {probe_count: 0}", "health.probe_count", "greater than or equal to 1"),
        ("health: {ignore_causes: [gremlins]}", "health.ignore_causes[0]", "'submit_failed'"),
        ("health: {window: 60}", "health.window", "unknown key (allowed: enabled, window_seconds"),
        ("entries: {site1: {health: {enabled: 'no'}}}", "entries.site1.health.enabled", "valid boolean"),
        ("health: {recover_fraction: 0.6}", "health.recover_fraction", "must be below degrade_fraction (0.5)"),
        (
            "entries: {site1: {health: {ban_fraction: 0.3}}}",
            "entries.site1.health.ban_fraction",
            "degrade_fraction (0.5) must be at most ban_fraction (0.3)",
        ),
        ("health: {window_seconds: 90000}", "health.window_seconds", "at most history_seconds (86400)"),
    ],
)
def test_bad_health_settings_name_file_key_and_expectation(tree, text: str, key: str, expected: str) -> None:
    message = config_error(tree, text)
    line = next((ln for ln in message.splitlines() if f": {key}: " in ln), None)
    assert line is not None, message
    assert "50-health.yaml" in line or "factory.yaml" in line
    assert expected in line, line


def test_an_entry_inherits_the_factory_health_keys_it_does_not_set(tree) -> None:
    from updraft.factory.config import load_factory_config
    from updraft.factory.policy import health_settings

    main = tree.factory(
        ("50-health.yaml", "health: {probe_count: 5, ban_seconds: 60}\nentries: {site1: {health: {ban_seconds: 120}}}")
    )
    settings = health_settings(load_factory_config(main).config)["site1"]
    assert (settings.probe_count, settings.ban_seconds, settings.window_seconds) == (5, 120, S.window_seconds)
