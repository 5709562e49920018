"""The health policy's finer rules: a pilot with no job, probing without demand or under an operator, probes
that left the queue before the history shows them, and a hold after a good."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from updraft import timefmt
from updraft.factory import health_store
from updraft.factory.completed import CompletedPilot
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.health import (
    GOOD,
    HELD_BATCH_REFUSED,
    NO_JOB,
    HealthSettings,
    History,
    Probes,
    asking_for_pilots,
    cycle_evidence,
    decide_health,
)
from updraft.factory.health_cli import health_rows
from updraft.factory.health_model import EntryHealth, HealthState, Override
from updraft.factory.model import Pilot, PilotState, Request
from updraft.factory.ports import fake_ports
from updraft.factory.service import run_cycle
from updraft.glidein.report import REPORT_BEGIN, REPORT_END, PilotReport

from .conftest import ConfigTree
from .test_factory_health_cycle import ENTRY, FACTORY, remember, request, submitted_by_entry

NOW = 1_800_000_000.0
S = HealthSettings()
ACTIVE, BANNED, PROBING = HealthState.ACTIVE, HealthState.BANNED, HealthState.PROBING
ASKING = frozenset({("ce1", "vo", "main")})


@pytest.fixture
def config(tree: ConfigTree, tmp_path: Path) -> FactoryConfig:
    entries = "".join(ENTRY.format(name=name) for name in ("good", "probe"))
    return load_factory_config(tree.factory(main=FACTORY.format(work=tmp_path / "work") + entries)).config


def no_job_report(job: str = "1.0") -> PilotReport:
    return PilotReport("ok", "", "", "f", "ce1", "vo", "main", job, "c", jobs_run=0, lifetime=1300)


def ended(job: str, pilot_report: PilotReport | None, submitted: int = 0, group: str = "main") -> CompletedPilot:
    return CompletedPilot(
        job, "ce1", "ce1", "vo", group, False, int(NOW), int(NOW), report=pilot_report, submitted=submitted
    )


def queued(job: str, state: PilotState, entered: float, submitted: float = NOW - 60, **more: object) -> Pilot:
    return Pilot(job, "ce1", "vo", "main", "default", "c", state, entered, submitted, **more)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# 1. A pilot that ran no job counts only where its own group still asks for pilots
# --------------------------------------------------------------------------


def test_only_requests_asking_for_idle_pilots_are_demand() -> None:
    def ask(entry: str, group: str, idle: int) -> Request:
        return Request(entry, "vo", group, "default", "fe@lab", idle, 10)

    requests = [ask("ce1", "main", 3), ask("ce1", "other", 0), ask("ce2", "main", 1)]
    assert asking_for_pilots(requests) == {("ce1", "vo", "main"), ("ce2", "vo", "main")}


@pytest.mark.parametrize(
    ("asking", "expected"),
    [
        (ASKING, {"ce1": [NO_JOB]}),  # its jobs wait and it ran none: the site's failure
        (frozenset(), {}),  # the end of a burst: nobody asks, no evidence
        (frozenset({("ce1", "vo", "other")}), {}),  # another group's demand says nothing of this pilot's jobs
        (frozenset({("ce2", "vo", "main")}), {}),  # its group asks elsewhere, not here
    ],
)
def test_a_pilot_with_no_job_fails_only_where_its_own_group_asks_for_pilots(
    asking: frozenset[tuple[str, str, str]], expected: dict[str, list[str]]
) -> None:
    seen = cycle_evidence((), [ended("1.0", no_job_report())], {"ce1": S}, NOW - 60, NOW, asking=asking)
    assert seen.outcomes == expected


def test_a_pilot_counted_good_that_idles_out_after_the_burst_keeps_its_good() -> None:
    running = queued("1.0", PilotState.RUNNING, NOW - 700)
    first = cycle_evidence([running], (), {"ce1": S}, NOW - 200, NOW)
    decided = decide_health(
        {"ce1": EntryHealth("ce1", ACTIVE, "", NOW - 9000)}, {}, first.outcomes, {}, {"ce1": S}, NOW
    )
    later = cycle_evidence((), [ended("1.0", no_job_report())], {"ce1": S}, NOW, NOW + 600, counted=first.counted)
    assert later.outcomes == {} and later.retracted == {} and later.counted == {}, "no demand: no evidence"
    again = decide_health(decided.health, decided.history, later.outcomes, {}, {"ce1": S}, NOW + 600)
    assert again.history["ce1"] == History(good=(NOW,))
    demanded = cycle_evidence(
        (), [ended("1.0", no_job_report())], {"ce1": S}, NOW, NOW + 600, counted=first.counted, asking=ASKING
    )
    assert demanded.outcomes == {"ce1": [NO_JOB]} and demanded.retracted == {"ce1": [NOW]}, "with demand it replaces"


def finished_with_no_job(cluster: int, folder: Path) -> dict[str, Any]:
    """A pilot of entry "good" that left the queue, as the history holds it, whose report says it ran no job."""
    out = folder / f"pilot.{cluster}.0.out"
    fields = {"report_version": 1, "status": "ok", "failed_step": "", "reason": "", "factory": "test-factory",
              "entry": "good", "frontend": "vo", "group": "main", "job_id": f"{cluster}.0", "start_time": 1000,
              "end_time": 2300, "lifetime": 1300, "jobs_run": 0, "busy_seconds": 0}  # fmt: skip
    out.write_text(f"{REPORT_BEGIN}\n" + "".join(f"{k}={v}\n" for k, v in fields.items()) + f"{REPORT_END}\n")
    return {"ClusterId": cluster, "ProcId": 0, "JobStatus": 4, "EnteredCurrentStatus": int(NOW) - 30,
            "CompletionDate": int(NOW) - 30, "QDate": int(NOW) - 2000, "RemoteWallClockTime": 1300.0,
            "Out": str(out), "UpdraftPilot": True, "UpdraftFactory": "test-factory", "UpdraftEntry": "good",
            "UpdraftFrontend": "vo", "UpdraftGroup": "main"}  # fmt: skip


@pytest.mark.parametrize(("idle", "causes"), [(0, ()), (4, (NO_JOB,) * 3)])
def test_the_factory_counts_pilots_with_no_job_only_while_their_group_asks_for_pilots(
    config: FactoryConfig, tmp_path: Path, idle: int, causes: tuple[str, ...]
) -> None:
    remember(config, good=ACTIVE)
    ports, wms, schedd = fake_ports(config, NOW)
    wms.ads.append(request("good", idle=idle))
    schedd.finished.extend(finished_with_no_job(cluster, tmp_path) for cluster in (11, 12, 13))
    run_cycle(config, 1, NOW, releases={}, ports=ports)
    assert health_store.load_memory(health_store.memory_path(config.work_dir)).history["good"].causes == causes


# --------------------------------------------------------------------------
# 2. Probing with no request: it stays, and says why
# --------------------------------------------------------------------------


def test_probing_without_a_request_says_no_probe_was_sent_and_none_asked_for() -> None:
    since = NOW - 900
    probing = {"ce1": EntryHealth("ce1", PROBING, "ban of 3600 s over: sending probe pilots", since, cap=3)}
    nothing = {"ce1": Probes(0, 0)}
    decided = decide_health(probing, {}, {}, {}, {"ce1": S}, NOW, probes=nothing, asking=frozenset())
    health = decided.health["ce1"]
    assert health.state is PROBING and health.cap == 3 and decided.transitions == ()
    assert health.reason == f"probing since {timefmt.utc(since)}: no probe sent yet, no pilots requested"
    assert decided.records["ce1"][0].note == health.reason
    asked = decide_health(probing, {}, {}, {}, {"ce1": S}, NOW, probes=nothing, asking=ASKING).health["ce1"]
    assert asked.reason == f"probing since {timefmt.utc(since)}: no probe sent yet"
    sent = decide_health(probing, {}, {}, {}, {"ce1": S}, NOW, probes={"ce1": Probes(1, 0)}, asking=frozenset())
    assert "no probe sent yet" not in sent.health["ce1"].reason, "once a probe went out, the probes speak"


def test_a_ban_that_ends_without_a_request_says_so_in_its_transition() -> None:
    banned = {"ce1": EntryHealth("ce1", BANNED, "8 of 8 pilots failed", NOW - 3600)}
    [change] = decide_health(banned, {}, {}, {}, {"ce1": S}, NOW, asking=frozenset()).transitions
    assert (change.new, change.reason) == (PROBING, "ban of 3600 s over: no probe sent yet, no pilots requested")
    [asked] = decide_health(banned, {}, {}, {}, {"ce1": S}, NOW, asking=ASKING).transitions
    assert asked.reason == "ban of 3600 s over: sending probe pilots"


def test_the_health_table_tells_an_operator_why_probing_sends_nothing(config: FactoryConfig) -> None:
    path = health_store.memory_path(config.work_dir)
    banned = EntryHealth("probe", BANNED, "8 of 8 pilots failed", NOW - 4000)
    health_store.save_memory(path, health_store.HealthMemory({"probe": banned}, {}, NOW - 60))
    ports, wms, schedd = fake_ports(config, NOW)
    wms.ads.append(request("good", idle=2))
    run_cycle(config, 1, NOW, releases={}, ports=ports)
    run_cycle(config, 2, NOW + 60, releases={}, ports=ports)
    assert not [job for job in schedd.jobs if job["UpdraftEntry"] == "probe"]
    [row] = [row for row in health_rows(config, NOW + 120) if row["entry"] == "probe"]
    assert row["state"] == "probing" and row["since"] == NOW
    assert row["reason"] == f"probing since {timefmt.utc(NOW)}: no probe sent yet, no pilots requested"


# --------------------------------------------------------------------------
# 3. An operator's probing counts its probes like the policy's
# --------------------------------------------------------------------------


def test_probes_under_an_operators_probing_are_counted_like_the_policys() -> None:
    since = NOW - 300
    override = Override("ce1", PROBING, "CE repaired, try it", NOW + 3600, "alice", since)
    previous = {"ce1": EntryHealth("ce1", PROBING, "set by alice: CE repaired, try it", since, NOW + 3600, 3, override)}
    decided = decide_health(previous, {}, {}, {"ce1": override}, {"ce1": S}, NOW, probes={"ce1": Probes(3, 2)})
    health = decided.health["ce1"]
    assert health.state is PROBING and health.override == override
    assert health.cap == 1, "two of three probes finished: one left to send, not three again"
    first = decide_health(
        {"ce1": EntryHealth("ce1", BANNED, "x", NOW - 60)}, {}, {}, {"ce1": override}, {"ce1": S}, NOW
    )
    assert first.health["ce1"].cap == S.probe_count, "an operator's probing starts with all its probes"


# --------------------------------------------------------------------------
# 4. A probe that left the queue before the history shows it is used up
# --------------------------------------------------------------------------


def test_a_probe_gone_from_the_queue_but_not_yet_in_the_history_is_used_up() -> None:
    since = NOW - 300
    probes = [queued(f"{n}.0", PilotState.PENDING, since + 5, submitted=since + 5) for n in (5, 6, 7)]
    first = cycle_evidence(probes, (), {"ce1": S}, NOW - 60, NOW, {"ce1": since})
    assert first.probes == {"ce1": Probes(3, 0)}
    lagging = cycle_evidence(probes[1:], (), {"ce1": S}, NOW, NOW + 60, {"ce1": since}, probe_ids=first.probe_ids)
    assert lagging.probes == {"ce1": Probes(3, 1)}, "5.0 left the queue; the history read has not got it yet"
    failed = PilotReport("failed", "validate", "x", "f", "ce1", "vo", "main", "5.0", "c")
    arrived = ended("5.0", failed, submitted=int(since) + 5)
    later = cycle_evidence(
        probes[1:], [arrived], {"ce1": S}, NOW + 60, NOW + 120, {"ce1": since}, probe_ids=lagging.probe_ids
    )
    assert later.probes == {"ce1": Probes(3, 1)}, "counted once when the history shows it"
    previous = {"ce1": EntryHealth("ce1", PROBING, "probing", since, cap=3)}
    decided = decide_health(previous, {}, {}, {}, {"ce1": S}, NOW + 60, probes=lagging.probes)
    assert decided.health["ce1"].cap == 2, "with two probes queued, none more goes out"


def test_probing_sends_no_probe_in_place_of_one_the_history_has_not_shown_yet(config: FactoryConfig) -> None:
    probing = EntryHealth("probe", PROBING, "ban over", NOW - 60, cap=3)
    path = health_store.memory_path(config.work_dir)
    health_store.save_memory(path, health_store.HealthMemory({"probe": probing}, {}, NOW - 1))
    ports, wms, schedd = fake_ports(config, NOW)
    wms.ads.append(request("probe", idle=10))
    assert submitted_by_entry(run_cycle(config, 1, NOW, releases={}, ports=ports)) == {"probe": 3}
    schedd.now = NOW + 60
    run_cycle(config, 2, NOW + 60, releases={}, ports=ports)
    schedd.jobs.pop()  # it left the queue; the history has not got it yet
    schedd.now = NOW + 120
    result = run_cycle(config, 3, NOW + 120, releases={}, ports=ports)
    assert submitted_by_entry(result) == {"probe": 0}, "three probes were sent: none more"
    assert health_store.load_memory(path).states["probe"].cap == 2


def test_probes_that_end_without_an_outcome_do_not_leave_the_entry_probing_at_cap_0_for_ever() -> None:
    since = NOW - 600
    # three probes ran and ended with no job after their group stopped asking (or were removed idle): no outcome
    done = [ended(f"{n}.0", no_job_report(f"{n}.0"), submitted=int(since) + 5) for n in (5, 6, 7)]
    seen = cycle_evidence((), done, {"ce1": S}, NOW - 60, NOW, {"ce1": since}, asking=frozenset())
    previous = {"ce1": EntryHealth("ce1", PROBING, "probing", since, cap=3)}
    health = decide_health(previous, {}, seen.outcomes, {}, {"ce1": S}, NOW, probes=seen.probes).health
    later = NOW + 30 * 86400
    # a month later, requests are back; nothing new was seen
    again = cycle_evidence((), (), {"ce1": S}, NOW, later, {"ce1": since}, probe_ids=seen.probe_ids)
    decided = decide_health(health, {}, {}, {}, {"ce1": S}, later, probes=again.probes, asking=ASKING)
    state = decided.health["ce1"]
    assert state.state is not PROBING or state.cap, f"stuck: {state.state.value}, cap {state.cap}: {state.reason}"


def test_the_probes_seen_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    memory = health_store.HealthMemory(
        {"ce1": EntryHealth("ce1", PROBING, "p", NOW)},
        {"ce1": History()},
        NOW,
        probes={"ce1": frozenset({"5.0", "6.0"})},
    )
    health_store.save_memory(path, memory, now=NOW)
    assert health_store.load_memory(path).probes == {"ce1": frozenset({"5.0", "6.0"})}
    evidence = health_store.history_path(path)
    data = json.loads(evidence.read_text())
    del data["probes_seen"]
    evidence.write_text(json.dumps(data))
    assert health_store.load_memory(path).probes == {}, "a file from before they were kept"


# --------------------------------------------------------------------------
# 5. A hold after a good replaces it
# --------------------------------------------------------------------------


def test_a_pilot_counted_good_then_held_has_one_outcome_the_hold() -> None:
    running = queued("1.0", PilotState.RUNNING, NOW - 700)
    first = cycle_evidence([running], (), {"ce1": S}, NOW - 200, NOW)
    assert first.outcomes == {"ce1": [GOOD]} and first.counted == {"1.0": NOW}
    decided = decide_health(
        {"ce1": EntryHealth("ce1", ACTIVE, "", NOW - 9000)}, {}, first.outcomes, {}, {"ce1": S}, NOW
    )
    held = dataclasses.replace(
        running, state=PilotState.HELD, entered_state=NOW + 30, hold_kind="batch_refused", last_hold_time=NOW + 30
    )
    second = cycle_evidence([held], (), {"ce1": S}, NOW, NOW + 60, counted=first.counted)
    assert second.outcomes == {"ce1": [HELD_BATCH_REFUSED]} and second.retracted == {"ce1": [NOW]}
    assert second.counted == {}, "settled: a later end does not withdraw a good again"
    again = decide_health(
        decided.health, decided.history, second.outcomes, {}, {"ce1": S}, NOW + 60, retracted=second.retracted
    )
    assert again.history["ce1"] == History(bad=(NOW + 60,), causes=(HELD_BATCH_REFUSED,))
