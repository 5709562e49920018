"""`updraft lab demo`: the whole system on the lab, from queued jobs to retired pilots.

observe -> report, around services that do the real work: the demo starts
`updraft factory run` and `updraft frontend run` as an operator would,
queues its workload in the VO schedds, then only watches (the queues, the
request ads) and prints progress until every runnable job has finished and
the pilots are gone. It stops what it started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import htcondor2
import yaml

from updraft import pilot_ad, protocol
from updraft.condor import Collector, Schedd, use_client_config
from updraft.errors import CondorError, LabError
from updraft.factory.decide import EXCESS_IDLE
from updraft.factory.observe import pilot_constraint
from updraft.lab import cloud, slurm
from updraft.lab.control import load_state, runtime_from_state
from updraft.lab.labconfig import (
    FACTORY_NAME,
    FRONTEND_NAME,
    factory_config,
    frontend_config,
    lab_entries,
    write_component_configs,
)
from updraft.lab.runtime import Runtime
from updraft.lab.topology import Topology
from updraft.lab.vmhost import Hypervisor
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
from updraft.monitoring.writers.xml_status import summary_file
from updraft.pilot_ad import JobStatus

PILOT_PROJECTION = [pilot_ad.ENTRY, pilot_ad.JOB_STATUS]
DEMO_LIFETIMES: Mapping[str, int] = {"idle_tail_seconds": 40, "max_idle_seconds": 60}
"""The demo's pilots leave sooner than the lab's (LAB_GLIDEIN): the run ends only when the last pilot
has, and the HPC entry's pilots and the two-node pilot take turns on the same nodes. All the jobs are
queued at once, so a pilot between two jobs waits one negotiation (up to 20 s: the VO pool keeps
HTCondor's cycle delay), within the tail. The tail stays long enough for the factory to remove the
pilots still queued at a site once the jobs are done: a shorter one lets one of them start there and
sit out its minute with nothing to run."""
PILOT_STATES: Mapping[int, str] = {JobStatus.IDLE: "idle", JobStatus.RUNNING: "running", JobStatus.HELD: "held"}


@dataclass
class Services:
    """The factory and frontend processes, each logging to its own file."""

    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    argvs: dict[str, list[str]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UPDRAFT_", "CONDOR_"))}
        with open(log, "ab") as out:
            self.processes[name] = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.logs[name] = log
        self.argvs[name] = argv

    def kill(self, name: str) -> None:
        """SIGKILL: no cycle finished, nothing withdrawn, the pid file left behind (a crash)."""
        process = self.processes[name]
        process.kill()
        process.wait()

    def restart(self, name: str) -> None:
        self.start(name, self.argvs[name], self.logs[name])

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


def start_services(topology: Topology, configs: Mapping[str, Path], log_dir: Path | None = None) -> Services:
    """`updraft -v factory run` and `updraft -v frontend run`, as an operator starts them."""
    services = Services()
    logs = log_dir or topology.work_dir / "demo"
    for component in ("factory", "frontend"):
        log = logs / f"{component}.log"
        if log.exists():  # the previous run's log is kept, once; this run's starts empty
            log.replace(log.with_suffix(".log.1"))
        services.start(component, [updraft_command(), "-v", component, "run", "--config", str(configs[component])], log)
    return services


def demo_configs(topology: Topology, folder: Path) -> dict[str, Path]:
    """The configs `lab env` writes, with the demo's pilot lifetimes, as factory.yaml and
    frontend.yaml in `folder`; the glidein and the pilots' pool config installed as `lab env` does."""
    write_component_configs(topology)
    configs = {"factory": factory_config(topology), "frontend": frontend_config(topology)}
    for entry in configs["factory"]["entries"].values():
        entry["glidein"] = {**entry["glidein"], **DEMO_LIFETIMES}
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, config in configs.items():
        paths[name] = folder / f"{name}.yaml"
        header = f"# Written by `updraft lab demo`: the lab's {name} config, the demo's pilot lifetimes.\n"
        paths[name].write_text(header + yaml.safe_dump(config, sort_keys=False))
    return paths


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


def factory_schedd(topology: Topology) -> Schedd:
    return Collector(topology.wms.collector).schedd(topology.factory.schedd)


LAB_PILOTS = pilot_constraint(FACTORY_NAME)
"""The lab factory's pilots, by the factory's own definition."""


def pilots_per_entry(topology: Topology) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for ad in factory_schedd(topology).query(LAB_PILOTS, PILOT_PROJECTION):
        state = PILOT_STATES.get(int(ad.get(pilot_ad.JOB_STATUS, 0)))
        if state:
            counts.setdefault(str(ad.get(pilot_ad.ENTRY)), Counter())[state] += 1
    return counts


def requests_now(topology: Topology) -> dict[str, tuple[int, int]]:
    """What the frontend asks of each entry now, from its request ads: (idle pilots, most pilots)."""
    ads = Collector(topology.wms.collector).generic_ads(
        protocol.REQUEST_TYPE,
        f'{protocol.R_FRONTEND} == "{FRONTEND_NAME}"',
        [protocol.R_ENTRY, protocol.R_IDLE, protocol.R_MAX],
    )
    return {str(ad[protocol.R_ENTRY]): (int(ad.get(protocol.R_IDLE, 0)), int(ad.get(protocol.R_MAX, 0))) for ad in ads}


def entry_pilots(topology: Topology) -> list[EntryPilots]:
    """Requests are read before pilots, so a pilot seen here was asked for by a request seen now or earlier."""
    asked = requests_now(topology)
    pilots = pilots_per_entry(topology)
    rows = []
    for entry in lab_entries(topology):
        states = pilots.get(entry, Counter())
        idle, most = asked.get(entry, (0, 0))
        rows.append(EntryPilots(entry, idle, states["idle"], states["running"], states["held"], most))
    return rows


@dataclass(frozen=True)
class Sample:
    elapsed: float
    jobs: JobsProgress
    entries: tuple[EntryPilots, ...]


@dataclass
class Watch:
    """Every refresh the demo saw, for its summary and for the end-to-end tests."""

    started: float
    samples: list[Sample] = field(default_factory=list)

    @property
    def jobs(self) -> JobsProgress:
        return self.samples[-1].jobs

    @property
    def first_running_pilot(self) -> float | None:
        """Seconds from submission to the first pilot seen running."""
        return next((s.elapsed for s in self.samples if any(e.running for e in s.entries)), None)

    def most(self, entry: str, what: Callable[[EntryPilots], int]) -> int:
        return max((what(e) for s in self.samples for e in s.entries if e.entry == entry), default=0)

    def pilots_beyond_ask(self) -> list[str]:
        """Moments an entry held more pilots than the most the frontend had asked for until then."""
        allowed: dict[str, int] = {}
        found = []
        for sample in self.samples:
            for e in sample.entries:
                allowed[e.entry] = max(allowed.get(e.entry, 0), e.requested_max)
                if e.pilots > allowed[e.entry]:
                    found.append(
                        f"{sample.elapsed:.0f} s: {e.entry} had {e.pilots} pilots, asked at most {allowed[e.entry]}"
                    )
        return found


def watch(
    topology: Topology,
    services: Services,
    since: float,
    timeout: float,
    echo: Callable[[str], None],
    hypervisor: Hypervisor,
    interval: float = 2.0,
) -> Watch:
    """Prints progress until every runnable job is done and no pilot is left, or `timeout`; meanwhile
    `hypervisor` boots the cloud entry's new instances and powers off the ones whose pilot retired."""
    seen = Watch(started=time.monotonic())
    deadline = seen.started + timeout
    while True:
        services.check_alive()
        hypervisor.step()
        now = time.monotonic()
        try:
            entries = tuple(entry_pilots(topology))
            jobs = jobs_progress(demo_jobs(topology, since))
        except CondorError as err:
            echo(f"[{now - seen.started:5.0f}s] (a daemon did not answer: {err})")
        else:
            seen.samples.append(Sample(now - seen.started, jobs, entries))
            echo(progress_line(now - seen.started, jobs, entries))
            if jobs.runnable_finished() and not any(e.pilots for e in entries):
                return seen
        if now > deadline:
            raise LabError(f"the demo did not finish within {timeout:.0f} s; logs in {topology.work_dir / 'demo'}")
        time.sleep(interval)


def factory_cycle(topology: Topology) -> int:
    """The factory's last reported cycle, from its XML status file (0 before the first)."""
    path = topology.work_dir / "factory" / "monitoring" / "xml" / summary_file("factory", FACTORY_NAME)
    try:
        return int(ET.parse(path).getroot().get("cycle", 0))
    except (OSError, ET.ParseError, ValueError):
        return 0


def wait_for_factory_cycles(topology: Topology, services: Services, cycles: int, timeout: float = 90.0) -> None:
    """Until the factory has finished `cycles` more cycles: a pilot that left the queue during
    the current one is accounted (its report read, its jobs counted) in the next."""
    target = factory_cycle(topology) + cycles
    deadline = time.monotonic() + timeout
    while factory_cycle(topology) < target:
        services.check_alive()
        if time.monotonic() > deadline:
            raise LabError(f"the factory finished no cycle in {timeout:.0f} s; see {services.logs['factory']}")
        time.sleep(1.0)


def explain_unmatched(config: Path) -> str:
    """What `updraft frontend explain --unmatched` says, exactly as an admin would run it."""
    done = subprocess.run(
        [updraft_command(), "frontend", "explain", "--unmatched", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise LabError(f"frontend explain --unmatched failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


PILOT_HISTORY_PROJECTION = [pilot_ad.ENTRY, pilot_ad.JOB_STATUS, pilot_ad.Q_DATE, "RemoveReason", pilot_ad.GRID_JOB_ID]


def demo_pilots(topology: Topology, since: float) -> list[dict[str, Any]]:
    """The factory's pilots submitted since `since`: still queued, or in its history with how they ended."""
    schedd = factory_schedd(topology)
    constraint = f"{LAB_PILOTS} && {pilot_ad.Q_DATE} >= {int(since)}"
    return [*schedd.query(constraint, PILOT_HISTORY_PROJECTION), *schedd.history(constraint, PILOT_HISTORY_PROJECTION)]


def tracebacks(logs: Iterable[Path]) -> list[str]:
    """Service logs holding a Python traceback: a bug, whatever else happened."""
    return [
        str(log)
        for log in logs
        if log.is_file() and "Traceback (most recent call last)" in log.read_text(errors="replace")
    ]


LOG_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*)$")


def repeated_in_a_cycle(lines: Iterable[str]) -> list[str]:
    """Warnings and errors said twice between two "cycle N:" lines: an outage flooding the log.

    Messages compare by logger and the text before their first colon, so
    the same complaint with a different error text still counts as a repeat.
    """
    repeated: list[str] = []
    seen: Counter[tuple[str, str]] = Counter()
    for line in lines:
        found = LOG_LINE.match(line)
        if not found:
            continue
        if found["message"].startswith("cycle "):
            seen.clear()
        elif found["level"] in ("WARNING", "ERROR"):
            key = (found["logger"], found["message"].split(":")[0])
            seen[key] += 1
            if seen[key] == 2:
                repeated.append(line)
    return repeated


@dataclass(frozen=True)
class DemoRun:
    """What one run of the workload left to look at."""

    since: float
    """Wall-clock time just before the jobs were queued."""
    watch: Watch
    unmatched: str
    """`updraft frontend explain --unmatched`, taken while the unmatched jobs were still idle."""
    jobs: list[dict[str, Any]]
    pilots: list[dict[str, Any]]
    configs: Mapping[str, Path]
    logs: Mapping[str, Path]
    vm_exits: Mapping[str, int]
    """Instance id -> how its stand-in VM's bootstrap exited (the pilot retired: 0)."""
    instances: list[cloud.Instance]
    """The lab factory's instances launched since the jobs were queued, as the EC2 API lists them."""


def remove_demo_jobs(topology: Topology, reason: str) -> dict[str, CondorError]:
    """Remove the demo's jobs from every user schedd; the schedds that refused, with why."""
    vo = Collector(topology.vo.collector)
    failed = {}
    for name in topology.user_schedds:
        try:
            vo.schedd(name).remove(f"{WORKLOAD_ATTR} =!= undefined", reason)
        except CondorError as err:
            failed[name] = err
    return failed


def clear_leftovers(topology: Topology, echo: Callable[[str], None], timeout: float = 60.0) -> None:
    """Remove what an earlier run left (an interrupted demo, a lab kept with KEEP=1): its pilots
    would count as this run's. A pilot whose CE no longer answers is forced out after half the time."""
    failed = remove_demo_jobs(topology, "a new demo run starts")
    if failed:
        raise next(iter(failed.values()))
    schedd = factory_schedd(topology)
    left = schedd.query(LAB_PILOTS, ["ClusterId", "ProcId"])
    if not left:
        return
    echo(f"removing {len(left)} pilots an earlier run left in the factory's queue")
    schedd.remove(LAB_PILOTS, "a new demo run starts")
    deadline, forced = time.monotonic() + timeout, False
    while left := schedd.query(LAB_PILOTS, ["ClusterId", "ProcId"]):
        if time.monotonic() > deadline:
            raise LabError(f"{len(left)} old pilots are still in {topology.factory.schedd_name} after {timeout:.0f} s")
        if not forced and time.monotonic() > deadline - timeout / 2:
            schedd.act_on_jobs(
                htcondor2.JobAction.RemoveX,
                [f"{a['ClusterId']}.{a['ProcId']}" for a in left],
                "a new demo run starts; the CE did not confirm the removal",
            )
            forced = True
        time.sleep(2.0)


def run_workload(topology: Topology, echo: Callable[[str], None], timeout: float = 900.0) -> DemoRun:
    """Services up, workload in, progress until done, then services down and the demo's jobs removed."""
    use_client_config(topology.client_config)
    clear_leftovers(topology, echo)
    configs = demo_configs(topology, topology.work_dir / "demo")
    since = time.time() - 1
    hypervisor = Hypervisor(topology, _runtime(topology))
    services = start_services(topology, configs)
    try:
        clusters = submit_workload(topology)
        echo(
            f"queued {sum(s.count for s in DEMO_WORKLOAD)} jobs in {len(clusters)} shapes: "
            + ", ".join(
                f"{s.count} x {s.name} ({s.cpus} cpu, {s.memory_mb} MB, {'/'.join(s.sites)})" for s in DEMO_WORKLOAD
            )
        )
        seen = watch(topology, services, since, timeout, echo, hypervisor)
        wait_for_factory_cycles(topology, services, 2)  # the last pilots' reports get accounted
        unmatched = explain_unmatched(configs["frontend"])
        return DemoRun(
            since,
            seen,
            unmatched,
            demo_jobs(topology, since),
            demo_pilots(topology, since),
            configs,
            dict(services.logs),
            dict(hypervisor.exits),
            cloud.launched_since(topology, since, UpdraftFactory=FACTORY_NAME),
        )
    finally:
        hypervisor.stop()
        services.stop()
        for name, err in remove_demo_jobs(topology, "demo over").items():
            echo(f"(demo jobs left in {name}: {err})")


def pilot_ending(pilot: Mapping[str, Any]) -> str:
    """How a pilot left: on its own, or removed (and why); anything else is still queued."""
    status = int(pilot.get(pilot_ad.JOB_STATUS, 0))
    if status == JobStatus.COMPLETED:
        return "retired on their own"
    if status == JobStatus.REMOVED:
        reason = str(pilot.get("RemoveReason", ""))
        return "removed unstarted, no longer needed" if EXCESS_IDLE in reason else f"removed: {reason}"
    return "still queued"


def _pilot_line(entry: str, run: DemoRun) -> str:
    mine = [p for p in run.pilots if p.get(pilot_ad.ENTRY) == entry]
    ended = Counter(pilot_ending(p) for p in mine)
    how = ", ".join(f"{n} {state}" for state, n in sorted(ended.items()))
    seen = run.watch
    return (
        f"{entry}: {len(mine)} pilots submitted ({how or 'none'}); at most {seen.most(entry, lambda e: e.pilots)} "
        f"at once; the frontend asked for at most {seen.most(entry, lambda e: e.requested_idle)} idle "
        f"and {seen.most(entry, lambda e: e.requested_max)} in all"
    )


def _slurm_lines(topology: Topology, run: DemoRun) -> list[str]:
    """The HPC site's pilots as Slurm itself recorded them (jobcomp), since the demo started."""
    ended = [r for r in slurm.completions(topology).values() if r.get("StartTime", "") >= _slurm_time(run.since)]
    states = Counter(r.get("JobState", "?") for r in ended)
    nodes = Counter(int(r.get("NodeCnt", "0") or 0) for r in ended if r.get("JobState") == "COMPLETED")
    shown = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none"
    wide = ", ".join(f"{n} on {count} node{'s' if count > 1 else ''}" for count, n in sorted(nodes.items()))
    return [
        f"Slurm ({topology.hpc.name}): {len(ended)} pilot jobs ended ({shown})"
        + (f"; completed: {wide}" if wide else "")
    ]


def _cloud_lines(topology: Topology, run: DemoRun) -> list[str]:
    """The cloud entry's instances as the EC2 API recorded them, and how their stand-in VMs ended."""
    states = Counter(cloud.state(i) for i in run.instances)
    shown = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none"
    booted = Counter(
        "bootstrap exit 0" if status == 0 else f"bootstrap exit {status}" for status in run.vm_exits.values()
    )
    ends = ", ".join(f"{n} {how}" for how, n in sorted(booted.items())) or "none booted"
    return [f"EC2 API ({topology.cloud.name}): {len(run.instances)} instances started ({shown}); VMs: {ends}"]


def _runtime(topology: Topology) -> Runtime:
    state = load_state(topology.base_dir)
    if state is None:
        raise LabError(f"no lab in {topology.base_dir}: run `updraft lab up` first")
    return runtime_from_state(state)


def _slurm_time(epoch: float) -> str:
    """jobcomp's timestamps (local time, ISO without zone), for comparing as text."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


def summary(topology: Topology, run: DemoRun) -> list[str]:
    seen, jobs = run.watch, run.watch.jobs
    first = seen.first_running_pilot
    runnable = sum(s.count for s in DEMO_WORKLOAD if s.runnable)
    lines = [
        f"first pilot running {first:.0f} s after the jobs were queued" if first is not None else "no pilot ever ran",
        f"jobs completed on pilots of a site they accept: {jobs.done_on_pilots}/{runnable}"
        + (f" ({jobs.done_elsewhere} elsewhere)" if jobs.done_elsewhere else ""),
        *(_pilot_line(entry, run) for entry in lab_entries(topology)),
        *_slurm_lines(topology, run),
        *_cloud_lines(topology, run),
    ]
    beyond = seen.pilots_beyond_ask()
    lines.append(
        "the factory never held more pilots than the frontend allowed"
        if not beyond
        else "MORE PILOTS THAN ASKED: " + "; ".join(beyond)
    )
    for shape in DEMO_WORKLOAD:
        if not shape.runnable:
            idle = jobs.by_shape.get(shape.name, {}).get("idle", 0)
            lines.append(f"{shape.name}: {idle} jobs still idle; `updraft frontend explain --unmatched` says:")
    lines.extend(f"    {line}" for line in run.unmatched.splitlines())
    broken = tracebacks(run.logs.values())
    lines.append(f"tracebacks in {', '.join(broken)}" if broken else "no traceback in the service logs")
    monitoring = topology.work_dir / "factory" / "monitoring"
    lines += [
        "",
        "where to look next:",
        f"  status pages   file://{monitoring}/html/index.html and "
        f"{topology.work_dir / 'frontend/monitoring/html/index.html'}",
        f"  XML            {monitoring / 'xml'}",
        f"  RRD            {monitoring / 'rrd'}",
        f"  service logs   {', '.join(str(log) for log in run.logs.values())}",
        f"  configs        {run.configs['factory']}, {run.configs['frontend']}",
    ]
    if topology.influx_config.is_file():
        lines.append(
            f"  InfluxDB       {topology.influx_url}, database updraft: Grafana with etc/grafana/ "
            f"(UPDRAFT_INFLUXDB_URL={topology.influx_url} UPDRAFT_INFLUXDB_BUCKET=updraft)"
        )
    return lines


def run_demo(topology: Topology, echo: Callable[[str], None], timeout: float = 900.0) -> list[str]:
    """The workload from queued jobs to retired pilots; returns the summary lines."""
    return summary(topology, run_workload(topology, echo, timeout))
