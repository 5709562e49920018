"""Completed-pilot accounting: fold the pilots that left the queue into the running totals.

Observe reads them (`observe.CompletedRead`, one history query under the
cycle's deadline); this module adds them up and saves the result. The totals
are saved with the checkpoint they count up to, in one atomic write, so a
crash at any moment neither loses a pilot nor counts one twice
(`completed.checkpoint_of_record`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from updraft.factory import completed
from updraft.factory.config import FactoryConfig
from updraft.factory.observe import CompletedRead, checkpoint_path, totals_path

log = logging.getLogger(__name__)
Stats = dict[completed.Key, completed.CompletedStats]
"""Completed-pilot statistics by (entry, frontend)."""


@dataclass(frozen=True)
class Accounting:
    new: Stats = field(default_factory=dict)
    """Pilots that left the queue since the last cycle, by (entry, frontend), from their reports."""
    totals: Stats = field(default_factory=dict)
    problem: str | None = None


def account(config: FactoryConfig, read: CompletedRead | None, now: float) -> Accounting:
    """Add this cycle's completed pilots to the saved totals and save both; old pilot logs are pruned too.

    `read` None (the history was not read) changes nothing on disk.
    """
    store = completed.CompletedTotals(totals_path(config))
    if read is None:
        return Accounting(totals=store.load())
    new = completed.summarize(read.pilots)
    totals = completed.merge(store.load(), new)
    try:
        store.save(totals, read.following)
        completed.save_checkpoint(checkpoint_path(config), read.following)
        completed.prune_pilot_logs(config.work_dir / "entries", config.pilot_log_retention_seconds, now)
    except OSError as err:
        log.error("completed-pilot accounting not saved: %s", err)
        return Accounting(new, totals, f"completed-pilot accounting not saved: {err}")
    for (entry, frontend), stats in sorted(new.items()):
        log.info(
            "completed on %s for %s: %d pilots (%d ok, %d failed%s, %d without report), %d jobs",
            entry,
            frontend,
            stats.pilots,
            stats.ok,
            stats.failed,
            _by_step(stats),
            stats.no_report,
            stats.jobs_run,
        )
    return Accounting(new, totals)


def _by_step(stats: completed.CompletedStats) -> str:
    steps = ", ".join(f"{step} {count}" for step, count in sorted(stats.failed_by_step.items()))
    return f": {steps}" if steps else ""
