"""The lab's HPC site: a real Slurm cluster of two nodes on one host.

munged, slurmctld and one slurmd per node run from the lab's Debian root
as plain programs under the HPC instance's condor_master (see
`programs`), so `lab up`, `lab down`, `lab stop hpc --daemon SLURMCTLD`
and the leftover sweep treat them like any other lab daemon. Everything
of one lab's cluster (config, munge key and socket, state, spool, logs)
lives in the lab folder, so several labs share the root without meeting.

What worked in this sandbox (../shared/notes): no cgroup filesystem, so
`CgroupPlugin=disabled` and the linuxproc process tracker; several slurmd
on one host differ only by port and node name.

Accounting has no database here; `jobcomp/filetxt` keeps one line per
finished job (its final state, as `sacct` would say it), and finished
jobs stay visible to `squeue`/`scontrol` for an hour.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from updraft.atomicwrite import write_atomically
from updraft.errors import LabError
from updraft.lab.runtime import Runtime, descendants, process_parents
from updraft.lab.topology import HpcSite, Program, Topology

SUBDIRS = ("state", "spool", "log", "run")
MUNGE_KEY_BYTES = 1024
FINISHED_JOB_SECONDS = 3600
"""How long a finished job stays in slurmctld's memory (MinJobAge): tests read final states from it."""


@dataclass(frozen=True)
class SlurmJob:
    """One job as Slurm itself reports it."""

    job_id: str
    state: str
    user: str
    nodes: int
    node_list: str
    reason: str


def munge_socket(topology: Topology) -> Path:
    return topology.slurm_dir / "run" / "munge.socket"


def munge_key(topology: Topology) -> Path:
    return topology.slurm_dir / "munge.key"


def job_completions(topology: Topology) -> Path:
    """jobcomp/filetxt's record of every finished job."""
    return topology.slurm_dir / "log" / "jobcomp.log"


def first_job_id(topology: Topology) -> int:
    """Labs differ by base port, so their job ids never meet (Slurm's largest id is 67,108,863)."""
    return topology.base_port * 1000


JOB_IDS_PER_LAB = 10_000
"""Job ids a lab's cluster may use from its first: labs a port apart would clash on Slurm's own ports first."""


def step_job_id(cmdline: bytes) -> int | None:
    """The job id a slurmstepd works for, from its command line (``slurmstepd: [123.batch]``)."""
    prefix = b"slurmstepd: ["
    if not cmdline.startswith(prefix):
        return None
    job = cmdline[len(prefix) :].split(b".", 1)[0].split(b"]", 1)[0]
    return int(job) if job.isdigit() else None


def job_processes(topology: Topology) -> list[int]:
    """This lab's slurmstepds and every process below them (the pilots).

    slurmstepd outlives slurmd and carries no lab marker in its environment,
    nor do the pilots of the SSH login user; a job id in this lab's range
    names them (`first_job_id`).
    """
    first = first_job_id(topology)
    parents = process_parents()
    steps = []
    for pid in parents:
        try:
            job = step_job_id(Path(f"/proc/{pid}/cmdline").read_bytes())
        except OSError:
            continue
        if job is not None and first <= job < first + JOB_IDS_PER_LAB:
            steps.append(pid)
    return [pid for step in steps for pid in (step, *descendants(parents, step))]


def render_slurm_conf(topology: Topology) -> str:
    """slurm.conf for the lab's cluster: pure, so it is tested without daemons."""
    hpc, folder = topology.hpc, topology.slurm_dir
    lines = [
        "# Written by `updraft lab up`: the lab's HPC site (lab/slurm.py).",
        "ClusterName=updraftlab",
        # Job ids unique to this lab: the blahp caches `squeue` answers per user in the root's
        # /var/tmp, which every lab in the root shares.
        f"FirstJobId={first_job_id(topology)}",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmctldPort={hpc.ctld_port}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket(topology)}",
        "SlurmUser=root",
        # No cgroup filesystem in this sandbox: track processes by parentage, bind nothing.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={job_completions(topology)}",
        f"MinJobAge={FINISHED_JOB_SECONDS}",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "SchedulerType=sched/backfill",
        # A lab cycle is seconds: schedule and notice dead nodes quickly.
        "SchedulerParameters=sched_interval=2",
        "SlurmdTimeout=30",
        "MessageTimeout=10",
        "ReturnToService=2",
        "MpiDefault=none",
        "SlurmdParameters=config_overrides",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}/%n",
        f"SlurmctldPidFile={folder / 'run'}/slurmctld.pid",
        f"SlurmdPidFile={folder / 'run'}/slurmd-%n.pid",
        f"SlurmctldLogFile={folder / 'log'}/slurmctld.log",
        f"SlurmdLogFile={folder / 'log'}/slurmd-%n.log",
        *(
            f"NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 Port={port} "
            f"CPUs={hpc.cpus_per_node} RealMemory={hpc.memory_mb_per_node} State=UNKNOWN"
            for node, port in zip(hpc.nodes, hpc.node_ports, strict=True)
        ),
        f"PartitionName={hpc.partition} Nodes={','.join(hpc.nodes)} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def render_cgroup_conf() -> str:
    """slurmd refuses to start without a cgroup plugin it can initialise; the sandbox has none."""
    return "# Written by `updraft lab up`: this sandbox has no cgroup filesystem.\nCgroupPlugin=disabled\n"


