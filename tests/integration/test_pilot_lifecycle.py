"""A pilot's whole life through Updraft's own commands, on the lab.

Layers: the lab's factory and frontend configs (staging areas served by the
lab's web server) -> `reconfig` writes both staging areas -> a user job
queued in the VO schedd -> `factory once` advertises the entries ->
`frontend once` publishes a request carrying the
pool, the frontend's manifest and the group's START -> `factory once`
submits the real glidein -> the glidein fetches both manifests over HTTP,
validates, joins the VO pool, runs the job and retires -> `factory once`
reads its report into the completed-pilot totals that `status` shows.
"""

from __future__ import annotations

import json
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import htcondor2
import pytest
import yaml

from updraft import protocol
from updraft.condor import Collector, Schedd
from updraft.factory.completed import CompletedTotals
from updraft.lab.control import LAB_DATABASE
from updraft.lab.labconfig import factory_config, frontend_config, write_component_configs
from updraft.lab.topology import FRONTEND, Topology
from updraft.lab.tsdb import influxql
from updraft.monitoring.metrics import FRONTEND_RESTARTS
from updraft.monitoring.writers.rrd import rrd_file
from updraft.monitoring.writers.xml_status import NAMESPACE

from .jobs import wait_for, wait_for_completion
from .roles import invalidate_as
from .test_factory import updraft

GROUP_START = "TARGET.RequestMemory <= 1024"
FACTORY = "lifecycle-factory"
"""A factory name of its own: the schedd's history holds the other tests' lab-factory pilots,
which a new factory's first look back (an hour) would otherwise count too."""


