"""The factory's status table: one row per entry, from a plan and the queue (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from updraft import protocol
from updraft.factory.model import FactoryPlan, Pilot, PilotState


@dataclass(frozen=True)
class StatusRow:
    entry: str
    requested: int
    waiting: int
    pending: int
    staging: int
    running: int
    held: int
    limits_hit: tuple[str, ...]


def status_rows(plan: FactoryPlan, pilots: Iterable[Pilot], requests: Iterable[protocol.PublishedRequest]) -> list[StatusRow]:
    """Every entry that has a decision, pilots or a request, with the limits that bound it."""
    states = Counter((p.entry, p.state) for p in pilots)
    requested = Counter()
    for request in requests:
        requested[request.entry] += request.idle
    bounds: dict[str, set[str]] = {}
    for decision in plan.decisions:
        bounds.setdefault(decision.entry, set()).update(decision.bound_by)
    entries = sorted({e for e, _ in states} | set(requested) | set(bounds))
    return [
        StatusRow(entry, requested[entry], states[entry, PilotState.WAITING], states[entry, PilotState.PENDING],
                  states[entry, PilotState.STAGING], states[entry, PilotState.RUNNING], states[entry, PilotState.HELD],
                  tuple(sorted(bounds.get(entry, ()))))
        for entry in entries
    ]
