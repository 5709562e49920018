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


def our_idle_pilot() -> dict[str, Any]:
    """A slot of one of our pilots on site1, free for a job."""
    return {"MyType": "Machine", "Name": "slot1@glidein_1", "IS_GLIDEIN": True, "GLIDEIN_Entry_Name": "site1",
            "GLIDEIN_Factory": "test-factory", "GLIDECLIENT_Name": "test-vo", "GLIDECLIENT_Group": "main",
            "State": "Unclaimed", "Activity": "Idle", "Cpus": 1, "Memory": 2048}  # fmt: skip


def daemons(
    config: FrontendConfig, *, schedd_unreachable: bool = False, with_pilot: bool = True, **unreachable: bool
) -> tuple[FrontendPorts, FakeCollector, FakeCollector, FakeSchedd]:
    ports, vo, wms = fake_ports(config, **unreachable)
    schedd = FakeSchedd("vo-schedd@lab", jobs=idle_jobs(5), unreachable=schedd_unreachable)
    vo.schedds[schedd.name] = schedd
    if with_pilot:
        vo.ads.append(our_idle_pilot())
    wms.ads.append(entry_ad())
    return ports, vo, wms, schedd


def requests_in(wms: FakeCollector) -> list[dict[str, Any]]:
    return [ad for ad in wms.ads if ad["MyType"] == protocol.REQUEST_TYPE]


def test_idle_jobs_become_a_published_request_and_a_withdrawn_entry_its_withdrawal(config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(config, with_pilot=False)
    result = run_cycle(config, Snapshots(), 1, NOW, releases={}, ports=ports)
    assert result.published and result.problems == () and result.failure is None
    [published] = requests_in(wms)
    assert published[protocol.R_ENTRY] == "site1" and published[protocol.R_IDLE] > 0
    # the entry goes away: the next cycle withdraws what it no longer asks for, from what it observed
    wms.ads = [ad for ad in wms.ads if ad["MyType"] != protocol.ENTRY_TYPE]
    second = run_cycle(config, Snapshots(), 2, NOW + 1, releases={}, ports=ports)
    assert second.published and requests_in(wms) == []
    assert wms.calls.count("invalidating ads in") == 1


def test_an_ignored_entry_ad_is_a_problem_but_not_a_failed_cycle(config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(config)
    wms.ads.append({**entry_ad("site2"), protocol.IDENTITY: "mallory@lab"})
    result = run_cycle(config, Snapshots(), 1, NOW, releases={}, ports=ports)
    assert any("mallory@lab" in problem for problem in result.problems)
    assert result.failure is None and [ad[protocol.R_ENTRY] for ad in requests_in(wms)] == ["site1"]


def test_a_silent_schedd_never_reads_as_no_jobs(config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(config, schedd_unreachable=True)
    result = run_cycle(config, Snapshots(), 1, NOW, releases={}, ports=ports)
    assert any("no answer" in problem for problem in result.problems)
    assert result.failure is None, "one schedd is a problem of its groups, not of the cycle"
    [request] = requests_in(wms)
    assert request[protocol.R_IDLE] == 0, "no jobs known: no new pilots asked for"
    assert request[protocol.R_REMOVE] == "none", "unknown jobs never remove the idle pilot"


def test_a_silent_vo_pool_fails_the_cycle_and_publishes_no_guess(config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(config, vo_unreachable=True)
    reporter = Snapshots()
    result = run_cycle(config, reporter, 1, NOW, releases={}, ports=ports)
    assert result.failure is not None and "no answer" in result.failure
    assert not result.published and requests_in(wms) == []
    assert len(reporter.seen) == 1, "a failed cycle is still reported"


def test_a_silent_wms_collector_means_nothing_published_and_the_cycle_ends(config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(config, wms_unreachable=True)
    result = run_cycle(config, Snapshots(), 1, NOW, releases={}, ports=ports)
    assert not result.published
    assert result.failure is not None and "no answer" in result.failure
    assert "advertising to" not in wms.calls


def test_the_service_cycles_through_silence_and_withdraws_its_requests_on_stop(config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(config, schedd_unreachable=True)
    service = FrontendService(Path("unused.yaml"), config, connect_ports=lambda _: ports)
    timer = threading.Timer(1.5, service.signals.stop)
    timer.start()
    try:
        cycles = service.run(max_cycles=5)
    finally:
        timer.cancel()
    assert cycles >= 2, "a silent schedd is a problem of each cycle, not the end of the service"
    assert wms.calls.count("advertising to") == cycles, "each cycle published its request"
    assert requests_in(wms) == [], "a clean stop withdraws every request"
    assert not service.pid_path.exists()
