"""How long the frontend's observe takes on real schedds holding 100,000 idle jobs, and what it costs in memory.

Run from the repository root, as root (the lab runs its daemons in a chroot):

    .venv/bin/python bench/frontend_observe_lab.py
    .venv/bin/python bench/frontend_observe_lab.py --dir /var/tmp/updraft-lab --keep

Without a running lab in --dir it brings one up there (`updraft lab up`,
on --base-port) and takes it down at the end; a lab that was already up is
used as it is and left up. Only the lab's daemons run: no factory and no
frontend service, so no pilot is ever requested and every job stays idle.

It queues --jobs idle jobs in --shapes distinct shapes (one cluster of
jobs/shapes procs per shape, alternating between the two user schedds
vo-schedd and vo-schedd2). Shapes differ in what the lab frontend's group
reads from a job (RequestCpus, RequestMemory, DESIRED_Sites). The schedd's
MAX_JOBS_PER_OWNER is 100,000 by default: the default run puts 50,000 of
the operator's jobs in each schedd, within it.

It waits until every job has been idle longer than the group's
old_idle_seconds (60 s in the lab), as in a queue that has waited for
pilots, so that observe's old-idle query has its records too. Then it
measures, each in a fresh child process (so each has its own peak
RSS), --repeats times, all in one run on the same queues:

- ``observe``: `updraft.frontend.observe.observe` with the lab frontend's
  config and real ports, as `frontend once` runs it: both schedds' grouped
  queries plus the collector reads (slots, entries, factory keys, published
  requests), in parallel.
- ``grouped``: only the schedds' grouped queries of observe (its
  `shape_queries`, both schedds in parallel): the part that grows with jobs.
- ``plain``: a per-job query of the same jobs (the constraint of observe's
  by-status query, projected on the same attributes, no grouping), both
  schedds in parallel, through `updraft.condor` like every frontend read.

Figures printed:

- queueing: wall time to submit every cluster; at the end, the time of the
  remove commands and then until the queues are empty;
- schedd RSS: VmRSS of each lab condor_schedd, read from /proc before and
  after queueing (VmHWM, its peak, after);
- per mode, best and median wall time of the repeats, the idle and old
  idle jobs it saw (a check that every mode read the same queue), the
  records the schedds returned, and two peak RSS figures:
  ``self`` is the measuring process (parses the answers into model
  objects), ``query`` the largest forked child that ran one HTCondor query
  (`updraft.condor` runs each call in a forked child: it inherits the
  parent's pages, so it is the parent's size plus what the query added).

The target (issue 18) is a grouped observe of <= 2 s; the script prints
whether it held.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import NamedTuple

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import classad2

from updraft.condor import Collector, Schedd, use_client_config
from updraft.frontend.config import FrontendConfig
from updraft.frontend.observe import BY_STATUS, job_attributes, merge_shapes, observe, shape_queries
from updraft.frontend.ports import connect
from updraft.lab import control
from updraft.lab.labconfig import frontend_config
from updraft.lab.runtime import Runtime, choose_runtime
from updraft.lab.topology import Topology, build_topology

BENCH_ATTR = "UpdraftObserveBench"
"""Marks the benchmark's jobs, so cleaning up never touches anyone else's."""
SITES = ("Site1", "Site2", "HPC", "HPC2N", "Cloud")
SITE_LISTS = tuple(",".join(c) for n in range(1, len(SITES) + 1) for c in combinations(SITES, n))[:25]
CPUS = (1, 2, 4, 8)
MEMORIES = tuple(256 * k for k in range(1, 11))
MAX_SHAPES = len(CPUS) * len(MEMORIES) * len(SITE_LISTS)
TARGET_SECONDS = 2.0
MODES = ("observe", "grouped", "plain")


class Counts(NamedTuple):
    """What one read saw: idle jobs, those of them idle longer than old_idle_seconds, records it returned."""

    idle: int
    old_idle: int
    records: int


@dataclass(frozen=True)
class Measured:
    mode: str
    seconds: list[float]
    idle: int
    old_idle: int
    records: int
    self_rss_mb: float
    query_rss_mb: float


def shape(index: int) -> tuple[int, int, str]:
    """The index-th distinct shape: cores, memory (MB), sites; distinct for index < MAX_SHAPES."""
    return (
        CPUS[index % len(CPUS)],
        MEMORIES[index // len(CPUS) % len(MEMORIES)],
        SITE_LISTS[index // (len(CPUS) * len(MEMORIES)) % len(SITE_LISTS)],
    )


def description(index: int) -> dict[str, str]:
    """One shape's submit description, as the lab's demo writes its jobs' (no job log: 100k jobs)."""
    cpus, memory, sites = shape(index)
    return {
        "universe": "vanilla",
        "executable": "/bin/sleep",
        "arguments": "60",
        "request_cpus": str(cpus),
        "request_memory": str(memory),
        "request_disk": "10240",
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        "requirements": "TARGET.IS_GLIDEIN =?= true && stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)",
        "+DESIRED_Sites": classad2.quote(sites),
        f"+{BENCH_ATTR}": "true",
    }


