"""Batch pilots the batch system refused or could not take: how a hold reads, what decide does with it,
and where the operator sees it (status, problems, monitoring). The hold texts are the ones the lab's
Slurm produced through HTCondor 23.9's blahp (tests/integration/test_hpc_slurm.py makes them for real)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from updraft.factory import holds
from updraft.factory.decide import BATCH_REFUSED, HELD_TOO_OFTEN, decide, hold_verdict
from updraft.factory.model import EntryPolicy, FrontendAccess, HoldPolicy, Pilot, PilotState, Remove, Request
from updraft.factory.observe import parse_pilot
from updraft.factory.snapshot import CycleFacts, _held_by_kind
from updraft.factory.status import held_lines, pilot_lines
from updraft.monitoring import metrics
from updraft.monitoring.snapshot import FactorySnapshot, PilotRow
from updraft.pilot_ad import batch_job_id
from updraft.protocol import PilotParams

BAD_PARTITION = (
    "submission command failed (exit code = 1) (stdout:) (stderr:sbatch: error: invalid partition specified: "
    "nosuch-sbatch: error: Batch job submission failed: Invalid partition name specified-Error from sbatch: )"
)
TOO_MUCH_MEMORY = (
    "submission command failed (exit code = 1) (stdout:) (stderr:sbatch: error: Memory specification can not be "
    "satisfied-sbatch: error: Batch job submission failed: Requested node configuration is not available-Error "
    "from sbatch: )"
)
CTLD_DOWN = (
    "submission command failed (exit code = 1) (stdout:) (stderr:sbatch: error: Batch job submission failed: "
    "Unable to contact slurm controller (connect failure)-Error from sbatch: )"
)
STATUS_FAILED = "Error parsing classad or job not found"
NOW = 1_000_000.0
HOLDS = HoldPolicy(recoverable_codes=frozenset({0}), max_releases=3, backoff_seconds=1, max_backoff_seconds=5)
POLICY = EntryPolicy(name="hpc", frontends={"fe": FrontendAccess("fe@lab", frozenset({"sc"}))}, holds=HOLDS)


@pytest.mark.parametrize(
    ("reason", "refusal", "readable", "kind"),
    [
        (
            BAD_PARTITION,
            "Slurm refused the job: invalid partition specified: nosuch",
            "Slurm refused the job: invalid partition specified: nosuch",
            holds.BATCH_REFUSED,
        ),
        (
            TOO_MUCH_MEMORY,
            "Slurm refused the job: Memory specification can not be satisfied",
            "Slurm refused the job: Memory specification can not be satisfied",
            holds.BATCH_REFUSED,
        ),
        (
            CTLD_DOWN,
            None,
            "Slurm not reached: Batch job submission failed: Unable to contact slurm controller (connect failure)",
            holds.BATCH_UNREACHABLE,
        ),
        (STATUS_FAILED, None, STATUS_FAILED, holds.OTHER),
        ("", None, "no reason given", holds.OTHER),
        (
            "submission command failed (exit code = 2) (stdout:) (stderr:qsub: Unknown queue)",
            "the batch system refused the job: qsub: Unknown queue",
            "the batch system refused the job: qsub: Unknown queue",
            holds.BATCH_REFUSED,
        ),
    ],
)
def test_a_hold_reads_as_refusal_outage_or_other(reason: str, refusal: str | None, readable: str, kind: str) -> None:
    assert holds.batch_refusal(reason) == refusal
    assert holds.readable_hold(reason) == readable
    assert holds.hold_kind(reason) == kind


def test_a_readable_reason_is_one_short_line() -> None:
    long = "submission command failed (exit code = 1) (stdout:) (stderr:sbatch: error: " + "x\n" * 500 + ")"
    read = holds.readable_hold(long)
    assert len(read) == holds.MAX_REASON and "\n" not in read and read.endswith("...")


@pytest.mark.parametrize(
    ("grid_job_id", "expected"),
    [
        ("batch slurm 127.0.0.1_30861_factory_lab_4.0_1796514361 slurm/20261205/30860001", "30860001"),
        ("batch slurm factory@login 127.0.0.1_x_4.0_1 slurm/20261205/77", "77"),
        ("batch slurm 127.0.0.1_30861_factory_lab_2.0_1796514361", ""),  # not accepted by Slurm (yet)
        ("condor ce@site1.lab 127.0.0.1:29720 12.0", ""),
        ("batch pbs x slurm/20261205/5", ""),  # the system in the id must be the entry's
        (
            "ec2 http://ec2.us-east-1.localhost:30211/ 85913e1d-460a-4ad9-a58d-62ba37f6c3e5 i-98921180a64b32e39",
            "i-98921180a64b32e39",
        ),
        ("ec2 http://ec2.us-east-1.localhost:30211/ 85913e1d-460a-4ad9-a58d-62ba37f6c3e5", ""),  # not started yet
        ("", ""),
    ],
)
def test_the_batch_job_id_is_the_last_part_of_a_batch_grid_job_id(grid_job_id: str, expected: str) -> None:
    assert batch_job_id(grid_job_id) == expected


def held_ad(reason: str, grid_job_id: str = "batch slurm blah_1 slurm/20261205/42") -> dict[str, object]:
    return {
        "ClusterId": 7,
        "ProcId": 0,
        "JobStatus": 5,
        "UpdraftEntry": "hpc",
        "UpdraftFrontend": "fe",
        "UpdraftGroup": "main",
        "HoldReasonCode": 0,
        "HoldReasonSubCode": 0,
        "HoldReason": reason,
        "NumHolds": 1,
        "EnteredCurrentStatus": NOW - 5,
        "GridJobId": grid_job_id,
    }


def test_a_queue_ad_gives_the_pilot_its_readable_reason_kind_and_batch_job_id() -> None:
    pilot = parse_pilot(held_ad(BAD_PARTITION, "batch slurm blah_7"))
    assert pilot is not None and pilot.state is PilotState.HELD
    assert pilot.refusal == pilot.hold_reason == "Slurm refused the job: invalid partition specified: nosuch"
    assert pilot.hold_kind == holds.BATCH_REFUSED and pilot.batch_job_id == ""
    running = parse_pilot({**held_ad(BAD_PARTITION), "JobStatus": 2})
    assert running is not None and running.state is PilotState.RUNNING
    assert (running.refusal, running.hold_reason, running.hold_kind, running.batch_job_id) == (None, "", "", "42")


def pilot_of(reason: str, job_id: str = "7.0", num_holds: int = 1, state: PilotState = PilotState.HELD) -> Pilot:
    found = parse_pilot({**held_ad(reason), "ClusterId": int(job_id.split(".")[0]), "NumHolds": num_holds})
    assert found is not None
    return replace(found, state=state)


def request(idle: int) -> Request:
    return Request("hpc", "fe", "main", "sc", "fe@lab", idle, 10, pilot=PilotParams(collector="vo:9618"))


def test_a_refused_pilot_is_removed_not_released_though_its_code_is_recoverable() -> None:
    refused = pilot_of(BAD_PARTITION)
    assert refused.hold_code == 0 and 0 in HOLDS.recoverable_codes
    assert hold_verdict(refused, NOW, POLICY).action == "remove"
    plan = decide([request(2)], [refused], {"hpc": POLICY}, NOW)
    (decision,) = plan.decisions
    assert [(a.reason, a.job_ids) for a in decision.actions if isinstance(a, Remove)] == [(BATCH_REFUSED, ("7.0",))]
    assert decision.released == ()
    # the same description would be refused again: nothing submitted this cycle, and the record says why
    assert decision.submitted == 0
    assert "entry.batch_refused" in decision.bound_by
    assert "1 held pilots removed, not released: Slurm refused the job: invalid partition specified: nosuch" in (
        decision.notes
    )
    assert any("Slurm refused the job" in step.note for step in decision.steps)


def test_once_the_refused_pilots_are_gone_the_entry_submits_again() -> None:
    plan = decide([request(2)], [], {"hpc": POLICY}, NOW)
    assert plan.decisions[0].submitted == 2 and plan.decisions[0].bound_by == ()


def test_a_batch_system_that_was_not_reached_gets_the_ordinary_hold_policy() -> None:
    """slurmctld down: released after its backoff like any recoverable hold, and removed after too many."""
    first = pilot_of(CTLD_DOWN)
    assert first.refusal is None and first.hold_kind == holds.BATCH_UNREACHABLE
    plan = decide([request(1)], [first], {"hpc": POLICY}, NOW)
    assert plan.decisions[0].released == ("7.0",) and plan.decisions[0].removed == ()
    worn = pilot_of(CTLD_DOWN, num_holds=HOLDS.max_releases + 1)
    assert hold_verdict(worn, NOW, POLICY).reason == HELD_TOO_OFTEN


def test_entry_problems_name_batch_failures_once_per_entry_and_reason() -> None:
    pilots = [
        pilot_of(BAD_PARTITION, "7.0"),
        pilot_of(BAD_PARTITION, "8.0"),
        pilot_of(CTLD_DOWN, "9.0"),
        pilot_of(STATUS_FAILED, "10.0"),
        pilot_of(BAD_PARTITION, "11.0", state=PilotState.RUNNING),
    ]
    assert holds.entry_problems(pilots) == [
        "entry hpc: 1 held pilots: Slurm not reached: Batch job submission failed: Unable to contact slurm "
        "controller (connect failure)",
        "entry hpc: 2 held pilots: Slurm refused the job: invalid partition specified: nosuch",
    ]
    assert holds.entry_problems([pilot_of(STATUS_FAILED)]) == []


def test_status_names_held_reasons_and_batch_job_ids() -> None:
    pilots = [
        pilot_of(BAD_PARTITION, "7.0"),
        pilot_of(BAD_PARTITION, "8.0"),
        pilot_of("", "9.0", state=PilotState.RUNNING),
    ]
    assert held_lines(pilots) == [
        "hpc                2 held: Slurm refused the job: invalid partition specified: nosuch (e.g. 7.0, batch job 42)"
    ]
    lines = pilot_lines(pilots)
    assert len(lines) == 3
    assert lines[2].split()[:5] == ["9.0", "hpc", "fe.main", "running", "42"]
    assert lines[0].endswith("Slurm refused the job: invalid partition specified: nosuch")


def test_monitoring_counts_held_pilots_by_kind() -> None:
    pilots = [pilot_of(BAD_PARTITION, "7.0"), pilot_of(CTLD_DOWN, "8.0"), pilot_of(CTLD_DOWN, "9.0")]
    assert _held_by_kind(pilots) == {holds.BATCH_REFUSED: 1, holds.BATCH_UNREACHABLE: 2}
    row = PilotRow("hpc", "fe", held=3, held_by_kind=_held_by_kind(pilots))
    found = [
        m for m in metrics.measurements(FactorySnapshot("f", NOW, 1, pilots=(row,))) if m.spec is metrics.FACTORY_HOLDS
    ]
    assert {(m.tag_values[-1], m.values["held"]) for m in found} == {
        (holds.BATCH_REFUSED, 1),
        (holds.BATCH_UNREACHABLE, 2),
    }
    assert CycleFacts(NOW, 1, tuple(pilots)).pilots == tuple(pilots)


def test_an_entry_whose_batch_system_is_down_is_a_problem_from_its_earliest_pilot() -> None:
    down_at = 1_796_516_114.0  # 2026-12-06 00:15:14 UTC
    pilots = [
        replace(pilot_of("", "7.0", state=PilotState.RUNNING), resource_unavailable_since=down_at + 30),
        replace(pilot_of(CTLD_DOWN, "8.0"), resource_unavailable_since=down_at),
        pilot_of("", "9.0", state=PilotState.RUNNING),
    ]
    assert holds.unavailable_problems(pilots) == [
        "entry hpc: the grid manager finds its CE or batch system down since 2026-12-06 00:15:14 UTC (2 pilots)"
    ]
    assert holds.entry_problems(pilots)[-1] == holds.unavailable_problems(pilots)[0]
    assert holds.unavailable_problems(pilots[2:]) == []


def test_the_queue_ad_carries_grid_resource_unavailable_time() -> None:
    pilot = parse_pilot({**held_ad(CTLD_DOWN), "GridResourceUnavailableTime": 1_796_516_114})
    assert pilot is not None and pilot.resource_unavailable_since == 1_796_516_114.0
