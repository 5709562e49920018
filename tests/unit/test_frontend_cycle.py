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
from updraft.frontend.service import FrontendService, plan_cycle, run_cycle

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
        old_idle_seconds: 86400  # the jobs stay young through the hold tests' hours
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
        protocol.E_MAX_PILOTS: 40,
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


def test_idle_jobs_become_a_published_request(config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(config, with_pilot=False)
    result = run_cycle(config, Snapshots(), 1, NOW, releases={}, ports=ports)
    assert result.published and result.problems == () and result.failure is None
    [published] = requests_in(wms)
    assert published[protocol.R_ENTRY] == "site1" and published[protocol.R_IDLE] > 0
    assert protocol.R_HELD_SINCE not in published, "a request computed from complete data is not a kept one"


def asked(wms: FakeCollector) -> dict[str, tuple[int, int, str, Any]]:
    """Per entry: what the published request asks (idle, max, remove mode) and since when it is kept."""
    return {
        ad[protocol.R_ENTRY]: (
            ad[protocol.R_IDLE],
            ad[protocol.R_MAX],
            ad[protocol.R_REMOVE],
            ad.get(protocol.R_HELD_SINCE),
        )
        for ad in requests_in(wms)
    }


def test_vanished_entry_ads_keep_the_last_request_then_withdraw_it(config: FrontendConfig) -> None:
    """The red team's case: entry ads deleted from the WMS collector must not read as "no entry, no demand"."""
    ports, _vo, wms, _ = daemons(config)
    run_cycle(config, Snapshots(), 1, NOW, releases={}, ports=ports)
    good = asked(wms)
    assert good == {"site1": (2, 40, "none", None)}, "5 jobs, 1 usable idle pilot: 4 needed, a third of it asked"
    wms.ads = [ad for ad in wms.ads if ad["MyType"] != protocol.ENTRY_TYPE]
    for cycle, now in ((2, NOW + 60), (3, NOW + 120)):
        result = run_cycle(config, Snapshots(), cycle, now, releases={}, ports=ports)
        assert result.published and result.failure is None
        assert asked(wms) == {"site1": (2, 40, "none", int(NOW))}, "not lowered, no removal, since the good cycle"
        [decision] = result.plan.decisions
        assert decision.held_since == NOW and decision.remove.value == "none"
        assert any(note.startswith("kept the last good request (idle 2, max 40): entry no longer advertised")
                   for note in decision.notes), decision.notes  # fmt: skip
    late = NOW + config.hold_last_request_seconds + 1
    result = run_cycle(config, Snapshots(), 4, late, releases={}, ports=ports)
    assert requests_in(wms) == [], "older than the limit: withdrawn (the factory then submits and removes nothing)"
    assert result.plan.decisions[0].withdrawn
    assert any("longer ago than hold_last_request_seconds" in note for note in result.plan.decisions[0].notes)
    wms.ads.append(entry_ad())
    run_cycle(config, Snapshots(), 5, late + 60, releases={}, ports=ports)
    assert asked(wms) == {"site1": (2, 40, "none", None)}, "data back: computed as before"


def test_entry_ads_back_before_the_limit_end_the_hold(config: FrontendConfig) -> None:
    ports, _vo, wms, schedd = daemons(config)
    run_cycle(config, Snapshots(), 1, NOW, releases={}, ports=ports)
    wms.ads = [ad for ad in wms.ads if ad["MyType"] != protocol.ENTRY_TYPE]
    run_cycle(config, Snapshots(), 2, NOW + 60, releases={}, ports=ports)
    wms.ads.append(entry_ad())
    schedd.jobs = []  # the jobs finished meanwhile: with the data back, the request falls and removal resumes
    result = run_cycle(config, Snapshots(), 3, NOW + 120, releases={}, ports=ports)
    assert asked(wms) == {"site1": (0, 40, "idle", None)}
    assert result.plan.decisions[0].held_since is None


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
    assert request[protocol.R_IDLE] == 0, "no jobs known and no request to keep: no new pilots asked for"
    assert request[protocol.R_REMOVE] == "none", "unknown jobs never remove the idle pilot"


def test_a_schedd_gone_silent_keeps_the_last_request_as_its_floor(config: FrontendConfig) -> None:
    ports, _vo, wms, schedd = daemons(config)
    run_cycle(config, Snapshots(), 1, NOW, releases={}, ports=ports)
    schedd.unreachable = True
    result = run_cycle(config, Snapshots(), 2, NOW + 60, releases={}, ports=ports)
    assert result.failure is None
    assert asked(wms) == {"site1": (2, 40, "none", int(NOW))}
    assert "removal disabled: schedd vo-schedd@lab unreachable" in result.plan.decisions[0].notes
    result = run_cycle(config, Snapshots(), 3, NOW + config.hold_last_request_seconds + 1, releases={}, ports=ports)
    assert asked(wms) == {"site1": (0, 40, "none", int(NOW))}, (
        "past the limit: only the jobs seen count (none here), still nothing removed"
    )
    schedd.unreachable = False
    run_cycle(config, Snapshots(), 4, NOW + 2000, releases={}, ports=ports)
    assert asked(wms) == {"site1": (2, 40, "none", None)}


def test_a_silent_vo_pool_fails_the_cycle_and_publishes_no_guess(config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(config, vo_unreachable=True)
    reporter = Snapshots()
    result = run_cycle(config, reporter, 1, NOW, releases={}, ports=ports)
    assert result.failure is not None and "no answer" in result.failure
    assert requests_in(wms) == [], "no request to keep, and none computed without the pilots"
    assert len(reporter.seen) == 1, "a failed cycle is still reported"


def test_a_vo_pool_gone_silent_keeps_the_last_requests(config: FrontendConfig) -> None:
    ports, vo, wms, _ = daemons(config)
    run_cycle(config, Snapshots(), 1, NOW, releases={}, ports=ports)
    vo.unreachable = True
    result = run_cycle(config, Snapshots(), 2, NOW + 60, releases={}, ports=ports)
    assert result.failure is not None and "no answer" in result.failure, "`once` still says the cycle was blind"
    assert result.published and asked(wms) == {"site1": (2, 40, "none", int(NOW))}
    assert any("pilot slots unreadable" in note for note in result.plan.decisions[0].notes)
    vo.unreachable = False
    run_cycle(config, Snapshots(), 3, NOW + 120, releases={}, ports=ports)
    assert asked(wms) == {"site1": (2, 40, "none", None)}


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


def quick_feedback(tree: ConfigTree, work: Path) -> FrontendConfig:
    text = FRONTEND.format(work=work) + "        idle_feedback: {cycles: 2, min_seconds: 60, hold_seconds: 3600}\n"
    return load_frontend_config(tree.frontend(main=text)).config


def three_refused_cycles(service: FrontendService, wms: FakeCollector) -> list[tuple[list[int], int]]:
    """Three cycles of 5 idle jobs next to an idle pilot they fit: per cycle, the streaks' lengths and the request."""
    seen = []
    for number in (1, 2, 3):
        service.cycle(number, NOW + 60 * number)
        assert service.feedback is not None
        seen.append(([s.cycles for s in service.feedback.streaks], asked(wms)["site1"][0]))
    return seen


def test_the_service_carries_what_idle_pilots_taught_from_cycle_to_cycle_and_across_a_restart(
    tree: ConfigTree, tmp_path: Path
) -> None:
    config = quick_feedback(tree, tmp_path / "work")
    ports, _vo, wms, _ = daemons(config)
    service = FrontendService(Path("unused.yaml"), config, connect_ports=lambda _: ports)
    seen = three_refused_cycles(service, wms)
    assert [streaks for streaks, _ in seen] == [[1], [2], [3]], "the memory went from cycle to cycle"
    assert seen[0][1] > 0 and seen[1][1] > 0, "pilots are asked for while the streak builds"
    assert seen[2][1] == 0, "the third cycle no longer counts the refused jobs on site1"
    assert asked(wms)["site1"][2] == "idle", "and the refusing idle pilot goes"

    planned, _ = plan_cycle(config, NOW + 240, ports)  # what `plan` and `explain` compute: the work_dir's memory
    [site1] = [d for d in planned.decisions if d.entry.name == "site1"]
    assert site1.inputs.refused_idle_jobs == 5 and any("5 idle jobs of 1 shape not counted" in n for n in site1.notes)

    restarted = FrontendService(Path("unused.yaml"), config, connect_ports=lambda _: ports)
    restarted.cycle(1, NOW + 240)
    assert asked(wms)["site1"][0] == 0, "a restarted frontend remembers from its work_dir"
    assert restarted.feedback is not None and [s.cycles for s in restarted.feedback.streaks] == [4]


def test_the_service_carries_the_memory_in_hand_when_its_work_dir_cannot_keep_it(
    tree: ConfigTree, tmp_path: Path
) -> None:
    (tmp_path / "work").write_text("a file, not a directory: nothing can be saved under it")
    config = quick_feedback(tree, tmp_path / "work")
    ports, _vo, wms, _ = daemons(config)
    service = FrontendService(Path("unused.yaml"), config, connect_ports=lambda _: ports)
    seen = three_refused_cycles(service, wms)
    assert [streaks for streaks, _ in seen] == [[1], [2], [3]] and seen[2][1] == 0
