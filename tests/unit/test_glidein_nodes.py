"""glidein_startup.sh on several nodes: the head prepares once, a launcher starts one
`--node-run` per node, each node runs its own condor_master, the head reports for all.

The launcher here is a small local script that runs the per-node command N times
with UPDRAFT_NODE_INDEX=0..N-1 (or a fake `srun` setting SLURM_NODEID), and the
condor_master is `history_master`: it leaves ROOT/history.<i> as node i's history.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from updraft.glidein.report import REPORT_BEGIN

from .test_glidein_startup import (
    IDENTITY,
    SCRIPT,
    SHELL,
    Pilot,
    Run,
    assert_failed,
    fake_condor,
    history_ad,
    history_master,
)


@pytest.fixture
def pilot(tmp_path: Path) -> Pilot:
    return Pilot(tmp_path)


def launcher(pilot: Pilot, skip: int | None = None, first: str = "") -> str:
    """A --node-launcher: runs its arguments once per node, in parallel, as `srun` would;
    records them in ROOT/launcher.args. SKIP: a node it never starts; FIRST: sh to run before."""
    path = pilot.root / "launch-nodes"
    path.write_text(
        "#!/bin/sh\n"
        "count=$1\nshift\n"
        f'echo "$@" > {pilot.root}/launcher.args\n'
        'echo "launcher: starting $count nodes"\n'  # on stdout, as launchers do
        f"{first}\n"
        "i=0\n"
        'while [ "$i" -lt "$count" ]; do\n'
        f'    if [ "$i" != "{skip}" ]; then UPDRAFT_NODE_INDEX=$i "$@" & fi\n'
        "    i=$((i + 1))\n"
        "done\n"
        "wait\n"
    )
    path.chmod(0o755)
    return str(path)


def run_nodes(
    pilot: Pilot, count: int, *extra: str, skip: int | None = None, first: str = "", env: dict[str, str] | None = None
) -> Run:
    condor = fake_condor(pilot.root, history_master(pilot.root))
    return pilot.run(
        "--condor-dir",
        str(condor),
        "--nodes",
        str(count),
        "--node-launcher",
        f"{launcher(pilot, skip, first)} {count}",
        *extra,
        dry_run=False,
        env=env,
    )


def job(cluster: int, cpus: int, seconds: int, start: int = 1000) -> str:
    return history_ad(
        f"ClusterId={cluster} ProcId=0", JobDuration=seconds, RequestCpus=cpus, ExitCode=0, JobCurrentStartDate=start
    )


# --- how many nodes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "count"),
    [
        ({"SLURM_JOB_NUM_NODES": "3"}, 3),
        ({"PBS_NUM_NODES": "4"}, 4),
        ({"SLURM_JOB_NUM_NODES": "3", "PBS_NUM_NODES": "4"}, 3),
        ({"GLIDEIN_Nodes": "5", "SLURM_JOB_NUM_NODES": "3"}, 5),
        ({"UPDRAFT_NODES": "6", "GLIDEIN_Nodes": "5"}, 6),
    ],
)
def test_node_count_from_the_environment_needs_a_launcher(pilot: Pilot, env: dict[str, str], count: int) -> None:
    report = assert_failed(pilot.run(env=env), "config", f"{count} nodes but no --node-launcher")
    assert report.nodes == count


def test_node_count_from_distinct_lines_of_the_pbs_nodefile(pilot: Pilot) -> None:
    nodefile = pilot.root / "nodefile"
    nodefile.write_text("wn1\nwn1\nwn2\nwn2\nwn1\n")
    assert_failed(pilot.run(env={"PBS_NODEFILE": str(nodefile)}), "config", "2 nodes but no --node-launcher")


def test_nodes_option_wins_over_the_batch_system(pilot: Pilot) -> None:
    report = pilot.run("--nodes", "1", env={"SLURM_JOB_NUM_NODES": "8"}).report
    assert report.ok and report.nodes == 1, report.reason


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (("--nodes", "0"), {}, "--nodes"),
        (("--nodes", "two"), {}, "'two' (from --nodes)"),
        ((), {"SLURM_JOB_NUM_NODES": "2(x3)"}, "from SLURM_JOB_NUM_NODES"),
    ],
)
def test_bad_node_counts_fail_args(pilot: Pilot, args: tuple[str, ...], env: dict[str, str], named: str) -> None:
    assert_failed(pilot.run(*args, env=env), "args", "positive whole number", named)


# --- the head's preparation ------------------------------------------------------


def test_head_prepares_the_shared_work_dir_once(pilot: Pilot) -> None:
    run = pilot.run("--nodes", "3", "--node-launcher", "mpiexec -n 3", env={"GLIDEIN_CPUS": "8"})
    report = run.report
    assert report.ok and (report.nodes, report.cpus) == (3, 8), report.reason
    assert report.glidein_name.endswith("_node*")
    lines = run.config.splitlines()
    assert "GLIDEIN_Nodes = 3" in lines and "GLIDEIN_NodeIndex = 0" in lines
    assert not any(line.startswith(("STARTD_NAME", "MASTER_NAME")) for line in lines)  # each node names itself
    assert (pilot.work / "glidein_startup.sh").read_bytes() == SCRIPT.read_bytes()
    conf = (pilot.work / "condor" / "nodes.conf").read_text().splitlines()
    assert "nodes=3" in conf and f"die_time={report.die_time}" in conf


# --- running ---------------------------------------------------------------------------


def test_every_node_runs_its_own_condor_and_the_head_reports_for_all(pilot: Pilot) -> None:
    (pilot.root / "history.0").write_text(job(1, 2, 100))
    (pilot.root / "history.2").write_text(job(2, 1, 50) + job(3, 4, 10))
    run = run_nodes(pilot, 3, env={"GLIDEIN_CPUS": "4"})
    report = run.report
    assert report.ok and report.condor_exit == 0, report.reason + run.stderr
    assert (report.nodes, report.cpus, report.jobs_run, report.busy_seconds) == (3, 4, 3, 160)
    assert report.busy_core_seconds == report.goodput_core_seconds == 200 + 50 + 40
    # One report, and nothing else, on stdout: the nodes write to stderr.
    assert run.stdout.startswith(REPORT_BEGIN) and run.stdout.count(REPORT_BEGIN) == 1
    work = pilot.work
    assert (pilot.root / "launcher.args").read_text().split() == [
        "sh",
        f"{work}/glidein_startup.sh",
        "--node-run",
        str(work),
    ]
    prefix = report.glidein_name.removesuffix("*")
    for index in range(3):
        node_config = work / "condor" / f"node-{index}" / "condor_config"
        assert (pilot.root / f"master.{index}").read_text().strip() == str(node_config)
        lines = node_config.read_text().splitlines()
        assert lines[1] == f"include : {work}/condor/condor_config"
        assert f"LOCAL_DIR = {work}/condor/node-{index}" in lines
        assert f"GLIDEIN_NodeIndex = {index}" in lines
        names = [line for line in lines if line.startswith(("STARTD_NAME = ", "MASTER_NAME = "))]
        assert len(names) == 2 and all(f" = {prefix}{index}@" in line for line in names), names
        assert (work / "condor" / f"node-{index}" / "condor_exit").read_text().strip() == "0"


def test_a_failing_node_fails_the_condor_step(pilot: Pilot) -> None:
    (pilot.root / "exit.1").write_text("3")
    report = assert_failed(run_nodes(pilot, 3), "condor", "node 1: condor_master exited with status 3")
    assert report.condor_exit == 3


def test_a_node_the_launcher_never_started_fails_the_condor_step(pilot: Pilot) -> None:
    assert_failed(run_nodes(pilot, 3, skip=2), "condor", "node 2 of 3 left no result")


def test_a_node_that_cannot_start_condor_tells_the_head_why(pilot: Pilot) -> None:
    # The die time in the shared nodes.conf has passed by the time the nodes start.
    conf = pilot.work / "condor" / "nodes.conf"
    run = run_nodes(pilot, 2, first=f"sed 's/^die_time=.*/die_time=1/' {conf} > {conf}.new && mv {conf}.new {conf}")
    assert_failed(run, "condor", "node 0: die time passed before condor could start")
    assert not list(pilot.root.glob("master.*"))


def test_a_black_hole_is_judged_per_node(pilot: Pilot) -> None:
    # Node 0 and node 1 each start two jobs close together: fine for a limit of 2,
    # though their sum would not be. Node 1's third start makes it a black hole.
    (pilot.root / "history.0").write_text(job(1, 1, 5, start=100) + job(2, 1, 5, start=101))
    (pilot.root / "history.1").write_text(job(3, 1, 5, start=100) + job(4, 1, 5, start=101))
    assert run_nodes(pilot, 2, "--blackhole-jobs", "2").report.ok
    (pilot.root / "history.0").unlink()
    (pilot.root / "history.1").write_text(job(5, 1, 5, start=102))  # appended to node 1's history
    assert_failed(
        run_nodes_again(pilot, 2, "--blackhole-jobs", "2"), "blackhole", "node 1: 3 jobs started within 600 s (limit 2)"
    )


def test_each_node_shuts_down_after_its_own_idle_tail(pilot: Pilot) -> None:
    # Each node's master leaves a history (a job has ended) and would then run for a minute:
    # only the node's idle-tail watcher ends it, which needs the head's --idle-tail on the node.
    master = history_master(pilot.root) + "trap 'exit 0' TERM\nsleep 60 &\nwait\n"
    condor = fake_condor(pilot.root, master)
    for index in range(2):
        (pilot.root / f"history.{index}").write_text(job(index + 1, 1, 5))
    started = time.monotonic()
    run = pilot.run(
        "--condor-dir",
        str(condor),
        "--nodes",
        "2",
        "--node-launcher",
        f"{launcher(pilot)} 2",
        "--idle-tail",
        "1",
        dry_run=False,
    )
    assert time.monotonic() - started < 30, "the nodes waited for their masters instead of their idle tail"
    report = run.report
    assert report.ok and report.condor_exit == 0, report.reason + run.stderr
    assert "Illegal number" not in run.stderr
    for index in range(2):
        assert (pilot.work / "condor" / f"node-{index}" / "idle_tail_reached").exists()
    assert "idle_tail=1" in (pilot.work / "condor" / "nodes.conf").read_text().splitlines()


def test_node_scratch_puts_each_nodes_sandboxes_and_locks_on_its_own_disk_and_removes_them(pilot: Pilot) -> None:
    scratch = pilot.root / "local-disk"
    scratch.mkdir()
    (pilot.root / "history.1").write_text(job(1, 2, 100))
    # Each master records whether its EXECUTE and LOCK exist while it runs.
    master = history_master(pilot.root).replace(
        "index=$(value GLIDEIN_NodeIndex)\n",
        "index=$(value GLIDEIN_NodeIndex)\n"
        f'if [ -d "$(value EXECUTE)" ] && [ -d "$(value LOCK)" ]; then echo yes > {pilot.root}/dirs.$index; fi\n',
    )
    condor = fake_condor(pilot.root, master)
    run = pilot.run(
        "--condor-dir",
        str(condor),
        "--nodes",
        "2",
        "--node-launcher",
        f"{launcher(pilot)} 2",
        "--node-scratch",
        str(scratch),
        dry_run=False,
    )
    report = run.report
    assert report.ok and report.jobs_run == 1, report.reason + run.stderr  # the history stays shared
    prefix = report.glidein_name.removesuffix("*")
    for index in range(2):
        lines = (pilot.work / "condor" / f"node-{index}" / "condor_config").read_text().splitlines()
        local = scratch / f"{prefix.removesuffix('_node')}_node{index}"
        assert f"EXECUTE = {local}/execute" in lines and f"LOCK = {local}/lock" in lines, lines
        assert f"STARTD_HISTORY = {pilot.work}/condor/node-{index}/log/startd_history" in lines
        assert (pilot.root / f"dirs.{index}").read_text().strip() == "yes"
    assert list(scratch.iterdir()) == [], "each node removes its own scratch folder"


def test_node_scratch_must_be_an_absolute_path(pilot: Pilot) -> None:
    assert_failed(pilot.run("--nodes", "2", "--node-launcher", "x", "--node-scratch", "tmp"), "args", "absolute path")


def run_nodes_again(pilot: Pilot, count: int, *extra: str) -> Run:
    """run_nodes in the same work dir (the fake condor and launcher already exist)."""
    return pilot.run(
        "--condor-dir",
        str(pilot.root / "condor"),
        "--nodes",
        str(count),
        "--node-launcher",
        f"{pilot.root}/launch-nodes {count}",
        *extra,
        dry_run=False,
    )


def test_srun_is_the_default_launcher_inside_a_slurm_job(pilot: Pilot) -> None:
    bin_dir = pilot.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {pilot.root}/srun.args\n'
        'while [ "${1#--}" != "$1" ]; do shift; done\n'  # drop srun's own options
        'SLURM_NODEID=0 "$@" & SLURM_NODEID=1 "$@" & wait\n'
    )
    (bin_dir / "srun").chmod(0o755)
    (pilot.root / "history.1").write_text(job(1, 3, 10))
    condor = fake_condor(pilot.root, history_master(pilot.root))
    report = pilot.run(
        "--condor-dir",
        str(condor),
        dry_run=False,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "SLURM_JOB_ID": "77",
            "SLURM_JOB_NUM_NODES": "2",
            "GLIDEIN_CPUS": "16",
        },
    ).report
    assert report.ok and report.nodes == 2 and report.busy_core_seconds == 30, report.reason
    assert (pilot.root / "srun.args").read_text().split() == [
        "--nodes=2",
        "--ntasks=2",
        "--ntasks-per-node=1",
        "--cpus-per-task=16",
        "sh",
        f"{pilot.work}/glidein_startup.sh",
        "--node-run",
        str(pilot.work),
    ]


# --- one node on its own (--node-run) ------------------------------------------------------


def node_run(pilot: Pilot, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Prepare a 3-node work dir (dry run), then start one node by hand."""
    condor = fake_condor(pilot.root, history_master(pilot.root))
    assert pilot.run("--condor-dir", str(condor), "--nodes", "3", "--node-launcher", "unused").report.ok
    return subprocess.run(
        [SHELL, str(pilot.work / "glidein_startup.sh"), "--node-run", str(pilot.work)],
        env={"PATH": os.environ["PATH"], **IDENTITY, **env},
        capture_output=True,
        text=True,
        timeout=20,
    )


