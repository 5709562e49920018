"""The real glidein on the lab: sent through a site's CE, it validates the
worker, joins the VO pool, runs a user job, retires after its idle tail,
and reports back in a form the factory's parser reads.

Layers: a staging folder with a manifest (file:// for now) -> a grid job
from the factory schedd running glidein/glidein_startup.sh -> a user job in
the VO schedd -> assertions on the collector, the user job and the report.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import htcondor2

from updraft.condor import Collector
from updraft.glidein.report import parse_report
from updraft.lab.topology import Topology

from .jobs import glidein_job, wait_for, wait_for_completion

REQUIRED = (
    "IS_GLIDEIN",
    "GLIDEIN_Site",
    "GLIDEIN_Entry_Name",
    "GLIDEIN_Factory",
    "GLIDEIN_Name",
    "GLIDECLIENT_Name",
    "GLIDECLIENT_Group",
    "GLIDEIN_ClusterId",
    "GLIDEIN_ProcId",
    "GLIDEIN_CredentialIdentifier",
    "GLIDEIN_ToRetire",
    "GLIDEIN_ToDie",
    "GLIDEIN_Max_Walltime",
)
CHECK = {"check.sh": '#!/bin/sh\necho "worker looks fine"\n'}


def test_a_glidein_joins_the_pool_runs_a_job_retires_after_its_idle_tail_and_reports(
    lab: Topology, factory_schedd, vo_schedd, job_dir: Path
) -> None:
    site = lab.sites[1]
    job = glidein_job(
        lab,
        job_dir,
        site,
        options="--max-idle 120 --idle-tail 20",
        entry="site2",
        credential_id="cred-7",
        scripts=CHECK,
    )
    cluster = factory_schedd.submit(job)

    vo = Collector(lab.vo.collector)
    ours = f'GLIDEIN_ClusterId =?= {cluster} && GLIDEIN_Entry_Name =?= "site2"'
    slots = wait_for(lambda: vo.query(htcondor2.AdType.Startd, ours, list(REQUIRED)), 240)
    slot = slots[0]
    assert set(REQUIRED) <= set(slot), set(REQUIRED) - set(slot)
    assert (slot["GLIDEIN_Site"], slot["GLIDECLIENT_Name"], slot["GLIDEIN_CredentialIdentifier"]) == (
        "Site2",
        "lab-vo",
        "cred-7",
    )
    assert slot["GLIDEIN_ToRetire"] <= slot["GLIDEIN_ToDie"] and slot["GLIDEIN_Max_Walltime"] == 900

    user = vo_schedd.submit(
        {
            "executable": "/bin/echo",
            "arguments": "ran-on-a-glidein",
            "initialdir": str(job_dir),
            "output": str(job_dir / "user.out"),
            "log": str(job_dir / "user.log"),
            "request_memory": "64",
            "requirements": f"IS_GLIDEIN =?= True && GLIDEIN_ClusterId =?= {cluster}",
            "should_transfer_files": "YES",
        }
    )
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


def _slot(lab: Topology, cluster: int, projection: list[str], count: int = 1, timeout: float = 240) -> list[dict]:
    """The pilot's slot ads once at least `count` of them are in the VO collector."""
    vo = Collector(lab.vo.collector)

    def enough() -> list[dict] | None:
        ads = vo.query(htcondor2.AdType.Startd, f"GLIDEIN_ClusterId =?= {cluster}", projection)
        return ads if len(ads) >= count else None

    return wait_for(enough, timeout)


def _user_job(job_dir: Path, cluster: int, executable: str, arguments: str = "", name: str = "user") -> dict[str, str]:
    return {
        "executable": executable,
        "arguments": arguments,
        "initialdir": str(job_dir),
        "output": str(job_dir / f"{name}.$(Process).out"),
        "log": str(job_dir / f"{name}.log"),
        "request_memory": "64",
        "should_transfer_files": "YES",
        "transfer_executable": "false",
        "requirements": f"IS_GLIDEIN =?= True && GLIDEIN_ClusterId =?= {cluster}",
    }


def _report(job_dir: Path):
    report = parse_report((job_dir / "out").read_text())
    assert report is not None, (job_dir / "out").read_text()
    return report


def test_the_idle_tail_never_cuts_a_running_job_on_a_partitionable_slot(
    lab: Topology, factory_schedd, vo_schedd, job_dir: Path
) -> None:
    job = glidein_job(lab, job_dir, lab.sites[0], cpus=2, options="--max-idle 120 --idle-tail 10")
    cluster = factory_schedd.submit(job)
    _slot(lab, cluster, ["Name"])
    # A 25 s job and a 1 s one: the short one ends long before the tail (10 s) would run out.
    user = vo_schedd.submit(_user_job(job_dir, cluster, "/bin/sleep", "25"))
    quick = vo_schedd.submit(_user_job(job_dir, cluster, "/bin/true", name="quick"))
    assert wait_for_completion(vo_schedd, quick, 180)["ExitCode"] == 0
    done = wait_for_completion(vo_schedd, user, 180)
    assert done["ExitCode"] == 0
    wait_for_completion(factory_schedd, cluster, 180)
    report = _report(job_dir)
    assert report.ok and report.jobs_run == 2, report
    assert report.busy_seconds >= 25 and report.cpus == 2


