"""The frontend against the real lab: queued jobs in, request ads out.

Layers: a frontend config for the lab -> entry ads in the WMS collector (as
the factory writes them) -> user jobs queued in both user schedds -> the
`updraft frontend` commands, run as an operator runs them -> assertions on
the ads in the WMS collector.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import htcondor2
import pytest
import yaml

from updraft import protocol
from updraft.condor import Collector
from updraft.factory.advertise import entry_ads
from updraft.factory.config import FactoryConfig
from updraft.lab import control
from updraft.lab.control import LAB_DATABASE
from updraft.lab.labconfig import factory_config, frontend_config, write_component_configs
from updraft.lab.runtime import Runtime
from updraft.lab.topology import FACTORY, FRONTEND, Topology
from updraft.lab.tsdb import influxql

from .jobs import glidein_job, wait_for
from .roles import advertise_as

UPDRAFT = str(Path(sys.executable).parent / "updraft")
MARK = "frontend-test"
# (schedd index, jobs, cpus, DESIRED_Sites); the lab's entries have 2 cores per pilot.
SHAPES = [(0, 4, 1, "Site1"), (0, 3, 2, "Site2"), (1, 2, 1, "Site1"), (0, 1, 1, "Nowhere")]


def updraft(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [UPDRAFT, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith(("UPDRAFT_", "CONDOR_"))},
    )
    if check:
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def frontend_yaml(lab: Topology, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's frontend config, narrowed to this module's jobs."""
    write_component_configs(lab)  # the files it stages for pilots
    config = frontend_config(lab)
    config["groups"]["main"]["job_constraint"] = f'UpdraftTest =?= "{MARK}"'
    path = tmp_path_factory.mktemp("frontend") / "frontend.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def entries(lab: Topology) -> list[dict]:
    """Advertised afresh for every test: they expire after three factory cycles (30 s in the lab)."""
    ads = entry_ads(FactoryConfig.model_validate(factory_config(lab)))
    advertise_as(lab, FACTORY, lab.wms.collector, ads)
    return ads


@pytest.fixture(scope="module")
def queued_jobs(lab: Topology) -> Iterator[int]:
    """Idle user jobs that no startd will take: only the frontend looks at them.

    Their requirement reads an attribute no slot and no entry advertises: a real startd refuses them,
    while the frontend, which cannot judge a term on an attribute nobody describes, counts them as
    demand (`requirements = false` it would rightly refuse: no pilot could ever run such a job).
    """
    names = lab.user_schedds
    schedds = [Collector(lab.vo.collector).schedd(name) for name in names]
    log = lab.work_dir / "tests" / "frontend.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    for index, count, cpus, sites in SHAPES:
        schedds[index].submit(
            {
                "executable": "/bin/true",
                "log": str(log),
                "request_cpus": str(cpus),
                "request_memory": "100",
                "requirements": "TARGET.UpdraftTestNeverMatches =?= true",
                "+UpdraftTest": f'"{MARK}"',
                "+DESIRED_Sites": f'"{sites}"',
            },
            count=count,
        )
    yield sum(count for _, count, _, _ in SHAPES)
    for name in names:  # located again: a schedd restarted by a test listens on a new port
        Collector(lab.vo.collector).schedd(name).remove(f'UpdraftTest =?= "{MARK}"', "frontend test done")


def requests(lab: Topology) -> dict[str, dict]:
    ads = Collector(lab.wms.collector).generic_ads(protocol.REQUEST_TYPE, 'UpdraftFrontend == "lab-vo"')
    return {ad[protocol.R_ENTRY]: ad for ad in ads}


def test_once_publishes_one_request_per_entry_with_the_right_numbers(lab, frontend_yaml, entries, queued_jobs) -> None:
    done = updraft("frontend", "once", "--config", str(frontend_yaml))
    published = requests(lab)
    assert set(published) == {"site1", "site2"}
    # site1: 4 + 2 one-core jobs on two-core pilots = 3 pilots; site2: 3 two-core jobs = 3 pilots.
    assert published["site1"][protocol.R_IDLE] == 3
    assert published["site1"][protocol.R_JOBS_IDLE] == 6
    assert published["site2"][protocol.R_IDLE] == 3
    assert published["site2"][protocol.R_JOBS_IDLE] == 3
    for ad in published.values():
        assert ad[protocol.R_MAX] == 20  # the factory's max_pilots, below the group's 100
        assert ad[protocol.R_REMOVE] in ("none", "idle")
        assert ad[protocol.IDENTITY] == FRONTEND.identity
        assert ad["ClassAdLifetime"] == 30
    assert "1 idle job(s) match no entry" in done.stdout


def test_monitoring_gets_the_cycle_as_a_snapshot(lab, frontend_yaml, entries, queued_jobs) -> None:
    updraft("frontend", "once", "--config", str(frontend_yaml))
    status = json.loads((lab.work_dir / "frontend" / "monitoring" / "frontend-lab-vo.json").read_text())
    rows = {row["entry"]: row for row in status["rows"]}
    assert rows["site1@lab-factory"]["requested_idle"] == 3
    assert rows["site2@lab-factory"]["jobs_idle"] == 3
    assert status["unmatched_jobs"] == {"main": 1}
    assert set(status["timings"]) == {"observe", "decide", "publish"}
    monitoring = lab.work_dir / "frontend" / "monitoring"
    group = ET.parse(monitoring / "xml" / "frontend-lab-vo" / "group-main.xml").getroot()
    requested = {
        e.get("name"): e.get("requested_idle") for e in group.iter() if e.get("requested_idle") and e.get("name")
    }
    assert requested["site1@lab-factory"] == "3"
    rrd = monitoring / "rrd" / "updraft_frontend_match" / "lab-vo" / "main" / "site1@lab-factory.rrd"
    assert (
        "requested_idle"
        in subprocess.run(["rrdtool", "info", str(rrd)], capture_output=True, text=True, check=True).stdout
    )
    page = (monitoring / "html" / "frontend-lab-vo" / "index.html").read_text()
    assert "main" in page
    points = influxql(
        lab.influx_url,
        'SELECT last("requested_idle") FROM "updraft_frontend_match" '
        "WHERE \"entry\" = 'site1@lab-factory' AND time > now() - 1h",
        LAB_DATABASE,
    )
    assert points[0]["series"][0]["values"][0][1] == 3.0


