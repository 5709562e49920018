"""Waiting on real jobs, with the reason when one goes wrong."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from updraft.condor import Schedd
from updraft.lab.topology import Site

DATA = Path(__file__).parent / "data"
COMPLETED, HELD = 4, 5
PROJECTION = ["ClusterId", "ProcId", "JobStatus", "HoldReason", "ExitCode", "RemoteHost", "LastRemoteHost",
              "MachineAttrGLIDEIN_Site0", "MachineAttrIS_GLIDEIN0", "GridJobId"]


def wait_for_completion(schedd: Schedd, cluster: int, timeout: float) -> dict:
    """The job's final ad once it has left the queue completed; fails fast when it is held."""
    deadline = time.monotonic() + timeout
    constraint = f"ClusterId == {cluster}"
    last: list[dict] = []
    while time.monotonic() < deadline:
        last = schedd.query(constraint, PROJECTION)
        held = [ad for ad in last if ad.get("JobStatus") == HELD]
        assert not held, f"job {cluster} held: {held[0].get('HoldReason')}"
        if not last:
            done = schedd.history(constraint, PROJECTION, limit=1)
            assert done, f"job {cluster} left the queue of {schedd.name} but is not in its history"
            return done[0]
        time.sleep(2)
    raise AssertionError(f"job {cluster} not completed within {timeout:g} s; last seen {last}")


def stage(job_dir: Path, script: str) -> Path:
    """Copy a script from tests/integration/data into a job folder."""
    target = job_dir / script
    shutil.copy(DATA / script, target)
    target.chmod(0o755)
    return target


def grid_job(job_dir: Path, site: Site, executable: Path, arguments: str) -> dict[str, str]:
    return {
        "universe": "grid",
        "grid_resource": f"condor {site.ce_resource}",
        "executable": str(executable),
        "arguments": arguments,
        "initialdir": str(job_dir),
        "output": str(job_dir / "out"),
        "error": str(job_dir / "err"),
        "log": str(job_dir / "log"),
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        "+remote_jobuniverse": "5",
        "+remote_requirements": "True",
    }