def test_a_black_hole_stops_taking_jobs_fails_with_its_reason_and_keeps_the_slot_for_its_failure_sleep(
    lab: Topology, factory_schedd, vo_schedd, job_dir: Path
) -> None:
    job = glidein_job(
        lab,
        job_dir,
        lab.sites[1],
        cpus=1,
        options="--max-idle 120 --idle-tail 60 --blackhole-jobs 2 --blackhole-window 300 --failure-sleep 8",
    )
    cluster = factory_schedd.submit(job)
    _slot(lab, cluster, ["Name"])
    eaten = vo_schedd.submit(_user_job(job_dir, cluster, "/bin/false", name="eaten"), count=6)
    try:
        final = wait_for_completion(factory_schedd, cluster, 240)
        report = _report(job_dir)
        assert (report.status, report.failed_step) == ("failed", "blackhole"), report
        assert "jobs started within 300 s (limit 2)" in report.reason
        assert 3 <= report.jobs_run < 6  # it stopped taking jobs: the rest never started there
        assert final.get("JobStatus") == 4
        still_idle = vo_schedd.query(f"ClusterId == {eaten} && JobStatus == 1", ["ProcId"])
        assert still_idle, "every job started: the black hole was not stopped"
        # The report is printed, then the pilot keeps its slot for the failure sleep.
        completed = factory_schedd.history(f"ClusterId == {cluster}", ["CompletionDate"], limit=1)[0]
        assert completed["CompletionDate"] - report.end_time >= 8
    finally:
        vo_schedd.remove(f"ClusterId == {eaten}", "black-hole test done")


def _condor_tarball(root: Path, target: Path) -> str:
    """An HTCondor release as a tarball (sbin, bin, libexec of the lab's own HTCondor), like a site would ship."""
    with tarfile.open(target, "w:gz") as tar:
        for folder in ("sbin", "bin"):
            for path in sorted((root / "usr" / folder).glob("condor_*")):
                tar.add(path, f"condor-release-test/{folder}/{path.name}")
        tar.add(root / "usr" / "libexec" / "condor", "condor-release-test/libexec/condor")
    target.chmod(0o644)
    return hashlib.sha256(target.read_bytes()).hexdigest()


def _executables_running_from(fragment: str) -> list[str]:
    """Paths of the running programs whose executable file's path contains `fragment`."""
    found = []
    for exe in Path("/proc").glob("[0-9]*/exe"):
        try:
            target = os.readlink(exe)
        except OSError:
            continue
        if fragment in target:
            found.append(target)
    return found


def test_a_glidein_runs_htcondor_from_a_tarball_it_fetched_over_http(
    lab: Topology, lab_runtime, factory_schedd, job_dir: Path
) -> None:
    tarballs = lab.staging_dir / "tarballs"
    tarballs.mkdir(parents=True, exist_ok=True)
    digest = _condor_tarball(lab_runtime.root, tarballs / "condor.tar.gz")
    url = f"{lab.staging_url}/tarballs/condor.tar.gz"
    job = glidein_job(
        lab, job_dir, lab.sites[0], options=f"--max-idle 30 --condor-tarball-url {url} --condor-tarball-sha256 {digest}"
    )
    cluster = factory_schedd.submit(job)
    _slot(lab, cluster, ["Name"])
    startds = _executables_running_from("condor-release/condor-release-test/sbin/condor_startd")
    assert startds, "no condor_startd runs from the unpacked tarball"
    wait_for_completion(factory_schedd, cluster, 180)
    report = _report(job_dir)
    assert report.ok and report.condor_source == "tarball", report


def test_a_tampered_tarball_stops_the_pilot_before_anything_runs(
    lab: Topology, lab_runtime, factory_schedd, job_dir: Path
) -> None:
    tarballs = lab.staging_dir / "tarballs"
    tarballs.mkdir(parents=True, exist_ok=True)
    _condor_tarball(lab_runtime.root, tarballs / "condor.tar.gz")
    job = glidein_job(
        lab,
        job_dir,
        lab.sites[0],
        options=f"--condor-tarball-url {lab.staging_url}/tarballs/condor.tar.gz --condor-tarball-sha256 {'0' * 64}",
    )
    cluster = factory_schedd.submit(job)
    wait_for_completion(factory_schedd, cluster, 180)
    report = _report(job_dir)
    assert (report.status, report.failed_step) == ("failed", "verify") and "SHA-256 mismatch" in report.reason


LAUNCHER = """#!/bin/sh
# Stands in for srun on one worker: one process per node, each told its index.
count=$1
shift
i=0
while [ "$i" -lt "$count" ]; do
    UPDRAFT_NODE_INDEX=$i "$@" &
    i=$((i + 1))
done
wait
"""


def test_a_two_node_pilot_runs_a_startd_per_node_each_counted_as_one_pilot_of_two_nodes(
    lab: Topology, factory_schedd, job_dir: Path
) -> None:
    launcher = job_dir / "launch-nodes"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    job = glidein_job(lab, job_dir, lab.sites[1], options=f"--max-idle 30 --nodes 2 --node-launcher '{launcher} 2'")
    job["arguments"] = f'"{job["arguments"]}"'  # HTCondor's new syntax, where '...' keeps one argument whole
    cluster = factory_schedd.submit(job)
    slots = _slot(lab, cluster, ["Name", "GLIDEIN_Nodes", "GLIDEIN_NodeIndex"], count=2)
    assert sorted((s["GLIDEIN_Nodes"], s["GLIDEIN_NodeIndex"]) for s in slots) == [(2, 0), (2, 1)]
    assert len({s["Name"] for s in slots}) == 2
    wait_for_completion(factory_schedd, cluster, 180)
    report = _report(job_dir)
    assert report.ok and report.nodes == 2, report
