"""Crash consistency by soak: SIGKILL the factory and the frontend, over and over, under a steady workload.

    .venv/bin/python bench/soak.py [--factory-kills 200] [--frontend-kills 100] [--seed 1] [--keep]
        [--lab-dir /var/tmp/updraft-lab-soakrun] [--base-port 30518]

Brings the lab up in its own folder (or reuses a running one there), starts
`updraft factory run` and `updraft frontend run` as services with 5 s
cycles and caps that bind (site1: the factory's own max_pilots; site2: the
frontend's max_running_per_entry), queues ten jobs every minute, and kills:

- the factory with SIGKILL, either at a random moment of its cycle or, for
  a share of the kills, right when a new pilot cluster appears in the
  factory schedd's queue (the factory is then in the middle of its
  submissions: it submits one pilot per cluster here; the queue is polled
  every 0.25 s, and an aim that sees no new cluster within two cycles
  becomes a random kill);
- the frontend with SIGKILL at random moments;

restarting each at once (and counting the kills after which a call the
service had started in a child process still ran). Every 2 s it samples the request ads and the
factory's queue. When the kills are done it lets the work finish, removes
the pilots left, waits for the factory to account for them and checks:

- live pilots (idle, running, held) of an entry never above the entry's
  max_pilots nor the largest maximum the frontend published for it;
- no pilot submitted twice for one request slot: the factory submits only up
  to the entry's max_idle idle pilots, so a submission repeated after a crash
  (the first one not seen by the restarted factory) shows as more idle pilots
  than max_idle. (Pilots carry no per-request stamp to compare.)
- every pilot in the factory schedd's queue and history since the start
  carries the factory's bookkeeping (entry, frontend, group) for a configured
  entry and the lab frontend, and every one that left the queue is counted
  exactly once in the factory's completed-pilot totals (its checkpoint was
  started at the soak's start, so the totals hold this run's pilots only);
- every job queued is completed.

Running totals print every minute and on Ctrl-C (SIGINT) or SIGTERM, which
also stop the services. Exit status 1 when an invariant failed. The lab is
taken down at the end unless --keep (a lab that was already running is left up).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import htcondor2
import yaml

from updraft import pilot_ad
from updraft.condor import Collector, use_client_config
from updraft.errors import CondorError, LabError
from updraft.factory import completed
from updraft.lab import control
from updraft.lab.demo import LAB_PILOTS, LOG_LINE, Services, factory_schedd, requests_now, start_services, tracebacks
from updraft.lab.labconfig import FRONTEND_NAME, factory_config, frontend_config, write_component_configs
from updraft.lab.runtime import choose_runtime
from updraft.lab.topology import Topology, build_topology
from updraft.lab.workload import WORKLOAD_ATTR, Shape, submit_description
from updraft.pilot_ad import JobStatus

LIVE = (JobStatus.IDLE, JobStatus.RUNNING, JobStatus.HELD)
ENTRY_LIMITS: Mapping[str, Mapping[str, int]] = {
    "site1": {"max_pilots": 2, "max_idle": 2, "max_held": 2},
    "site2": {"max_pilots": 20, "max_idle": 3, "max_held": 2},
}
"""site1's cap is the factory's own; site2's is the frontend's (FRONTEND_MAX_PER_ENTRY)."""
FRONTEND_MAX_PER_ENTRY = 4
PILOT_WALLTIME_SECONDS = 240
PILOT_LIFETIMES: Mapping[str, int] = {
    "max_idle_seconds": 30,
    "idle_tail_seconds": 20,
    "shutdown_margin_seconds": 30,
    "retire_spread_seconds": 10,
}
"""Short-lived pilots, so the factory keeps submitting replacements: more submissions to kill it in."""
BATCH: tuple[Shape, ...] = (
    Shape("site1", 4, 1, 256, ("Site1",), 40),
    Shape("site2", 4, 1, 256, ("Site2",), 40),
    Shape("any", 2, 1, 256, ("Site1", "Site2"), 20),
)
"""Queued every `batch_every_seconds`: more than the capped pilots can take at once, so the caps bind."""
PILOT_PROJECTION = [
    pilot_ad.CLUSTER_ID,
    pilot_ad.PROC_ID,
    pilot_ad.JOB_STATUS,
    pilot_ad.ENTRY,
    pilot_ad.FRONTEND,
    pilot_ad.GROUP,
    pilot_ad.ENTERED_CURRENT_STATUS,
]


@dataclass(frozen=True)
class SoakOptions:
    factory_kills: int = 200
    frontend_kills: int = 100
    seed: int = 1
    cycle_seconds: int = 5
    sample_seconds: float = 2.0
    mid_submission_share: float = 0.4
    """Share of the factory kills aimed at a submission in progress."""
    batch_every_seconds: float = 60.0
    longest_job_seconds: int = 30
    """Jobs of the batch run at most this long: shorter ones drain sooner (the CI share)."""
    report_every_seconds: float = 60.0
    drain_timeout: float = 900.0
    frontend_pause_cycles: float = 5.0
    """A frontend kill comes 1 s to this many cycles after its restart: any moment of its cycle
    either way; fewer cycles make a short run's five kills take less time (the CI share)."""


