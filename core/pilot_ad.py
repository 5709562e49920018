"""The pilot job ad: what the factory writes into every pilot it submits, and how it reads it back.

The factory keeps no database: every pilot carries its entry, frontend,
group, security class and credential id as job attributes, so the queue
(live pilots) and the history (finished ones) are the whole memory. The
names are spelled here once; the factory's submit descriptions write them,
its queue and history queries ask for them, and `read_pilot_ad` is the one
reader of such an ad, so the live view and completed-pilot accounting
can never disagree about what an ad says.

`JobStatus` is HTCondor's job status; user jobs the frontend counts use it too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import classad2

from updraft.adnumbers import exact_whole_number, finite_number, whole_number, whole_or

# Updraft's bookkeeping, written into every pilot (+Name in the submit description).
PILOT = "UpdraftPilot"
FACTORY = "UpdraftFactory"
ENTRY = "UpdraftEntry"
FRONTEND = "UpdraftFrontend"
GROUP = "UpdraftGroup"
SECURITY_CLASS = "UpdraftSecurityClass"
CREDENTIAL_ID = "UpdraftCredentialId"
MEMBER = "UpdraftMember"
"""For an entry set: the member CE the pilot went to."""

DEFAULT_SECURITY_CLASS = "default"

# HTCondor's own job attributes the factory reads.
CLUSTER_ID = "ClusterId"
PROC_ID = "ProcId"
JOB_STATUS = "JobStatus"
Q_DATE = "QDate"
ENTERED_CURRENT_STATUS = "EnteredCurrentStatus"
COMPLETION_DATE = "CompletionDate"
REMOTE_WALL_CLOCK_TIME = "RemoteWallClockTime"
GRID_JOB_ID = "GridJobId"
GRID_JOB_STATUS = "GridJobStatus"
GRID_RESOURCE_UNAVAILABLE_TIME = "GridResourceUnavailableTime"
TRANSFERRING_INPUT = "TransferringInput"
TRANSFERRING_OUTPUT = "TransferringOutput"
HOLD_REASON_CODE = "HoldReasonCode"
HOLD_REASON_SUBCODE = "HoldReasonSubCode"
HOLD_REASON = "HoldReason"
NUM_HOLDS = "NumHolds"
EC2_INSTANCE_NAME = "EC2InstanceName"
"""The id of a cloud pilot's instance (i-...), written by the grid manager once the instance exists."""
OUT = "Out"
IWD = "Iwd"

QUEUE_PROJECTION = (
    CLUSTER_ID,
    PROC_ID,
    JOB_STATUS,
    Q_DATE,
    ENTERED_CURRENT_STATUS,
    GRID_JOB_ID,
    GRID_JOB_STATUS,
    GRID_RESOURCE_UNAVAILABLE_TIME,
    TRANSFERRING_INPUT,
    TRANSFERRING_OUTPUT,
    HOLD_REASON_CODE,
    HOLD_REASON_SUBCODE,
    HOLD_REASON,
    NUM_HOLDS,
    ENTRY,
    FRONTEND,
    GROUP,
    SECURITY_CLASS,
    CREDENTIAL_ID,
    MEMBER,
    EC2_INSTANCE_NAME,
)
"""What the factory's queue query asks for: everything its live view of a pilot is made of."""

HISTORY_PROJECTION = (
    CLUSTER_ID,
    PROC_ID,
    JOB_STATUS,
    ENTERED_CURRENT_STATUS,
    COMPLETION_DATE,
    Q_DATE,
    REMOTE_WALL_CLOCK_TIME,
    OUT,
    IWD,
    ENTRY,
    FRONTEND,
    GROUP,
    MEMBER,
)
"""What the completed-pilot history query asks for: who the pilot was, how it ended, where its output is."""


class JobStatus(IntEnum):
    """HTCondor's JobStatus codes."""

    IDLE = 1
    RUNNING = 2
    REMOVED = 3
    COMPLETED = 4
    HELD = 5
    TRANSFERRING_OUTPUT = 6
    SUSPENDED = 7

    @classmethod
    def from_ad(cls, value: object) -> JobStatus | None:
        """The status an ad's value names; None for anything else (a bool, 2.5, 0, text).

        An ad is someone else's data: an unknown code is no status, never an exception.
        """
        code = exact_whole_number(value)
        if code is None or code not in cls._value2member_map_:
            return None
        return cls(code)


FINAL_STATUSES = frozenset({JobStatus.REMOVED, JobStatus.COMPLETED})
"""The statuses a job leaves the queue in, and so the ones a history ad can have."""


def queue_constraint(factory: str) -> str:
    """This factory's pilots in its schedd's queue; `=?=` so jobs without the attributes are simply not matched."""
    return f"{PILOT} =?= true && {FACTORY} =?= {classad2.quote(factory)}"


def history_constraint(factory: str, since: float) -> str:
    """This factory's pilots that entered their final state at or after `since`."""
    return f"{FACTORY} == {classad2.quote(factory)} && {ENTERED_CURRENT_STATUS} >= {int(since)}"


