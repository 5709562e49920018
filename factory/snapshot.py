"""What the factory hands to monitoring each cycle: a pure function of what the cycle saw and did."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypedDict

from updraft.factory.cloud import UNCONFIGURED, CloudPlan
from updraft.factory.completed import CompletedStats, Key
from updraft.factory.config import FactoryConfig, nodes_in
from updraft.factory.health_model import EntryHealth, Transition
from updraft.factory.holds import OTHER
from updraft.factory.model import LIVE_STATES, FactoryPlan, Pilot, PilotState
from updraft.factory.policy import advertised_entries
from updraft.monitoring.snapshot import (
    COMPLETED_COUNTERS,
    CloudRow,
    CompletedRow,
    EntryStatus,
    FactorySnapshot,
    HealthRow,
    PilotRow,
    TransitionRow,
)


@dataclass(frozen=True)
class CycleFacts:
    """Everything about one cycle that monitoring shows, gathered by the service."""

    now: float
    cycle: int
    pilots: tuple[Pilot, ...] = ()
    plan: FactoryPlan | None = None
    in_downtime: frozenset[str] = frozenset()
    completed: Mapping[Key, CompletedStats] = field(default_factory=dict)
    """Running totals, not this cycle's increments."""
    problems: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    cloud: CloudPlan = field(default_factory=CloudPlan)
    health: Mapping[str, EntryHealth] = field(default_factory=dict)
    """Every advertised entry's health as this cycle decided it."""
    transitions: tuple[Transition, ...] = ()
    """The health changes this cycle made."""
    announce: tuple[Transition, ...] = ()
    """The health changes for the notifiers: this cycle's and earlier ones they have not yet taken."""


def factory_snapshot(config: FactoryConfig, facts: CycleFacts) -> FactorySnapshot:
    cores = cores_per_pilot(config)
    live = [p for p in facts.pilots if p.state in LIVE_STATES]
    return FactorySnapshot(
        factory=config.name,
        time=facts.now,
        cycle=facts.cycle,
        entries=_entries(cores, live, facts.in_downtime),
        pilots=_pilot_rows(cores, live, facts.plan),
        completed=_completed_rows(facts.completed),
        rejected_requests=len(facts.plan.rejected) if facts.plan else 0,
        problems=facts.problems,
        timings=dict(facts.timings),
        cloud=cloud_rows(facts.cloud),
        health=health_rows(facts.health),
        transitions=tuple(transition_row(t) for t in facts.transitions),
        announce=tuple(transition_row(t) for t in facts.announce),
    )


def health_rows(health: Mapping[str, EntryHealth]) -> tuple[HealthRow, ...]:
    """One row per entry, by name; an operator's override names who set it and until when."""
    return tuple(
        HealthRow(
            h.entry,
            h.state.value,
            h.reason,
            h.since,
            h.next_review,
            h.cap,
            h.override.set_by if h.override else None,
            h.override.until if h.override else None,
        )
        for _, h in sorted(health.items())
    )


def transition_row(change: Transition) -> TransitionRow:
    return TransitionRow(
        change.entry, change.old.value, change.new.value, change.reason, change.at, change.by, change.key
    )


def cloud_rows(plan: CloudPlan) -> tuple[CloudRow, ...]:
    """One row per cloud entry whose account was listed: its instances by state, and the unknown ones."""
    return tuple(
        CloudRow(d.entry if d.entry is not None else UNCONFIGURED, dict(d.states), len(d.unknown))
        for d in plan.decisions
    )


def cores_per_pilot(config: FactoryConfig) -> dict[str, int]:
    """Cores one pilot of each advertised entry brings: GLIDEIN_CPUS x GLIDEIN_Nodes."""
    return {
        name: entry.cpus_per_pilot * nodes_in(entry.attributes) for name, entry in advertised_entries(config).items()
    }


class _StateCounts(TypedDict):
    """Pilots by state: the fields `updraft.monitoring.snapshot.PILOT_STATES` names."""

    waiting: int
    pending: int
    staging: int
    running: int
    held: int


def _states(pilots: Iterable[Pilot]) -> _StateCounts:
    counts = Counter(p.state.value for p in pilots)
    return _StateCounts(
        waiting=counts["waiting"],
        pending=counts["pending"],
        staging=counts["staging"],
        running=counts["running"],
        held=counts["held"],
    )


def _entries(cores: Mapping[str, int], live: list[Pilot], down: frozenset[str]) -> tuple[EntryStatus, ...]:
    by_entry: dict[str, list[Pilot]] = defaultdict(list)
    for pilot in live:
        by_entry[pilot.entry].append(pilot)
    return tuple(
        EntryStatus(name, name in down, cores.get(name, 1), **_states(by_entry.get(name, ())))
        for name in sorted(set(cores) | set(by_entry))
    )


def _pilot_rows(cores: Mapping[str, int], live: list[Pilot], plan: FactoryPlan | None) -> tuple[PilotRow, ...]:
    """One row per (entry, frontend) that has pilots or a decision, the frontend's groups summed."""
    pilots: dict[tuple[str, str], list[Pilot]] = defaultdict(list)
    for pilot in live:
        pilots[(pilot.entry, pilot.frontend)].append(pilot)
    asked: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    limits: dict[tuple[str, str], list[str]] = defaultdict(list)
    for d in plan.decisions if plan else ():
        key = (d.entry, d.frontend)
        if d.request is not None:
            asked[key].update(requested_idle=d.request.idle, requested_max=d.request.max_pilots)
        asked[key].update(submitted=d.submitted, removed=len(d.removed), released=len(d.released))
        limits[key].extend(b for b in d.bound_by if b not in limits[key])
    rows = []
    for key in sorted(set(pilots) | set(asked)):
        states = _states(pilots.get(key, ()))
        numbers = asked.get(key, Counter())
        rows.append(
            PilotRow(
                *key,
                **states,
                cores_running=states["running"] * cores.get(key[0], 1),
                requested_idle=numbers["requested_idle"],
                requested_max=numbers["requested_max"],
                submitted=numbers["submitted"],
                removed=numbers["removed"],
                released=numbers["released"],
                limits_hit=tuple(limits.get(key, ())),
                held_by_kind=_held_by_kind(pilots.get(key, ())),
            )
        )
    return tuple(rows)


def _held_by_kind(pilots: Iterable[Pilot]) -> dict[str, int]:
    """Held pilots by kind of hold, sorted; a held pilot of unknown kind counts as other."""
    counts = Counter(p.hold_kind or OTHER for p in pilots if p.state is PilotState.HELD)
    return dict(sorted(counts.items()))


def _completed_rows(totals: Mapping[Key, CompletedStats]) -> tuple[CompletedRow, ...]:
    return tuple(
        CompletedRow(
            entry,
            frontend,
            **{name: getattr(stats, name) for name in COMPLETED_COUNTERS},
            failed_by_step=dict(stats.failed_by_step),
        )
        for (entry, frontend), stats in sorted(totals.items())
    )
