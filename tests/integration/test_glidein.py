"""The real glidein on the lab: sent through a site's CE, it validates the
worker, joins the VO pool, runs a user job, retires after its idle tail,
and reports back in a form the factory's parser reads.

Layers: a staging folder with a manifest (file:// for now) -> a grid job
from the factory schedd running glidein/glidein_startup.sh -> a user job in
the VO schedd -> assertions on the collector, the user job and the report.
"""

from __future__ import annotations

from pathlib import Path

import htcondor2

from updraft.condor import Collector
from updraft.glidein.report import parse_report
from updraft.lab.topology import Topology

from .jobs import glidein_job, wait_for, wait_for_completion

REQUIRED = ("IS_GLIDEIN", "GLIDEIN_Site", "GLIDEIN_Entry_Name", "GLIDEIN_Factory", "GLIDEIN_Name", "GLIDECLIENT_Name",
            "GLIDECLIENT_Group", "GLIDEIN_ClusterId", "GLIDEIN_ProcId", "GLIDEIN_CredentialIdentifier",
            "GLIDEIN_ToRetire", "GLIDEIN_ToDie", "GLIDEIN_Max_Walltime")
CHECK = {"check.sh": '#!/bin/sh\necho "worker looks fine"\n'}


def test_a_glidein_joins_the_pool_runs_a_job_retires_after_its_idle_tail_and_reports(
    lab: Topology, factory_schedd, vo_schedd, job_dir: Path
) -> None:
    site = lab.sites[1]
    job = glidein_job(lab, job_dir, site, options="--max-idle 120 --idle-tail 20", entry="site2",
                      credential_id="cred-7", scripts=CHECK)
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
    assert [(v.script, v.result) for v in report.validations] == [("entry/check.sh", "OK")]
    assert report.lifetime < 600  # it retired on its idle tail, long before its walltime