# ------------------------------------------------------------- the lab's side


def user_schedds(topology: Topology) -> list[Schedd]:
    vo = Collector(topology.vo.collector, timeout=600.0)
    return [vo.schedd(name) for name in topology.user_schedds]


def queue_jobs(schedds: list[Schedd], jobs: int, shapes: int) -> float:
    """Submit one cluster per shape, alternating schedds; returns the seconds it took."""
    per_shape = jobs // shapes
    started = time.perf_counter()
    for index in range(shapes):
        schedds[index % len(schedds)].submit(description(index), count=per_shape)
    return time.perf_counter() - started


def remove_jobs(schedds: list[Schedd]) -> float:
    started = time.perf_counter()
    for schedd in schedds:
        schedd.remove(f"{BENCH_ATTR} =?= true", "end of bench/frontend_observe_lab.py")
    return time.perf_counter() - started


def queued_bench_jobs(schedds: list[Schedd]) -> int:
    return sum(len(s.query(f"{BENCH_ATTR} =?= true && JobStatus =!= 3", ["ProcId"])) for s in schedds)


def wait_gone(schedds: list[Schedd], timeout: float = 600.0) -> None:
    """Removed jobs leave the queue once the schedd has written them to history."""
    deadline = time.monotonic() + timeout
    while any(s.query(f"{BENCH_ATTR} =?= true", ["ProcId"]) for s in schedds) and time.monotonic() < deadline:
        time.sleep(2.0)


def _proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def schedd_memory(topology: Topology, runtime: Runtime) -> dict[str, tuple[float, float]]:
    """(VmRSS, VmHWM) in MB of each user schedd process of the lab, by instance."""
    found = {}
    for pid in control.lab_processes(topology, runtime):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "condor_schedd":
                continue
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            status = _proc_status(pid)
        except OSError:
            continue
        for instance in (topology.vo, topology.submit2):
            if f"CONDOR_CONFIG={control.master_config(topology, instance)}\0".encode() in environ:
                found[instance.name] = (_kb_to_mb(status["VmRSS"]), _kb_to_mb(status["VmHWM"]))
    return found


def _kb_to_mb(value: str) -> float:
    return int(value.split()[0]) / 1024


# ------------------------------------------------------------ the measurement


def _each_schedd(config: FrontendConfig, read: Callable[[Schedd], Counts]) -> Counts:
    """`read` on every configured schedd at once, as observe does; the counts summed."""
    vo = Collector(config.vo_collector, timeout=config.query_timeout_seconds)
    schedds = [vo.schedd(name) for name in config.schedds]
    with ThreadPoolExecutor(max_workers=len(schedds)) as pool:
        results = list(pool.map(read, schedds))
    return Counts(*(sum(column) for column in zip(*results, strict=True)))


def run_observe(config: FrontendConfig) -> Counts:
    seen = observe(config, connect(config), time.time())
    if seen.problems:
        raise SystemExit(f"observe saw problems: {[f'{p.source}: {p.message}' for p in seen.problems]}")
    return Counts(sum(s.idle for s in seen.shapes), sum(s.old_idle for s in seen.shapes), len(seen.shapes))


def run_grouped(config: FrontendConfig) -> Counts:
    group_name, group = next(iter(config.groups.items()))

    def read(schedd: Schedd) -> Counts:
        queries = shape_queries(group, time.time())
        results = {name: schedd.grouped(constraint, by) for name, (constraint, by) in queries.items()}
        shapes = merge_shapes(group_name, schedd.name, results, job_attributes(group))
        return Counts(sum(s.idle for s in shapes), sum(s.old_idle for s in shapes), len(shapes))

    return _each_schedd(config, read)


def run_plain(config: FrontendConfig) -> Counts:
    group = next(iter(config.groups.values()))
    constraint, by = shape_queries(group, time.time())[BY_STATUS]
    projection = [*by, "EnteredCurrentStatus"]

    def read(schedd: Schedd) -> Counts:
        ads = schedd.query(constraint, projection)
        old = time.time() - group.old_idle_seconds
        idle = [ad for ad in ads if ad.get("JobStatus") == 1]
        return Counts(len(idle), sum(ad.get("EnteredCurrentStatus", old) < old for ad in idle), len(ads))

    return _each_schedd(config, read)


RUNNERS: dict[str, Callable[[FrontendConfig], Counts]] = {
    "observe": run_observe,
    "grouped": run_grouped,
    "plain": run_plain,
}


