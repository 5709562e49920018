"""Waiting on real jobs, with the reason when one goes wrong."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from updraft.condor import Schedd
from updraft.glidein.assemble import shipped_script
from updraft.lab.labconfig import pilot_config
from updraft.lab.topology import PILOT, UID_DOMAIN, Site, Topology
from updraft.tokens import PILOT_AUTHZ, load_signing_key, mint

DATA = Path(__file__).parent / "data"
GLIDEIN = shipped_script()
COMPLETED, HELD = 4, 5
PROJECTION = [
    "ClusterId",
    "ProcId",
    "JobStatus",
    "HoldReason",
    "ExitCode",
    "RemoteHost",
    "LastRemoteHost",
    "MachineAttrGLIDEIN_Site0",
    "MachineAttrIS_GLIDEIN0",
    "GridJobId",
]


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
        time.sleep(1)
    raise AssertionError(f"job {cluster} not completed within {timeout:g} s; last seen {last}")


def stage(job_dir: Path, script: str) -> Path:
    """Copy a script from tests/integration/data (or the glidein) into a job folder."""
    source = GLIDEIN if script == GLIDEIN.name else DATA / script
    target = job_dir / script
    shutil.copy(source, target)
    target.chmod(0o755)
    return target


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_staging(lab: Topology, job_dir: Path, scripts: dict[str, str] | None = None) -> tuple[Path, str]:
    """A factory-style manifest served as file://: the lab's daemon settings plus entry scripts.

    For tests of the glidein alone; the factory's own staging goes over HTTP.
    """
    stage_dir = job_dir / "stage"
    stage_dir.mkdir()
    (stage_dir / "lab.config").write_text(pilot_config(lab.common_config.read_text()))
    lines = [f"{sha256(stage_dir / 'lab.config')}  lab.config  condor-config"]
    for name, text in (scripts or {}).items():
        (stage_dir / name).write_text(text)
        lines.append(f"{sha256(stage_dir / name)}  {name}  validate-entry")
    manifest = stage_dir / "manifest"
    manifest.write_text("\n".join(lines) + "\n")
    for path in (stage_dir, *stage_dir.iterdir()):
        path.chmod(0o755)
    return manifest, sha256(manifest)


def pilot_token(
    lab: Topology, identity: str = PILOT.identity, lifetime: int = 3600, authz: tuple[str, ...] = PILOT_AUTHZ
) -> str:
    """A pilot token as the lab's frontend mints it (from the VO pool's signing key)."""
    return mint(load_signing_key(lab.secrets_dir / "POOL"), identity, UID_DOMAIN, lifetime, time.time(), authz)


def glidein_job(
    lab: Topology,
    job_dir: Path,
    site: Site,
    *,
    options: str = "",
    cpus: int = 1,
    memory_mb: int = 512,
    entry: str | None = None,
    credential_id: str = "cred-1",
    scripts: dict[str, str] | None = None,
    environment: dict[str, str] | None = None,
    token: str | None = "",
) -> dict[str, str]:
    """A grid job that runs the real glidein on `site`, as the factory would send it.

    `token`: the pilot token it carries; "" mints a valid one, None sends none.
    """
    manifest, digest = file_staging(lab, job_dir, scripts)
    startup = stage(job_dir, GLIDEIN.name)
    job = grid_job(
        job_dir,
        site,
        startup,
        f"--manifest-url file://{manifest} --manifest-sha256 {digest} "
        f"--collector {lab.vo.collector} --max-walltime 900 --shutdown-margin 30 --failure-sleep 0 {options}",
    )
    variables = {
        "UPDRAFT_FACTORY": "lab-factory",
        "UPDRAFT_ENTRY": entry or site.name,
        "UPDRAFT_FRONTEND": "lab-vo",
        "UPDRAFT_GROUP": "main",
        "UPDRAFT_JOB_ID": "$(Cluster).$(Process)",
        "UPDRAFT_CREDENTIAL_ID": credential_id,
        "GLIDEIN_Site": site.glidein_site,
        "GLIDEIN_CPUS": str(cpus),
        "GLIDEIN_MaxMemMBs": str(memory_mb),
        **(environment or {}),
    }
    if token is not None:
        token_file = job_dir / "pilot.token"
        token_file.write_text((token or pilot_token(lab)) + "\n")
        token_file.chmod(0o644)  # read by the grid manager, which runs as the operator
        job["transfer_input_files"] = job["encrypt_input_files"] = str(token_file)
        variables["UPDRAFT_PILOT_TOKEN"] = token_file.name
    job["environment"] = '"' + " ".join(f"{k}={v}" for k, v in variables.items()) + '"'
    return job


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
