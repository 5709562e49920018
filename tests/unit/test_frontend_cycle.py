"""The frontend's whole cycle on in-memory daemons (`updraft.fakes`): observe, decide, publish, report.

The fakes evaluate the frontend's real constraints with the ClassAd library;
a port marked unreachable fails the way a real one does when its deadline
passes. The lab tests prove the same against real daemons.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from updraft import protocol
from updraft.fakes import FakeCollector, FakeSchedd
from updraft.frontend.config import FrontendConfig, load_frontend_config
from updraft.frontend.ports import FrontendPorts, fake_ports
from updraft.frontend.service import FrontendService, run_cycle

from .conftest import ConfigTree, Snapshots

NOW = 1_800_000_000.0
FRONTEND = """\
    name: test-vo
    vo_collector: 127.0.0.1:29618
    wms_collector: 127.0.0.1:29619
    work_dir: {work}
    cycle_seconds: 1
    schedds: [vo-schedd@lab]
    factories:
      test-factory:
        identity: factory@lab
    groups:
      main:
        job_constraint: "JobUniverse == 5"
        match_expr: "true"
"""


@pytest.fixture
def config(tree: ConfigTree, tmp_path: Path) -> FrontendConfig:
    return load_frontend_config(tree.frontend(main=FRONTEND.format(work=tmp_path / "work"))).config


def entry_ad(name: str = "site1") -> dict[str, Any]:
    """An entry as the factory advertises it, AuthenticatedIdentity added by the collector."""
    return {
        "MyType": protocol.ENTRY_TYPE,
        "Name": protocol.entry_ad_name(name, "test-factory"),
        "UpdraftSchema": protocol.SCHEMA,
        protocol.IDENTITY: "factory@lab",
        protocol.E_FACTORY: "test-factory",
        protocol.E_ENTRY: name,
        protocol.E_CPUS: 1,
        protocol.E_MAX_PILOTS: 100,
        protocol.E_MAX_IDLE: 10,
        "GLIDEIN_Site": "Site1",
    }


def idle_jobs(count: int) -> list[dict[str, Any]]:
    return [
        {
            "ClusterId": 1,
            "ProcId": n,
            "JobStatus": 1,
            "JobUniverse": 5,
            "RequestCpus": 1,
            "RequestMemory": 1024,
            "EnteredCurrentStatus": int(NOW) - 30,
        }
        for n in range(count)
    ]


def daemons(
    config: FrontendConfig, **unreachable: bool
) -> tuple[FrontendPorts, FakeCollector, FakeCollector, FakeSchedd]:
    ports, vo, wms = fake_ports(config, **unreachable)
    schedd = FakeSchedd("vo-schedd@lab", jobs=idle_jobs(5))
    vo.schedds[schedd.name] = schedd
    wms.ads.append(entry_ad())
    return ports, vo, wms, schedd


def requests_in(wms: FakeCollector) -> list[dict[str, Any]]:
    return [ad for ad in wms.ads if ad["MyType"] == protocol.REQUEST_TYPE]


def test_idle_jobs_become_a_published_request_and_a_withdrawn_entry_its_withdrawal(config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(config)
    result = run_cycle(config, Snapshots(), 1, NOW, releases={}, ports=ports)
    assert result.published and result.problems == ()
    [published] = requests_in(wms)
    assert published[protocol.R_ENTRY] == "site1" and published[protocol.R_IDLE] > 0
    # the entry goes away: the next cycle withdraws what it no longer asks for, from what it observed
    wms.ads = [ad for ad in wms.ads if ad["MyType"] != protocol.ENTRY_TYPE]
    second = run_cycle(config, Snapshots(), 2, NOW + 1, releases={}, ports=ports)
    assert second.published and requests_in(wms) == []
    assert wms.calls.count("invalidating ads in") == 1


def test_a_silent_vo_pool_is_reported_and_never_read_as_no_jobs(config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(config, vo_unreachable=True)
    reporter = Snapshots()
    result = run_cycle(config, reporter, 1, NOW, releases={}, ports=ports)
    assert any("no answer" in problem for problem in result.problems)
    assert "main" in {group for p in result.plan.problems for group in p.groups}
    assert all(ad[protocol.R_REMOVE] == "none" for ad in requests_in(wms)), "unknown jobs never remove pilots"
    assert len(reporter.seen) == 1


def test_a_silent_wms_collector_means_nothing_published_and_the_cycle_ends(config: FrontendConfig) -> None:
    ports, _vo, _wms, _ = daemons(config, wms_unreachable=True)
    result = run_cycle(config, Snapshots(), 1, NOW, releases={}, ports=ports)
    assert not result.published
    assert any("no answer" in problem for problem in result.problems)


def test_the_service_cycles_through_silence_and_withdraws_its_requests_on_stop(config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(config, vo_unreachable=True)
    service = FrontendService(Path("unused.yaml"), config, connect_ports=lambda _: ports)
    timer = threading.Timer(1.5, service.signals.stop)
    timer.start()
    try:
        cycles = service.run(max_cycles=5)
    finally:
        timer.cancel()
    assert cycles >= 2, "a silent pool is a problem of each cycle, not the end of the service"
    assert "advertising to" in wms.calls
    assert requests_in(wms) == [], "a clean stop withdraws every request"
    assert not service.pid_path.exists()