@dataclass(frozen=True, slots=True)
class PilotAd:
    """What a pilot's queue or history ad says, each value checked: wrong types read as absent.

    `entry` and `frontend` are None for a job that lacks Updraft's
    bookkeeping (`is_bookkept`); the factory never acts on such a job.
    """

    cluster: int | None
    proc: int | None
    status: JobStatus | None
    entry: str | None
    frontend: str | None
    group: str
    security_class: str
    credential_id: str
    member: str | None
    submitted: float | None
    """QDate."""
    entered_status: float | None
    """EnteredCurrentStatus."""
    completion_date: float | None
    wall_seconds: float | None
    """RemoteWallClockTime."""
    hold_code: int | None
    hold_subcode: int | None
    hold_reason: str
    """HoldReason as HTCondor wrote it; "" when the ad has none."""
    num_holds: int
    grid_job_id: str
    """"" until the grid manager has submitted the pilot to its CE."""
    grid_job_status: str
    resource_unavailable_since: float | None
    """GridResourceUnavailableTime: the grid manager found the pilot's CE or batch system down then
    (a failed ping or submit); absent while it is up."""
    transferring: bool
    """The schedd is moving the pilot's input or output files."""
    output: str
    """The stdout file (`output_path`); "" when the ad names none."""

    @property
    def batch_job_id(self) -> str:
        """The batch system's own id of a batch pilot (`batch_job_id`), "" until it has one."""
        return batch_job_id(self.grid_job_id)

    @property
    def job_id(self) -> str:
        """ "cluster.proc"."""
        return f"{self.cluster}.{self.proc}"

    @property
    def has_job_id(self) -> bool:
        return self.cluster is not None and self.proc is not None

    @property
    def is_bookkept(self) -> bool:
        """Carries the entry and frontend it was submitted for: one of ours, not some other job."""
        return self.entry is not None and self.frontend is not None


def read_pilot_ad(ad: Mapping[str, Any]) -> PilotAd:
    """Every attribute of a pilot's queue or history ad that the factory uses, checked; never raises."""
    return PilotAd(
        cluster=whole_number(ad.get(CLUSTER_ID)),
        proc=whole_number(ad.get(PROC_ID)),
        status=JobStatus.from_ad(ad.get(JOB_STATUS)),
        entry=_string(ad.get(ENTRY)),
        frontend=_string(ad.get(FRONTEND)),
        group=str(ad.get(GROUP, "")),
        security_class=str(ad.get(SECURITY_CLASS, DEFAULT_SECURITY_CLASS)),
        credential_id=str(ad.get(CREDENTIAL_ID, "")),
        member=_string(ad.get(MEMBER)),
        submitted=finite_number(ad.get(Q_DATE)),
        entered_status=finite_number(ad.get(ENTERED_CURRENT_STATUS)),
        completion_date=finite_number(ad.get(COMPLETION_DATE)),
        wall_seconds=finite_number(ad.get(REMOTE_WALL_CLOCK_TIME)),
        hold_code=whole_number(ad.get(HOLD_REASON_CODE)),
        hold_subcode=whole_number(ad.get(HOLD_REASON_SUBCODE)),
        hold_reason=_text_if_set(ad.get(HOLD_REASON)),
        num_holds=whole_or(ad.get(NUM_HOLDS), 0),
        grid_job_id=_text_if_set(ad.get(GRID_JOB_ID)),
        grid_job_status=_text_if_set(ad.get(GRID_JOB_STATUS)),
        resource_unavailable_since=finite_number(ad.get(GRID_RESOURCE_UNAVAILABLE_TIME)),
        transferring=ad.get(TRANSFERRING_INPUT) is True or ad.get(TRANSFERRING_OUTPUT) is True,
        output=output_path(ad),
    )


def batch_job_id(grid_job_id: str) -> str:
    """The site's own id of a pilot in its GridJobId: a batch system's job id or an EC2 instance id;
    "" when there is none (yet).

    The blahp names a submitted job ``batch slurm <blahp id> slurm/<date>/<id>``
    (the last word appears once the batch system has accepted the job; an
    SSH entry has ``user@host`` after the system). The id is what an operator
    gives ``squeue``/``scancel``/``sacct`` at the site. The EC2 grid manager
    names an instance ``ec2 <service URL> <client token> <instance id>`` once
    the API has started it: what ``aws ec2 describe-instances`` takes.
    """
    words = grid_job_id.split()
    if len(words) == 4 and words[0] == "ec2" and words[3].startswith("i-"):
        return words[3]
    if len(words) < 3 or words[0] != "batch":
        return ""
    parts = words[-1].split("/")
    if len(parts) != 3 or parts[0] != words[1] or not parts[2]:
        return ""
    return parts[2]


def output_path(ad: Mapping[str, Any]) -> str:
    """The job's stdout file; a relative Out is relative to the job's Iwd, as condor reads it."""
    out = ad.get(OUT)
    if not isinstance(out, str) or not out:
        return ""
    iwd = ad.get(IWD)
    if os.path.isabs(out) or not isinstance(iwd, str) or not iwd:
        return out
    return os.path.join(iwd, out)


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _text_if_set(value: object) -> str:
    """A value as text, "" for anything false (undefined, empty, 0)."""
    return str(value) if value else ""
