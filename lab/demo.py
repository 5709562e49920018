"""`updraft lab demo`: the whole system on the lab, from queued jobs to retired pilots.

observe -> report, around services that do the real work: the demo starts
`updraft factory run` and `updraft frontend run` as an operator would,
queues its workload in the VO schedds, then only watches (the queues, the
request ads) and prints progress until every runnable job has finished and
the pilots are gone. It stops what it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from updraft import protocol
from updraft.condor import Collector, use_client_config
from updraft.errors import CondorError, LabError
from updraft.lab.labconfig import FACTORY_NAME, FRONTEND_NAME, write_component_configs
from updraft.lab.topology import Topology
from updraft.lab.workload import (
    DEMO_WORKLOAD,
    JOB_PROJECTION,
    WORKLOAD_ATTR,
    EntryPilots,
    JobsProgress,
    jobs_progress,
    progress_line,
    submit_description,
)

PILOT_PROJECTION = ["UpdraftEntry", "JobStatus"]
PILOT_STATES = {1: "idle", 2: "running", 5: "held"}


@dataclass
class Services:
    """The factory and frontend processes, each logging to its own file."""

    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UPDRAFT_", "CONDOR_"))}
        with open(log, "ab") as out:
            self.processes[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                                    start_new_session=True)
        self.logs[name] = log

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise LabError(f"the {name} exited with {process.returncode}; see {self.logs[name]}")

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM: each finishes its cycle and withdraws its ads; SIGKILL after `grace`."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def updraft_command() -> str:
    return str(Path(sys.executable).parent / "updraft")


def start_services(topology: Topology, configs: Mapping[str, Path]) -> Services:
    services = Services()
    logs = topology.work_dir / "demo"
    for component in ("factory", "frontend"):
        services.start(component, [updraft_command(), component, "run", "--config", str(configs[component])],
                       logs / f"{component}.log")
    return services


def submit_workload(topology: Topology) -> dict[str, int]:
    """Each shape as one cluster, alternating between the two user schedds; cluster id by shape."""
    log = topology.work_dir / "demo" / "jobs.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    vo = Collector(topology.vo.collector)
    clusters = {}
    for index, shape in enumerate(DEMO_WORKLOAD):
        schedd = vo.schedd(topology.user_schedds[index % len(topology.user_schedds)])
        clusters[shape.name] = schedd.submit(submit_description(shape, log), count=shape.count)
    return clusters


def demo_jobs(topology: Topology, since: float) -> list[dict[str, Any]]:
    """The demo's jobs in the queues and, once finished, in the histories."""
    constraint = f"{WORKLOAD_ATTR} =!= undefined && QDate >= {int(since)}"
    vo = Collector(topology.vo.collector)
    ads: list[dict[str, Any]] = []
    for name in topology.user_schedds:
        schedd = vo.schedd(name)
        ads.extend(schedd.query(constraint, JOB_PROJECTION))
        ads.extend(schedd.history(constraint, JOB_PROJECTION))
    return ads


def pilots_per_entry(topology: Topology) -> dict[str, Counter[str]]:
    schedd = Collector(topology.wms.collector).schedd(topology.factory.schedd_name)
    counts: dict[str, Counter[str]] = {}
    for ad in schedd.query(f'UpdraftFactory =?= "{FACTORY_NAME}"', PILOT_PROJECTION):
        state = PILOT_STATES.get(int(ad.get("JobStatus", 0)))
        if state:
            counts.setdefault(str(ad.get("UpdraftEntry")), Counter())[state] += 1
    return counts


def requested_idle(topology: Topology) -> dict[str, int]:
    """What the frontend asks of each entry now (the request ads' idle pilots), by entry name."""
    ads = Collector(topology.wms.collector).generic_ads(
        protocol.REQUEST_TYPE, f'{protocol.R_FRONTEND} == "{FRONTEND_NAME}"', [protocol.R_ENTRY, protocol.R_IDLE])
    return {str(ad[protocol.R_ENTRY]): int(ad.get(protocol.R_IDLE, 0)) for ad in ads}


def entry_pilots(topology: Topology) -> list[EntryPilots]:
    pilots, asked = pilots_per_entry(topology), requested_idle(topology)
    rows = []
    for site in topology.sites:
        states = pilots.get(site.name, Counter())
        rows.append(EntryPilots(site.name, asked.get(site.name, 0), states["idle"], states["running"], states["held"]))
    return rows