def test_plan_diffs_against_what_is_published_without_publishing(lab, frontend_yaml, entries, queued_jobs) -> None:
    updraft("frontend", "once", "--config", str(frontend_yaml))
    before = requests(lab)
    done = updraft("frontend", "plan", "--config", str(frontend_yaml))
    lines = [line for line in done.stdout.splitlines() if "site" in line]
    assert len(lines) == 2 and all(line.startswith("=") for line in lines), done.stdout
    assert {k: v[protocol.R_CYCLE] for k, v in requests(lab).items()} == {
        k: v[protocol.R_CYCLE] for k, v in before.items()
    }


def test_explain_gives_the_numbers_in_words(lab, frontend_yaml, entries, queued_jobs) -> None:
    done = updraft("frontend", "explain", "--config", str(frontend_yaml), "--entry", "site1")
    assert "site1@lab-factory" in done.stdout
    assert "requested 3 idle" in done.stdout
    unknown = updraft("frontend", "explain", "--config", str(frontend_yaml), "--entry", "nosuch", check=False)
    assert unknown.returncode == 1


def test_a_stopped_schedd_is_skipped_and_reported_and_disables_removal(
    lab, lab_runtime: Runtime, frontend_yaml, entries, queued_jobs
) -> None:
    updraft("frontend", "once", "--config", str(frontend_yaml))
    good = requests(lab)
    control.stop_instance(lab, "submit2")
    try:
        done = updraft("frontend", "once", "--config", str(frontend_yaml))
        published = requests(lab)
    finally:
        control.start_instance(lab, lab_runtime, "submit2")
    assert lab.submit2.schedd_name in done.stderr
    # Only vo-schedd's 4 one-core Site1 jobs are seen now (2 pilots), never "zero jobs"; and the last good
    # request (3) is the floor while submit2 cannot be read: missing jobs never lower a request.
    assert published["site1"][protocol.R_JOBS_IDLE] == 4
    assert published["site1"][protocol.R_IDLE] == good["site1"][protocol.R_IDLE] == 3
    assert published["site1"][protocol.R_HELD_SINCE] == good["site1"][protocol.R_TIME]
    assert published["site2"][protocol.R_IDLE] == 3
    assert {ad[protocol.R_REMOVE] for ad in published.values()} == {"none"}


@pytest.fixture
def idle_pilot(lab: Topology, factory_schedd, job_dir: Path):
    """A real pilot for site1, sent through the factory schedd and the site's CE, idle in the VO pool."""
    site = lab.sites[0]
    job = glidein_job(lab, job_dir, site, options="--max-walltime 630 --max-idle 600")
    cluster = factory_schedd.submit(job)
    vo = Collector(lab.vo.collector)
    ours = 'GLIDEIN_Entry_Name == "site1" && GLIDECLIENT_Name == "lab-vo"'
    try:
        wait_for(lambda: vo.query(htcondor2.AdType.Startd, ours, ["Name"]), 180)
        yield
    finally:
        factory_schedd.remove(f"ClusterId == {cluster}", "frontend test done")
        wait_for(lambda: not vo.query(htcondor2.AdType.Startd, ours, ["Name"]), 120)


def test_an_idle_pilot_slot_that_can_take_the_jobs_counts_as_capacity(
    lab, frontend_yaml, entries, queued_jobs, idle_pilot
) -> None:
    updraft("frontend", "once", "--config", str(frontend_yaml))
    site1 = requests(lab)["site1"]
    assert site1[protocol.R_SLOTS_TOTAL] == 1 and site1[protocol.R_SLOTS_IDLE] == 1
    assert site1[protocol.R_SLOTS_CORES] == 1
    # 3 pilots' worth of jobs, 1 usable idle slot (1 core, 512 MB, 10 min to live): 2 more.
    assert site1[protocol.R_IDLE] == 2
    assert requests(lab)["site2"][protocol.R_SLOTS_TOTAL] == 0


def test_run_reloads_on_sighup_keeping_a_good_config_and_withdraws_on_sigterm(
    lab, frontend_yaml, entries, queued_jobs, tmp_path
) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    config = config_dir / "frontend.yaml"
    config.write_text(frontend_yaml.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPDRAFT_", "CONDOR_"))}
    service = subprocess.Popen(
        [UPDRAFT, "-v", "frontend", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    started = int(time.time())
    try:
        wait_for(lambda: requests(lab).get("site1", {}).get(protocol.R_TIME, 0) >= started, 60)
        config.write_text("name: [not, a, name]\n")
        service.send_signal(signal.SIGHUP)
        wait_for(lambda: requests(lab).get("site1", {}).get(protocol.R_CYCLE, 0) >= 2, 60)
        assert service.poll() is None, "a bad config on SIGHUP must not stop the frontend"
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=60) == 0
    finally:
        if service.poll() is None:
            service.kill()
    output = service.stdout.read()
    assert "reload refused, keeping the running configuration" in output
    assert "Traceback" not in output
    wait_for(lambda: not requests(lab), 10)
