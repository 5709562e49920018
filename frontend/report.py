"""What a frontend cycle tells its caller and monitoring: its result, its snapshot, why it failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from updraft.frontend.config import FrontendConfig
from updraft.frontend.model import Plan
from updraft.monitoring.snapshot import FrontendSnapshot, GroupEntryRow, RestartRow


@dataclass(frozen=True)
class CycleResult:
    plan: Plan
    ads: list[dict[str, Any]]
    snapshot: FrontendSnapshot
    published: bool
    """The cycle's requests (computed, and kept ones where data was missing) went out."""
    problems: tuple[str, ...] = field(default=())
    failure: str | None = None
    """Why the cycle could not do its job, in one line: a collector (the VO pool's or the WMS)
    unreadable, or the requests refused. A schedd that cannot be read is a problem, not a failure."""


def snapshot_of(
    plan: Plan,
    config: FrontendConfig,
    cycle: int,
    timings: dict[str, float],
    problems: tuple[str, ...],
    restarts: tuple[RestartRow, ...] = (),
    restarts_unknown: tuple[str, ...] = (),
) -> FrontendSnapshot:
    """What monitoring gets from a cycle: counts and requests per (group, entry), and the restarted
    jobs per (group, entry they last ran on) (`updraft.frontend.restarts.restart_rows`)."""
    rows = tuple(
        GroupEntryRow(
            group=d.group,
            entry=d.entry.key,
            jobs_idle=d.inputs.idle_jobs,
            jobs_old_idle=d.inputs.old_idle_jobs,
            jobs_running=d.inputs.running_jobs,
            slots_total=d.inputs.pilots,
            slots_idle=d.inputs.idle_slots,
            slots_running=d.inputs.running_slots,
            slots_failed=d.inputs.failed_slots,
            slots_cores=d.inputs.pilot_cores,
            requested_idle=d.idle,
            requested_max=d.max_pilots,
            remove=d.remove.value,
            bound_by=d.bound_by,
            in_downtime=d.entry.in_downtime,
            jobs_refused=d.inputs.refused_idle_jobs,
            health=d.entry.health_state.value,
        )
        for d in plan.decisions
    )
    return FrontendSnapshot(
        config.name,
        plan.now,
        cycle,
        rows,
        dict(plan.unmatched),
        dict(plan.in_downtime),
        problems,
        timings,
        restarts,
        restarts_unknown,
    )


def blind_spot(plan: Plan) -> str | None:
    """Why this cycle could not compute its requests, or None: a collector (the VO pool's, for the pilots
    and the schedds, or the WMS, for the entries and what is published) could not be read at all.

    The cycle then publishes only the last good requests decide kept (none when what is published is
    unknown), and fails. A schedd that cannot be read is not one: its groups keep their requests as a floor
    and remove no pilots, the rest goes on.
    """
    down = next((p for p in plan.problems if p.unreadable and p.source.startswith("collector ")), None)
    return None if down is None else f"{down.source}: {down.message}"