@dataclass
class Figures:
    """Running totals: what the soak did and every breach it saw."""

    started: float = field(default_factory=time.monotonic)
    factory_kills: int = 0
    mid_submission_kills: int = 0
    frontend_kills: int = 0
    orphaned_calls: Counter[str] = field(default_factory=Counter)
    """Kills after which a call the service had started in a child was still running (it finishes alone)."""
    samples: int = 0
    unreadable_samples: int = 0
    samples_at_a_cap: int = 0
    """Samples where some entry held exactly its cap: the caps did bind."""
    over_entry_limit: list[str] = field(default_factory=list)
    over_published_max: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    most_live: Counter[str] = field(default_factory=Counter)
    published_max: dict[str, int] = field(default_factory=dict)
    jobs_queued: int = 0
    jobs_completed: int | None = None
    pilots_submitted: int | None = None
    pilots_left_queue: int | None = None
    pilots_accounted: int | None = None
    unknown_pilots: list[str] = field(default_factory=list)
    cycles: dict[str, int] = field(default_factory=dict)
    tracebacks: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        """Every invariant that failed, as one line each; [] when the soak held."""
        found = []
        if self.over_entry_limit:
            found.append(
                f"{len(self.over_entry_limit)} samples above an entry's max_pilots: {self.over_entry_limit[:3]}"
            )
        if self.over_published_max:
            found.append(
                f"{len(self.over_published_max)} samples above the frontend's maximum: {self.over_published_max[:3]}"
            )
        if self.doubled:
            found.append(f"{len(self.doubled)} samples with pilots submitted twice: {self.doubled[:3]}")
        if self.unknown_pilots:
            found.append(f"{len(self.unknown_pilots)} pilots the factory does not know: {self.unknown_pilots[:3]}")
        if self.pilots_accounted is not None and self.pilots_accounted != self.pilots_left_queue:
            found.append(
                f"{self.pilots_left_queue} pilots left the queue, the factory's totals count {self.pilots_accounted}"
            )
        if self.jobs_completed is not None and self.jobs_completed != self.jobs_queued:
            found.append(f"{self.jobs_completed} of {self.jobs_queued} jobs completed")
        if self.jobs_completed is None:
            found.append("the soak did not get to its final checks")
        if self.tracebacks:
            found.append(f"tracebacks in {', '.join(self.tracebacks)}")
        return found

    def lines(self) -> list[str]:
        def known(value: int | None) -> str:
            return "not checked yet" if value is None else str(value)

        return [
            f"elapsed {time.monotonic() - self.started:.0f} s; factory SIGKILLs {self.factory_kills} "
            f"({self.mid_submission_kills} mid-submission), frontend SIGKILLs {self.frontend_kills}; "
            f"cycles completed: {', '.join(f'{k} {v}' for k, v in sorted(self.cycles.items())) or 'not counted yet'}; "
            f"kills that left a call running in a child: {dict(sorted(self.orphaned_calls.items()))}",
            f"samples {self.samples} ({self.unreadable_samples} unreadable, {self.samples_at_a_cap} with an entry "
            f"at its cap); most live pilots {dict(sorted(self.most_live.items()))}, "
            f"published maxima {dict(sorted(self.published_max.items()))}",
            f"samples above an entry's max_pilots: {len(self.over_entry_limit)}; above the frontend's maximum: "
            f"{len(self.over_published_max)}; with pilots submitted twice (idle above max_idle): {len(self.doubled)}",
            f"pilots submitted {known(self.pilots_submitted)}; left the queue {known(self.pilots_left_queue)}, "
            f"in the factory's totals {known(self.pilots_accounted)}; unknown to it {len(self.unknown_pilots)}",
            f"jobs completed {known(self.jobs_completed)} of {self.jobs_queued} queued; "
            f"tracebacks in service logs: {len(self.tracebacks)}",
        ]