def measure(topology: Topology, mode: str, repeats: int) -> Measured:
    """Run one mode `repeats` times in this process (the parent runs each mode in a child of its own)."""
    config = FrontendConfig.model_validate(frontend_config(topology))
    use_client_config(config.condor_config)  # the frontend's identity, as `frontend once` has it
    seconds, counts = [], Counts(0, 0, 0)
    for _ in range(repeats):
        started = time.perf_counter()
        counts = RUNNERS[mode](config)
        seconds.append(time.perf_counter() - started)
    return Measured(
        mode=mode,
        seconds=seconds,
        idle=counts.idle,
        old_idle=counts.old_idle,
        records=counts.records,
        self_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        query_rss_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    )


def run_child(args: argparse.Namespace, topology: Topology, mode: str) -> Measured:
    command = [sys.executable, str(Path(__file__).resolve()), "--dir", str(topology.base_dir), "--base-port"]
    command += [str(topology.base_port), "--repeats", str(args.repeats), "--measure", mode]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return Measured(**json.loads(out.stdout))


# ------------------------------------------------------------------- the run


def report(queued: float, before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> None:
    print(f"queueing: {queued:.1f} s")
    for name in sorted(after):
        rss_before = before.get(name, (0.0, 0.0))[0]
        rss, peak = after[name]
        print(f"schedd {name}: RSS {rss_before:.0f} MB before, {rss:.0f} MB after queueing (peak {peak:.0f} MB)")


def report_modes(results: list[Measured]) -> bool:
    print(
        f"{'mode':<8} {'best s':>7} {'median s':>8} {'idle':>8} {'old idle':>8} {'records':>8} "
        f"{'self MB':>8} {'query MB':>8}"
    )
    for r in results:
        print(
            f"{r.mode:<8} {min(r.seconds):>7.3f} {statistics.median(r.seconds):>8.3f} {r.idle:>8,} {r.old_idle:>8,} "
            f"{r.records:>8,} "
            f"{r.self_rss_mb:>8.0f} {r.query_rss_mb:>8.0f}"
        )
    observed = next(r for r in results if r.mode == "observe")
    met = statistics.median(observed.seconds) <= TARGET_SECONDS
    print(f"target (observe median <= {TARGET_SECONDS:g} s):", "met" if met else "MISSED")
    return met


def wait_old(topology: Topology) -> None:
    """Wait until every job is old idle for the lab frontend (idle past old_idle_seconds), as in a queue
    that has been waiting for pilots: observe's old-idle query then returns its records too."""
    old_after = float(frontend_config(topology)["groups"]["main"]["old_idle_seconds"])
    print(f"waiting {old_after + 2:.0f} s, until the last job queued is old idle ({old_after:g} s)")
    time.sleep(old_after + 2)


def bring_up(args: argparse.Namespace) -> tuple[Topology, Runtime, bool]:
    """The lab in args.dir: the running one, or a new one; True when this run started it."""
    state = control.load_state(args.dir)
    if state is not None:
        return build_topology(args.dir, state["base_port"]), control.runtime_from_state(state), False
    topology = build_topology(args.dir, args.base_port)
    runtime = choose_runtime("auto", args.cache)
    control.up(topology, runtime, timeout=180.0)
    return topology, runtime, True


def bench(args: argparse.Namespace) -> bool:
    topology, runtime, started = bring_up(args)
    use_client_config(topology.client_config)  # the operator: submits and removes
    schedds = user_schedds(topology)
    try:
        remove_jobs(schedds)  # a --keep run's jobs
        wait_gone(schedds)
        before = schedd_memory(topology, runtime)
        queued = queue_jobs(schedds, args.jobs, args.shapes)
        print(f"{queued_bench_jobs(schedds):,} idle jobs in {args.shapes:,} shapes over {len(schedds)} schedds")
        report(queued, before, schedd_memory(topology, runtime))
        wait_old(topology)
        met = report_modes([run_child(args, topology, mode) for mode in MODES])
        if not args.keep:
            removed = remove_jobs(schedds)
            started_wait = time.perf_counter()
            wait_gone(schedds)  # a lab taken down with them still queued would load them again next time
            emptied = time.perf_counter() - started_wait
            print(f"removing: {removed:.1f} s to remove, {emptied:.1f} s more to an empty queue")
    finally:
        if started and not args.keep:
            control.down(topology, runtime)
    return met


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/updraft-lab-observe-bench"))
    parser.add_argument("--base-port", type=int, default=30700)
    parser.add_argument("--cache", type=Path, default=Path("/var/cache/updraft"))
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--shapes", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the jobs queued and the lab up")
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.dir = args.dir.absolute()
    if args.measure:
        topology = build_topology(args.dir, args.base_port)
        print(json.dumps(asdict(measure(topology, args.measure, args.repeats))))
        return 0
    if args.shapes > MAX_SHAPES:
        parser.error(f"--shapes: at most {MAX_SHAPES} distinct shapes")
    return 0 if bench(args) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