@pytest.fixture(scope="module")
def configs(lab: Topology, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The lab's configs, with a group START and a short idle tail, staged by `reconfig`."""
    write_component_configs(lab)
    folder = tmp_path_factory.mktemp("lifecycle")
    factory = factory_config(lab)
    factory["name"] = FACTORY
    factory["work_dir"] = str(lab.work_dir / "lifecycle-factory")
    for entry in factory["entries"].values():
        entry["glidein"] = {**entry["glidein"], "idle_tail_seconds": 20, "retire_spread_seconds": 0}
    frontend = frontend_config(lab)
    frontend["factories"] = {FACTORY: next(iter(frontend["factories"].values()))}
    frontend["groups"]["main"]["pilot_start"] = GROUP_START
    frontend["work_dir"] = str(folder / "frontend")
    paths = folder / "factory.yaml", folder / "frontend.yaml"
    for path, content in zip(paths, (factory, frontend), strict=True):
        path.write_text(yaml.safe_dump(content))
    assert "staged site1: http://" in updraft("factory", "reconfig", "--config", str(paths[0])).stdout
    assert "staged main: http://" in updraft("frontend", "reconfig", "--config", str(paths[1])).stdout
    return paths


@pytest.fixture(autouse=True)
def no_leftovers(lab: Topology, factory_schedd: Schedd, vo_schedd: Schedd):
    """No request, pilot or user job outlives the test."""
    yield
    invalidate_as(lab, FRONTEND, lab.wms.collector, "UpdraftRequest", "true")
    factory_schedd.remove(f'UpdraftFactory =?= "{FACTORY}"', "lifecycle test done")
    vo_schedd.remove("true", "lifecycle test done")


def test_a_glidein_sent_by_the_factory_runs_the_frontends_job_and_its_report_reaches_the_totals(
    lab: Topology, configs: tuple[Path, Path], vo_schedd: Schedd, factory_schedd: Schedd, job_dir: Path
) -> None:
    factory_yaml, frontend_yaml = configs
    user = vo_schedd.submit(
        {
            "executable": "/bin/echo",
            "arguments": "lifecycle",
            "initialdir": str(job_dir),
            "output": str(job_dir / "user.out"),
            "log": str(job_dir / "user.log"),
            "request_memory": "128",
            "+DESIRED_Sites": '"Site1"',
            "requirements": "IS_GLIDEIN =?= True",
            "should_transfer_files": "YES",
        }
    )
    updraft("factory", "once", "--config", str(factory_yaml))  # advertises the entries

    def one_cycle_each() -> bool:
        """What the two services do every cycle; the new job may take a cycle to be seen."""
        updraft("frontend", "once", "--config", str(frontend_yaml))
        return "submitted 1," in updraft("factory", "once", "--config", str(factory_yaml)).stdout

    wait_for(one_cycle_each, 60, interval=5)

    # The submit description carries what the frontend told its pilots.
    pilot = factory_schedd.query(f'UpdraftFactory =?= "{FACTORY}"', ["Environment", "Arguments"])[0]
    # (The schedd keeps the environment in its own quoting: compare the words.)
    group_start = pilot["Environment"].split("GLIDECLIENT_Group_Start=", 1)[1].split(" GLIDEIN_", 1)[0]
    assert group_start.replace("'", "") == GROUP_START, pilot
    assert (
        "--frontend-manifest-sha256" in pilot["Arguments"] and f"--collector {lab.vo.collector}" in pilot["Arguments"]
    )

    vo = Collector(lab.vo.collector)
    ours = f'GLIDEIN_Entry_Name =?= "site1" && GLIDEIN_Factory =?= "{FACTORY}"'
    slot = wait_for(lambda: vo.query(htcondor2.AdType.Startd, ours, ["GLIDEIN_ClusterId", "GLIDEIN_Nodes"]), 240)[0]
    assert slot["GLIDEIN_Nodes"] == 1
    assert_the_live_slot_is_the_one_the_entry_ad_announced(lab, vo, ours)

    done = wait_for_completion(vo_schedd, user, 180)
    assert done["ExitCode"] == 0 and (job_dir / "user.out").read_text().strip() == "lifecycle"

    # Nobody sends more work: the pilot retires after its idle tail and leaves the queue.
    pilot_cluster = slot["GLIDEIN_ClusterId"]
    wait_for_completion(factory_schedd, pilot_cluster, 240)
    updraft("factory", "once", "--config", str(factory_yaml))

    work_dir = lab.work_dir / "lifecycle-factory"
    out = next((work_dir / "entries" / "site1" / "lab-vo").glob(f"pilot.{pilot_cluster}.0.out")).read_text()
    assert "validation.1=entry/check_worker.sh OK" in out, out
    totals = CompletedTotals(work_dir / "completed-totals.json").load()
    stats = totals[("site1", "lab-vo")]
    assert (stats.pilots, stats.ok, stats.failed, stats.jobs_run) == (1, 1, 0, 1), stats
    assert 0 < stats.lifetime_seconds < 600 and stats.busy_core_seconds >= 0
    assert stats.waste_core_seconds > 0  # a 2-core pilot idle for its tail wasted some

    status = updraft("factory", "status", "--config", str(factory_yaml)).stdout
    row = next(
        line
        for line in status.splitlines()[status.splitlines().index("completed pilots (from their reports)") :]
        if line.startswith("site1")
    )
    assert row.split()[1:5] == ["lab-vo", "1", "1", "0"], status

    # A second look counts nothing twice.
    updraft("factory", "once", "--config", str(factory_yaml))
    assert CompletedTotals(work_dir / "completed-totals.json").load()[("site1", "lab-vo")].pilots == 1
    assert json.loads((work_dir / "completed-checkpoint.json").read_text())["seen"]


SLOT_TOTALS = {"Cpus": "TotalSlotCpus", "Memory": "TotalSlotMemory"}
"""A partitionable slot's own Cpus and Memory shrink as jobs claim them (they may have by the time
it is read): what it started with, its total, is what the entry ad announces."""


def assert_the_live_slot_is_the_one_the_entry_ad_announced(lab: Topology, vo: Collector, ours: str) -> None:
    """Every UpdraftSlot_* of the entry ad equals that attribute of the pilot's real slot ad.

    The lab's entries are configured to announce cores, memory and the
    domains; the domains are the pilots' own, never the lab schedds' "lab"
    (a job with should_transfer_files = NO must not match a pilot).
    """
    (entry_ad,) = Collector(lab.wms.collector).generic_ads(
        protocol.ENTRY_TYPE, f'Name == "{protocol.entry_ad_name("site1", FACTORY)}"', protocol.SLOT_PROJECTION
    )
    announced = protocol.prospective_slot(entry_ad)
    assert {"Cpus", "TotalCpus", "Memory", "FileSystemDomain", "UidDomain"} <= set(announced), announced
    assert announced["FileSystemDomain"] == f"site1.{FACTORY}.updraft.invalid" == announced["UidDomain"]
    wanted = [SLOT_TOTALS.get(name, name) for name in announced]
    (live,) = vo.query(htcondor2.AdType.Startd, f"{ours} && PartitionableSlot =?= True", wanted)
    assert {name: live.get(SLOT_TOTALS.get(name, name)) for name in announced} == announced
    assert live["FileSystemDomain"] != "lab" and live["UidDomain"] != "lab"


RESTART_PROJECTION = [
    "JobStatus",
    "NumJobStarts",
    "RemoteWallClockTime",
    "CommittedTime",
    "MachineAttrGLIDEIN_Entry_Name0",
]


def test_a_job_evicted_from_its_pilot_and_started_again_shows_in_the_restart_figures(
    lab: Topology, configs: tuple[Path, Path], vo_schedd: Schedd, factory_schedd: Schedd, job_dir: Path
) -> None:
    factory_yaml, frontend_yaml = configs
    cluster = vo_schedd.submit(
        {
            "executable": "/bin/sleep",
            "arguments": "600",
            "initialdir": str(job_dir),
            "log": str(job_dir / "restarted.log"),
            "request_memory": "128",
            "+DESIRED_Sites": '"Site1"',
            "requirements": "IS_GLIDEIN =?= True",
            "should_transfer_files": "YES",
        }
    )
    job = f"ClusterId == {cluster}"
    updraft("factory", "once", "--config", str(factory_yaml))

    def running(starts: int) -> dict | None:
        ads = vo_schedd.query(job, RESTART_PROJECTION)
        return next((ad for ad in ads if ad.get("JobStatus") == 2 and ad.get("NumJobStarts") == starts), None)

    def provision() -> dict | None:
        updraft("frontend", "once", "--config", str(frontend_yaml))
        updraft("factory", "once", "--config", str(factory_yaml))
        return running(1)

    wait_for(provision, 300, interval=5)
    time.sleep(3)  # a first run of some seconds: the badput it leaves is more than nothing
    vo_schedd.act_on_jobs(htcondor2.JobAction.Vacate, [f"{cluster}.0"], "restart test: the pilot lost the job")
    again = wait_for(lambda: running(2), 120, interval=2)
    assert again["MachineAttrGLIDEIN_Entry_Name0"] == "site1", again  # the schedd's SYSTEM_JOB_MACHINE_ATTRS
    badput = again["RemoteWallClockTime"] - again.get("CommittedTime", 0)
    assert badput > 0, again

    updraft("frontend", "once", "--config", str(frontend_yaml))
    assert_the_restart_reaches_every_writer(lab, f"site1@{FACTORY}", badput)


def assert_the_restart_reaches_every_writer(lab: Topology, entry: str, badput: float) -> None:
    """One restarted job, one restart, in the last hour, with its badput: in JSON, RRD, XML, InfluxDB, the page."""
    monitoring = lab.work_dir / "frontend" / "monitoring"
    snapshot = json.loads((monitoring / "frontend-lab-vo.json").read_text())
    [row] = [r for r in snapshot["restarts"] if r["group"] == "main" and r["entry"] == entry]
    assert (row["restarted_jobs"], row["restarts"], row["restarts_last_hour"]) == (1, 1, 1), snapshot["restarts"]
    assert row["badput_seconds"] == pytest.approx(badput), row

    rrd = rrd_file(monitoring / "rrd", FRONTEND_RESTARTS, ("lab-vo", "main", entry))
    last = subprocess.run(["rrdtool", "lastupdate", str(rrd)], capture_output=True, text=True, check=True).stdout
    names, values = last.split()[: len(FRONTEND_RESTARTS.fields)], last.splitlines()[-1].split(":", 1)[1].split()
    stored = dict(zip(names, map(float, values), strict=True))
    assert (stored["restarted_jobs"], stored["restarts"], stored["restarts_last_hour"]) == (1, 1, 1), last
    assert stored["badput_seconds"] == pytest.approx(badput), last

    group = ET.parse(monitoring / "xml" / "frontend-lab-vo" / "group-main.xml").getroot()
    xml_entry = group.find(f"s:restarts/s:entry[@name='{entry}']", {"s": NAMESPACE})
    assert xml_entry is not None and xml_entry.get("restarted_jobs") == "1", ET.tostring(group)

    points = influxql(
        lab.influx_url,
        'SELECT last("restarts"), last("badput_seconds") FROM "updraft_frontend_restarts" '
        f"WHERE \"group\" = 'main' AND \"entry\" = '{entry}' AND time > now() - 1h",
        LAB_DATABASE,
    )
    assert points[0]["series"][0]["values"][0][1:] == [1.0, pytest.approx(badput)], points

    page = (monitoring / "html" / "frontend-lab-vo" / "group-main.html").read_text()
    assert f'<tr><td>{entry}</td><td class="n bad">1</td>' in page