@dataclass
class Watch:
    """What the demo saw over the run, for its summary."""

    started: float
    first_running_pilot: float | None = None
    most_requested: dict[str, int] = field(default_factory=dict)
    most_pilots: dict[str, int] = field(default_factory=dict)
    jobs: JobsProgress | None = None

    def see(self, now: float, jobs: JobsProgress, entries: Iterable[EntryPilots]) -> None:
        self.jobs = jobs
        for e in entries:
            if e.running and self.first_running_pilot is None:
                self.first_running_pilot = now
            self.most_requested[e.entry] = max(self.most_requested.get(e.entry, 0), e.requested_idle)
            self.most_pilots[e.entry] = max(self.most_pilots.get(e.entry, 0), e.idle + e.running + e.held)


def watch(topology: Topology, services: Services, since: float, timeout: float,
          echo: Callable[[str], None], interval: float = 5.0) -> Watch:
    """Prints progress until every runnable job is done and no pilot is left, or `timeout`."""
    seen = Watch(started=time.monotonic())
    deadline = seen.started + timeout
    while True:
        services.check_alive()
        now = time.monotonic()
        try:
            jobs, entries = jobs_progress(demo_jobs(topology, since)), entry_pilots(topology)
        except CondorError as err:
            echo(f"[{now - seen.started:5.0f}s] (a daemon did not answer: {err})")
        else:
            seen.see(now, jobs, entries)
            echo(progress_line(now - seen.started, jobs, entries))
            if jobs.runnable_finished() and not any(e.idle + e.running + e.held for e in entries):
                return seen
        if now > deadline:
            raise LabError(f"the demo did not finish within {timeout:.0f} s; logs in {topology.work_dir / 'demo'}")
        time.sleep(interval)


def summary(topology: Topology, seen: Watch, configs: Mapping[str, Path]) -> list[str]:
    jobs = seen.jobs
    assert jobs is not None
    first = f"{seen.first_running_pilot - seen.started:.0f} s" if seen.first_running_pilot else "never"
    runnable = sum(s.count for s in DEMO_WORKLOAD if s.runnable)
    lines = [
        f"first pilot running after {first}",
        f"jobs completed on pilots of a site they accept: {jobs.done_on_pilots}/{runnable}"
        + (f" ({jobs.done_elsewhere} elsewhere)" if jobs.done_elsewhere else ""),
    ]
    for site in topology.sites:
        lines.append(f"{site.name}: at most {seen.most_pilots.get(site.name, 0)} pilots at once, "
                     f"{seen.most_requested.get(site.name, 0)} idle requested at most")
    for shape in DEMO_WORKLOAD:
        if not shape.runnable:
            idle = jobs.by_shape.get(shape.name, {}).get("idle", 0)
            lines.append(f"{shape.name}: {idle} jobs still idle: they ask for {shape.cpus} cores and every lab entry "
                         f"offers 2 (GLIDEIN_CPUS), so the frontend matches them to no entry and asks for nothing")
    monitoring = topology.work_dir / "factory" / "monitoring"
    lines += [
        "",
        "where to look next:",
        f"  status pages   file://{monitoring}/html/index.html and {topology.work_dir / 'frontend/monitoring/html/index.html'}",
        f"  XML            {monitoring / 'xml'}",
        f"  RRD            {monitoring / 'rrd'}",
        f"  service logs   {topology.work_dir / 'demo'}",
        f"  configs        {configs['factory']}, {configs['frontend']}",
    ]
    if topology.influx_config.is_file():
        lines.append(f"  InfluxDB       {topology.influx_url}, database updraft: Grafana with etc/grafana/ "
                     f"(UPDRAFT_INFLUXDB_URL={topology.influx_url} UPDRAFT_INFLUXDB_BUCKET=updraft)")
    return lines


def run_demo(topology: Topology, echo: Callable[[str], None], timeout: float = 900.0) -> list[str]:
    """Services up, workload in, progress until done, services down; returns the summary lines."""
    use_client_config(topology.client_config)
    configs = write_component_configs(topology)
    since = time.time() - 1
    services = start_services(topology, configs)
    try:
        clusters = submit_workload(topology)
        echo(f"queued {sum(s.count for s in DEMO_WORKLOAD)} jobs in {len(clusters)} shapes: "
             + ", ".join(f"{s.count} x {s.name} ({s.cpus} cpu, {s.memory_mb} MB, {'/'.join(s.sites)})"
                         for s in DEMO_WORKLOAD))
        seen = watch(topology, services, since, timeout, echo)
        return summary(topology, seen, configs)
    finally:
        services.stop()
        vo = Collector(topology.vo.collector)
        for name in topology.user_schedds:
            try:
                vo.schedd(name).remove(f"{WORKLOAD_ATTR} =!= undefined", "demo over")
            except CondorError as err:
                echo(f"(demo jobs left in {name}: {err})")
