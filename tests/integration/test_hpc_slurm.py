"""Batch pilots on the lab's real Slurm, judged by what Slurm itself says.

Layers: the lab's factory config with its `hpc` entry (local batch through
the blahp) and three variants of it -> request ads in the WMS collector, as
the frontend publishes them (`test_factory.ask`) -> `updraft factory once`
and `status` run as an operator runs them -> assertions on Slurm's own view
(`squeue --states=all` and the jobcomp record: `updraft.lab.slurm`), not only
on the factory schedd's queue.

The lab's cluster is two nodes of 2 CPUs and 2000 MB. The test entry asks
1500 MB a pilot (the blahp turns request_memory into ``--mem``), so one
pilot fills a node: a third pilot waits in Slurm (PENDING, Resources), which
is how "idle at the site" looks on a busy cluster. Every test leaves the
nodes idle and its Slurm jobs finished.
"""

from __future__ import annotations

import copy
import glob
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from updraft.condor import Collector
from updraft.frontend.config import FrontendConfig
from updraft.lab import control, slurm
from updraft.lab.labconfig import factory_config, frontend_config, write_component_configs
from updraft.lab.runtime import Runtime
from updraft.lab.topology import FRONTEND, Topology
from updraft.pilot_ad import batch_job_id
from updraft.protocol import RemoveMode

from .jobs import wait_for
from .roles import invalidate_as
from .test_factory import ask, updraft

PILOTS = 'UpdraftFactory =?= "lab-factory"'
PROJECTION = ["ClusterId", "ProcId", "JobStatus", "GridJobId", "UpdraftEntry", "HoldReason"]
LIVE_SLURM = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED"})
ENDED_BY_REMOVAL = "CANCELLED"
NODE_MEMORY_MB = 1500
"""One pilot per 2000 MB node."""
WALLTIME = 20
"""The short entry's walltime_seconds. Under a minute, Slurm's own limit is none (the blahp gives
sbatch whole minutes, and 0 is unlimited): the glidein's own lifetime is what keeps inside it."""
RESUME_SECONDS = 120
"""After a failed submit the grid manager takes the batch system for down and pings it again only every
GRIDMANAGER_RESOURCE_PROBE_INTERVAL (300 s by default; the lab's factory sets 15 s)."""
STALE_RUNNING = 15
"""The stale entry's stale.running_seconds: the factory removes a pilot running longer."""


