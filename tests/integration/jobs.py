"""Waiting on real jobs, with the reason when one goes wrong."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import updraft.lab
from updraft.condor import Schedd
from updraft.lab.topology import Site, Topology

DATA = Path(__file__).parent / "data"
LAB_PILOT = Path(updraft.lab.__file__).parent / "pilot" / "lab_pilot.sh"
COMPLETED, HELD = 4, 5
PROJECTION = ["ClusterId", "ProcId", "JobStatus", "HoldReason", "ExitCode", "RemoteHost", "LastRemoteHost",
              "MachineAttrGLIDEIN_Site0", "MachineAttrIS_GLIDEIN0", "GridJobId"]


def wait_for(condition, timeout: float, interval: float = 1.0):
    """Poll `condition` until it returns something truthy, and return that; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"condition not met within {timeout:g} s"
        time.sleep(interval)


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
    """Copy a script from tests/integration/data (or the lab's pilot) into a job folder."""
    source = LAB_PILOT if script == LAB_PILOT.name else DATA / script
    target = job_dir / script
    shutil.copy(source, target)
    target.chmod(0o755)
    return target


def pilot_environment(lab: Topology, site: Site, lifetime: int = 600, **identity: str) -> str:
    """The environment the factory would give the lab pilot (HTCondor's quoted form)."""
    pairs = {"LAB_COMMON_CONFIG": lab.common_config, "LAB_VO_COLLECTOR": lab.vo.collector,
             "GLIDEIN_Site": site.glidein_site, "LAB_PILOT_LIFETIME": lifetime,
             **{f"UPDRAFT_{key.upper()}": value for key, value in identity.items()}}
    return '"' + " ".join(f"{key}={value}" for key, value in pairs.items()) + '"'


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
