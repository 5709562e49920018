"""The real glidein on the lab: sent through a site's CE, it validates the
worker, joins the VO pool, runs a user job, retires after its idle tail,
and reports back in a form the factory's parser reads.

Layers: a staging folder with a manifest (file:// for now) -> a grid job
from the factory schedd running glidein/glidein_startup.sh -> a user job in
the VO schedd -> assertions on the collector, the user job and the report.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import htcondor2
import pytest

import updraft.glidein
from updraft.condor import Collector
from updraft.glidein.report import parse_report
from updraft.lab.topology import Topology

from .jobs import grid_job, wait_for, wait_for_completion

STARTUP = Path(updraft.glidein.__file__).parent / "glidein_startup.sh"
REQUIRED = ("IS_GLIDEIN", "GLIDEIN_Site", "GLIDEIN_Entry_Name", "GLIDEIN_Factory", "GLIDEIN_Name", "GLIDECLIENT_Name",
            "GLIDECLIENT_Group", "GLIDEIN_ClusterId", "GLIDEIN_ProcId", "GLIDEIN_CredentialIdentifier",
            "GLIDEIN_ToRetire", "GLIDEIN_ToDie", "GLIDEIN_Max_Walltime")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def staging(lab: Topology, job_dir: Path) -> tuple[Path, str]:
    """The lab's daemon settings as a condor-config file, and one entry validation script."""
    stage = job_dir / "stage"
    stage.mkdir()
    shutil.copy(lab.common_config, stage / "lab.config")
    (stage / "check.sh").write_text('#!/bin/sh\necho "worker looks fine"\n')
    manifest = stage / "manifest"
    manifest.write_text(f"{sha256(stage / 'lab.config')}  lab.config  condor-config\n"
                        f"{sha256(stage / 'check.sh')}  check.sh  validate-entry\n")
    for path in (stage, *stage.iterdir()):
        path.chmod(0o755)
    return manifest, sha256(manifest)


def test_a_glidein_joins_the_pool_runs_a_job_retires_after_its_idle_tail_and_reports(
    lab: Topology, factory_schedd, vo_schedd, job_dir: Path, staging: tuple[Path, str]
) -> None:
    manifest, digest = staging
    startup = job_dir / "glidein_startup.sh"
    shutil.copy(STARTUP, startup)
    startup.chmod(0o755)
    site = lab.sites[1]
    job = grid_job(job_dir, site, startup, f"--manifest-url file://{manifest} --manifest-sha256 {digest} "
                   f"--collector {lab.vo.collector} --max-walltime 900 --max-idle 120 --idle-tail 20 --failure-sleep 0")
    job["environment"] = ('"UPDRAFT_FACTORY=lab-factory UPDRAFT_ENTRY=site2 UPDRAFT_FRONTEND=lab-vo UPDRAFT_GROUP=main '
                          'UPDRAFT_JOB_ID=$(Cluster).$(Process) UPDRAFT_CREDENTIAL_ID=cred-7 GLIDEIN_Site=Site2 '
                          'GLIDEIN_CPUS=1 GLIDEIN_MaxMemMBs=1024"')
    cluster = factory_schedd.submit(job)

    vo = Collector(lab.vo.collector)
    ours = f"GLIDEIN_ClusterId =?= {cluster} && GLIDEIN_Entry_Name =?= \"site2\""
    slots = wait_for(lambda: vo.query(htcondor2.AdType.Startd, ours, list(REQUIRED)), 240)
    slot = slots[0]
    assert set(REQUIRED) <= set(slot), set(REQUIRED) - set(slot)
    assert (slot["GLIDEIN_Site"], slot["GLIDECLIENT_Name"], slot["GLIDEIN_CredentialIdentifier"]) == ("Site2", "lab-vo", "cred-7")
    assert slot["GLIDEIN_ToRetire"] <= slot["GLIDEIN_ToDie"] and slot["GLIDEIN_Max_Walltime"] == 900

    user = vo_schedd.submit({
        "executable": "/bin/echo", "arguments": "ran-on-a-glidein", "initialdir": str(job_dir),
        "output": str(job_dir / "user.out"), "log": str(job_dir / "user.log"), "request_memory": "64",
        "requirements": f"IS_GLIDEIN =?= True && GLIDEIN_ClusterId =?= {cluster}", "should_transfer_files": "YES",
    })
    assert wait_for_completion(vo_schedd, user, 180)["ExitCode"] == 0
    assert (job_dir / "user.out").read_text().strip() == "ran-on-a-glidein"

    # Nobody sends more work: the pilot leaves by itself after its idle tail.
    wait_for_completion(factory_schedd, cluster, 240)
    report = parse_report((job_dir / "out").read_text())
    assert report is not None and report.status == "ok", (job_dir / "out").read_text()
    assert (report.entry, report.job_id, report.credential_id) == ("site2", f"{cluster}.0", "cred-7")
    assert report.jobs_run == 1
    assert [(v.script, v.result) for v in report.validations] == [("check.sh", "OK")]
    assert report.lifetime < 600  # it retired on its idle tail, long before its walltime
