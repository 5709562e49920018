"""The factory rebuilds its view from queue ads alone."""

from __future__ import annotations

import pytest

from updraft.factory.act import cluster_sizes
from updraft.factory.model import PilotState
from updraft.factory.observe import parse_pilot, parse_requests, pilot_constraint, pilot_state

AD = {
    "ClusterId": 12,
    "ProcId": 3,
    "JobStatus": 1,
    "QDate": 1000,
    "EnteredCurrentStatus": 1010,
    "UpdraftEntry": "ce1",
    "UpdraftFrontend": "vo",
    "UpdraftGroup": "main",
    "UpdraftSecurityClass": "prod",
    "UpdraftCredentialId": "cred-1",
}


@pytest.mark.parametrize(
    ("change", "state"),
    [
        ({}, PilotState.WAITING),
        ({"GridJobId": "condor ce@x 127.0.0.1:1 5.0"}, PilotState.PENDING),
        ({"GridJobId": "condor ce@x 127.0.0.1:1 5.0", "GridJobStatus": "TRANSFERRING_OUTPUT"}, PilotState.STAGING),
        ({"TransferringInput": True}, PilotState.STAGING),
        ({"JobStatus": 2, "GridJobStatus": "RUNNING"}, PilotState.RUNNING),
        ({"JobStatus": 5}, PilotState.HELD),
        ({"JobStatus": 3}, PilotState.COMPLETED),
        ({"JobStatus": 4}, PilotState.COMPLETED),
    ],
)
def test_pilot_states_from_the_queue(change, state) -> None:
    assert pilot_state({**AD, **change}) is state


def test_a_pilot_carries_its_bookkeeping_back() -> None:
    pilot = parse_pilot(AD)
    assert pilot.job_id == "12.3"
    assert (pilot.entry, pilot.frontend, pilot.group, pilot.security_class, pilot.credential_id) == (
        "ce1",
        "vo",
        "main",
        "prod",
        "cred-1",
    )
    assert (pilot.entered_state, pilot.submitted, pilot.hold_code, pilot.last_hold_time) == (1010, 1000, None, None)


def test_a_held_pilot_knows_its_hold() -> None:
    pilot = parse_pilot({**AD, "JobStatus": 5, "HoldReasonCode": 30, "HoldReasonSubCode": 2, "NumHolds": 3})
    assert (pilot.state, pilot.hold_code, pilot.hold_subcode, pilot.num_holds, pilot.last_hold_time) == (
        PilotState.HELD,
        30,
        2,
        3,
        1010,
    )


def test_a_job_without_bookkeeping_is_not_a_pilot() -> None:
    assert parse_pilot({k: v for k, v in AD.items() if k != "UpdraftEntry"}) is None


def test_only_this_factorys_pilots_are_queried() -> None:
    assert pilot_constraint('fac"x') == 'UpdraftPilot =?= true && UpdraftFactory =?= "fac\\"x"'


def test_only_well_formed_requests_for_this_factory_are_read() -> None:
    base = {
        "UpdraftSchema": 1,
        "UpdraftFrontend": "vo",
        "UpdraftGroup": "g",
        "UpdraftEntry": "ce1",
        "UpdraftReqIdlePilots": 3,
        "UpdraftReqMaxPilots": 9,
        "UpdraftReqRemoveMode": "idle",
        "UpdraftReqRemoveMax": 1,
    }
    ads = [
        {**base, "UpdraftFactory": "fac"},
        {**base, "UpdraftFactory": "other"},
        {**base, "UpdraftFactory": "fac", "UpdraftSchema": 7},
    ]
    (request,), malformed = parse_requests(ads, "fac")
    assert (request.entry, request.idle, request.max_pilots, request.remove) == ("ce1", 3, 9, "idle")
    assert malformed == ["request ad '?' ignored: UpdraftSchema '7' is not 1"]


@pytest.mark.parametrize(
    ("count", "size", "expected"), [(0, 5, []), (3, 5, [3]), (10, 5, [5, 5]), (11, 5, [5, 5, 1]), (2, 0, [1, 1])]
)
def test_pilots_go_out_in_clusters(count: int, size: int, expected: list[int]) -> None:
    assert cluster_sizes(count, size) == expected
