"""The frontend follows advertised entry health through a real WMS collector (issue 19, the frontend's part).

Layers: the lab's entry ads as the factory writes them, with the health
attributes a factory's policy would add -> user jobs for Site1 and for
either site -> `updraft frontend once` and `explain`, run as an operator
runs them -> the request ads in the WMS collector. The values go through
the collector and the ClassAd library as real ads do (types, projection).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from updraft import protocol
from updraft.condor import Collector
from updraft.factory.advertise import entry_ads
from updraft.factory.config import FactoryConfig
from updraft.lab.labconfig import factory_config, frontend_config, write_component_configs
from updraft.lab.topology import FACTORY, Topology

from .roles import advertise_as
from .test_frontend import updraft

MARK = "frontend-health-test"
GROUP = "health"
SINCE = 1_790_000_000
SINCE_TEXT = "2026-09-21T14:13:20Z"
# (jobs, DESIRED_Sites): 4 for Site1 only, 6 that either site takes; one core each, 2 cores per lab pilot.
SHAPES = [(4, "Site1"), (6, "Site1,Site2")]


@pytest.fixture(scope="module")
def health_yaml(lab: Topology, tmp_path_factory: pytest.TempPathFactory) -> Path:
    write_component_configs(lab)
    config = frontend_config(lab)
    # A group of its own: pilot slots earlier tests left in the VO collector belong to group main and
    # would count as capacity here.
    group = config["groups"].pop("main")
    group["job_constraint"] = f'UpdraftTest =?= "{MARK}"'
    group["ramp_up_attenuation"] = 1  # whole needs, so the numbers below are exact
    config["groups"] = {GROUP: group}
    path = tmp_path_factory.mktemp("frontend-health") / "frontend.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def health_jobs(lab: Topology) -> Iterator[None]:
    """Idle jobs no startd takes (their requirement reads what nobody advertises): only the frontend sees them."""
    schedd = Collector(lab.vo.collector).schedd(lab.user_schedds[0])
    log = lab.work_dir / "tests" / "frontend-health.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    for count, sites in SHAPES:
        schedd.submit(
            {
                "executable": "/bin/true",
                "log": str(log),
                "request_cpus": "1",
                "request_memory": "100",
                "requirements": "TARGET.UpdraftTestNeverMatches =?= true",
                "+UpdraftTest": f'"{MARK}"',
                "+DESIRED_Sites": f'"{sites}"',
            },
            count=count,
        )
    yield
    Collector(lab.vo.collector).schedd(lab.user_schedds[0]).remove(f'UpdraftTest =?= "{MARK}"', "health test done")


def requests(lab: Topology) -> dict[str, dict]:
    """This test's group's request ads, by entry name."""
    constraint = f'UpdraftFrontend == "lab-vo" && UpdraftGroup == "{GROUP}"'
    ads = Collector(lab.wms.collector).generic_ads(protocol.REQUEST_TYPE, constraint)
    return {ad[protocol.R_ENTRY]: ad for ad in ads}


def advertise(lab: Topology, health: dict[str, dict]) -> None:
    """The lab's entry ads, with `health` (by entry name) added as a factory's policy would."""
    ads = entry_ads(FactoryConfig.model_validate(factory_config(lab)))
    advertise_as(lab, FACTORY, lab.wms.collector, [{**ad, **health.get(ad[protocol.E_ENTRY], {})} for ad in ads])


def state(name: str, reason: str, cap: int | None = None) -> dict:
    found = {protocol.E_HEALTH: name, protocol.E_HEALTH_REASON: reason, protocol.E_HEALTH_SINCE: SINCE}
    return found if cap is None else {**found, protocol.E_HEALTH_CAP: cap}


def test_a_banned_entry_gets_nothing_and_the_jobs_that_accept_both_go_to_the_other(
    lab, health_yaml, health_jobs
) -> None:
    advertise(lab, {"site1": state("banned", "8 of 10 pilots failed validation", 0)})
    done = updraft("frontend", "once", "--config", str(health_yaml))
    published = requests(lab)
    assert published["site2"][protocol.R_IDLE] == 3, "all 6 jobs that take either site: 3 two-core pilots"
    assert published["site2"][protocol.R_JOBS_IDLE] == 6
    assert published["site1"][protocol.R_IDLE] == 0, "its only jobs are placed there, and zeroed"
    assert "entry.health" in published["site1"][protocol.R_BOUND_BY].split(",")
    assert "4 idle job(s) match only entries in downtime or banned" in done.stdout
    told = updraft("frontend", "explain", "--config", str(health_yaml), "--entry", "site1")
    assert f"zero by entry.health: entry banned since {SINCE_TEXT}: 8 of 10 pilots failed validation" in told.stdout
    unmatched = updraft("frontend", "explain", "--config", str(health_yaml), "--unmatched")
    assert f"matches, but the entry is banned since {SINCE_TEXT}" in unmatched.stdout


def test_a_degraded_entry_is_asked_at_most_its_cap(lab, health_yaml, health_jobs) -> None:
    advertise(lab, {"site2": state("degraded", "slow starts", 1)})
    updraft("frontend", "once", "--config", str(health_yaml))
    published = requests(lab)
    assert published["site2"][protocol.R_IDLE] == 1, "its share (3 jobs: 2 pilots) held at the cap"
    assert published["site2"][protocol.R_BOUND_BY].split(",")[-1] == "entry.health"
    assert published["site1"][protocol.R_IDLE] == 4, "4 + 3 jobs on two-core pilots"
    advertise(lab, {})  # the plain ads again, for whoever runs next
