"""The lab is a real grid: HTCondor-C reaches every site, and the VO pool
runs user jobs on a startd that a grid job started on a site worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from updraft.condor import Schedd
from updraft.lab.topology import Topology

from .jobs import glidein_job, grid_job, stage, wait_for_completion

TIMEOUT = 240


@pytest.fixture(scope="module")
def round_trips(lab: Topology, factory_schedd: Schedd) -> dict[str, tuple[dict, str]]:
    """One grid job per site from the factory schedd, all in flight at once."""
    clusters = {}
    for site in lab.sites:
        job_dir = lab.work_dir / "tests" / f"round-trip-{site.name}"
        job_dir.mkdir(parents=True, exist_ok=True)
        job_dir.chmod(0o777)
        (job_dir / "out").unlink(missing_ok=True)
        probe = stage(job_dir, "site_probe.sh")
        clusters[site.name] = (factory_schedd.submit(grid_job(job_dir, site, probe, f"hello-{site.name}")), job_dir)
    return {
        name: (wait_for_completion(factory_schedd, cluster, TIMEOUT), (job_dir / "out").read_text())
        for name, (cluster, job_dir) in clusters.items()
    }


@pytest.mark.parametrize("site_name", ["site1", "site2"])
def test_grid_job_reaches_the_site_ce_through_htcondor_c_and_completes(round_trips, site_name: str) -> None:
    final_ad, output = round_trips[site_name]
    assert final_ad["JobStatus"] == 4
    assert final_ad["ExitCode"] == 0
    assert f"args: hello-{site_name}" in output
    assert f"@worker@{site_name}.lab" in output, output
    assert "user: updraft" in output


def test_user_job_in_vo_schedd_runs_on_a_pilot_startd_and_completes(
    lab: Topology, factory_schedd: Schedd, vo_schedd: Schedd, job_dir: Path
) -> None:
    site = lab.sites[0]
    pilot_job = glidein_job(lab, job_dir, site, options="--max-walltime 210 --max-idle 180")
    pilot_job.update(
        output=str(job_dir / "pilot.out"), error=str(job_dir / "pilot.err"), log=str(job_dir / "pilot.log")
    )
    pilot_cluster = factory_schedd.submit(pilot_job)

    user_job = {
        "executable": "/bin/echo",
        "arguments": "user-payload",
        "initialdir": str(job_dir),
        "output": str(job_dir / "user.out"),
        "error": str(job_dir / "user.err"),
        "log": str(job_dir / "user.log"),
        "requirements": f'IS_GLIDEIN =?= True && GLIDEIN_Site =?= "{site.glidein_site}"',
        "job_machine_attrs": "IS_GLIDEIN GLIDEIN_Site",
        "request_memory": "64",
        "should_transfer_files": "YES",
    }
    try:
        final = wait_for_completion(vo_schedd, vo_schedd.submit(user_job), TIMEOUT)
    finally:
        factory_schedd.remove(f"ClusterId == {pilot_cluster}", "user job done")
    assert final["ExitCode"] == 0
    assert final["MachineAttrIS_GLIDEIN0"] is True
    assert final["MachineAttrGLIDEIN_Site0"] == site.glidein_site
    assert (job_dir / "user.out").read_text().strip() == "user-payload"
