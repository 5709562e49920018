"""Act: the one adapter that submits, removes and releases pilots, for every grid type.

Grid types only render submit descriptions; this module sends them. Pilots
go out in clusters of `cluster_size` so a thousand pilots are a few
transactions, and each cluster is one atomic submit: a factory killed in
the middle leaves whole clusters behind, every one of them carrying the
bookkeeping attributes that the next cycle counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import classad2
import htcondor2

from updraft import protocol
from updraft.errors import CallFailed, CloudError, CondorError, DaemonSilent
from updraft.factory.cloud import CloudPlan
from updraft.factory.cloudports import CloudPort
from updraft.factory.credentials import CredentialStoreError
from updraft.factory.model import FactoryPlan, Release, Remove, Submit
from updraft.factory.render import RenderError
from updraft.ports import CollectorPort, LocatedSchedd, SchedulerPort

log = logging.getLogger(__name__)


def cluster_sizes(count: int, cluster_size: int) -> list[int]:
    """`count` pilots as clusters of at most `cluster_size`."""
    size = max(1, cluster_size)
    return [min(size, count - start) for start in range(0, max(0, count), size)]


@dataclass(frozen=True)
class ActResult:
    submitted: int = 0
    removed: int = 0
    released: int = 0
    errors: tuple[str, ...] = ()
    refused: bool = False
    """The schedd answered and refused a submission: the only error that may be about the entry. Not set
    when the schedd could not be located or did not answer in time, the call's process crashed or could
    not start (`CallFailed`), or the description could not be rendered: those are the factory's own
    trouble (`updraft.factory.health.submit_failures`)."""


def submit_pilots(schedd: SchedulerPort, description: Mapping[str, str], count: int, cluster_size: int) -> ActResult:
    """`count` pilots in clusters of at most `cluster_size` (`submit_clusters`)."""
    return submit_clusters(schedd, description, cluster_sizes(count, cluster_size))


def submit_clusters(schedd: SchedulerPort, description: Mapping[str, str], sizes: Sequence[int]) -> ActResult:
    """Submit exactly the clusters decided, in order; stop at the first refusal so a broken schedd is not pounded."""
    submitted, count = 0, sum(sizes)
    for size in sizes:
        try:
            schedd.submit(description, count=size)
        except (DaemonSilent, CallFailed) as err:  # no answer: nothing refused
            log.error("submitted %d of %d pilots: %s", submitted, count, err)
            return ActResult(submitted=submitted, errors=(str(err),))
        except CondorError as err:
            log.error("submitted %d of %d pilots: %s", submitted, count, err)
            return ActResult(submitted=submitted, errors=(str(err),), refused=True)
        submitted += size
    return ActResult(submitted=submitted)


def remove_pilots(schedd: SchedulerPort, job_ids: Iterable[str], reason: str) -> ActResult:
    ids = list(job_ids)
    try:
        schedd.act_on_jobs(htcondor2.JobAction.Remove, ids, reason)
    except CondorError as err:
        return ActResult(errors=(str(err),))
    return ActResult(removed=len(ids))


def release_pilots(schedd: SchedulerPort, job_ids: Iterable[str]) -> ActResult:
    ids = list(job_ids)
    try:
        schedd.act_on_jobs(htcondor2.JobAction.Release, ids, "released by the factory after back-off")
    except CondorError as err:
        return ActResult(errors=(str(err),))
    return ActResult(released=len(ids))


def send_ads(wms: CollectorPort, ads: list[dict[str, Any]]) -> str | None:
    """Advertise the cycle's entry and factory ads; a refusal is this cycle's problem, not a crash."""
    try:
        wms.advertise(ads)
    except CondorError as err:
        log.error("entries not advertised this cycle: %s", err)
        return str(err)
    return None


def withdraw(wms: CollectorPort, factory: str) -> None:
    """On clean shutdown: our entries disappear, so no frontend keeps asking for them."""
    try:
        wms.invalidate(protocol.ENTRY_TYPE, f"{protocol.E_FACTORY} == {classad2.quote(factory)}")
        wms.invalidate(protocol.FACTORY_TYPE, f"Name == {classad2.quote(factory)}")
    except CondorError as err:
        log.error("entries not withdrawn (they expire on their own): %s", err)


def act(schedd: LocatedSchedd, plan: FactoryPlan, describe: Callable[[Submit], dict[str, str]]) -> list[ActResult]:
    """Do what the plan says, in its order; nothing is decided here.

    `describe` renders a submission's description; when it cannot (RenderError,
    CredentialStoreError) that submission is this cycle's problem and the rest go on.
    """
    if not plan.actions:
        return []
    try:
        located = schedd.get()
    except CondorError as err:
        return [ActResult(errors=(str(err),))]
    results = []
    for action in plan.actions:
        if isinstance(action, Submit):
            results.append(_submit(located, action, describe))
        elif isinstance(action, Remove):
            results.append(remove_pilots(located, action.job_ids, f"Updraft factory: {action.reason}"))
        elif isinstance(action, Release):
            results.append(release_pilots(located, action.job_ids))
    return results


def _submit(schedd: SchedulerPort, action: Submit, describe: Callable[[Submit], dict[str, str]]) -> ActResult:
    try:
        description = describe(action)
    except (RenderError, CredentialStoreError, OSError) as err:  # OSError: the pilots' log folder
        log.error("no pilots for %s on %s this cycle: %s", action.frontend, action.target, err)
        return ActResult(errors=(str(err),))
    return submit_clusters(schedd, description, action.clusters)


@dataclass(frozen=True)
class CloudActed:
    """What terminating unknown instances did: the ids the API accepted, and each failure's line."""

    terminated: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


def terminate_instances(cloud: CloudPort, plan: CloudPlan) -> CloudActed:
    """Terminate what the cloud plan says, account by account; a failure is a problem, the rest go on."""
    terminated: list[str] = []
    errors: list[str] = []
    for action in plan.actions:
        try:
            cloud.terminate(action.account.endpoint, action.account.credentials, action.ids)
        except CloudError as err:
            log.error("instances %s not terminated: %s", ", ".join(action.ids), err)
            errors.append(f"instances {', '.join(action.ids)} not terminated: {err}")
            continue
        log.warning("terminated instances %s at %s: %s", ", ".join(action.ids), action.account.endpoint, action.reason)
        terminated.extend(action.ids)
    return CloudActed(tuple(terminated), tuple(errors))
