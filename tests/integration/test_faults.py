"""Faults while the factory and frontend run as services, the way a site sees them.

Layers: the lab's configs -> `updraft factory run` and `updraft frontend run`
started once for the module, logging at INFO -> per test, a few user jobs
and one fault (a CE stopped, the WMS collector stopped, the frontend killed,
InfluxDB stopped) -> assertions on the pilots, the jobs, the ads and the
services' logs, then the fault is undone.

(`kill -9` of the factory mid-cycle is in test_factory.py, next to the
factory's other tests.)
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from updraft import protocol
from updraft.condor import Collector
from updraft.lab import control
from updraft.lab.demo import (
    LAB_PILOTS,
    LOG_LINE,
    Services,
    factory_schedd,
    remove_demo_jobs,
    repeated_in_a_cycle,
    start_services,
    tracebacks,
)
from updraft.lab.labconfig import (
    FACTORY_NAME,
    FRONTEND_NAME,
    factory_config,
    frontend_config,
    write_component_configs,
)
from updraft.lab.runtime import Runtime
from updraft.lab.topology import Topology
from updraft.lab.tsdb import answers, influxql
from updraft.lab.workload import WORKLOAD_ATTR, Shape, submit_description
from updraft.monitoring.writers.xml_status import summary_file

from .jobs import wait_for

CYCLE = 10  # both lab services' cycle_seconds
UPDRAFT = str(Path(sys.executable).parent / "updraft")


@dataclass
class Fleet:
    """The running services and the lab they work on."""

    lab: Topology
    runtime: Runtime
    services: Services

    @property
    def factory_schedd(self):
        return factory_schedd(self.lab)

    def pilots(self, extra: str = "true") -> list[dict]:
        return self.factory_schedd.query(
            f"{LAB_PILOTS} && ({extra})", ["ClusterId", "ProcId", "UpdraftEntry", "JobStatus"]
        )

    def removed_pilots_since(self, since: float) -> list[dict]:
        return self.factory_schedd.history(
            f"{LAB_PILOTS} && JobStatus == 3 && EnteredCurrentStatus >= {int(since)}",
            ["ClusterId", "ProcId", "RemoveReason"],
        )

    def requests(self) -> list[dict]:
        return Collector(self.lab.wms.collector).generic_ads(
            protocol.REQUEST_TYPE,
            f'{protocol.R_FRONTEND} == "{FRONTEND_NAME}"',
            [protocol.R_ENTRY, protocol.R_GROUP, protocol.R_IDLE, protocol.R_MAX, protocol.R_TIME],
        )

    def submit(self, name: str, count: int, sites: tuple[str, ...], seconds: int) -> None:
        shape = Shape(name, count, 1, 256, sites, seconds)
        log = self.lab.work_dir / "faults" / "jobs.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        Collector(self.lab.vo.collector).schedd(self.lab.vo.schedd_name).submit(
            submit_description(shape, log), count=count
        )

    def jobs(self, name: str) -> list[dict]:
        schedd = Collector(self.lab.vo.collector).schedd(self.lab.vo.schedd_name)
        constraint = f'{WORKLOAD_ATTR} == "{name}"'
        projection = ["JobStatus", "MachineAttrGLIDEIN_Site0", "MachineAttrIS_GLIDEIN0"]
        return [*schedd.query(constraint, projection), *schedd.history(constraint, projection)]

    def log_size(self) -> dict[str, int]:
        return {name: log.stat().st_size for name, log in self.services.logs.items()}

    def log_since(self, name: str, offset: int) -> list[str]:
        with open(self.services.logs[name], "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace").splitlines()


@pytest.fixture(scope="module")
def fleet(lab: Topology, lab_runtime: Runtime) -> Iterator[Fleet]:
    configs = write_component_configs(lab)
    services = start_services(lab, configs, lab.work_dir / "faults")
    try:
        yield Fleet(lab, lab_runtime, services)
    finally:
        services.stop()


@pytest.fixture(autouse=True)
def calm(fleet: Fleet) -> Iterator[None]:
    """Each fault starts with the services alive and ends with its jobs and pilots gone."""
    fleet.services.check_alive()
    yield
    fleet.services.check_alive()
    assert remove_demo_jobs(fleet.lab, "fault test done") == {}
    # The services keep running: until the frontend has said it wants no more pilots, a factory cycle
    # may still submit for the jobs just removed. So wait for that, and remove what is left on every poll.
    wait_for(lambda: all(r[protocol.R_IDLE] == 0 for r in fleet.requests()), 4 * CYCLE)
    wait_for(lambda: not _remove_live_pilots(fleet), 120, interval=5)


def _remove_live_pilots(fleet: Fleet) -> list[dict]:
    """Remove the pilots not removed yet; those still in the queue (removed ones leave once their CE confirms)."""
    fleet.factory_schedd.remove(f"{LAB_PILOTS} && JobStatus != 3", "fault test done")
    return fleet.pilots()


def test_a_stopped_ce_keeps_its_pilots_back_and_jobs_flow_to_the_other_site(fleet: Fleet) -> None:
    control.stop_instance(fleet.lab, "site2")
    try:
        fleet.submit("fault-anywhere", 4, ("Site1", "Site2"), 5)
        fleet.submit("fault-site2", 2, ("Site2",), 5)
        wait_for(lambda: all(j["JobStatus"] == 4 for j in fleet.jobs("fault-anywhere")), 240, interval=3)
        assert {j.get("MachineAttrGLIDEIN_Site0") for j in fleet.jobs("fault-anywhere")} == {"Site1"}
        assert [j["JobStatus"] for j in fleet.jobs("fault-site2")] == [1, 1]
        stuck = fleet.pilots('UpdraftEntry == "site2"')
        assert stuck, "the frontend asked for site2 pilots and the factory submitted them"
        assert {p["JobStatus"] for p in stuck} <= {1, 5}, "no site2 pilot can run while its CE is down"
        fleet.services.check_alive()
    finally:
        control.start_instance(fleet.lab, fleet.runtime, "site2")


def test_a_stopped_wms_collector_is_waited_out_and_nothing_is_removed(fleet: Fleet) -> None:
    fleet.submit("fault-wms", 4, ("Site1",), 40)
    wait_for(lambda: len(fleet.pilots('UpdraftEntry == "site1"')) >= 2, 90)
    before, logged_from = time.time(), fleet.log_size()
    control.stop_instance(fleet.lab, "wms")
    try:
        time.sleep(3 * CYCLE)
        fleet.services.check_alive()
    finally:
        control.start_instance(fleet.lab, fleet.runtime, "wms")
    # Catching up: both republish within a cycle or two, and the work gets done.
    wait_for(lambda: any(r[protocol.R_ENTRY] == "site1" for r in fleet.requests()), 4 * CYCLE)
    wait_for(
        lambda: Collector(fleet.lab.wms.collector).generic_ads(
            protocol.ENTRY_TYPE, f'{protocol.E_FACTORY} == "{FACTORY_NAME}"'
        ),
        4 * CYCLE,
    )
    wait_for(lambda: all(j["JobStatus"] == 4 for j in fleet.jobs("fault-wms")), 240, interval=3)
    assert fleet.removed_pilots_since(before) == [], "the outage made the factory remove pilots"
    for name in ("factory", "frontend"):
        lines = fleet.log_since(name, logged_from[name])
        outage = [line for line in lines if fleet.lab.wms.collector in line or "unreadable" in line]
        assert outage, f"the {name} never said it lost the WMS collector"
        assert repeated_in_a_cycle(lines) == [], f"the {name} repeated itself within a cycle"


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _collector_pid(lab: Topology) -> int:
    """The WMS instance's condor_collector, a child of its master."""
    master = int((lab.instance_dir(lab.instance("wms")) / "run" / "master.pid").read_text().split()[0])
    (pid,) = [
        c
        for c in _children(master)
        if Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")[0].endswith(b"condor_collector")
    ]
    return pid


