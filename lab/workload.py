"""The demo's user workload, and how its progress reads: pure, so it is tested without a pool.

Jobs come in shapes (cores, memory, the sites they accept, how long they
run), as users submit them. One shape asks for more cores than any lab
entry offers, so the demo shows what the frontend does with jobs it cannot
serve. `jobs_progress` and `pilots_progress` turn the ads one query
returns into the counts the demo prints each refresh.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import classad2

from updraft.pilot_ad import JOB_STATUS, JobStatus

WORKLOAD_ATTR = "UpdraftDemoShape"
"""Job attribute naming the job's shape: how the demo finds and counts its own jobs."""


@dataclass(frozen=True)
class Shape:
    name: str
    count: int
    cpus: int
    memory_mb: int
    sites: tuple[str, ...]
    """GLIDEIN_Site values the job accepts (DESIRED_Sites)."""
    seconds: int
    """How long each job sleeps."""
    runnable: bool = True
    """False for the shapes no lab pilot can run: they must stay idle, and no pilot is asked for them."""
    shared_filesystem: bool = False
    """Submitted with ``should_transfer_files = NO``: the job needs the submit host's filesystem."""


DEMO_WORKLOAD: tuple[Shape, ...] = (
    Shape("small-site1", 10, 1, 512, ("Site1",), 10),
    Shape("double-site2", 8, 2, 1024, ("Site2",), 10),
    Shape("short-anywhere", 8, 1, 256, ("Site1", "Site2"), 10),
    Shape("hpc-only", 6, 1, 256, ("HPC",), 10),
    Shape("two-node-hpc", 2, 2, 256, ("HPC2N",), 10),
    Shape("cloud-only", 4, 1, 256, ("Cloud",), 20),
    Shape("too-wide", 4, 4, 1024, ("Site1", "Site2", "HPC", "HPC2N"), 10, runnable=False),
    Shape("huge-memory", 3, 1, 4_000_000, ("Site1", "Site2"), 10, runnable=False),
    Shape("shared-filesystem", 4, 1, 256, ("Site1", "Site2"), 10, runnable=False, shared_filesystem=True),
)
"""49 jobs: 38 runnable on the lab's 2-core pilots (6 only on the HPC site's Slurm, 2 only on its two-node
pilots, 4 only on the cloud's instances), and 11 no lab pilot can run: 4 that want 4 cores, which no entry
has (the two-node pilots too have 2 per node), 3 that want 4 TB of memory, and 4 that need the submit
host's filesystem (their Requirements compare FileSystemDomain, and pilots have their own). Jobs run 10 to
20 s: long enough for the demo's watch (a sample every 2 s) to see them run, and their pilots, which outlive
them by the idle tail, span the monitoring's 10 s steps. Longer jobs only make the run longer: a pilot runs
them in rounds."""


def submit_description(shape: Shape, log: Path) -> dict[str, str]:
    """One shape's jobs as a plain submit description (one cluster of `shape.count` jobs).

    The job starts in the log's folder, which must exist where the schedd
    runs: a path the lab shares between host and daemons.
    """
    return {
        "universe": "vanilla",
        "initialdir": str(log.parent),
        "executable": "/bin/sleep",
        "arguments": str(shape.seconds),
        "log": str(log),
        "request_cpus": str(shape.cpus),
        "request_memory": str(shape.memory_mb),
        "request_disk": "10240",
        **_file_transfer(shape),
        "requirements": "TARGET.IS_GLIDEIN =?= true && stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)",
        # Recorded in the job as MachineAttr<name>0: where it ran, for the demo's summary.
        "job_machine_attrs": "IS_GLIDEIN GLIDEIN_Site",
        f"+{WORKLOAD_ATTR}": classad2.quote(shape.name),
        "+DESIRED_Sites": classad2.quote(",".join(shape.sites)),
    }


def _file_transfer(shape: Shape) -> dict[str, str]:
    """HTCondor adds ``TARGET.FileSystemDomain == MY.FileSystemDomain`` to a job that transfers nothing."""
    if shape.shared_filesystem:
        return {"should_transfer_files": "NO"}
    return {"should_transfer_files": "YES", "when_to_transfer_output": "ON_EXIT"}


JOB_PROJECTION = [WORKLOAD_ATTR, JOB_STATUS, "MachineAttrGLIDEIN_Site0", "MachineAttrIS_GLIDEIN0"]
JOB_STATES: Mapping[int, str] = {
    JobStatus.IDLE: "idle",
    JobStatus.RUNNING: "running",
    JobStatus.COMPLETED: "done",
    JobStatus.HELD: "held",
}


@dataclass(frozen=True)
class JobsProgress:
    """Jobs by shape and state, and where the finished ones ran."""

    by_shape: Mapping[str, Mapping[str, int]]
    done_on_pilots: int
    """Finished jobs whose slot was a pilot (IS_GLIDEIN) of a site the job accepts."""
    done_elsewhere: int

    def count(self, state: str, shapes: Iterable[Shape] = DEMO_WORKLOAD, runnable: bool | None = None) -> int:
        return sum(
            self.by_shape.get(s.name, {}).get(state, 0) for s in shapes if runnable is None or s.runnable is runnable
        )

    def runnable_finished(self, shapes: Iterable[Shape] = DEMO_WORKLOAD) -> bool:
        """Every runnable job is done."""
        return all(self.by_shape.get(s.name, {}).get("done", 0) >= s.count for s in shapes if s.runnable)


def jobs_progress(ads: Iterable[Mapping[str, Any]], shapes: Iterable[Shape] = DEMO_WORKLOAD) -> JobsProgress:
    """From the VO schedds' queue and history ads of the demo's jobs (JOB_PROJECTION)."""
    sites = {s.name: set(s.sites) for s in shapes}
    counts: dict[str, Counter[str]] = {}
    on_pilots = elsewhere = 0
    for ad in ads:
        shape = str(ad.get(WORKLOAD_ATTR, ""))
        state = JOB_STATES.get(int(ad.get(JOB_STATUS, 0)), "other")
        counts.setdefault(shape, Counter())[state] += 1
        if state == "done":
            ran_on_pilot = ad.get("MachineAttrIS_GLIDEIN0") is True
            if ran_on_pilot and ad.get("MachineAttrGLIDEIN_Site0") in sites.get(shape, set()):
                on_pilots += 1
            else:
                elsewhere += 1
    return JobsProgress({k: dict(v) for k, v in counts.items()}, on_pilots, elsewhere)


@dataclass(frozen=True)
class EntryPilots:
    """One entry at one moment: what the frontend asks (its request ad) and the factory's pilots."""

    entry: str
    requested_idle: int = 0
    idle: int = 0
    running: int = 0
    held: int = 0
    requested_max: int = 0

    @property
    def pilots(self) -> int:
        return self.idle + self.running + self.held


def progress_line(elapsed: float, jobs: JobsProgress, pilots: Iterable[EntryPilots]) -> str:
    """One line per refresh: jobs idle/running/done, then each entry's requested/idle/running pilots."""
    entries = "  ".join(
        f"{p.entry}: req {p.requested_idle} idle {p.idle} run {p.running}" + (f" held {p.held}" if p.held else "")
        for p in pilots
    )
    return (
        f"[{elapsed:5.0f}s] jobs idle {jobs.count('idle')} running {jobs.count('running')} "
        f"done {jobs.count('done')}/{sum(s.count for s in DEMO_WORKLOAD if s.runnable)}  |  {entries}"
    )
