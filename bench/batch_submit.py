"""Pilots per second through the blahp into the lab's Slurm, locally and over SSH, and how long one takes to run.

Needs a running lab (`.venv/bin/updraft lab up`). Run from the repository root:

    .venv/bin/python bench/batch_submit.py [--lab /var/tmp/updraft-lab] [--pilots 40] [--entries hpc,hpc-ssh]

For each batch entry of the lab's factory config it submits the factory's
own rendered description, as the factory (whose grid manager runs the
blahp, locally or through the remote GAHP over SSH), in one cluster of
`--pilots`, with Slurm told to hold every job (`--hold`), so what is
measured is the path factory schedd -> grid manager -> blahp -> sbatch, not
the two-node cluster's capacity. It prints:

- submitted/s: pilots per second until every one has its Slurm job id (the
  grid manager writes it into GridJobId once the blahp has it);
- first id: seconds until the first one had it (the GAHP start included);
- cancelled/s: pilots per second from the factory's removal until Slurm
  shows every one of them ended (squeue).

Then, per entry, one pilot not held: seconds from its submission to its
Slurm job RUNNING on a node. (From a frontend's request to a pilot whose
startd has joined the VO pool, the factory's cycle and the glidein's start
add to this: `make demo` and tests/integration/test_hpc_*.py show those.)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from updraft.condor import Collector, Schedd, use_client_config
from updraft.factory.config import FactoryConfig
from updraft.factory.render import PilotSpec, render_submit
from updraft.lab import control, slurm
from updraft.lab.labconfig import factory_config, write_component_configs
from updraft.lab.runtime import Runtime
from updraft.lab.topology import FACTORY, Topology, build_topology

MARK_ATTR = "UpdraftBench"
MARK = f"{MARK_ATTR} =?= true"
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Rates:
    entry: str
    pilots: int
    first_id_seconds: float
    submitted_per_second: float
    cancelled_per_second: float


def slurm_job_id(grid_job_id: object) -> str | None:
    """The Slurm job id at the end of a batch pilot's GridJobId (``batch slurm <sandbox> slurm/<date>/<id>``)."""
    last = str(grid_job_id or "").split(" ")[-1]
    return last.rsplit("/", 1)[-1] if last.startswith("slurm/") else None


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)
    return time.perf_counter() - started


def description(topology: Topology, config: FactoryConfig, entry: str, held_in_slurm: bool) -> dict[str, str]:
    spec = PilotSpec("bench", "main", "default", "bench", config.pilot.executable, topology.work_dir / "bench" / entry)
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    spec.work_dir.chmod(0o1777)
    rendered = dict(render_submit(config, entry, config.entries[entry], spec))
    if held_in_slurm:
        extra = rendered.get("batch_extra_submit_args", "")
        rendered["batch_extra_submit_args"] = f"{extra} --hold".strip()
    return {**rendered, f"+{MARK_ATTR}": "true"}


def slurm_ids(schedd: Schedd, cluster: int) -> list[str]:
    ads = schedd.query(f"ClusterId == {cluster}", ["GridJobId"])
    return [job for job in (slurm_job_id(ad.get("GridJobId")) for ad in ads) if job]


def measure_rates(
    topology: Topology, runtime: Runtime, schedd: Schedd, entry: str, sub: Mapping[str, str], count: int
) -> Rates:
    started = time.perf_counter()
    cluster = schedd.submit(sub, count=count)
    first = wait_for("the first Slurm job id", lambda: bool(slurm_ids(schedd, cluster)), 300)
    wait_for(f"{count} Slurm job ids", lambda: len(slurm_ids(schedd, cluster)) == count, 600)
    submitted = time.perf_counter() - started
    ids = set(slurm_ids(schedd, cluster))
    removed_at = time.perf_counter()
    schedd.remove(f"ClusterId == {cluster}", "benchmark done")

    def all_ended() -> bool:
        live = {j.job_id for j in slurm.jobs(topology, runtime).values() if j.state in ("PENDING", "RUNNING")}
        return not ids & live

    wait_for("Slurm to end every benchmark job", all_ended, 600)
    cancelled = time.perf_counter() - removed_at
    return Rates(entry, count, first, count / submitted, count / cancelled)


def measure_start(topology: Topology, runtime: Runtime, schedd: Schedd, sub: Mapping[str, str]) -> float:
    """Seconds from submission to the pilot's Slurm job RUNNING on a node."""
    cluster = schedd.submit(sub, count=1)
    try:

        def running() -> bool:
            ids = slurm_ids(schedd, cluster)
            job = slurm.jobs(topology, runtime).get(ids[0]) if ids else None
            return job is not None and job.state == "RUNNING"

        return wait_for("the pilot's Slurm job to run", running, 300)
    finally:
        schedd.remove(f"ClusterId == {cluster}", "benchmark done")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, default=Path("/var/tmp/updraft-lab"))
    parser.add_argument("--pilots", type=int, default=40)
    parser.add_argument("--entries", default="hpc,hpc-ssh", help="Batch entries of the lab's factory config.")
    args = parser.parse_args()
    state = control.load_state(args.lab)
    if state is None:
        raise SystemExit(f"no lab in {args.lab}: `updraft lab up --dir {args.lab}` first")
    topology = build_topology(args.lab, state["base_port"])
    runtime = control.runtime_from_state(state)
    write_component_configs(topology)
    config = FactoryConfig.model_validate(factory_config(topology))
    use_client_config(topology.role_config(FACTORY))
    schedd = Collector(topology.wms.collector).schedd(topology.factory.schedd)
    entries = [name for name in args.entries.split(",") if name in config.entries]
    print(
        f"{'entry':<10} {'pilots':>6} {'first id s':>10} {'submitted/s':>11} {'cancelled/s':>11} {'to RUNNING s':>12}"
    )
    try:
        for entry in entries:
            rates = measure_rates(
                topology, runtime, schedd, entry, description(topology, config, entry, True), args.pilots
            )
            to_running = measure_start(topology, runtime, schedd, description(topology, config, entry, False))
            print(
                f"{entry:<10} {rates.pilots:>6} {rates.first_id_seconds:>10.1f} {rates.submitted_per_second:>11.2f} "
                f"{rates.cancelled_per_second:>11.2f} {to_running:>12.1f}"
            )
    finally:
        schedd.remove(MARK, "benchmark done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
