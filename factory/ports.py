"""The factory's ports for one cycle: the WMS collector, its schedd located there once, and the EC2 API."""

from __future__ import annotations

from dataclasses import dataclass, field

from updraft.condor import CallBudget, Collector
from updraft.factory.cloudports import CloudPort, Ec2Api, FakeCloud
from updraft.factory.config import FactoryConfig
from updraft.fakes import FakeCollector, FakeSchedd
from updraft.ports import CollectorPort, LocatedSchedd


@dataclass(frozen=True)
class FactoryPorts:
    """Everything a factory cycle reads from or sends to HTCondor."""

    wms: CollectorPort
    schedd: LocatedSchedd
    """The factory's own schedd, where its pilots queue."""
    cloud: CloudPort = field(default_factory=lambda: Ec2Api(20.0))
    """The EC2 API its cloud entries' instances are listed and terminated through."""

    @classmethod
    def through(cls, wms: CollectorPort, schedd: str, cloud: CloudPort | None = None) -> FactoryPorts:
        """Ports for one cycle on `wms`, the schedd `schedd` located there at first use."""
        located = LocatedSchedd(wms, schedd)
        return cls(wms, located) if cloud is None else cls(wms, located, cloud)


def connect(config: FactoryConfig) -> FactoryPorts:
    """Real ports for one cycle, sharing one budget: a daemon that misses a deadline is not asked again."""
    wms = Collector(config.wms_collector, budget=CallBudget(config.query_timeout_seconds))
    return FactoryPorts.through(wms, config.schedd, Ec2Api(config.query_timeout_seconds))


def fake_ports(
    config: FactoryConfig, now: float, *, collector_unreachable: bool = False, schedd_unreachable: bool = False
) -> tuple[FactoryPorts, FakeCollector, FakeSchedd]:
    """Ports on in-memory daemons named as `config` names them, and the fakes behind them (for tests).

    `now` is the time the fake schedd stamps on the pilots it queues. The EC2 API is an empty
    `FakeCloud`; a test with cloud instances builds its ports with `FactoryPorts.through`."""
    schedd = FakeSchedd(config.schedd, unreachable=schedd_unreachable, now=now)
    wms = FakeCollector(config.wms_collector, schedds={config.schedd: schedd}, unreachable=collector_unreachable)
    return FactoryPorts.through(wms, config.schedd, FakeCloud()), wms, schedd