@pytest.mark.parametrize(
    ("env", "index"),
    [
        ({"UPDRAFT_NODE_INDEX": "2", "SLURM_NODEID": "1"}, 2),
        ({"SLURM_NODEID": "1", "SLURM_PROCID": "2"}, 1),
        ({"SLURM_PROCID": "2", "PBS_VNODENUM": "1"}, 2),
        ({"PBS_VNODENUM": "1", "OMPI_COMM_WORLD_RANK": "2"}, 1),
        ({"OMPI_COMM_WORLD_RANK": "2", "PMI_RANK": "1"}, 2),
        ({"PMI_RANK": "1"}, 1),
    ],
)
def test_node_index_comes_from_the_first_launcher_variable_set(pilot: Pilot, env: dict[str, str], index: int) -> None:
    done = node_run(pilot, env)
    assert done.returncode == 0 and done.stdout == "", done.stderr
    assert (pilot.root / f"master.{index}").read_text().strip() == f"{pilot.work}/condor/node-{index}/condor_config"


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({}, "no node index"),
        ({"UPDRAFT_NODE_INDEX": "3"}, "node index 3 is not below the node count 3"),
        ({"SLURM_NODEID": "x1"}, "no node index"),
    ],
)
def test_a_node_without_a_usable_index_says_why(pilot: Pilot, env: dict[str, str], error: str) -> None:
    done = node_run(pilot, env)
    assert done.returncode != 0 and error in done.stderr and done.stdout == ""
    assert not list(pilot.root.glob("master.*"))


def test_node_run_without_a_prepared_work_dir_fails(tmp_path: Path) -> None:
    done = subprocess.run(
        [SHELL, str(SCRIPT), "--node-run", str(tmp_path)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode != 0 and "nodes.conf" in done.stderr and done.stdout == ""