@pytest.fixture(scope="module")
def factory_yaml(lab: Topology, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's factory, its hpc entry tuned for these tests, plus: a partition Slurm does not have,
    more memory than a node has, a walltime of seconds, and a limit on running of seconds."""
    write_component_configs(lab)
    config = factory_config(lab)
    hpc = config["entries"]["hpc"]
    hpc["memory_mb_per_node"] = NODE_MEMORY_MB
    hpc["limits"] = {"max_pilots": 3, "max_idle": 3, "max_held": 5}
    hpc["submit"] = {"max_submits_per_cycle": 3, "cluster_size": 1}
    hpc["glidein"] = {**hpc["glidein"], "max_idle_seconds": 600}  # no pilot leaves unasked while counted
    nopart = copy.deepcopy(hpc) | {"partition": "nosuch"}
    bigmem = copy.deepcopy(hpc) | {"memory_mb_per_node": 100_000}
    short = copy.deepcopy(hpc) | {"walltime_seconds": WALLTIME, "lifetime_margin_seconds": 2, "memory_mb_per_node": 500}
    short["glidein"] = {**short["glidein"], "shutdown_margin_seconds": 5}
    stale = copy.deepcopy(hpc) | {"memory_mb_per_node": 500, "stale": {"running_seconds": STALE_RUNNING}}
    config["entries"] |= {"hpc_nopart": nopart, "hpc_bigmem": bigmem, "hpc_short": short, "hpc_stale": stale}
    path = tmp_path_factory.mktemp("hpc") / "factory.yaml"
    path.write_text(yaml.safe_dump(config))
    updraft("factory", "check-config", "--config", str(path))
    return path


@pytest.fixture(scope="module")
def frontend(lab: Topology) -> FrontendConfig:
    return FrontendConfig.model_validate(frontend_config(lab))


def schedd(lab: Topology):
    return Collector(lab.wms.collector).schedd(lab.factory.schedd_name)


def pilots(lab: Topology, extra: str = "true") -> list[dict]:
    return schedd(lab).query(f"{PILOTS} && ({extra})", PROJECTION)


def slurm_ids(ads: list[dict]) -> dict[str, str]:
    """Factory job id -> Slurm job id, for the pilots Slurm has accepted."""
    found = {f"{a['ClusterId']}.{a['ProcId']}": batch_job_id(str(a.get("GridJobId", ""))) for a in ads}
    return {job: sid for job, sid in found.items() if sid}


def slurm_jobs(lab: Topology, runtime: Runtime) -> dict[str, slurm.SlurmJob]:
    return slurm.jobs(lab, runtime)


def live_slurm_jobs(lab: Topology, runtime: Runtime) -> dict[str, slurm.SlurmJob]:
    """The factory user's Slurm jobs that are not over (refused ones Slurm keeps as FAILED are)."""
    return {i: j for i, j in slurm_jobs(lab, runtime).items() if j.user == "factory" and j.state in LIVE_SLURM}


def once(factory_yaml: Path):
    return updraft("factory", "once", "--config", str(factory_yaml), check=False)


@pytest.fixture(autouse=True)
def nothing_left(lab: Topology, lab_runtime: Runtime) -> Iterator[None]:
    """Each test starts and ends with no pilots, no requests, no live Slurm job and idle nodes."""
    yield
    if control.load_state(lab.base_dir) is not None:  # a failed outage test may have left slurmctld off
        control.switch_daemon(lab, "hpc", "SLURMCTLD", on=True)
        slurm.wait_ready(lab, lab_runtime, 60)
    invalidate_as(lab, FRONTEND, lab.wms.collector, "UpdraftRequest", "true")
    schedd(lab).remove(PILOTS, "hpc test done")
    wait_for(lambda: not pilots(lab), 120, interval=2)
    wait_for(lambda: not live_slurm_jobs(lab, lab_runtime), 60, interval=2)
    wait_for(lambda: set(slurm.node_states(lab, lab_runtime).values()) == {"idle"}, 60, interval=2)


def test_pilots_follow_slurm_and_removing_them_cancels_their_slurm_jobs(
    lab: Topology, lab_runtime: Runtime, frontend: FrontendConfig, factory_yaml: Path, capsys: pytest.CaptureFixture
) -> None:
    ask(lab, frontend, "hpc", idle=3, max_pilots=3)
    asked = time.monotonic()
    done = once(factory_yaml)
    assert "submitted 3," in done.stdout, done.stdout + done.stderr

    # Slurm runs one pilot per node and queues the third (Resources): the factory says the same.
    def two_running_one_pending() -> dict[str, str] | None:
        ids = slurm_ids(pilots(lab))
        states = {job: slurm_jobs(lab, lab_runtime).get(sid) for job, sid in ids.items()}
        seen = sorted(s.state for s in states.values() if s is not None)
        return ids if len(ids) == 3 and seen == ["PENDING", "RUNNING", "RUNNING"] else None

    ids = wait_for(two_running_one_pending, 120, interval=1)
    first_running = time.monotonic() - asked
    by_state = {job: slurm_jobs(lab, lab_runtime)[sid].state for job, sid in ids.items()}
    (waiting,) = [job for job, state in by_state.items() if state == "PENDING"]
    assert slurm_jobs(lab, lab_runtime)[ids[waiting]].reason == "Resources"

    def factory_agrees() -> list[str] | None:
        shown = updraft("factory", "status", "--config", str(factory_yaml), "--pilots").stdout
        rows = {
            line.split()[0]: line.split() for line in shown.splitlines() if line.split()[:1] and line.split()[0] in ids
        }
        agree = rows.keys() == ids.keys() and all(
            row[3] == ("pending" if by_state[job] == "PENDING" else "running") and row[4] == ids[job]
            for job, row in rows.items()
        )
        return shown.splitlines() if agree else None

    assert wait_for(factory_agrees, 60, interval=2), "factory status shows each pilot as Slurm does, with its Slurm id"

    # The request drops to 0 idle: the pilot Slurm still queues is removed, and cancelled in Slurm.
    ask(lab, frontend, "hpc", idle=0, max_pilots=3, remove=RemoveMode.IDLE, remove_max=3)
    removed_at = time.monotonic()
    done = once(factory_yaml)
    assert "removed 1," in done.stdout, done.stdout + done.stderr
    wait_for(lambda: slurm_jobs(lab, lab_runtime)[ids[waiting]].state == ENDED_BY_REMOVAL, 60, interval=0.5)
    cancelled_after = time.monotonic() - removed_at
    running = [job for job in ids if job != waiting]
    assert {slurm_jobs(lab, lab_runtime)[ids[job]].state for job in running} == {"RUNNING"}, "running ones stay"

    # Mode all: the running pilots go too, and Slurm records them CANCELLED.
    ask(lab, frontend, "hpc", idle=0, max_pilots=3, remove=RemoveMode.ALL, remove_max=3)
    assert "removed 2," in once(factory_yaml).stdout
    wait_for(lambda: {slurm_jobs(lab, lab_runtime)[ids[job]].state for job in running} == {ENDED_BY_REMOVAL}, 60)
    record = wait_for(lambda: all(ids[j] in slurm.completions(lab) for j in ids) and slurm.completions(lab), 60)
    assert {record[ids[job]]["JobState"] for job in ids} == {ENDED_BY_REMOVAL}
    with capsys.disabled():
        print(
            f"\nhpc: request -> first pilot running in Slurm {first_running:.1f} s, "
            f"removal -> CANCELLED in Slurm {cancelled_after:.1f} s"
        )


def test_a_pilot_ends_inside_its_walltime_and_one_running_too_long_is_cancelled_in_slurm(
    lab: Topology, lab_runtime: Runtime, frontend: FrontendConfig, factory_yaml: Path
) -> None:
    """hpc_short: the glidein fits its life inside the walltime and ends before Slurm or the schedd
    must end it. hpc_stale: the factory's own limit on running (stale.running_seconds) removes it,
    and Slurm cancels it."""
    ask(lab, frontend, "hpc_short", idle=1, max_pilots=1)
    ask(lab, frontend, "hpc_stale", idle=1, max_pilots=1)
    assert "submitted 2," in once(factory_yaml).stdout
    ids = wait_for(lambda: len(found := slurm_ids(pilots(lab))) == 2 and found, 60)
    entry_of = {a["UpdraftEntry"]: ids[f"{a['ClusterId']}.{a['ProcId']}"] for a in pilots(lab)}
    short, stale = entry_of["hpc_short"], entry_of["hpc_stale"]
    wait_for(lambda: slurm_jobs(lab, lab_runtime)[stale].state == "RUNNING", 60)
    invalidate_as(lab, FRONTEND, lab.wms.collector, "UpdraftRequest", "true")  # no replacement asked for

    def stale_removed() -> bool:
        return "removed 1," in once(factory_yaml).stdout or not pilots(lab, 'UpdraftEntry == "hpc_stale"')

    wait_for(stale_removed, 60, interval=3)
    wait_for(lambda: slurm.completions(lab).get(stale), 60)
    records = slurm.completions(lab)
    assert records[stale]["JobState"] == ENDED_BY_REMOVAL
    history = wait_for(
        lambda: schedd(lab).history(f'{PILOTS} && UpdraftEntry == "hpc_stale"', ["RemoveReason"], limit=1), 60
    )
    assert "stale running" in history[0]["RemoveReason"]
    finished = wait_for(lambda: slurm.completions(lab).get(short), 60)
    assert finished["JobState"] == "COMPLETED", finished
    ran = _seconds(finished["EndTime"]) - _seconds(finished["StartTime"])
    assert ran <= WALLTIME, f"the pilot ran {ran} s of a {WALLTIME} s walltime"


def _seconds(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))


