"""Act: the one adapter that submits, removes and releases pilots, for every grid type.

Grid types only render submit descriptions; this module sends them. Pilots
go out in clusters of `cluster_size` so a thousand pilots are a few
transactions, and each cluster is one atomic submit: a factory killed in
the middle leaves whole clusters behind, every one of them carrying the
bookkeeping attributes that the next cycle counts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import htcondor2

from updraft.condor import Schedd
from updraft.errors import CondorError

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


def submit_pilots(schedd: Schedd, description: Mapping[str, str], count: int, cluster_size: int) -> ActResult:
    """`count` pilots in clusters of at most `cluster_size` (`submit_clusters`)."""
    return submit_clusters(schedd, description, cluster_sizes(count, cluster_size))


def submit_clusters(schedd: Schedd, description: Mapping[str, str], sizes: Sequence[int]) -> ActResult:
    """Submit exactly the clusters decided, in order; stop at the first refusal so a broken schedd is not pounded."""
    submitted, count = 0, sum(sizes)
    for size in sizes:
        try:
            schedd.submit(description, count=size)
        except CondorError as err:
            log.error("submitted %d of %d pilots: %s", submitted, count, err)
            return ActResult(submitted=submitted, errors=(str(err),))
        submitted += size
    return ActResult(submitted=submitted)


def remove_pilots(schedd: Schedd, job_ids: Iterable[str], reason: str) -> ActResult:
    ids = list(job_ids)
    try:
        schedd.act_on_jobs(htcondor2.JobAction.Remove, ids, reason)
    except CondorError as err:
        return ActResult(errors=(str(err),))
    return ActResult(removed=len(ids))


def release_pilots(schedd: Schedd, job_ids: Iterable[str]) -> ActResult:
    ids = list(job_ids)
    try:
        schedd.act_on_jobs(htcondor2.JobAction.Release, ids, "released by the factory after back-off")
    except CondorError as err:
        return ActResult(errors=(str(err),))
    return ActResult(released=len(ids))