def judge(figures: Figures, at: str, live: Counter[str], idle: Counter[str]) -> None:
    """One sample's pilots per entry against the caps: every breach is kept, with when (`at`) and by how much.

    The frontend's maximum is the largest it has published for the entry so
    far (its caps here are fixed, so that is the maximum), and a pilot of an
    entry it never published for breaks it.
    """
    at_cap = False
    for entry, count in live.items():
        figures.most_live[entry] = max(figures.most_live[entry], count)
        limits = ENTRY_LIMITS.get(entry)
        cap = limits["max_pilots"] if limits else 0
        published = figures.published_max.get(entry, 0)
        at_cap |= count == min(cap, published)
        if count > cap:
            figures.over_entry_limit.append(f"{at}: {entry} {count} live, max_pilots {cap}")
        if count > published:
            figures.over_published_max.append(f"{at}: {entry} {count} live, frontend allowed {published}")
        if limits and idle[entry] > limits["max_idle"]:
            figures.doubled.append(f"{at}: {entry} {idle[entry]} idle, max_idle {limits['max_idle']}")
    figures.samples_at_a_cap += at_cap


def group_alive(group: int) -> bool:
    """Whether a process of the group is still running (zombies, waiting to be reaped, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone while we looked
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def soak_configs(topology: Topology, folder: Path, cycle_seconds: int) -> dict[str, Path]:
    """The lab's factory and frontend configs with short cycles, binding caps and their own work folders."""
    write_component_configs(topology)  # installs the glidein and the pilots' pool config
    factory, frontend = factory_config(topology), frontend_config(topology)
    for name, config in (("factory", factory), ("frontend", frontend)):
        config.update(
            cycle_seconds=cycle_seconds,
            work_dir=str(folder / name),
            monitoring={"dir": str(folder / name / "monitoring"), "writers": {"json": {}}},
        )
    for entry, limits in ENTRY_LIMITS.items():
        factory["entries"][entry]["limits"] = dict(limits)
        factory["entries"][entry]["submit"] = {"max_submits_per_cycle": 10, "cluster_size": 1}
        factory["entries"][entry]["max_walltime_seconds"] = PILOT_WALLTIME_SECONDS
        factory["entries"][entry]["glidein"].update(PILOT_LIFETIMES)
    frontend["groups"]["main"]["limits"] = {
        "max_running_per_entry": FRONTEND_MAX_PER_ENTRY,
        "max_idle_per_entry": FRONTEND_MAX_PER_ENTRY,
    }
    paths = {}
    for name, config in (("factory", factory), ("frontend", frontend)):
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(config, sort_keys=False))
    return paths


def start_checkpoint(folder: Path, since: int, earlier: Mapping[str, int]) -> None:
    """The factory counts completed pilots from the soak's start, not the default look-back.

    It also counts what ended within its slack before `since`, unless the
    checkpoint has seen it: so the pilots of earlier runs (`earlier`, job id ->
    EnteredCurrentStatus) are marked as seen, as a factory that had counted them would have.
    """
    path = folder / "factory" / "completed-checkpoint.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"since": since, "seen": dict(earlier)}))


