"""The typed snapshots components hand to monitoring once per cycle.

Writers see only these frozen values, never a component's internals, so a
writer can neither change provisioning nor depend on how it is computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GroupEntryRow:
    """One (group, entry) of a frontend cycle: what it saw and what it asked for."""

    group: str
    entry: str
    jobs_idle: float
    jobs_old_idle: float
    jobs_running: float
    slots_total: int
    slots_idle: int
    slots_running: int
    slots_failed: int
    slots_cores: int
    requested_idle: int
    requested_max: int
    remove: str
    bound_by: tuple[str, ...] = ()
    in_downtime: bool = False


@dataclass(frozen=True)
class FrontendSnapshot:
    """A whole frontend cycle."""

    frontend: str
    time: float
    cycle: int
    rows: tuple[GroupEntryRow, ...] = ()
    unmatched_jobs: Mapping[str, int] = field(default_factory=dict)
    downtime_jobs: Mapping[str, int] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds spent in each phase: observe, decide, publish."""

    def totals(self) -> dict[str, float]:
        """Sums over every row, for pages and dashboards that show the frontend as a whole."""
        keys = ("jobs_idle", "jobs_old_idle", "jobs_running", "slots_total", "slots_idle", "slots_running",
                "slots_failed", "slots_cores", "requested_idle")
        return {key: sum(getattr(row, key) for row in self.rows) for key in keys}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["totals"] = self.totals()
        return data
