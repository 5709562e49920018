"""Ads other WMS writers publish, on the lab's real collector: one bad ad costs only itself.

A string value with a NUL byte makes the collector fail every query that
returns it ("Failed communication with collector"). The factory and the
frontend still read every good ad of their trusted peers, name the bad one,
and ignore ads under a trusted name sent by another identity.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from updraft import protocol
from updraft.condor import Collector
from updraft.errors import CondorError
from updraft.factory import ports as factory_ports
from updraft.factory.config import FactoryConfig
from updraft.factory.observe import observe as factory_observe
from updraft.frontend import ports as frontend_ports
from updraft.frontend.config import FrontendConfig
from updraft.frontend.observe import observe as frontend_observe
from updraft.lab.labconfig import factory_config, frontend_config
from updraft.lab.topology import FACTORY, FRONTEND, Topology

from .jobs import wait_for
from .roles import advertise_as, advertise_raw_as, invalidate_as

MARK = "PoisonTest"


def request(name: str, idle: int, **extra: Any) -> dict[str, Any]:
    return {
        "MyType": protocol.REQUEST_TYPE,
        "Name": name,
        MARK: True,
        "UpdraftSchema": protocol.SCHEMA,
        protocol.R_FRONTEND: "lab-vo",
        protocol.R_GROUP: "poison",
        protocol.R_FACTORY: "lab-factory",
        protocol.R_ENTRY: "site1",
        protocol.R_SECURITY_CLASS: "default",
        protocol.R_IDLE: idle,
        protocol.R_MAX: 10,
        protocol.R_REMOVE: "none",
        protocol.R_REMOVE_MAX: 0,
        protocol.R_PILOT_COLLECTOR: "127.0.0.1:9618",
        **extra,
    }


def entry(name: str) -> dict[str, Any]:
    return {
        "MyType": protocol.ENTRY_TYPE,
        "Name": protocol.entry_ad_name(name, "lab-factory"),
        MARK: True,
        "UpdraftSchema": protocol.SCHEMA,
        protocol.E_FACTORY: "lab-factory",
        protocol.E_ENTRY: name,
        protocol.E_CPUS: 1,
        protocol.E_MAX_PILOTS: 5,
        protocol.E_MAX_IDLE: 5,
        "GLIDEIN_Site": "Site1",
    }


@pytest.fixture
def withdrawn(lab: Topology):
    """Every ad this module advertised is withdrawn afterwards, by the identity that sent it."""
    yield
    for role in (FACTORY, FRONTEND):
        for my_type in (protocol.REQUEST_TYPE, protocol.ENTRY_TYPE):
            invalidate_as(lab, role, lab.wms.collector, my_type, f"{MARK} =?= True")


def test_a_nul_in_one_ad_does_not_blind_the_factory(lab: Topology, withdrawn: None) -> None:
    advertise_as(lab, FRONTEND, lab.wms.collector, [request("good", 2), request("good2", 3)])
    # another WMS writer (here the factory's identity) publishes a poisoned request for the same factory,
    poisoned = request("lab-vo.poison/other@lab-factory", 1, UpdraftCycle="x\0y")
    advertise_raw_as(lab, FACTORY, lab.wms.collector, [poisoned])
    # and the trusted frontend itself publishes one poisoned ad among its good ones
    advertise_raw_as(lab, FRONTEND, lab.wms.collector, [request("poison-own", 1, UpdraftGroupStart="x\0y")])
    wms = Collector(lab.wms.collector)
    addressed = f'{protocol.R_FACTORY} == "lab-factory" && {MARK} =?= True'
    wait_for(lambda: len(wms.generic_ads(protocol.REQUEST_TYPE, addressed, ["Name"])) == 4, 30)
    # what a reader asking for every attribute of every request to this factory gets: nothing at all
    with pytest.raises(CondorError, match="Failed communication with collector"):
        wms.generic_ads(protocol.REQUEST_TYPE, addressed)

    config = FactoryConfig.model_validate(factory_config(lab))
    started = time.monotonic()
    view = factory_observe(config, factory_ports.connect(config), time.time(), with_history=False)
    took = time.monotonic() - started
    ours = sorted((r.group, r.idle) for r in view.requests if r.group == "poison")
    assert ours == [("poison", 2), ("poison", 3)], view.problems
    unreadable = [p for p in view.problems if "cannot be read from the collector" in p]
    assert len(unreadable) == 1 and "'poison-own' from 'frontend@lab'" in unreadable[0], view.problems
    # the other writer's ad is not read, only named: it claims a trusted frontend's name
    [impostor] = [p for p in view.problems if "poison/other" in p]
    assert "'lab-vo.poison/other@lab-factory' came from 'factory@lab'" in impostor
    assert "'lab-vo' is trusted only as 'frontend@lab'" in impostor
    assert took < 10, f"isolating one bad ad took {took:.1f} s"


SLOW = 'regexp("(a+)+$", "' + "a" * 40 + 'b")'
"""Catastrophic backtracking: some ms per evaluation before the regex library gives up (11 ms here)."""


def test_slow_expressions_from_another_identity_cost_the_factory_nothing(lab: Topology, withdrawn: None) -> None:
    slow = {
        "__expressions__": {
            protocol.R_FACTORY: f'ifThenElse({SLOW}, "lab-factory", "lab-factory")',
            **{f"Slow{i}": SLOW for i in range(10)},
        }
    }
    ads = [{**request(f"slow{i}", 1), **slow} for i in range(12)]
    advertise_raw_as(lab, FACTORY, lab.wms.collector, ads)
    advertise_as(lab, FRONTEND, lab.wms.collector, [request("good", 2)])
    wms = Collector(lab.wms.collector)
    wait_for(lambda: len(wms.generic_ads(protocol.REQUEST_TYPE, f"{MARK} =?= True", ["Name"])) == 13, 30)
    started = time.monotonic()
    wms.generic_ads(protocol.REQUEST_TYPE, f'{protocol.R_FACTORY} == "lab-factory" && {MARK} =?= True')
    every_attribute = time.monotonic() - started  # what reading every attribute of every ad costs

    config = FactoryConfig.model_validate(factory_config(lab))
    started = time.monotonic()
    view = factory_observe(config, factory_ports.connect(config), time.time(), with_history=False)
    took = time.monotonic() - started
    assert [r.idle for r in view.requests if r.group == "poison"] == [2], view.problems
    assert took < 1 and took * 5 < every_attribute, f"trusted, projected: {took:.2f} s; all: {every_attribute:.2f} s"


def test_updraft_itself_never_sends_a_nul(lab: Topology, withdrawn: None) -> None:
    advertise_as(lab, FRONTEND, lab.wms.collector, [request("cleaned", 1, UpdraftCycle="x\0y")])
    wms = Collector(lab.wms.collector)
    [ad] = wait_for(lambda: wms.generic_ads(protocol.REQUEST_TYPE, 'Name == "cleaned"', ["UpdraftCycle"]), 30)
    assert ad["UpdraftCycle"] == "xy"


def test_the_frontend_ignores_an_entry_ad_from_an_identity_other_than_the_factorys(
    lab: Topology, withdrawn: None
) -> None:
    advertise_as(lab, FACTORY, lab.wms.collector, [entry("poisonsite1")])
    advertise_as(lab, FRONTEND, lab.wms.collector, [entry("poisonsite2")])  # a WMS writer, not the factory
    wms = Collector(lab.wms.collector)
    wait_for(lambda: len(wms.generic_ads(protocol.ENTRY_TYPE, f"{MARK} =?= True", ["Name"])) == 2, 30)

    config = FrontendConfig.model_validate(frontend_config(lab))
    seen = frontend_observe(config, frontend_ports.connect(config), time.time())
    names = {e.name for e in seen.entries}
    assert "poisonsite1" in names and "poisonsite2" not in names
    said = [p.message for p in seen.problems if "poisonsite2" in p.message]
    assert said and "came from 'frontend@lab'" in said[0] and "trusted only as 'factory@lab'" in said[0], said