def test_jobs_slurm_refuses_become_readable_holds_that_are_removed_and_counted(
    lab: Topology, lab_runtime: Runtime, frontend: FrontendConfig, factory_yaml: Path
) -> None:
    ask(lab, frontend, "hpc_nopart", idle=1, max_pilots=1)
    ask(lab, frontend, "hpc_bigmem", idle=1, max_pilots=1)
    assert "submitted 2," in once(factory_yaml).stdout
    held = wait_for(lambda: len(h := pilots(lab, "JobStatus == 5")) == 2 and h, 90, interval=1)
    assert all(h["HoldReason"].startswith("submission command failed") for h in held), held

    status = updraft("factory", "status", "--config", str(factory_yaml)).stdout
    assert "1 held: Slurm refused the job: invalid partition specified: nosuch" in status, status
    assert "1 held: Slurm refused the job: Memory specification can not be satisfied" in status, status

    done = once(factory_yaml)
    assert "submitted 0, removed 2, released 0" in done.stdout, done.stdout + done.stderr
    assert "entry hpc_nopart: 1 held pilots: Slurm refused the job: invalid partition specified: nosuch" in done.stderr
    assert "entry hpc_bigmem: 1 held pilots: Slurm refused the job: Memory specification" in done.stderr
    plan = updraft("factory", "plan", "--config", str(factory_yaml)).stdout
    assert "refused by the batch system" not in plan, "removed once, not again"

    # Monitoring counted them by kind, in the cycle that removed them.
    (status_file,) = glob.glob(str(lab.work_dir / "factory" / "monitoring" / "**" / "factory-*.json"), recursive=True)
    rows = json.loads(Path(status_file).read_text())["pilots"]
    kinds = {r["entry"]: r["held_by_kind"] for r in rows if r["entry"] in ("hpc_nopart", "hpc_bigmem")}
    assert kinds == {"hpc_nopart": {"batch_refused": 1}, "hpc_bigmem": {"batch_refused": 1}}
    assert not live_slurm_jobs(lab, lab_runtime), "a refused job never runs"