def _once_config(lab: Topology, component: str, folder: Path) -> Path:
    """The lab's config for `component` with a 3 s deadline and its own files, for a `once` beside the services."""
    config = factory_config(lab) if component == "factory" else frontend_config(lab)
    config.update(
        query_timeout_seconds=3,
        work_dir=str(folder / component),
        monitoring={"dir": str(folder / component / "monitoring"), "writers": {"json": {}}},
    )
    config.pop("staging", None)
    path = folder / f"{component}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _cycle_times(lines: list[str]) -> list[float]:
    """When each "cycle N:" line was logged."""
    return [
        datetime.strptime(" ".join(line.split()[:2]), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for line in lines
        if (found := LOG_LINE.match(line)) and found["message"].startswith("cycle ")
    ]


def test_a_frozen_wms_collector_costs_each_cycle_one_deadline_and_removes_nothing(fleet: Fleet, tmp_path: Path) -> None:
    """SIGSTOP: the collector's socket still accepts connections, and nothing ever answers them."""
    fleet.submit("fault-frozen", 3, ("Site1",), 40)
    wait_for(lambda: len(fleet.pilots('UpdraftEntry == "site1"')) >= 2, 90)
    configs = {name: _once_config(fleet.lab, name, tmp_path) for name in ("factory", "frontend")}
    pid = _collector_pid(fleet.lab)
    before, logged_from = time.time(), fleet.log_size()
    os.kill(pid, signal.SIGSTOP)
    try:
        for name, path in configs.items():
            started = time.monotonic()
            done = subprocess.run(
                [UPDRAFT, name, "once", "--config", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
                env={k: v for k, v in os.environ.items() if not k.startswith(("UPDRAFT_", "CONDOR_"))},
            )
            took = time.monotonic() - started
            assert done.returncode == 1, f"{name} once: {done.stdout}{done.stderr}"
            assert took < 15, f"{name} once took {took:.1f} s against a frozen collector"
            errors = [line for line in done.stderr.splitlines() if line.startswith("updraft: error: ")]
            assert len(errors) == 1 and "no answer within 3 s" in errors[0], done.stderr
            assert "Traceback" not in done.stderr

        def cycles_logged() -> dict[str, list[float]]:
            return {name: _cycle_times(fleet.log_since(name, logged_from[name])) for name in ("factory", "frontend")}

        # two cycles each while frozen: each lasts one missed deadline (the lab's 10 s), then sleeps a cycle
        wait_for(lambda: all(len(times) >= 2 for times in cycles_logged().values()), 4 * (CYCLE + 10))
        fleet.services.check_alive()
        for name, times in cycles_logged().items():
            gaps = [b - a for a, b in itertools.pairwise(times)]
            # a cycle, then one missed deadline (the lab's 10 s), then a margin for a loaded machine
            assert max(gaps) < CYCLE + 10 + 8, f"the {name}'s cycles were {gaps} s apart"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert fleet.removed_pilots_since(before) == [], "the frozen collector made the factory remove pilots"
    wait_for(lambda: any(r[protocol.R_ENTRY] == "site1" for r in fleet.requests()), 4 * CYCLE)
    for name in ("factory", "frontend"):
        lines = fleet.log_since(name, logged_from[name])
        assert any("no answer within" in line for line in lines), f"the {name} never said the collector was silent"
        assert repeated_in_a_cycle(lines) == [], f"the {name} repeated itself within a cycle"


def test_a_killed_frontend_leaves_its_last_ask_which_the_factory_does_not_exceed(fleet: Fleet) -> None:
    fleet.submit("fault-frontend", 6, ("Site1",), 30)
    wait_for(lambda: any(r[protocol.R_ENTRY] == "site1" and r[protocol.R_IDLE] for r in fleet.requests()), 4 * CYCLE)
    fleet.services.kill("frontend")
    killed = time.time()
    (last,) = [r for r in fleet.requests() if r[protocol.R_ENTRY] == "site1"]
    most = last[protocol.R_MAX]
    # The ad outlives the frontend for its lifetime; the factory keeps to it all along.
    deadline = killed + 4 * CYCLE
    while time.time() < deadline:
        count = len(fleet.pilots('UpdraftEntry == "site1"'))
        assert count <= most, f"{count} site1 pilots after the frontend died, its last ask allowed {most}"
        time.sleep(2)
    fleet.services.restart("frontend")
    replaced = wait_for(
        lambda: [r for r in fleet.requests() if r[protocol.R_ENTRY] == "site1" and r[protocol.R_TIME] > killed],
        4 * CYCLE,
    )
    assert len(replaced) == 1, "one request per (group, entry): the restarted frontend replaced the old ad"


def test_provisioning_goes_on_while_influxdb_is_down(fleet: Fleet) -> None:
    influx = fleet.lab.influx_url
    control.switch_daemon(fleet.lab, "factory", "INFLUXDB", on=False)
    try:
        wait_for(lambda: not answers(f"{influx}/ping"), 30)
        logged_from = fleet.log_size()
        xml = fleet.lab.work_dir / "factory" / "monitoring" / "xml" / summary_file("factory", FACTORY_NAME)
        written = xml.stat().st_mtime
        fleet.submit("fault-influx", 2, ("Site1",), 5)
        wait_for(lambda: all(j["JobStatus"] == 4 for j in fleet.jobs("fault-influx")), 240, interval=3)
        assert all(j.get("MachineAttrIS_GLIDEIN0") is True for j in fleet.jobs("fault-influx"))
        assert xml.stat().st_mtime > written, "the other writers kept writing"
        for name in ("factory", "frontend"):
            lines = fleet.log_since(name, logged_from[name])
            assert any("influxdb" in line.lower() for line in lines), f"the {name} never said InfluxDB failed"
            assert repeated_in_a_cycle(lines) == []
    finally:
        control.switch_daemon(fleet.lab, "factory", "INFLUXDB", on=True)
    back = time.time()
    wait_for(lambda: answers(f"{influx}/ping"), 60)
    wait_for(
        lambda: influxql(
            influx, f'SELECT last("problems") FROM "updraft_factory" WHERE time > {int(back)}s', database="updraft"
        )[0].get("series"),
        4 * CYCLE,
    )


def test_no_service_log_holds_a_traceback_after_the_faults(fleet: Fleet) -> None:
    fleet.services.check_alive()
    assert tracebacks(fleet.services.logs.values()) == []
