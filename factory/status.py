"""The factory's status table: one row per entry, from a plan and the queue (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from updraft import protocol
from updraft.factory.cloud import CloudPlan, unknown_lines
from updraft.factory.decide import job_order
from updraft.factory.model import LIVE_STATES, FactoryPlan, Pilot, PilotState


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


def held_lines(pilots: Iterable[Pilot]) -> list[str]:
    """Held pilots per entry and reason, as an operator reads them, with one example job."""
    held: dict[tuple[str, str], list[Pilot]] = {}
    for pilot in pilots:
        if pilot.state is PilotState.HELD:
            held.setdefault((pilot.entry, pilot.hold_reason or "no reason given"), []).append(pilot)
    return [
        f"{entry:<16} {len(found):>3} held: {reason} (e.g. {_named(found[0])})"
        for (entry, reason), found in sorted(held.items())
    ]


def pilot_lines(pilots: Iterable[Pilot]) -> list[str]:
    """One line per live pilot: job id, entry, frontend.group, state, the batch system's job id
    (what `squeue`/`scancel` at the site take) and, when held, why."""
    lines = []
    for pilot in sorted(pilots, key=lambda p: (p.entry, job_order(p.job_id))):
        if pilot.state not in LIVE_STATES:
            continue
        why = f"  {pilot.hold_reason}" if pilot.state is PilotState.HELD else ""
        lines.append(
            f"{pilot.job_id:<12} {pilot.entry:<16} {pilot.frontend + '.' + pilot.group:<20} "
            f"{pilot.state.value:<8} {pilot.batch_job_id or '-':<12}{why}"
        )
    return lines


def _named(pilot: Pilot) -> str:
    return f"{pilot.job_id}, batch job {pilot.batch_job_id}" if pilot.batch_job_id else pilot.job_id


def cloud_lines(plan: CloudPlan) -> list[str]:
    """Per cloud entry whose instances were listed: how many in which state and how many belong to no
    pilot, then each such instance (`updraft.factory.cloud.unknown_lines`)."""
    lines = []
    for decision in plan.decisions:
        who = decision.entry if decision.entry is not None else "(no entry)"
        states = ", ".join(f"{state} {count}" for state, count in decision.states.items()) or "none"
        lines.append(f"{who:<16} instances: {states}; {len(decision.unknown)} belong to no pilot")
    return lines + unknown_lines(plan)
