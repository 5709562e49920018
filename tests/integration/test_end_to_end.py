"""The whole system on the lab, exactly as `make demo` runs it.

Layers: the lab's configs -> `updraft factory run` and `updraft frontend run`
as services -> the demo's 49 jobs in the VO schedds, watched until every
runnable one is done and the pilots are gone -> assertions on where the
jobs ran, what the frontend asked, what the factory submitted, how the
pilots ended, what `frontend explain` says, and what the monitoring
backends (XML, RRD, InfluxDB) hold for the run.
"""

from __future__ import annotations

import subprocess
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from updraft import pilot_ad
from updraft.lab import cloud, slurm
from updraft.lab.control import load_state, runtime_from_state
from updraft.lab.demo import DemoRun, pilot_ending, run_workload, tracebacks
from updraft.lab.topology import Topology
from updraft.lab.tsdb import influxql
from updraft.lab.vmhost import CONSOLE, vms_dir
from updraft.lab.workload import DEMO_WORKLOAD, WORKLOAD_ATTR

RUNNABLE = {shape.name: shape for shape in DEMO_WORKLOAD if shape.runnable}
UNMATCHED = [shape for shape in DEMO_WORKLOAD if not shape.runnable]
NS = {"u": "urn:updraft:monitoring:status:1"}


@pytest.fixture(scope="module")
def run(lab: Topology) -> DemoRun:
    progress: list[str] = []
    result = run_workload(lab, progress.append, timeout=600)
    print("\n".join(progress))  # shown with -s, and in the report of a failing test
    return result


@pytest.fixture(scope="module")
def monitoring(lab: Topology) -> Path:
    return lab.work_dir / "factory" / "monitoring"


def test_every_runnable_job_completes_on_a_pilot_of_a_site_it_accepts(run: DemoRun) -> None:
    runnable = [job for job in run.jobs if job.get(WORKLOAD_ATTR) in RUNNABLE]
    assert len(runnable) == sum(shape.count for shape in RUNNABLE.values())
    for job in runnable:
        shape = RUNNABLE[job[WORKLOAD_ATTR]]
        assert job["JobStatus"] == 4, job
        assert job.get("MachineAttrIS_GLIDEIN0") is True, job
        assert job.get("MachineAttrGLIDEIN_Site0") in shape.sites, job
    used = {job["MachineAttrGLIDEIN_Site0"] for job in runnable}
    assert used == {"Site1", "Site2", "HPC", "HPC2N", "Cloud"}, "each site (Slurm and cloud too) ran some of it"


UNRUNNABLE_SIGNS = {
    "too-wide": "RequestCpus = 4",
    "huge-memory": "RequestMemory = 4000000",
    "shared-filesystem": "TARGET.FileSystemDomain == MY.FileSystemDomain",
}
"""How each unrunnable shape's jobs show in `explain --unmatched`'s "they ask" line."""


def _paragraph(unmatched: str, shape: str) -> str:
    """`explain --unmatched`'s paragraph for the jobs of one demo shape."""
    paragraphs = unmatched.split("\ngroup ")
    found = [p for p in paragraphs if UNRUNNABLE_SIGNS[shape] in p.splitlines()[1]]
    assert len(found) == 1, unmatched
    return found[0]


def test_the_unrunnable_shapes_stay_idle_and_explain_says_why(run: DemoRun) -> None:
    for shape in UNMATCHED:
        states = [job["JobStatus"] for job in run.jobs if job.get(WORKLOAD_ATTR) == shape.name]
        assert states == [1] * shape.count, f"{shape.name}: {states}"
    wide = _paragraph(run.unmatched, "too-wide")
    for entry in ("site1@lab-factory", "site2@lab-factory", "hpc@lab-factory", "hpc-2node@lab-factory"):
        assert f"{entry}: the job asks 4 cpus; the entry's pilots have 2 per node" in wide, run.unmatched
    memory, shared = _paragraph(run.unmatched, "huge-memory"), _paragraph(run.unmatched, "shared-filesystem")
    for entry in ("site1", "site2"):
        assert (
            f"{entry}@lab-factory: the job's Requirements on the entry's pilots: "
            "TARGET.Memory >= RequestMemory: 2048 >= 4000000 is false"
        ) in memory, run.unmatched
        # vs the submit host's own FILESYSTEM_DOMAIN, whatever the lab's host is called
        assert (
            f"{entry}@lab-factory: the job's Requirements on the entry's pilots: "
            f"TARGET.FileSystemDomain == MY.FileSystemDomain: '{entry}.lab-factory.updraft.invalid' vs '"
        ) in shared, run.unmatched