def test_slurmctld_stopped_for_several_cycles_loses_nothing_doubles_nothing_and_provisioning_resumes(
    lab: Topology, lab_runtime: Runtime, frontend: FrontendConfig, factory_yaml: Path
) -> None:
    ask(lab, frontend, "hpc", idle=1, max_pilots=2)
    assert "submitted 1," in once(factory_yaml).stdout
    (first,) = wait_for(lambda: list(slurm_ids(pilots(lab)).values()), 60)
    wait_for(lambda: slurm_jobs(lab, lab_runtime)[first].state == "RUNNING", 60)
    wait_for(lambda: pilots(lab, "JobStatus == 2"), 60)  # the schedd too: the factory counts it running
    before = {f"{a['ClusterId']}.{a['ProcId']}" for a in pilots(lab)}

    control.switch_daemon(lab, "hpc", "SLURMCTLD", on=False)
    try:
        ask(lab, frontend, "hpc", idle=1, max_pilots=2)  # the first pilot runs: one more is wanted
        problems: list[str] = []
        for _ in range(6):  # a minute of cycles without slurmctld
            done = once(factory_yaml)
            problems += [line for line in done.stderr.splitlines() if "entry hpc:" in line]
            assert before <= {f"{a['ClusterId']}.{a['ProcId']}" for a in pilots(lab)}, "the running pilot is kept"
            time.sleep(5)
        assert any("Slurm not reached" in p and "Unable to contact slurm controller" in p for p in problems), problems
        assert any("finds its CE or batch system down since" in p for p in problems), problems
        assert {a["JobStatus"] for a in pilots(lab, 'UpdraftEntry == "hpc"')} <= {1, 2, 5}
    finally:
        control.switch_daemon(lab, "hpc", "SLURMCTLD", on=True)
    slurm.wait_ready(lab, lab_runtime, 60)

    def second_running() -> set[str] | None:
        once(factory_yaml)
        ids = set(slurm_ids(pilots(lab)).values())
        running = {
            i
            for i in ids
            if slurm_jobs(lab, lab_runtime).get(i, None) and slurm_jobs(lab, lab_runtime)[i].state == "RUNNING"
        }
        return ids if len(running) == 2 else None

    back = time.monotonic()
    ids = wait_for(second_running, RESUME_SECONDS, interval=5)
    print(f"\nhpc: slurmctld back -> the next pilot running in Slurm {time.monotonic() - back:.0f} s")
    assert first in ids, "the first pilot came through the outage"
    live = live_slurm_jobs(lab, lab_runtime)
    assert set(live) == ids, f"every live Slurm job is one pilot's, once: {live} vs {ids}"
