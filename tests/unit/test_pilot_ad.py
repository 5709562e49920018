"""The pilot job-ad schema, spelled once: statuses, attribute names, queries and the one reader."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from updraft import pilot_ad
from updraft.factory import render
from updraft.factory.completed import parse_history_ad
from updraft.factory.model import PilotState
from updraft.factory.observe import PILOT_PROJECTION, parse_pilot, pilot_state
from updraft.pilot_ad import FINAL_STATUSES, JobStatus, read_pilot_ad

AD = {
    "ClusterId": 12,
    "ProcId": 3,
    "JobStatus": 4,
    "QDate": 1000,
    "EnteredCurrentStatus": 1010,
    "CompletionDate": 1009,
    "RemoteWallClockTime": 59.9,
    "UpdraftEntry": "ce1",
    "UpdraftFrontend": "vo",
    "UpdraftGroup": "main",
    "UpdraftSecurityClass": "prod",
    "UpdraftCredentialId": "cred-1",
    "UpdraftMember": "ce1-b",
    "Out": "pilot.12.3.out",
    "Iwd": "/w/entries/ce1/vo",
}


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (1, JobStatus.IDLE),
        (2, JobStatus.RUNNING),
        (3, JobStatus.REMOVED),
        (4, JobStatus.COMPLETED),
        (5, JobStatus.HELD),
        (6, JobStatus.TRANSFERRING_OUTPUT),
        (7, JobStatus.SUSPENDED),
    ],
)
def test_every_job_status_is_read(code: int, status: JobStatus) -> None:
    assert JobStatus.from_ad(code) is status
    assert JobStatus.from_ad(float(code)) is status
    assert status == code


def test_the_statuses_are_htcondors_seven() -> None:
    assert [(s.name, s.value) for s in JobStatus] == [
        ("IDLE", 1),
        ("RUNNING", 2),
        ("REMOVED", 3),
        ("COMPLETED", 4),
        ("HELD", 5),
        ("TRANSFERRING_OUTPUT", 6),
        ("SUSPENDED", 7),
    ]


@pytest.mark.parametrize("value", [None, 0, 8, -1, True, False, 2.5, "2", "RUNNING", math.nan, math.inf, [2]])
def test_anything_else_is_no_status(value: object) -> None:
    assert JobStatus.from_ad(value) is None


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=4)))
def test_reading_a_status_never_raises(value: object) -> None:
    status = JobStatus.from_ad(value)
    assert status is None or status in JobStatus


def test_a_job_leaves_the_queue_removed_or_completed() -> None:
    assert {JobStatus.REMOVED, JobStatus.COMPLETED} == FINAL_STATUSES


def test_the_queue_projection_reads_back_every_attribute_the_factory_writes() -> None:
    written = {render.J_ENTRY, render.J_FRONTEND, render.J_GROUP, render.J_SECURITY_CLASS, render.J_CREDENTIAL_ID}
    assert written <= set(PILOT_PROJECTION)
    assert pilot_ad.MEMBER in PILOT_PROJECTION
    assert (render.J_PILOT, render.J_FACTORY) == (pilot_ad.PILOT, pilot_ad.FACTORY)


def test_the_history_projection_has_what_accounting_needs() -> None:
    needed = {
        pilot_ad.CLUSTER_ID,
        pilot_ad.PROC_ID,
        pilot_ad.JOB_STATUS,
        pilot_ad.ENTERED_CURRENT_STATUS,
        pilot_ad.OUT,
        pilot_ad.IWD,
        pilot_ad.ENTRY,
        pilot_ad.FRONTEND,
        pilot_ad.MEMBER,
    }
    assert needed <= set(pilot_ad.HISTORY_PROJECTION)


def test_the_constraints_quote_the_factory_name() -> None:
    assert pilot_ad.queue_constraint('f"x') == 'UpdraftPilot =?= true && UpdraftFactory =?= "f\\"x"'
    assert pilot_ad.history_constraint('f"x', 99.7) == 'UpdraftFactory == "f\\"x" && EnteredCurrentStatus >= 99'


def test_a_pilot_ad_is_read_whole() -> None:
    read = read_pilot_ad(
        {
            **AD,
            "GridJobId": "condor ce 5.0",
            "GridJobStatus": "idle",
            "TransferringOutput": True,
            "HoldReasonCode": 30.0,
            "HoldReasonSubCode": 2,
            "NumHolds": 3,
        }
    )
    assert (read.job_id, read.has_job_id, read.is_bookkept, read.status) == ("12.3", True, True, JobStatus.COMPLETED)
    assert (read.entry, read.frontend, read.group, read.security_class, read.credential_id, read.member) == (
        "ce1",
        "vo",
        "main",
        "prod",
        "cred-1",
        "ce1-b",
    )
    assert (read.submitted, read.entered_status, read.completion_date, read.wall_seconds) == (1000, 1010, 1009, 59.9)
    assert (read.hold_code, read.hold_subcode, read.num_holds) == (30, 2, 3)
    assert (read.grid_job_id, read.grid_job_status, read.transferring) == ("condor ce 5.0", "idle", True)
    assert read.output == "/w/entries/ce1/vo/pilot.12.3.out"


def test_missing_or_mistyped_values_read_as_absent() -> None:
    read = read_pilot_ad(
        {
            "ClusterId": True,
            "ProcId": "3",
            "JobStatus": math.nan,
            "UpdraftEntry": 5,
            "QDate": math.inf,
            "EnteredCurrentStatus": "1010",
            "NumHolds": math.nan,
            "UpdraftMember": 7,
            "TransferringInput": 1,
            "Out": None,
        }
    )
    assert (read.cluster, read.proc, read.has_job_id, read.status) == (None, None, False, None)
    assert (read.entry, read.frontend, read.is_bookkept, read.member) == (None, None, False, None)
    assert (read.group, read.security_class, read.credential_id) == ("", "default", "")
    assert (read.submitted, read.entered_status, read.num_holds) == (None, None, 0)
    assert (read.grid_job_id, read.grid_job_status, read.transferring, read.output) == ("", "", False, "")


@given(
    st.dictionaries(
        st.sampled_from(sorted({*pilot_ad.QUEUE_PROJECTION, *pilot_ad.HISTORY_PROJECTION})),
        st.one_of(
            st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8)
        ),
        max_size=8,
    )
)
def test_no_ad_crashes_the_reader_or_its_two_users(changes: dict[str, object]) -> None:
    ad = {**AD, **changes}
    read = read_pilot_ad(ad)
    assert read.entered_status is None or math.isfinite(read.entered_status)
    parse_pilot(ad)
    parse_history_ad(ad)


def test_the_live_view_and_accounting_agree_on_one_ad() -> None:
    """One reader: the same ad names the same pilot to both."""
    live, finished = parse_pilot(AD), parse_history_ad(AD)
    assert live is not None and finished is not None
    assert (live.job_id, live.entry, live.frontend, live.group) == (
        finished.job_id,
        finished.entry,
        finished.frontend,
        finished.group,
    )
    assert live.state is PilotState.COMPLETED and not finished.removed


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (JobStatus.IDLE, PilotState.WAITING),
        (JobStatus.RUNNING, PilotState.RUNNING),
        (JobStatus.REMOVED, PilotState.COMPLETED),
        (JobStatus.COMPLETED, PilotState.COMPLETED),
        (JobStatus.HELD, PilotState.HELD),
        (JobStatus.TRANSFERRING_OUTPUT, PilotState.COMPLETED),
        (JobStatus.SUSPENDED, PilotState.WAITING),
        (True, PilotState.WAITING),
        (2.5, PilotState.WAITING),
    ],
)
def test_each_job_status_gives_a_pilot_state(status: object, state: PilotState) -> None:
    assert pilot_state({"JobStatus": status}) is state