def test_no_pilot_is_asked_for_jobs_no_pilot_can_run(run: DemoRun) -> None:
    """Once the runnable jobs are done, 11 jobs stay idle that match Site1 and Site2 by their sites: the
    frontend asks no entry for pilots, so the pilots retire and none comes back for them."""
    done = next(i for i, s in enumerate(run.watch.samples) if s.jobs.runnable_finished())
    later = run.watch.samples[done:]
    assert later[-1].jobs.count("idle", runnable=False) == sum(s.count for s in UNMATCHED)
    asked = [(s.elapsed, e.entry, e.requested_idle) for s in later for e in s.entries if e.requested_idle]
    assert asked == []


def test_the_factory_never_holds_more_pilots_than_the_frontend_asked(run: DemoRun) -> None:
    assert run.watch.pilots_beyond_ask() == []
    for entry in ("site1", "site2", "hpc", "hpc-2node", "cloud"):
        assert run.watch.most(entry, lambda e: e.pilots) > 0, f"{entry} never had a pilot: the check above saw nothing"


def test_pilots_retire_on_their_own_once_the_work_is_done(run: DemoRun) -> None:
    endings = Counter((p["UpdraftEntry"], pilot_ending(p)) for p in run.pilots)
    retired = {entry for (entry, ending) in endings if ending == "retired on their own"}
    assert retired == {"site1", "site2", "hpc", "hpc-2node", "cloud"}, endings
    # The only other way out: still idle in the factory's queue when the frontend said no job needs it.
    assert {ending for (_, ending) in endings} <= {"retired on their own", "removed unstarted, no longer needed"}, (
        endings
    )
    # The idle tail: pilots outlived the last job instead of being killed with it.
    done = next(s for s in run.watch.samples if s.jobs.runnable_finished())
    assert any(e.pilots for e in done.entries)
    assert not any(e.pilots for e in run.watch.samples[-1].entries)


def test_cloud_instances_boot_from_the_user_data_the_factory_sent_and_end_when_their_pilot_retires(
    lab: Topology, run: DemoRun
) -> None:
    """The lab's stand-in hypervisor booted each instance with the user data the API holds for it (the
    bytes the grid manager sent): the bootstrap fetched and checked the glidein, the pilot joined the VO
    pool, ran the cloud-only jobs (asserted above) and retired; the VM powered off and the API terminated it."""
    assert run.instances, "the cloud entry started no instance"
    assert {cloud.state(i) for i in run.instances} == {"terminated"}
    assert sorted(run.vm_exits) == sorted(i["InstanceId"] for i in run.instances)
    assert set(run.vm_exits.values()) == {0}, run.vm_exits
    for instance in run.instances:
        console = (vms_dir(lab) / instance["InstanceId"] / CONSOLE).read_text()
        token = dict(parse_qsl(cloud.user_data(lab, instance["InstanceId"]).decode()))["UPDRAFT_PILOT_TOKEN_VALUE"]
        assert "glidein_startup.sh exited with status 0" in console and token not in console


def test_no_service_log_holds_a_traceback(run: DemoRun) -> None:
    assert tracebacks(run.logs.values()) == []
    for log in run.logs.values():
        assert "cycle 1:" in log.read_text(), f"{log} shows no cycle"


def _influx_by_entry(lab: Topology, query: str) -> dict[str, list]:
    series = influxql(lab.influx_url, query, database="updraft")[0].get("series", [])
    return {row["tags"]["entry"]: row["values"] for row in series}


