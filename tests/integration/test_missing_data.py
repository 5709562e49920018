"""Missing data is never read as no demand: the red team's regression tests, against the real lab.

Layers: the lab's configs with short cycles -> `updraft factory run` and
`updraft frontend run` started once for the module -> a steady queued
workload: jobs for Site2, whose worker is switched off, so the pilots the
frontend asks for stay queued at the factory and the request stays put ->
per test, one kind of missing data for two frontend cycles (the entry ads
deleted from the WMS collector, the VO collector frozen, a user schedd
frozen) -> every request published meanwhile is the last good one (or more),
removes nothing and says since when; the factory removed no pilot; and once
the data is back the frontend computes as usual. Last, a pilot running jobs
in dynamic slots is counted once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import htcondor2
import pytest
import yaml

from updraft import protocol
from updraft.condor import Collector
from updraft.lab import control
from updraft.lab.demo import LAB_PILOTS, Services, factory_schedd, start_services
from updraft.lab.labconfig import (
    FACTORY_NAME,
    FRONTEND_NAME,
    factory_config,
    frontend_config,
    write_component_configs,
)
from updraft.lab.topology import FACTORY, Topology
from updraft.lab.workload import WORKLOAD_ATTR, Shape, submit_description

from .jobs import wait_for

CYCLE = 5  # both services' cycle_seconds here: two frontend cycles of an outage cost seconds, not minutes
DEADLINE = 4  # both services' query_timeout_seconds
ENTRY = "site2"
JOBS_PER_SCHEDD = 4
WANTED = 4
"""8 one-core jobs on 2-core pilots (the lab entries' GLIDEIN_CPUS): 4 pilots, under the entry's max_idle of 5."""


@dataclass(frozen=True)
class Ask:
    """One request for site2 as published: what it asks and since when it is a kept one."""

    time: int
    idle: int
    max_pilots: int
    remove: str
    held_since: int | None


@dataclass
class Lab:
    lab: Topology
    services: Services
    seen: list[Ask] = field(default_factory=list)

    def asks(self) -> list[Ask]:
        ads = Collector(self.lab.wms.collector).generic_ads(
            protocol.REQUEST_TYPE,
            f'{protocol.R_FRONTEND} == "{FRONTEND_NAME}" && {protocol.R_ENTRY} == "{ENTRY}"',
            [protocol.R_TIME, protocol.R_IDLE, protocol.R_MAX, protocol.R_REMOVE, protocol.R_HELD_SINCE],
        )
        return [
            Ask(
                ad[protocol.R_TIME],
                ad[protocol.R_IDLE],
                ad[protocol.R_MAX],
                ad[protocol.R_REMOVE],
                ad.get(protocol.R_HELD_SINCE),
            )
            for ad in ads
        ]

    def sample(self) -> list[Ask]:
        """Every publication seen so far, once each (a new one every frontend cycle)."""
        for ask in self.asks():
            if not self.seen or ask.time != self.seen[-1].time:
                self.seen.append(ask)
        return self.seen

    def removed_since(self, since: float) -> list[dict]:
        constraint = f"{LAB_PILOTS} && JobStatus == 3 && EnteredCurrentStatus >= {int(since)}"
        schedd = factory_schedd(self.lab)
        projection = ["ClusterId", "ProcId", "RemoveReason"]
        return [*schedd.query(constraint, projection), *schedd.history(constraint, projection)]

    def queued_pilots(self) -> list[dict]:
        return factory_schedd(self.lab).query(
            f'{LAB_PILOTS} && UpdraftEntry == "{ENTRY}" && JobStatus == 1', ["ClusterId", "ProcId"]
        )


def _short_cycles(lab: Topology, folder: Path) -> dict[str, Path]:
    """The lab's service configs with short cycles and deadlines, and files of their own."""
    write_component_configs(lab)  # installs the glidein the factory submits
    paths = {}
    for component, config in (("factory", factory_config(lab)), ("frontend", frontend_config(lab))):
        config.update(
            cycle_seconds=CYCLE,
            query_timeout_seconds=DEADLINE,
            work_dir=str(folder / component),
            monitoring={"dir": str(folder / component / "monitoring"), "writers": {"json": {}}},
        )
        paths[component] = folder / f"{component}.yaml"
        paths[component].write_text(yaml.safe_dump(config))
    return paths


def _submit(lab: Topology, schedd: str, log: Path) -> None:
    shape = Shape(f"missing-data-{schedd.split('@')[0]}", JOBS_PER_SCHEDD, 1, 256, ("Site2",), 60)
    Collector(lab.vo.collector).schedd(schedd).submit(submit_description(shape, log), count=JOBS_PER_SCHEDD)


@pytest.fixture(scope="module")
def steady(lab: Topology) -> Iterator[Lab]:
    """Jobs waiting on both user schedds for Site2, its pilots queued at the factory, the request steady."""
    folder = lab.work_dir / "missing-data"
    folder.mkdir(parents=True, exist_ok=True)
    control.switch_daemon(lab, ENTRY, "STARTD", on=False)
    services = start_services(lab, _short_cycles(lab, folder), folder)
    here = Lab(lab, services)
    try:
        for schedd in lab.user_schedds:
            _submit(lab, schedd, folder / "jobs.log")
        wait_for(lambda: [a for a in here.asks() if a.idle == WANTED and a.held_since is None], 12 * CYCLE)
        wait_for(lambda: len(here.queued_pilots()) >= WANTED, 12 * CYCLE)
        yield here
    finally:
        vo = Collector(lab.vo.collector)
        for schedd in lab.user_schedds:
            vo.schedd(schedd).remove(f'regexp("^missing-data-", {WORKLOAD_ATTR} ?: "")', "test done")
        services.stop()  # SIGTERM: the frontend withdraws its requests
        factory_schedd(lab).remove(f"{LAB_PILOTS} && JobStatus != 3", "test done")
        control.switch_daemon(lab, ENTRY, "STARTD", on=True)


def _child(lab: Topology, instance: str, daemon: str) -> int:
    """The pid of `daemon` (condor_collector, condor_schedd) under the `instance`'s master."""
    master = int((lab.instance_dir(lab.instance(instance)) / "run" / "master.pid").read_text().split()[0])
    children = [
        int(child)
        for task in Path(f"/proc/{master}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    (pid,) = [c for c in children if Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")[0].endswith(daemon.encode())]
    return pid


def _through_two_held_cycles(here: Lab, started: float) -> list[Ask]:
    """Sample until the frontend has published twice while the data was missing; those publications."""

    def held() -> list[Ask]:
        found = [a for a in here.sample() if a.held_since is not None and a.time >= started]
        return found if len(found) >= 2 else []

    return wait_for(held, 12 * CYCLE + 4 * DEADLINE, interval=0.5)


def _last_good_before(here: Lab, ask: Ask) -> Ask:
    return [a for a in here.seen if a.held_since is None and a.time < ask.time][-1]


def _check_outage(here: Lab, held: list[Ask], started: float, floor_only: bool = False) -> None:
    """Every kept request is the last good one (at least, for a floor), removes nothing, says since when;
    the data back, the frontend computes again; the factory removed nothing throughout."""
    for ask in held:
        good = _last_good_before(here, ask)
        assert ask.remove == "none", ask
        assert ask.held_since == good.time, f"held since {ask.held_since}, last good at {good.time}"
        if floor_only:
            assert ask.idle >= good.idle and ask.max_pilots == good.max_pilots, (good, ask)
        else:
            assert (ask.idle, ask.max_pilots) == (good.idle, good.max_pilots), (good, ask)
    back = wait_for(
        lambda: [a for a in here.sample() if a.held_since is None and a.time > held[-1].time], 8 * CYCLE, interval=0.5
    )
    assert back[0].idle > 0 and back[0].remove == "none", "jobs still wait: still asked for, nothing removed"
    time.sleep(CYCLE + 1)  # a factory cycle on the request published last
    assert here.removed_since(started) == [], "missing data made the factory remove pilots"
    before = _last_good_before(here, held[0])
    print(f"\nbefore {before}\nkept {held}\nback {back[0]}\nqueued site2 pilots {len(here.queued_pilots())}")


def test_deleted_entry_ads_keep_the_request_and_remove_nothing(steady: Lab) -> None:
    """The red team's case: another WMS writer deletes the entry ads; the factory re-advertises them every
    cycle, so they are deleted again and again, as the factory's identity (the collector allows no other)."""
    lab = steady.lab
    script = (
        "import sys, time\n"
        "from updraft.condor import Collector\n"
        "wms = Collector(sys.argv[1])\n"
        "while True:\n"
        "    wms.invalidate(sys.argv[2], sys.argv[3])\n"
        "    time.sleep(0.2)\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("_CONDOR_")},
        "CONDOR_CONFIG": str(lab.role_config(FACTORY)),
    }
    steady.sample()
    started = time.time()
    deleting = subprocess.Popen(
        [
            sys.executable,
            "-c",
            script,
            lab.wms.collector,
            protocol.ENTRY_TYPE,
            f'{protocol.E_FACTORY} == "{FACTORY_NAME}"',
        ],
        env=env,
    )
    try:
        held = _through_two_held_cycles(steady, started)
        assert deleting.poll() is None, "the deleting process died"
    finally:
        deleting.kill()
        deleting.wait()
    _check_outage(steady, held, started)


def test_a_frozen_vo_collector_keeps_the_request_and_removes_nothing(steady: Lab) -> None:
    pid = _child(steady.lab, "vo", "condor_collector")
    steady.sample()
    started = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        held = _through_two_held_cycles(steady, started)
    finally:
        os.kill(pid, signal.SIGCONT)
    _check_outage(steady, held, started)


def test_a_frozen_user_schedd_keeps_the_request_as_a_floor_and_removes_nothing(steady: Lab) -> None:
    pid = _child(steady.lab, "submit2", "condor_schedd")
    steady.sample()
    started = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        held = _through_two_held_cycles(steady, started)
    finally:
        os.kill(pid, signal.SIGCONT)
    _check_outage(steady, held, started, floor_only=True)


def _our_slots(lab: Topology, entry: str) -> list[dict]:
    return Collector(lab.vo.collector).query(
        htcondor2.AdType.Startd,
        f'GLIDECLIENT_Name == "{FRONTEND_NAME}" && GLIDEIN_Entry_Name == "{entry}"',
        ["Name", "SlotType", "GLIDEIN_ClusterId", "GLIDEIN_ProcId", "TotalSlotCpus", "Cpus"],
    )


def _pilots_and_slots(lab: Topology, entry: str) -> tuple[int, int, bool]:
    """(glideins, slot ads, whether any slot is a dynamic one) of this frontend's pilots on `entry`."""
    ads = _our_slots(lab, entry)
    pilots = {(ad.get("GLIDEIN_ClusterId"), ad.get("GLIDEIN_ProcId")) for ad in ads}
    return len(pilots), len(ads), any(ad.get("SlotType") == "Dynamic" for ad in ads)


def test_a_pilot_running_jobs_in_dynamic_slots_is_one_pilot(steady: Lab) -> None:
    """The red team's "6 of 6 pilots" with 2 running: a partitionable slot and its dynamic slots are one pilot."""
    lab = steady.lab
    shape = Shape("missing-data-pslots", 2, 1, 256, ("Site1",), 180)
    log = lab.work_dir / "missing-data" / "jobs.log"
    Collector(lab.vo.collector).schedd(lab.vo.schedd_name).submit(submit_description(shape, log), count=2)
    wait_for(lambda: _pilots_and_slots(lab, "site1")[2], 240, interval=2)

    def counted_right() -> tuple[int, int, dict] | None:
        """A frontend publication between two equal views of the pool with dynamic slots in it."""
        pilots, slots, dynamic = _pilots_and_slots(lab, "site1")
        since = time.time()
        ad = wait_for(lambda: _site1_request_after(lab, since), 4 * CYCLE, interval=0.5)
        if (pilots, slots, dynamic) != _pilots_and_slots(lab, "site1") or not dynamic:
            return None  # a pilot came or went meanwhile: look again
        assert slots > pilots, "dynamic slots are there, so there are more slot ads than pilots"
        assert ad[protocol.R_SLOTS_TOTAL] == pilots, f"{ad[protocol.R_SLOTS_TOTAL]} pilots counted, {pilots} glideins"
        assert ad[protocol.R_SLOTS_CORES] == 2 * pilots, "each 2-core pilot once, not again per dynamic slot"
        return pilots, slots, ad

    pilots, slots, ad = wait_for(counted_right, 8 * CYCLE, interval=0)
    print(f"\n{pilots} pilots in {slots} slot ads; the frontend counted {ad[protocol.R_SLOTS_TOTAL]} pilots, "
          f"{ad[protocol.R_SLOTS_CORES]} cores, {ad[protocol.R_SLOTS_RUNNING]} running")  # fmt: skip


def _site1_request_after(lab: Topology, since: float) -> dict | None:
    ads = Collector(lab.wms.collector).generic_ads(
        protocol.REQUEST_TYPE,
        f'{protocol.R_FRONTEND} == "{FRONTEND_NAME}" && {protocol.R_ENTRY} == "site1" && {protocol.R_TIME} > {since}',
        [protocol.R_TIME, protocol.R_SLOTS_TOTAL, protocol.R_SLOTS_CORES, protocol.R_SLOTS_RUNNING],
    )
    return ads[0] if ads else None
