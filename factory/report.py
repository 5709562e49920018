"""What a factory cycle tells its operator besides monitoring: refused requests, once each."""

from __future__ import annotations

import logging

from updraft.factory.model import FactoryPlan

log = logging.getLogger(__name__)


def refusal_lines(plan: FactoryPlan | None) -> frozenset[str]:
    """Each refused request with its reason, as logged."""
    if plan is None:
        return frozenset()
    return frozenset(f"{r.request.frontend}.{r.request.group} for {r.request.entry}: {r.reason}" for r in plan.rejected)


def log_rejections(plan: FactoryPlan, already_logged: frozenset[str] = frozenset()) -> None:
    """Who was refused and why, once: a request refused again for the same reason is not logged again
    (it is still counted in every cycle's monitoring)."""
    for line in sorted(refusal_lines(plan) - already_logged):
        log.warning("request refused: %s", line)