def programs(topology: Topology) -> list[Program]:
    """What the HPC instance's master runs, all in the foreground so the master sees them exit."""
    folder = topology.slurm_dir
    munged = Program(
        "MUNGED",
        "/usr/sbin/runuser",
        f"-u munge -- /usr/sbin/munged --foreground --socket={munge_socket(topology)} "
        f"--key-file={munge_key(topology)} --pid-file={folder}/run/munged.pid "
        f"--log-file={folder}/log/munged.log --seed-file={folder}/run/munged.seed",
    )
    ctld = Program("SLURMCTLD", "/usr/sbin/slurmctld", f"-D -f {topology.slurm_conf}")
    nodes = [
        Program(f"SLURMD_{node.upper()}", "/usr/sbin/slurmd", f"-D -N {node} -f {topology.slurm_conf}")
        for node in topology.hpc.nodes
    ]
    env = f"SLURM_CONF={topology.slurm_conf}"
    return [dataclasses.replace(program, environment=env) for program in (munged, ctld, *nodes)]


def slurm_env(topology: Topology) -> dict[str, str]:
    """The environment every Slurm command of this lab needs (and that marks it as the lab's)."""
    return {"SLURM_CONF": str(topology.slurm_conf), "CONDOR_CONFIG": str(topology.client_config)}


def write_files(topology: Topology, runtime: Runtime) -> None:
    """Folders and (once per lab folder) the munge key, owned as the daemons need them; the configs
    come with the lab's others (`updraft.lab.control.render_configs`)."""
    munge_ids = runtime.ids("munge")
    for sub in SUBDIRS:
        (topology.slurm_dir / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("run", "log"):
        os.chown(topology.slurm_dir / sub, *munge_ids)
    key = munge_key(topology)
    if not key.exists():
        write_atomically(key, secrets.token_bytes(MUNGE_KEY_BYTES), 0o400, munge_ids)


def node_states(topology: Topology, runtime: Runtime) -> dict[str, str]:
    """Each node's state as `sinfo` reports it (idle, allocated, down*...); LabError when slurmctld is not answering."""
    out = runtime.run(["sinfo", "--noheader", "--Node", "--format=%N %T"], slurm_env(topology), "asking Slurm (sinfo)")
    states = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 2:
            states[fields[0]] = fields[1]
    return states


def wait_ready(topology: Topology, runtime: Runtime, timeout: float) -> dict[str, str]:
    """Wait until slurmctld answers and every node is up (not down, not unknown)."""
    deadline = time.monotonic() + timeout
    last = "slurmctld not answering"
    while time.monotonic() < deadline:
        try:
            states = node_states(topology, runtime)
        except LabError as err:
            last = str(err)
        else:
            if set(states) == set(topology.hpc.nodes) and all(usable(s) for s in states.values()):
                return states
            last = ", ".join(f"{n} {s}" for n, s in sorted(states.items()))
        time.sleep(0.5)
    raise LabError(f"Slurm not ready after {timeout:g} s ({last}); logs in {topology.slurm_dir / 'log'}")


def usable(state: str) -> bool:
    return state.rstrip("*~#!%$@^-") in ("idle", "mixed", "allocated", "completing")


def jobs(topology: Topology, runtime: Runtime) -> dict[str, SlurmJob]:
    """Every job slurmctld knows, finished ones included (for FINISHED_JOB_SECONDS), by job id."""
    out = runtime.run(
        ["squeue", "--noheader", "--states=all", "--format=%i|%T|%u|%D|%N|%r"],
        slurm_env(topology),
        "asking Slurm (squeue)",
    )
    found = {}
    for line in out.splitlines():
        fields = line.split("|")
        if len(fields) == 6:
            job_id, state, user, nodes, node_list, reason = fields
            found[job_id] = SlurmJob(job_id, state, user, int(nodes or 0), node_list, reason)
    return found


def completions(topology: Topology) -> dict[str, Mapping[str, str]]:
    """The jobcomp record, by job id: JobState, UserId, NodeCnt, NodeList... for every finished job."""
    try:
        text = job_completions(topology).read_text()
    except FileNotFoundError:
        return {}
    records: dict[str, Mapping[str, str]] = {}
    for line in text.splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if "JobId" in fields:
            records[fields["JobId"]] = fields
    return records


ACTIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED"})
"""Job states in which a job's processes may still exist on a node."""


def cancel_all(topology: Topology, runtime: Runtime, timeout: float = 30.0) -> None:
    """Cancel every job of the lab's cluster and wait until Slurm has ended them.

    Before `down`: a job's slurmstepd outlives slurmd and does not carry the
    lab's marker, so it must be gone before the daemons are (otherwise it
    keeps the lab folder busy and the unmount fails).
    """
    env = slurm_env(topology)
    try:
        runtime.run(["scancel", f"--partition={topology.hpc.partition}"], env, "cancelling Slurm jobs")
    except LabError:
        return  # slurmctld already gone: the leftover sweep takes the job processes
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not any(job.state in ACTIVE_STATES for job in jobs(topology, runtime).values()):
                return
        except LabError:
            return
        time.sleep(0.5)


def describe(hpc: HpcSite, states: Mapping[str, str]) -> list[str]:
    """`lab status` lines for the cluster."""
    return [
        f"{hpc.name:<9} {'slurmd':<13} {node:<22} {'slurmctld':<16} {states.get(node, 'MISSING')}" for node in hpc.nodes
    ]
