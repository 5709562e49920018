"""The factory's ports for one cycle: the WMS collector, and its schedd located there once."""

from __future__ import annotations

from dataclasses import dataclass

from updraft.condor import CallBudget, Collector
from updraft.factory.config import FactoryConfig
from updraft.fakes import FakeCollector, FakeSchedd
from updraft.ports import CollectorPort, LocatedSchedd


@dataclass(frozen=True)
class FactoryPorts:
    """Everything a factory cycle reads from or sends to HTCondor."""

    wms: CollectorPort
    schedd: LocatedSchedd
    """The factory's own schedd, where its pilots queue."""

    @classmethod
    def through(cls, wms: CollectorPort, schedd: str) -> FactoryPorts:
        """Ports for one cycle on `wms`, the schedd `schedd` located there at first use."""
        return cls(wms, LocatedSchedd(wms, schedd))


def connect(config: FactoryConfig) -> FactoryPorts:
    """Real ports for one cycle, sharing one budget: a daemon that misses a deadline is not asked again."""
    wms = Collector(config.wms_collector, budget=CallBudget(config.query_timeout_seconds))
    return FactoryPorts.through(wms, config.schedd)


def fake_ports(
    config: FactoryConfig, now: float, *, collector_unreachable: bool = False, schedd_unreachable: bool = False
) -> tuple[FactoryPorts, FakeCollector, FakeSchedd]:
    """Ports on in-memory daemons named as `config` names them, and the fakes behind them (for tests).

    `now` is the time the fake schedd stamps on the pilots it queues."""
    schedd = FakeSchedd(config.schedd, unreachable=schedd_unreachable, now=now)
    wms = FakeCollector(config.wms_collector, schedds={config.schedd: schedd}, unreachable=collector_unreachable)
    return FactoryPorts.through(wms, config.schedd), wms, schedd
