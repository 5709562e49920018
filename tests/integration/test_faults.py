"""Faults while the factory and frontend run as services, the way a site sees them.

Layers: the lab's configs -> `updraft factory run` and `updraft frontend run`
started once for the module, logging at INFO -> per test, a few user jobs
and one fault (a CE stopped, the WMS collector stopped, the frontend killed,
InfluxDB stopped, each daemon kind the services talk to frozen with
SIGSTOP) -> assertions on the pilots, the jobs, the ads and the services'
logs, then the fault is undone.

(`kill -9` of the factory mid-cycle is in test_factory.py, next to the
factory's other tests; repeated kills of both services are test_soak.py.)
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


def _daemon_pid(lab: Topology, instance: str, binary: str) -> int:
    """One daemon of a lab instance (condor_collector, condor_schedd), a child of the instance's master."""
    master = int((lab.instance_dir(lab.instance(instance)) / "run" / "master.pid").read_text().split()[0])
    (pid,) = [
        c
        for c in _children(master)
        if Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")[0].endswith(binary.encode())
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


@dataclass(frozen=True)
class Frozen:
    """A daemon kind to SIGSTOP, and who must notice."""

    instance: str
    binary: str
    services: tuple[str, ...]
    """The services (and their `once` and `plan`) that talk to it."""

    def name(self, lab: Topology) -> str:
        """How the services' messages name the daemon."""
        if self.binary == "condor_collector":
            return lab.instance(self.instance).collector
        return lab.instance(self.instance).schedd


FROZEN = {
    "wms-collector": Frozen("wms", "condor_collector", ("factory", "frontend")),
    "vo-collector": Frozen("vo", "condor_collector", ("frontend",)),
    "user-schedd": Frozen("submit2", "condor_schedd", ("frontend",)),
    "factory-schedd": Frozen("factory", "condor_schedd", ("factory",)),
}
ONCE_DEADLINE = 3  # query_timeout_seconds of the `once` and `plan` runs beside the services
COMMAND_BOUND = 15  # seconds: starting Python and the bindings, one missed deadline, a loaded machine
CYCLE_GAP_BOUND = CYCLE + 10 + 8  # a cycle's sleep, one missed deadline (the lab's 10 s), a margin


def _commands_against(fleet: Fleet, frozen: Frozen, folder: Path) -> dict[str, float]:
    """`once` and `plan` of each service that talks to the frozen daemon: each bounded, each naming it."""
    took: dict[str, float] = {}
    name = frozen.name(fleet.lab)
    for service in frozen.services:
        config = _once_config(fleet.lab, service, folder)
        for command in ("once", "plan"):
            started = time.monotonic()
            done = subprocess.run(
                [UPDRAFT, service, command, "--config", str(config)],
                capture_output=True,
                text=True,
                timeout=60,
                env={k: v for k, v in os.environ.items() if not k.startswith(("UPDRAFT_", "CONDOR_"))},
            )
            took[f"{service} {command}"] = time.monotonic() - started
            said = done.stdout + done.stderr
            if command == "once":  # an unreadable collector or queue fails the cycle; a user schedd is one problem
                assert done.returncode == (0 if frozen.binary == "condor_schedd" and service == "frontend" else 1), said
            assert done.returncode in (0, 1), f"{service} {command}: {said}"
            assert "Traceback" not in said, said
            assert took[f"{service} {command}"] < COMMAND_BOUND, f"{service} {command} took {took} s: {said}"
            silent = [
                line for line in said.splitlines() if name in line and f"no answer within {ONCE_DEADLINE} s" in line
            ]
            assert silent, f"{service} {command} did not say {name} was silent:\n{said}"
    return took


def _freeze(fleet: Fleet, kind: str, folder: Path) -> dict[str, float]:
    """SIGSTOP one daemon: the commands and two cycles of each service that uses it finish within a bound and
    name it; after SIGCONT each service has a cycle without problems. Returns the durations measured."""
    frozen = FROZEN[kind]
    name = frozen.name(fleet.lab)
    pid = _daemon_pid(fleet.lab, frozen.instance, frozen.binary)
    logged_from = fleet.log_size()
    os.kill(pid, signal.SIGSTOP)
    try:
        took = _commands_against(fleet, frozen, folder)

        def cycles_logged() -> dict[str, list[float]]:
            return {s: _cycle_times(fleet.log_since(s, logged_from[s])) for s in frozen.services}

        # the cycle ending second started after the freeze: the gap to it is a frozen cycle and its sleep
        wait_for(lambda: all(len(times) >= 2 for times in cycles_logged().values()), 3 * CYCLE_GAP_BOUND)
        fleet.services.check_alive()
        for service, times in cycles_logged().items():
            gaps = [b - a for a, b in itertools.pairwise(times)]
            took[f"{service} cycle (longest gap)"] = max(gaps)
            assert max(gaps) < CYCLE_GAP_BOUND, f"the {service}'s cycles were {gaps} s apart"
            lines = fleet.log_since(service, logged_from[service])
            assert any(name in line and "no answer within" in line for line in lines), (
                f"the {service} never said {name} was silent"
            )
            assert repeated_in_a_cycle(lines) == [], f"the {service} repeated itself within a cycle"
    finally:
        os.kill(pid, signal.SIGCONT)
    thawed = fleet.log_size()
    for service in frozen.services:
        wait_for(
            lambda service=service: any(
                line.endswith(" 0 problems") for line in fleet.log_since(service, thawed[service])
            ),
            4 * CYCLE,
        )
    print(f"frozen {kind}: " + ", ".join(f"{what} {seconds:.1f} s" for what, seconds in took.items()))
    return took


def test_a_frozen_wms_collector_costs_each_cycle_one_deadline_and_removes_nothing(fleet: Fleet, tmp_path: Path) -> None:
    """SIGSTOP: the collector's socket still accepts connections, and nothing ever answers them."""
    fleet.submit("fault-frozen", 3, ("Site1",), 40)
    wait_for(lambda: len(fleet.pilots('UpdraftEntry == "site1"')) >= 2, 90)
    before = time.time()
    _freeze(fleet, "wms-collector", tmp_path)
    assert fleet.removed_pilots_since(before) == [], "the frozen collector made the factory remove pilots"
    wait_for(lambda: any(r[protocol.R_ENTRY] == "site1" for r in fleet.requests()), 4 * CYCLE)


@pytest.mark.parametrize("kind", ["vo-collector", "user-schedd", "factory-schedd"])
def test_a_frozen_daemon_costs_each_cycle_one_deadline(fleet: Fleet, kind: str, tmp_path: Path) -> None:
    """The VO collector, a user schedd and the factory schedd, each SIGSTOPped in turn, as the WMS collector."""
    _freeze(fleet, kind, tmp_path)


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
