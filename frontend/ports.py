"""The frontend's ports for one cycle: the VO pool's collector (its schedds located there) and the WMS collector."""

from __future__ import annotations

from dataclasses import dataclass

from updraft.condor import CallBudget, Collector
from updraft.fakes import FakeCollector
from updraft.frontend.config import FrontendConfig
from updraft.ports import CollectorPort


@dataclass(frozen=True)
class FrontendPorts:
    """Everything a frontend cycle reads from or sends to HTCondor."""

    vo: CollectorPort
    """The VO pool's collector: pilot slots, and where the user schedds are."""
    wms: CollectorPort
    """Where factories advertise their entries and this frontend publishes its requests."""


def connect(config: FrontendConfig) -> FrontendPorts:
    """Real ports for one cycle, sharing one budget: a daemon that misses a deadline is not asked again."""
    budget = CallBudget(config.query_timeout_seconds)
    return FrontendPorts(Collector(config.vo_collector, budget=budget), Collector(config.wms_collector, budget=budget))


def fake_ports(
    config: FrontendConfig, *, vo_unreachable: bool = False, wms_unreachable: bool = False
) -> tuple[FrontendPorts, FakeCollector, FakeCollector]:
    """Ports on in-memory collectors at the addresses `config` names, and the fakes behind them (for tests)."""
    vo = FakeCollector(config.vo_collector, unreachable=vo_unreachable)
    wms = FakeCollector(config.wms_collector, unreachable=wms_unreachable)
    return FrontendPorts(vo, wms), vo, wms