def ended_before(topology: Topology, since: int) -> dict[str, int]:
    """The lab factory's pilots that ended within the checkpoint's slack before `since`."""
    ads = factory_schedd(topology).history(
        f"{LAB_PILOTS} && EnteredCurrentStatus >= {since - completed.SLACK_SECONDS}", PILOT_PROJECTION
    )
    return {
        f"{ad[pilot_ad.CLUSTER_ID]}.{ad[pilot_ad.PROC_ID]}": int(ad[pilot_ad.ENTERED_CURRENT_STATUS])
        for ad in ads
        if pilot_ad.ENTERED_CURRENT_STATUS in ad
    }


class Soak:
    """One soak run on a running lab: the services, the workload, the kills and the samples."""

    def __init__(self, topology: Topology, options: SoakOptions, echo: Callable[[str], None]) -> None:
        self.topology = topology
        self.options = options
        self.echo = echo
        self.rng = random.Random(options.seed)
        self.figures = Figures()
        self.run_id = f"soak-{int(time.time())}-{options.seed}"
        self.folder = topology.work_dir / "soak" / self.run_id
        self.since = 0
        self.services: Services | None = None
        self.top_cluster = 0
        self.batches = 0

    # ---------------------------------------------------------------- setup

    def clear_leftovers(self) -> None:
        """Earlier pilots would count as this run's: remove them, and wait until the queue has none."""
        schedd = factory_schedd(self.topology)
        schedd.remove(f"{LAB_PILOTS} && JobStatus != 3", "a soak starts")
        deadline = time.monotonic() + 120
        while left := schedd.query(LAB_PILOTS, [pilot_ad.CLUSTER_ID, pilot_ad.PROC_ID]):
            if time.monotonic() > deadline:
                raise LabError(f"{len(left)} old pilots still in {self.topology.factory.schedd} after 120 s")
            if time.monotonic() > deadline - 60:
                ids = [f"{a[pilot_ad.CLUSTER_ID]}.{a[pilot_ad.PROC_ID]}" for a in left]
                schedd.act_on_jobs(htcondor2.JobAction.RemoveX, ids, "a soak starts; the CE did not confirm")
            time.sleep(2)
        newest = schedd.history(LAB_PILOTS, [pilot_ad.CLUSTER_ID], limit=1)
        self.top_cluster = int(newest[0][pilot_ad.CLUSTER_ID]) if newest else 0

    def start(self) -> None:
        self.folder.mkdir(parents=True)
        for path in (self.folder.parent, self.folder):
            path.chmod(0o755)
        self.clear_leftovers()
        configs = soak_configs(self.topology, self.folder, self.options.cycle_seconds)
        time.sleep(1)  # the queue is empty: whatever ended, ended before `since`
        self.since = int(time.time())
        start_checkpoint(self.folder, self.since, ended_before(self.topology, self.since))
        self.services = start_services(self.topology, configs, self.folder)
        self.echo(f"soak {self.run_id}: services started, logs and work files in {self.folder}")

    # ---------------------------------------------------------------- workload

    def queue_batch(self) -> None:
        vo = Collector(self.topology.vo.collector)
        log = self.folder / "jobs" / "jobs.log"
        log.parent.mkdir(exist_ok=True)
        log.parent.chmod(0o777)
        for index, shape in enumerate(BATCH):
            tagged = replace(
                shape,
                name=f"{self.run_id}-{shape.name}",
                seconds=min(shape.seconds, self.options.longest_job_seconds),
            )
            schedd = vo.schedd(self.topology.user_schedds[(self.batches + index) % len(self.topology.user_schedds)])
            schedd.submit(submit_description(tagged, log), count=shape.count)
            self.figures.jobs_queued += shape.count
        self.batches += 1

    def jobs(self) -> list[dict[str, Any]]:
        constraint = f'regexp("^{self.run_id}-", {WORKLOAD_ATTR})'
        vo = Collector(self.topology.vo.collector)
        ads: list[dict[str, Any]] = []
        for name in self.topology.user_schedds:
            schedd = vo.schedd(name)
            ads += schedd.query(constraint, [pilot_ad.JOB_STATUS])
            ads += schedd.history(constraint, [pilot_ad.JOB_STATUS])
        return ads

    # ---------------------------------------------------------------- samples

    def sample(self) -> None:
        """Requests first, then pilots: a pilot seen here was allowed by a request seen now or before."""
        try:
            asked = requests_now(self.topology)
            pilots = factory_schedd(self.topology).query(LAB_PILOTS, PILOT_PROJECTION)
        except CondorError as err:
            self.figures.unreadable_samples += 1
            self.echo(f"(sample not taken: {err})")
            return
        self.figures.samples += 1
        for entry, (_idle, most) in asked.items():
            self.figures.published_max[entry] = max(self.figures.published_max.get(entry, 0), most)
        live: Counter[str] = Counter()
        idle: Counter[str] = Counter()
        for ad in pilots:
            status = JobStatus.from_ad(ad.get(pilot_ad.JOB_STATUS))
            entry = str(ad.get(pilot_ad.ENTRY))
            self.top_cluster = max(self.top_cluster, int(ad.get(pilot_ad.CLUSTER_ID, 0)))
            if status in LIVE:
                live[entry] += 1
            if status is JobStatus.IDLE:
                idle[entry] += 1
        judge(self.figures, f"{time.monotonic() - self.figures.started:.0f} s", live, idle)

    def new_cluster_seen(self) -> bool:
        """A pilot cluster newer than any seen before: the factory is submitting right now."""
        try:
            found = factory_schedd(self.topology).query(
                f"{LAB_PILOTS} && ClusterId > {self.top_cluster}", [pilot_ad.CLUSTER_ID]
            )
        except CondorError:
            return False
        if found:
            self.top_cluster = max(int(ad[pilot_ad.CLUSTER_ID]) for ad in found)
        return bool(found)

    # ---------------------------------------------------------------- kills

    def kill(self, name: str) -> None:
        """SIGKILL of the service's own process, as a crash; a call it had running in a child goes on alone."""
        assert self.services is not None
        group = self.services.processes[name].pid  # started in a session of its own: its process group
        self.services.kill(name)
        deadline = time.monotonic() + 1.0
        while group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_alive(group):
            self.figures.orphaned_calls[name] += 1
        self.services.restart(name)

    def kills(self) -> None:
        """Until both kill counts are reached: kills, samples, batches and running totals, each on its clock."""
        options, figures = self.options, self.figures
        now = time.monotonic()
        next_sample = next_batch = now
        next_report = now + options.report_every_seconds
        next_factory = now + self.factory_pause()
        next_frontend = now + self.frontend_pause()
        aim_at_submission = self.rng.random() < options.mid_submission_share
        aiming_until: float | None = None
        while figures.factory_kills < options.factory_kills or figures.frontend_kills < options.frontend_kills:
            assert self.services is not None
            now = time.monotonic()
            if now >= next_batch:
                self.queue_batch()
                next_batch = now + options.batch_every_seconds
            if now >= next_sample:
                self.sample()
                next_sample = now + options.sample_seconds
            if figures.factory_kills < options.factory_kills and now >= next_factory:
                if aim_at_submission and aiming_until is None:
                    aiming_until = now + 2 * options.cycle_seconds
                    self.new_cluster_seen()  # the newest cluster so far; the next one is the aim
                if aiming_until is None or now >= aiming_until or self.new_cluster_seen():
                    mid = aiming_until is not None and now < aiming_until
                    self.kill("factory")
                    figures.factory_kills += 1
                    figures.mid_submission_kills += mid
                    aim_at_submission = self.rng.random() < options.mid_submission_share
                    aiming_until = None
                    next_factory = time.monotonic() + self.factory_pause()
            if figures.frontend_kills < options.frontend_kills and now >= next_frontend:
                self.kill("frontend")
                figures.frontend_kills += 1
                next_frontend = time.monotonic() + self.frontend_pause()
            if now >= next_report:
                self.report()
                next_report = now + options.report_every_seconds
            time.sleep(0.25)

    def factory_pause(self) -> float:
        """From a restart to the next kill: anywhere from before the first cycle ends to two cycles on."""
        return self.rng.uniform(0.5, 2 * self.options.cycle_seconds)

    def frontend_pause(self) -> float:
        return self.rng.uniform(1.0, self.options.frontend_pause_cycles * self.options.cycle_seconds)

    # ---------------------------------------------------------------- drain and final checks

    def drain(self) -> None:
        """No more kills or jobs: wait for the work to finish, remove the pilots left and let the factory count."""
        assert self.services is not None
        deadline = time.monotonic() + self.options.drain_timeout
        self.echo("kills done: waiting for the queued jobs to complete")
        while True:
            self.services.check_alive()
            self.sample()
            done = [ad for ad in self.jobs() if ad.get(pilot_ad.JOB_STATUS) == JobStatus.COMPLETED]
            if len(done) >= self.figures.jobs_queued:
                break
            if time.monotonic() > deadline:
                self.echo(f"only {len(done)} of {self.figures.jobs_queued} jobs completed by the drain's deadline")
                break
            time.sleep(self.options.sample_seconds)
        self.echo("removing the pilots left, then waiting two factory cycles for their accounting")
        schedd = factory_schedd(self.topology)
        while any(idle for idle, _ in requests_now(self.topology).values()) and time.monotonic() < deadline:
            time.sleep(self.options.sample_seconds)
        forced_after = time.monotonic() + 60
        while left := schedd.query(f"{LAB_PILOTS}", [pilot_ad.CLUSTER_ID, pilot_ad.PROC_ID, pilot_ad.JOB_STATUS]):
            self.sample()
            live = [a for a in left if a.get(pilot_ad.JOB_STATUS) != JobStatus.REMOVED]
            if live:
                schedd.remove(f"{LAB_PILOTS} && JobStatus != 3", "soak done")
            if time.monotonic() > forced_after:
                ids = [f"{a[pilot_ad.CLUSTER_ID]}.{a[pilot_ad.PROC_ID]}" for a in left]
                schedd.act_on_jobs(htcondor2.JobAction.RemoveX, ids, "soak done; the CE did not confirm")
            if time.monotonic() > deadline + 120:
                raise LabError(f"{len(left)} pilots still in {self.topology.factory.schedd} at the drain's end")
            time.sleep(2)
        self.wait_factory_cycles(2)

    def wait_factory_cycles(self, count: int) -> None:
        assert self.services is not None
        target = self.cycles_logged()["factory"] + count
        deadline = time.monotonic() + 20 * self.options.cycle_seconds + 60
        while self.cycles_logged()["factory"] < target:
            self.services.check_alive()
            if time.monotonic() > deadline:
                raise LabError(f"the factory finished no cycle in time; see {self.services.logs['factory']}")
            time.sleep(1)

    def cycles_logged(self) -> dict[str, int]:
        assert self.services is not None
        counts = {}
        for name, path in self.services.logs.items():
            lines = path.read_text(errors="replace").splitlines()
            counts[name] = sum(1 for line in lines if (m := LOG_LINE.match(line)) and m["message"].startswith("cycle "))
        return counts

    def final_checks(self) -> None:
        figures = self.figures
        schedd = factory_schedd(self.topology)
        projection = [*PILOT_PROJECTION, pilot_ad.Q_DATE]
        history = schedd.history(f"{LAB_PILOTS} && EnteredCurrentStatus >= {self.since}", projection)
        queued = schedd.query(LAB_PILOTS, projection)
        submitted = {
            f"{a.get(pilot_ad.CLUSTER_ID)}.{a.get(pilot_ad.PROC_ID)}"
            for a in (*history, *queued)
            if int(a.get(pilot_ad.Q_DATE, 0)) >= self.since
        }
        figures.pilots_submitted = len(submitted)
        figures.pilots_left_queue = len({f"{a.get(pilot_ad.CLUSTER_ID)}.{a.get(pilot_ad.PROC_ID)}" for a in history})
        totals = completed.CompletedTotals(self.folder / "factory" / "completed-totals.json").load()
        figures.pilots_accounted = sum(stats.pilots for stats in totals.values())
        figures.unknown_pilots = [
            f"{read.job_id}: entry {read.entry!r}, frontend {read.frontend!r}, group {read.group!r}"
            for read in map(pilot_ad.read_pilot_ad, (*history, *queued))
            if read.entry not in ENTRY_LIMITS or read.frontend != FRONTEND_NAME or read.group != "main"
        ]
        figures.jobs_completed = sum(1 for ad in self.jobs() if ad.get(pilot_ad.JOB_STATUS) == JobStatus.COMPLETED)
        assert self.services is not None
        figures.tracebacks = tracebacks(self.services.logs.values())

    def report(self) -> None:
        if self.services is not None:
            self.figures.cycles = self.cycles_logged()
        for line in self.figures.lines():
            self.echo(line)

    def stop(self) -> None:
        if self.services is not None:
            self.services.stop()
        vo = Collector(self.topology.vo.collector)
        for name in self.topology.user_schedds:
            try:
                vo.schedd(name).remove(f'regexp("^{self.run_id}-", {WORKLOAD_ATTR})', "soak over")
            except CondorError as err:
                self.echo(f"(soak jobs left in {name}: {err})")


