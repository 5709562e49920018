"""What a factory cycle tells its caller and its operator: its result, and refused requests, once each."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from updraft.factory.accounting import Accounting, Stats
from updraft.factory.act import ActResult
from updraft.factory.cloud import CloudPlan
from updraft.factory.health_store import HealthMemory
from updraft.factory.model import FactoryPlan, Rejection
from updraft.factory.observe import FactoryView
from updraft.factory.snapshot import CycleFacts
from updraft.summary import summarise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Acted:
    """What the act step of a cycle did: the schedd's answers, the accounting, its problems, its timings."""

    results: tuple[ActResult, ...] = ()
    accounting: Accounting = field(default_factory=Accounting)
    problems: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CycleResult:
    plan: FactoryPlan | None
    """None when the queue could not be read: nothing was decided."""
    view: FactoryView
    submitted: int = 0
    removed: int = 0
    released: int = 0
    problems: tuple[str, ...] = field(default=())
    completed: Stats = field(default_factory=dict)
    """Pilots that left the queue since the last cycle, by (entry, frontend), from their reports."""
    refusals: frozenset[str] = frozenset()
    """This cycle's refused requests with their reasons (`refusal_lines`): the next cycle logs only new ones."""
    totals: Stats = field(default_factory=dict)
    """The running completed-pilot totals after this cycle."""
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds spent observing, deciding, acting and accounting."""
    health: HealthMemory = field(default_factory=HealthMemory)
    """The entry health memory after this cycle: the running service hands it to the next one."""

    @classmethod
    def of(
        cls,
        plan: FactoryPlan | None,
        view: FactoryView,
        acted: Acted,
        problems: list[str],
        timings: Mapping[str, float],
    ) -> CycleResult:
        """The cycle's numbers; each problem listed once, in the order met."""
        results = acted.results
        return cls(
            plan,
            view,
            sum(r.submitted for r in results),
            sum(r.removed for r in results),
            sum(r.released for r in results),
            tuple(dict.fromkeys([*problems, *acted.problems])),
            acted.accounting.new,
            refusal_lines(plan),
            acted.accounting.totals,
            {**timings, **acted.timings},
        )

    def facts(self, now: float, cycle: int, in_downtime: frozenset[str]) -> CycleFacts:
        """What monitoring shows of this cycle."""
        pilots = self.view.pilots or ()
        cloud = self.plan.cloud if self.plan is not None else CloudPlan()
        return CycleFacts(now, cycle, pilots, self.plan, in_downtime, self.totals, self.problems, self.timings, cloud)

    @property
    def failure(self) -> str | None:
        """Why the cycle could not do its job (the queue unknown), in one line; None when it could."""
        if self.plan is not None:
            return None
        return f"the pilot queue could not be read: {self.view.problems[0] if self.view.problems else 'unknown'}"


def refusal_lines(plan: FactoryPlan | None) -> frozenset[str]:
    """Each refused request with its reason, as logged."""
    if plan is None:
        return frozenset()
    return frozenset(_line(r) for r in plan.rejected)


MAX_REFUSALS_LISTED = 5
"""Up to this many new refusals a cycle are logged one per line; more are summarised in one line."""


def log_rejections(plan: FactoryPlan, already_logged: frozenset[str] = frozenset()) -> None:
    """Who was refused and why, once: a request refused again for the same reason is not logged again
    (it is still counted in every cycle's monitoring). Many new refusals in one cycle (a flood of bad
    ads) make one line: counts per kind of reason and per frontend, and a few examples."""
    new = [r for r in plan.rejected if _line(r) not in already_logged]
    if len(new) <= MAX_REFUSALS_LISTED:
        for line in sorted({_line(r) for r in new}):
            log.warning("request refused: %s", line)
        return
    pairs = [(r.request.frontend, r.reason) for r in new]
    log.warning("%s", summarise("requests refused (new this cycle)", pairs, sorted(_line(r) for r in new)))


def _line(rejection: Rejection) -> str:
    r = rejection.request
    return f"{r.frontend}.{r.group} for {r.entry}: {rejection.reason}"