def test_influxdb_holds_the_pilots_and_the_jobs_they_ran(lab: Topology, run: DemoRun) -> None:
    since = f"{int(run.since)}s"
    running = _influx_by_entry(
        lab, f'SELECT max("running") FROM "updraft_factory_entry" WHERE time >= {since} GROUP BY "entry"'
    )
    for entry in ("site1", "site2", "hpc", "hpc-2node"):
        assert 0 < running[entry][0][1] <= run.watch.most(entry, lambda e: e.pilots)
    # The totals count since the factory's checkpoint; an entry's series starts with its first completed pilot.
    before = _influx_by_entry(
        lab, f'SELECT last("jobs_run") FROM "updraft_factory_completed" WHERE time < {since} GROUP BY "entry"'
    )
    jobs = _influx_by_entry(
        lab, f'SELECT max("jobs_run") FROM "updraft_factory_completed" WHERE time >= {since} GROUP BY "entry"'
    )
    ran = sum(values[0][1] - (before[entry][0][1] if entry in before else 0) for entry, values in jobs.items())
    # A cloud pilot's report stays on its VM (no output comes back from an instance: docs/cloud.md).
    assert ran == sum(shape.count for shape in RUNNABLE.values() if shape.sites != ("Cloud",)), (before, jobs)


def test_xml_agrees_with_influxdb_on_the_completed_totals(lab: Topology, run: DemoRun, monitoring: Path) -> None:
    since = f"{int(run.since)}s"
    last = _influx_by_entry(
        lab, f'SELECT last("jobs_run") FROM "updraft_factory_completed" WHERE time >= {since} GROUP BY "entry"'
    )
    for entry in ("site1", "site2"):
        root = ET.parse(monitoring / "xml" / "factory-lab-factory" / f"entry-{entry}.xml").getroot()
        row = root.find("u:completed/u:frontend[@name='lab-vo']", NS)
        assert row is not None and int(row.get("jobs_run")) == last[entry][0][1]


def test_rrd_holds_the_running_pilots(run: DemoRun, monitoring: Path) -> None:
    for entry in ("site1", "site2"):
        rrd = monitoring / "rrd" / "updraft_factory_entry" / "lab-factory" / f"{entry}.rrd"
        fetched = subprocess.run(
            ["rrdtool", "fetch", str(rrd), "MAX", "-r", "10", "-s", str(int(run.since)), "-e", str(int(time.time()))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        header, *rows = [line for line in fetched.splitlines() if line.strip()]
        column = header.split().index("running")
        values = [float(row.split()[column + 1]) for row in rows]
        assert max(v for v in values if v == v) > 0, f"{rrd}: no running pilot recorded"


def test_the_hpc_pilots_ran_as_slurm_jobs_and_ended_there(lab: Topology, run: DemoRun) -> None:
    """Slurm's own record: every HPC pilot the factory saw leave was a Slurm job that ended, none left running."""
    hpc_pilots = [p for p in run.pilots if p.get(pilot_ad.ENTRY) in ("hpc", "hpc-2node")]
    assert hpc_pilots, "the demo sent no pilot to the HPC site"
    state = load_state(lab.base_dir)
    assert state is not None
    live = [j for j in slurm.jobs(lab, runtime_from_state(state)).values() if j.state in ("PENDING", "RUNNING")]
    assert live == [], live
    ended = {r["JobId"]: r for r in slurm.completions(lab).values()}
    ran = [p for p in hpc_pilots if pilot_ending(p) == "retired on their own"]
    ids = [str(p.get(pilot_ad.GRID_JOB_ID, "")).rsplit("/", 1)[-1] for p in ran]
    assert ids and all(ended[i]["JobState"] == "COMPLETED" and ended[i]["UserId"].startswith("factory(") for i in ids)
    wide = [i for p, i in zip(ran, ids, strict=True) if p.get(pilot_ad.ENTRY) == "hpc-2node"]
    assert wide and all(ended[i]["NodeCnt"] == "2" and ended[i]["NodeList"] == "node[1-2]" for i in wide), wide
