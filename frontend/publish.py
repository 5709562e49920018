"""Publish: one request ad per (group, entry) in the WMS collector.

Ads carry a lifetime of a few cycles, so the requests of a frontend that
died without withdrawing them expire on their own instead of keeping a
factory submitting for jobs nobody watches any more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import classad2

from updraft import protocol
from updraft.frontend.config import FrontendConfig
from updraft.frontend.model import Decision, Plan
from updraft.frontend.observe import ours
from updraft.ports import CollectorPort

LIFETIME_CYCLES = 3


def request_ad(
    decision: Decision, config: FrontendConfig, cycle: int, now: float, pilot: protocol.PilotParams | None = None
) -> dict[str, Any]:
    """The ad for one decision, in the schema of docs/protocol.md; `pilot`: what its pilots are told."""
    entry = decision.entry
    inputs = decision.inputs
    held = {} if decision.held_since is None else {protocol.R_HELD_SINCE: int(decision.held_since)}
    return {
        **held,
        **protocol.pilot_params_ad(pilot or protocol.PilotParams(collector=config.vo_collector)),
        "MyType": protocol.REQUEST_TYPE,
        "Name": protocol.request_ad_name(config.name, decision.group, entry.name, entry.factory),
        "UpdraftSchema": protocol.SCHEMA,
        "ClassAdLifetime": LIFETIME_CYCLES * config.cycle_seconds,
        protocol.R_FRONTEND: config.name,
        protocol.R_GROUP: decision.group,
        protocol.R_FACTORY: entry.factory,
        protocol.R_ENTRY: entry.name,
        protocol.R_SECURITY_CLASS: _security_class(config, entry.factory),
        protocol.R_IDLE: decision.idle,
        protocol.R_MAX: decision.max_pilots,
        protocol.R_REMOVE: decision.remove.value,
        protocol.R_REMOVE_MAX: decision.remove_max,
        protocol.R_BOUND_BY: ",".join(decision.bound_by),
        protocol.R_CYCLE: cycle,
        protocol.R_TIME: int(now),
        protocol.R_JOBS_IDLE: round(inputs.idle_jobs, 2),
        protocol.R_JOBS_OLD_IDLE: round(inputs.old_idle_jobs, 2),
        protocol.R_JOBS_RUNNING: round(inputs.running_jobs, 2),
        protocol.R_SLOTS_TOTAL: inputs.pilots,
        protocol.R_SLOTS_IDLE: inputs.idle_slots,
        protocol.R_SLOTS_RUNNING: inputs.running_slots,
        protocol.R_SLOTS_CORES: inputs.pilot_cores,
    }


def _security_class(config: FrontendConfig, factory: str) -> str:
    ref = config.factories.get(factory)
    return ref.security_class if ref is not None else "default"


def request_ads(
    plan: Plan, config: FrontendConfig, cycle: int, pilots: Mapping[str, protocol.PilotParams] | None = None
) -> list[dict[str, Any]]:
    """Every decision's ad but the withdrawn ones; `pilots` (per group, `updraft.frontend.stage.pilot_params`)
    defaults to the VO collector and no staging area."""
    return [
        request_ad(d, config, cycle, plan.now, (pilots or {}).get(d.group)) for d in plan.decisions if not d.withdrawn
    ]


@dataclass(frozen=True)
class Change:
    """How one request differs between what is published and what is planned."""

    group: str
    entry: str
    before: protocol.PublishedRequest | None
    after: dict[str, Any] | None

    def describe(self) -> str:
        def show(idle: Any, max_pilots: Any, remove: Any) -> str:
            return f"idle {idle}, max {max_pilots}, remove {remove}"

        old = show(self.before.idle, self.before.max_pilots, self.before.remove) if self.before else "not published"
        new = (
            show(self.after[protocol.R_IDLE], self.after[protocol.R_MAX], self.after[protocol.R_REMOVE])
            if self.after
            else "withdrawn"
        )
        marker = "=" if old == new else ("+" if self.before is None else "-" if self.after is None else "~")
        return f"{marker} {self.group:<12} {self.entry:<28} {old:<34} -> {new}"


def diff(published: Iterable[protocol.PublishedRequest], planned: Iterable[dict[str, Any]]) -> list[Change]:
    """Every (group, entry) either side knows, in a stable order."""
    before = {p.key: p for p in published}
    after = {
        (ad[protocol.R_GROUP], protocol.entry_ad_name(ad[protocol.R_ENTRY], ad[protocol.R_FACTORY])): ad
        for ad in planned
    }
    return [
        Change(group, entry, before.get((group, entry)), after.get((group, entry)))
        for group, entry in sorted(before.keys() | after.keys())
    ]


def publish(
    ads: list[dict[str, Any]],
    config: FrontendConfig,
    wms: CollectorPort,
    published: Iterable[protocol.PublishedRequest] | None,
) -> None:
    """Advertise the cycle's requests and withdraw those it no longer makes.

    `published` is what observe found in the collector; None (unknown) withdraws
    nothing: the stale ads then expire on their own after their lifetime.
    """
    wms.advertise(ads)
    names = {ad["Name"] for ad in ads}
    gone = [protocol.request_ad_name(config.name, r.group, r.entry, r.factory) for r in published or ()]
    for name in sorted(set(gone) - names):
        wms.invalidate(protocol.REQUEST_TYPE, f"Name == {classad2.quote(name)}")


def withdraw_all(config: FrontendConfig, wms: CollectorPort) -> None:
    """On clean shutdown: no request of ours outlives us."""
    wms.invalidate(protocol.REQUEST_TYPE, ours(config))
