"""The factory against the real lab: request ads in, pilots through HTCondor-C out.

Layers: the lab's factory config (site1 treats user holds as recoverable,
site2 does not) -> request ads in the WMS collector, built by the
frontend's own code -> `updraft factory` commands run as an operator runs
them -> assertions on the factory schedd's queue and the VO pool.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import htcondor2
import pytest
import yaml

from updraft import protocol
from updraft.condor import Collector
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.credentials import load_keyring, public_key_attributes
from updraft.frontend.config import FrontendConfig
from updraft.frontend.credentials import FactoryKey, seal_requests
from updraft.frontend.model import Decision, EntryAd
from updraft.frontend.publish import request_ad
from updraft.lab.labconfig import (
    factory_config,
    frontend_config,
    lab_entries,
    write_component_configs,
)
from updraft.lab.topology import FRONTEND, Topology
from updraft.protocol import RemoveMode

from .jobs import pilot_token, wait_for
from .roles import advertise_as, invalidate_as

UPDRAFT = str(Path(sys.executable).parent / "updraft")
PROJECTION = [
    "ClusterId",
    "ProcId",
    "JobStatus",
    "GridJobId",
    "UpdraftEntry",
    "UpdraftFrontend",
    "UpdraftGroup",
    "UpdraftSecurityClass",
    "UpdraftCredentialId",
    "HoldReasonCode",
]


def updraft(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([UPDRAFT, *args], capture_output=True, text=True, timeout=180, env=_clean_env())
    if check:
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("UPDRAFT_", "CONDOR_"))}


@pytest.fixture(scope="module")
def factory_yaml(lab: Topology, tmp_path_factory: pytest.TempPathFactory) -> Path:
    write_component_configs(lab)  # installs the lab pilot in the lab folder
    config = factory_config(lab)
    config["entries"]["site1"]["holds"]["recoverable_codes"] = [1]  # a user hold: recoverable here only
    for entry in config["entries"].values():  # no pilot leaves unasked while a test counts them
        entry["glidein"]["max_idle_seconds"] = 600
    path = tmp_path_factory.mktemp("factory") / "factory.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def frontend(lab: Topology) -> FrontendConfig:
    return FrontendConfig.model_validate(frontend_config(lab))


@pytest.fixture
def schedd(lab: Topology):
    return Collector(lab.wms.collector).schedd(lab.factory.schedd_name)


@pytest.fixture(autouse=True)
def empty_queue(lab: Topology):
    """Each test starts and ends with no pilots and no requests."""
    yield
    wms = Collector(lab.wms.collector)
    invalidate_as(lab, FRONTEND, lab.wms.collector, "UpdraftRequest", "true")
    wms.schedd(lab.factory.schedd_name).remove('UpdraftFactory =?= "lab-factory"', "factory test done")
    wait_for(lambda: not _pilots(wms.schedd(lab.factory.schedd_name)), 120)


def ask(
    lab: Topology,
    frontend: FrontendConfig,
    entry: str,
    idle: int,
    max_pilots: int,
    remove: RemoveMode = RemoveMode.NONE,
    remove_max: int = 0,
    tamper: bool = False,
) -> None:
    """What the frontend would publish for group main on an entry: sealed to the lab factory's key,
    advertised as the frontend."""
    now = time.time()
    decision = Decision("main", EntryAd(entry, "lab-factory", {}), idle, max_pilots, remove, remove_max)
    attrs = public_key_attributes(load_keyring(FactoryConfig.model_validate(factory_config(lab)), now))
    key = FactoryKey("lab-factory", attrs[protocol.F_KEY_ID], attrs[protocol.F_PUBLIC_KEY])
    # Its pilots take no job: none retires early while a test counts them (other modules' jobs may still wait).
    pilot = protocol.PilotParams(collector=frontend.vo_collector, group_start="False")
    ads, problems = seal_requests(
        [request_ad(decision, frontend, 1, now, pilot)],
        {f"{entry}@lab-factory": pilot_token(lab)},
        {"lab-factory": key},
        frontend,
    )
    assert not problems
    if tamper:  # one character of the sealed blob changed, as a man in the middle would
        sealed = ads[0][protocol.R_CREDENTIAL]
        ads[0][protocol.R_CREDENTIAL] = sealed[:-5] + ("A" if sealed[-5] != "A" else "B") + sealed[-4:]
    advertise_as(lab, FRONTEND, lab.wms.collector, ads)


def _pilots(schedd, extra: str = "true") -> list[dict]:
    return schedd.query(f'UpdraftFactory =?= "lab-factory" && ({extra})', PROJECTION)


def test_a_request_makes_the_factory_submit_pilots_that_reach_the_ce_and_join_the_pool(
    lab, frontend, factory_yaml, schedd
) -> None:
    ask(lab, frontend, "site1", idle=3, max_pilots=3)
    done = updraft("factory", "once", "--config", str(factory_yaml))
    assert "submitted 3," in done.stdout
    pilots = _pilots(schedd)
    assert len(pilots) == 3
    for pilot in pilots:
        assert (pilot["UpdraftEntry"], pilot["UpdraftFrontend"], pilot["UpdraftGroup"]) == ("site1", "lab-vo", "main")
        assert pilot["UpdraftSecurityClass"] == "default" and pilot["UpdraftCredentialId"]
    wait_for(lambda: all(p.get("GridJobId") for p in _pilots(schedd)), 120)
    vo = Collector(lab.vo.collector)
    slots = wait_for(
        lambda: vo.query(htcondor2.AdType.Startd, 'GLIDEIN_Entry_Name == "site1"', ["GLIDECLIENT_Name"]), 180
    )
    assert {s["GLIDECLIENT_Name"] for s in slots} == {"lab-vo"}
    again = updraft("factory", "once", "--config", str(factory_yaml))
    assert "submitted 0," in again.stdout  # max_pilots 3 reached: the queue is the memory
    status = updraft("factory", "status", "--config", str(factory_yaml))
    row = next(line for line in status.stdout.splitlines() if line.startswith("site1"))
    assert row.split()[1:3] == ["lab-vo", "3"]  # frontend, requested
    # waiting + pending + staging + running + held
    assert sum(int(n) for n in row.split()[3:8]) == 3, (status.stdout, _pilots(schedd))
    ad = Collector(lab.wms.collector).generic_ads("UpdraftEntry", 'Name == "site1@lab-factory"')[0]
    assert ad["UpdraftPilotsIdle"] + ad["UpdraftPilotsRunning"] + ad["UpdraftPilotsHeld"] == 3
    _assert_monitoring_shows_three_pilots_on_site1(Path(load_factory_config(factory_yaml).config.monitoring.dir))


def _assert_monitoring_shows_three_pilots_on_site1(monitoring: Path) -> None:
    """The second `once` saw the 3 pilots: every file-based writer shows them."""
    status = json.loads((monitoring / "factory-lab-factory.json").read_text())
    (row,) = [r for r in status["pilots"] if (r["entry"], r["frontend"]) == ("site1", "lab-vo")]
    assert sum(row[s] for s in ("waiting", "pending", "staging", "running", "held")) == 3
    entry = ET.parse(monitoring / "xml" / "factory-lab-factory" / "entry-site1.xml").getroot()
    assert entry.get("name") == "site1"
    rrd = monitoring / "rrd" / "updraft_factory_pilots" / "lab-factory" / "site1" / "lab-vo.rrd"
    info = subprocess.run(["rrdtool", "info", str(rrd)], capture_output=True, text=True, check=True).stdout
    assert 'ds[running].type = "GAUGE"' in info
    page = monitoring / "html" / "factory-lab-factory" / "index.html"
    assert "site1" in page.read_text()


def test_lowering_the_request_removes_the_excess_idle_pilots_only(lab, frontend, factory_yaml, schedd) -> None:
    ask(lab, frontend, "site1", idle=5, max_pilots=5)
    updraft("factory", "once", "--config", str(factory_yaml))
    # site1's worker fits two 2-core pilots: two run, three stay idle.
    wait_for(lambda: len(_pilots(schedd, "JobStatus == 2")) == 2, 180)
    ask(lab, frontend, "site1", idle=0, max_pilots=5, remove=RemoveMode.IDLE, remove_max=10)
    done = updraft("factory", "once", "--config", str(factory_yaml))
    assert "removed 3," in done.stdout
    wait_for(lambda: len(_pilots(schedd)) == 2, 120)
    assert len(_pilots(schedd, "JobStatus == 2")) == 2


@pytest.mark.parametrize(("entry", "outcome"), [("site1", "released"), ("site2", "removed")])
def test_a_held_pilot_is_released_if_its_hold_is_recoverable_else_removed(
    lab, frontend, factory_yaml, schedd, entry, outcome
) -> None:
    ask(lab, frontend, entry, idle=1, max_pilots=1)
    updraft("factory", "once", "--config", str(factory_yaml))
    (pilot,) = _pilots(schedd)
    job_id = f"{pilot['ClusterId']}.{pilot['ProcId']}"
    schedd.act_on_jobs(htcondor2.JobAction.Hold, [job_id], "held by the factory test")
    wait_for(lambda: _pilots(schedd, "JobStatus == 5"), 30)
    time.sleep(2)  # past the lab's 1 s back-off
    done = updraft("factory", "once", "--config", str(factory_yaml))
    assert f"{outcome} 1" in done.stdout
    this = f"ClusterId == {pilot['ClusterId']} && ProcId == {pilot['ProcId']}"
    if outcome == "released":
        wait_for(lambda: _pilots(schedd, f"{this} && JobStatus != 5"), 30)
    else:  # gone (a replacement may already be queued: the request still wants one pilot)
        wait_for(lambda: not _pilots(schedd, f"{this} && JobStatus != 3"), 60)


def _pilots_over(schedd, seconds: float) -> list[int]:
    """How many live pilots (idle, running, held) the queue held, sampled every two seconds.

    A pilot that has completed can linger in the queue for a moment; the
    factory rightly no longer counts it and may already have replaced it.
    """
    counts, deadline = [], time.time() + seconds
    while time.time() < deadline:
        counts.append(len(_pilots(schedd, "JobStatus == 1 || JobStatus == 2 || JobStatus == 5")))
        time.sleep(2)
    return counts


def test_kill_9_mid_cycle_then_restart_converges_without_extra_pilots(
    lab, frontend, factory_yaml, schedd, tmp_path
) -> None:
    ask(lab, frontend, "site2", idle=4, max_pilots=4)
    first = subprocess.Popen(
        [UPDRAFT, "factory", "run", "--config", str(factory_yaml)],
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: _pilots(schedd), 60)  # it is submitting: kill it now
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    second = subprocess.Popen(
        [UPDRAFT, "-v", "factory", "run", "--config", str(factory_yaml)],
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: len(_pilots(schedd)) == 4, 60)
        # The killed factory left its pid file behind; reconfig must find the new one.
        pid_file = Path(factory_config(lab)["work_dir"]) / "factory.pid"
        wait_for(lambda: pid_file.exists() and pid_file.read_text().split() == [str(second.pid)], 60)
        reloaded = updraft("factory", "reconfig", "--config", str(factory_yaml))
        assert f"the running factory (pid {second.pid}) is reloading" in reloaded.stdout
        started = time.time()
        seen = _pilots_over(schedd, seconds=25)  # two more cycles of the lab factory
        assert max(seen) <= 4, f"pilots in the queue over two cycles: {seen}"
        # A pilot with no VO work may retire meanwhile; the factory replaces it, it never removes one.
        removed = schedd.history(
            f'UpdraftFactory =?= "lab-factory" && JobStatus == 3 && EnteredCurrentStatus >= {int(started)}',
            ["ClusterId", "ProcId", "RemoveReason"],
        )
        assert not removed, removed
        wait_for(lambda: len(_pilots(schedd)) == 4, 60)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0
    output = second.stdout.read()
    assert "configuration reloaded" in output
    assert "Traceback" not in output


def test_an_entry_in_downtime_advertises_it_and_gets_no_pilots(lab, frontend, factory_yaml, schedd) -> None:
    ask(lab, frontend, "site1", idle=2, max_pilots=2)
    updraft("factory", "down", "--config", str(factory_yaml), "--entry", "site1", "--comment", "CE upgrade")
    try:
        listed = updraft("factory", "downtimes", "--config", str(factory_yaml))
        assert "* site1" in listed.stdout and "CE upgrade" in listed.stdout
        done = updraft("factory", "once", "--config", str(factory_yaml))
        assert "submitted 0," in done.stdout and not _pilots(schedd)
        ad = Collector(lab.wms.collector).generic_ads("UpdraftEntry", 'Name == "site1@lab-factory"')[0]
        assert ad["UpdraftInDowntime"] is True
    finally:
        updraft("factory", "up", "--config", str(factory_yaml), "--entry", "site1")
    done = updraft("factory", "once", "--config", str(factory_yaml))
    assert "submitted 2," in done.stdout


def test_a_request_in_a_security_class_the_entry_refuses_is_reported_and_counted(lab, factory_yaml, schedd) -> None:
    config = frontend_config(lab)
    config["factories"]["lab-factory"]["security_class"] = "untrusted"
    ask(lab, FrontendConfig.model_validate(config), "site2", idle=2, max_pilots=2)
    plan = updraft("factory", "plan", "--config", str(factory_yaml))
    assert "refused lab-vo.main on site2" in plan.stdout and "untrusted" in plan.stdout
    done = updraft("factory", "once", "--config", str(factory_yaml))
    assert "submitted 0," in done.stdout and "refused lab-vo.main on site2" in done.stderr
    factory_ad = Collector(lab.wms.collector).generic_ads("UpdraftFactory", 'Name == "lab-factory"')[0]
    assert factory_ad["UpdraftRejectedRequests"] == 1
    assert not _pilots(schedd)


def test_a_request_whose_sealed_credential_was_tampered_with_is_refused_and_counted(
    lab, frontend, factory_yaml, schedd
) -> None:
    ask(lab, frontend, "site2", idle=2, max_pilots=2, tamper=True)
    done = updraft("factory", "once", "--config", str(factory_yaml))
    assert "submitted 0," in done.stdout
    assert "refused lab-vo.main on site2" in done.stderr and "credential refused" in done.stderr
    assert "does not verify" in done.stderr
    factory_ad = Collector(lab.wms.collector).generic_ads("UpdraftFactory", 'Name == "lab-factory"')[0]
    assert factory_ad["UpdraftRejectedRequests"] == 1
    assert not _pilots(schedd)


def test_reconfig_refuses_to_drop_an_entry_that_still_has_pilots(lab, frontend, factory_yaml, schedd, tmp_path) -> None:
    updraft("factory", "reconfig", "--config", str(factory_yaml))  # records the running configuration
    ask(lab, frontend, "site2", idle=1, max_pilots=1)
    updraft("factory", "once", "--config", str(factory_yaml))
    smaller = yaml.safe_load(factory_yaml.read_text())
    del smaller["entries"]["site2"]
    smaller_path = tmp_path / "factory.yaml"
    smaller_path.write_text(yaml.safe_dump(smaller))
    refused = updraft("factory", "reconfig", "--config", str(smaller_path), check=False)
    assert refused.returncode == 1
    assert "- entry site2 (1 pilots in the queue)" in refused.stdout
    assert "refusing to remove entry site2" in refused.stderr
    forced = updraft("factory", "reconfig", "--config", str(smaller_path), "--force")
    assert "applied" in forced.stdout
    assert len(_pilots(schedd, 'UpdraftEntry == "site2"')) == 1  # still in the queue, still tracked


def test_an_entry_set_spreads_its_pilots_over_its_member_ces(lab, tmp_path, schedd) -> None:
    config = factory_config(lab)
    template = config["entries"]["site1"]
    config["entry_sets"] = {
        "lab-sites": {
            "members": ["site1", "site2"],
            "policy": "least_idle",
            "attributes": {"GLIDEIN_Site": "LabSites", "GLIDEIN_CPUS": 2},
            "frontends": template["frontends"],
            "limits": template["limits"],
        }
    }
    path = tmp_path / "factory.yaml"
    path.write_text(yaml.safe_dump(config))
    names = {ad["UpdraftEntry"] for ad in Collector(lab.wms.collector).generic_ads("UpdraftEntry", "true")}
    ask(lab, FrontendConfig.model_validate(frontend_config(lab)), "lab-sites", idle=4, max_pilots=4)
    done = updraft("factory", "once", "--config", str(path))
    assert "submitted 4," in done.stdout
    pilots = schedd.query('UpdraftFactory =?= "lab-factory"', ["UpdraftEntry", "UpdraftMember", "GridResource"])
    assert {p["UpdraftEntry"] for p in pilots} == {"lab-sites"}
    assert sorted(p["UpdraftMember"] for p in pilots) == ["site1", "site1", "site2", "site2"]
    assert {p["GridResource"].split()[1] for p in pilots} == {"ce@site1.lab", "ce@site2.lab"}
    advertised = {ad["UpdraftEntry"] for ad in Collector(lab.wms.collector).generic_ads("UpdraftEntry", "true")}
    assert "lab-sites" in advertised and not ({"site1", "site2"} & (advertised - names))


class _RaisingWriter:
    name = "raising"

    def write(self, snapshot) -> None:
        raise RuntimeError("monitoring backend exploded")


class _RecordingWriter:
    name = "recording"

    def __init__(self) -> None:
        self.snapshots: list = []

    def write(self, snapshot) -> None:
        self.snapshots.append(snapshot)


def test_a_monitoring_writer_that_raises_does_not_stop_the_factory_cycle(lab, frontend, factory_yaml, schedd) -> None:
    from updraft.factory.service import run_cycle
    from updraft.monitoring.report import Reporter

    config = load_factory_config(factory_yaml).config
    recording = _RecordingWriter()
    reporter = Reporter((_RaisingWriter(), recording))
    ask(lab, frontend, "site1", idle=2, max_pilots=2)
    first = run_cycle(config, 1, time.time(), reporter=reporter)
    assert first.submitted == 2 and len(_pilots(schedd)) == 2
    second = run_cycle(config, 2, time.time(), reporter=reporter)
    assert second.submitted == 0
    assert reporter.failures["raising"] == 2 and len(recording.snapshots) == 2
    before, after = recording.snapshots
    (asked,) = [r for r in before.pilots if (r.entry, r.frontend) == ("site1", "lab-vo")]
    assert (asked.requested_idle, asked.requested_max, asked.submitted) == (2, 2, 2)
    (seen,) = [r for r in after.pilots if (r.entry, r.frontend) == ("site1", "lab-vo")]
    assert seen.idle + seen.running + seen.held == 2 and seen.submitted == 0
    assert {"observe", "decide", "act", "account"} <= set(after.timings)
    assert {e.entry for e in after.entries} == set(lab_entries(lab))
