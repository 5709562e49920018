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
    frontend: str
    requested: int
    waiting: int
    pending: int
    staging: int
    running: int
    held: int
    limits_hit: tuple[str, ...]


def status_rows(
    plan: FactoryPlan, pilots: Iterable[Pilot], requests: Iterable[protocol.PublishedRequest]
) -> list[StatusRow]:
    """One row per (entry, frontend) with a decision, pilots or a request, with the limits that bound it."""
    states = Counter((p.entry, p.frontend, p.state) for p in pilots)
    requested: Counter[tuple[str, str]] = Counter()
    for request in requests:
        requested[request.entry, request.frontend] += request.idle
    bounds: dict[tuple[str, str], set[str]] = {}
    for decision in plan.decisions:
        bounds.setdefault((decision.entry, decision.frontend), set()).update(decision.bound_by)
    keys = sorted({(e, f) for e, f, _ in states} | set(requested) | set(bounds))
    rows = []
    for entry, frontend in keys:
        waiting, pending, staging, running, held = (states[entry, frontend, state] for state in ROW_STATES)
        rows.append(
            StatusRow(
                entry,
                frontend,
                requested[entry, frontend],
                waiting,
                pending,
                staging,
                running,
                held,
                tuple(sorted(bounds.get((entry, frontend), ()))),
            )
        )
    return rows


ROW_STATES = (PilotState.WAITING, PilotState.PENDING, PilotState.STAGING, PilotState.RUNNING, PilotState.HELD)