def run_soak(topology: Topology, options: SoakOptions, echo: Callable[[str], None]) -> Figures:
    """The whole soak on a running lab; the figures, complete or as far as it got (Ctrl-C)."""
    use_client_config(topology.client_config)
    soak = Soak(topology, options, echo)
    try:
        soak.start()
        soak.kills()
        soak.drain()
        soak.final_checks()
    except KeyboardInterrupt:
        echo("interrupted: the figures so far")
    finally:
        if soak.services is not None:
            soak.figures.cycles = soak.cycles_logged()
        soak.stop()
    return soak.figures


@contextmanager
def lab_running(lab_dir: Path, base_port: int, keep: bool) -> Iterator[Topology]:
    """The lab in `lab_dir`, brought up if it is not; taken down after unless `keep` or it was already up."""
    state = control.load_state(lab_dir)
    if state is not None and state["base_port"] != base_port:
        raise LabError(f"the lab in {lab_dir} runs on base port {state['base_port']}, not {base_port}")
    topology = build_topology(lab_dir, base_port)
    cache = Path(os.environ.get("UPDRAFT_CACHE", "/var/cache/updraft"))
    runtime = control.runtime_from_state(state) if state else choose_runtime("auto", cache)
    control.up(topology, runtime, timeout=180)
    try:
        yield topology
    finally:
        if not keep and state is None:
            control.down(topology, runtime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factory-kills", type=int, default=200)
    parser.add_argument("--frontend-kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    parser.add_argument("--lab-dir", type=Path, default=Path("/var/tmp/updraft-lab-soakrun"))
    parser.add_argument("--base-port", type=int, default=30518)
    args = parser.parse_args()
    options = SoakOptions(factory_kills=args.factory_kills, frontend_kills=args.frontend_kills, seed=args.seed)
    # Both end the soak with the figures so far; SIGINT too when started in the background (which ignores it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    def echo(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    with lab_running(args.lab_dir.absolute(), args.base_port, args.keep) as topology:
        figures = run_soak(topology, options, echo)
    for line in figures.lines():
        echo(line)
    failed = figures.failures()
    for line in failed:
        echo(f"FAILED: {line}")
    echo("all invariants held" if not failed else f"{len(failed)} invariants failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
