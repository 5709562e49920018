"""One bad ad costs only itself: trusted identities first, projections, and isolation of unsendable ads.

The fake collector fails a whole query when an ad it returns carries a NUL
byte in a value, as the real one does ("Failed communication with
collector"); `tests/integration/test_poisoned_ads.py` shows the same on the
lab's collector.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from updraft import adread, protocol
from updraft.errors import CondorError, DaemonSilent
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.observe import observe as factory_observe
from updraft.factory.ports import FactoryPorts
from updraft.factory.ports import fake_ports as factory_fake_ports
from updraft.fakes import FakeCollector
from updraft.frontend.config import FrontendConfig, load_frontend_config
from updraft.frontend.observe import entry_projection
from updraft.frontend.observe import observe as frontend_observe
from updraft.frontend.ports import FrontendPorts
from updraft.frontend.ports import fake_ports as frontend_fake_ports

from .conftest import ConfigTree
from .test_factory_cycle import FACTORY, NOW, request
from .test_frontend_cycle import FRONTEND, entry_ad


@pytest.fixture
def factory(tree: ConfigTree, tmp_path: Path) -> FactoryConfig:
    return load_factory_config(tree.factory(main=FACTORY.format(work=tmp_path / "work"))).config


@pytest.fixture
def frontend(tree: ConfigTree, tmp_path: Path) -> FrontendConfig:
    text = FRONTEND.format(work=tmp_path / "work").replace("name: test-vo\n", "name: test-vo\n    identity: vo@lab\n")
    text = text.replace('match_expr: "true"', "match_expr: 'TARGET.GLIDEIN_Site =!= \"x\"'")
    return load_frontend_config(tree.frontend(main=text)).config


def named(ad: dict[str, Any], name: str, **changes: Any) -> dict[str, Any]:
    return {**ad, "Name": name, **changes}


def test_a_nul_in_an_attribute_nobody_reads_costs_nothing(factory: FactoryConfig) -> None:
    ports, wms, _ = factory_fake_ports(factory, NOW)
    wms.ads.append({**request(idle=3), protocol.R_CYCLE: "x\0y"})  # not in the projection
    view = factory_observe(factory, ports, NOW, with_history=False)
    assert [r.idle for r in view.requests] == [3] and view.problems == ()


def test_a_poisoned_request_from_a_trusted_frontend_costs_only_that_ad(factory: FactoryConfig) -> None:
    ports, wms, _ = factory_fake_ports(factory, NOW)
    wms.ads.append(request(idle=3))
    wms.ads += [named(request(idle=1), f"bad{i}", **{protocol.R_GROUP_START: "x\0y"}) for i in range(3)]
    view = factory_observe(factory, ports, NOW, with_history=False)
    assert [r.idle for r in view.requests] == [3]
    unreadable = [p for p in view.problems if "cannot be read from the collector" in p]
    assert len(unreadable) == 3 and all("'frontend@lab'" in p for p in unreadable), view.problems


def test_a_poisoned_ad_from_an_untrusted_identity_is_never_asked_for(factory: FactoryConfig) -> None:
    ports, wms, _ = factory_fake_ports(factory, NOW)
    wms.ads.append(request(idle=3))
    wms.ads.append(named(request(idle=9), "evil", **{protocol.IDENTITY: "mallory@lab", protocol.R_FRONTEND: "x\0"}))
    view = factory_observe(factory, ports, NOW, with_history=False)
    assert [r.idle for r in view.requests] == [3] and view.problems == ()
    assert wms.calls.count("query of") == 2, "the requests, then the impostor check: no narrower queries"


def test_a_request_under_a_trusted_name_from_another_identity_is_ignored_and_named(factory: FactoryConfig) -> None:
    ports, wms, _ = factory_fake_ports(factory, NOW)
    wms.ads.append({**request(idle=9), protocol.IDENTITY: "mallory@lab", protocol.R_FRONTEND: "slow()"})
    view = factory_observe(factory, ports, NOW, with_history=False)
    assert view.requests == ()
    [problem] = view.problems
    assert "'vo.main/site1@test-factory' came from 'mallory@lab'" in problem
    assert "'vo' is trusted only as 'frontend@lab'" in problem


def test_a_poisoned_entry_ad_costs_only_itself_and_an_impostor_entry_is_named(frontend: FrontendConfig) -> None:
    ports, _vo, wms = frontend_fake_ports(frontend)
    wms.ads += [
        entry_ad("site1"),
        {**entry_ad("site2"), "GLIDEIN_Site": "Si\0te2"},
        {**entry_ad("site3"), protocol.IDENTITY: "mallory@lab"},
    ]
    seen = frontend_observe(frontend, ports, NOW)
    assert [e.name for e in seen.entries] == ["site1"]
    reasons = " | ".join(p.message for p in seen.problems)
    assert "'site2@" in reasons and "cannot be read from the collector" in reasons
    assert "came from 'mallory@lab'" in reasons


def test_entries_are_read_with_the_attributes_the_groups_match_on(frontend: FrontendConfig) -> None:
    wanted = entry_projection(frontend)
    assert set(protocol.ENTRY_PROJECTION) <= set(wanted) and "GLIDEIN_Site" in wanted
    ports, _vo, wms = frontend_fake_ports(frontend)
    wms.ads.append({**entry_ad("site1"), "Unrelated": "big" * 1000})
    [entry] = frontend_observe(frontend, ports, NOW).entries
    assert "Unrelated" not in entry.attrs and entry.attrs["GLIDEIN_Site"] == "Site1"


def _ads(count: int, bad: set[int]) -> list[dict[str, Any]]:
    return [
        {"MyType": "T", "Name": f"ad{i:04d}", protocol.IDENTITY: "a@lab", "V": "x\0" if i in bad else "ok"}
        for i in range(count)
    ]


def test_isolation_finds_each_bad_ad_among_many_with_few_queries() -> None:
    wms = FakeCollector(ads=_ads(500, {7, 321}))
    read = adread.read_isolated(wms, "T", "true", ["Name", "V"])
    assert len(read.ads) == 498 and [u.name for u in read.unreadable] == ["ad0007", "ad0321"]
    assert read.unresolved == 0 and len(wms.calls) <= 2 + adread.MAX_NARROWER_QUERIES


def test_a_flood_of_bad_ads_costs_a_bounded_number_of_queries_and_is_counted() -> None:
    wms = FakeCollector(ads=_ads(2000, set(range(0, 2000, 3))))
    read = adread.read_isolated(wms, "T", "true", ["Name", "V"])
    assert len(wms.calls) == 2 + adread.MAX_NARROWER_QUERIES
    assert read.unresolved + len(read.unreadable) + len(read.ads) >= 667 + len(read.ads)
    assert all(ad["V"] == "ok" for ad in read.ads)
    assert any("narrower queries did not isolate" in line for line in read.problems("T"))


def test_a_silent_collector_is_not_asked_again() -> None:
    wms = FakeCollector(ads=_ads(10, {1}), unreachable=True)
    with pytest.raises(DaemonSilent):
        adread.read_isolated(wms, "T", "true", ["Name"])
    assert len(wms.calls) == 1


def test_when_even_the_names_cannot_be_read_the_first_failure_is_raised() -> None:
    wms = FakeCollector(ads=[{"MyType": "T", "Name": "x\0", protocol.IDENTITY: "a@lab"}])
    with pytest.raises(CondorError, match="Failed communication"):
        adread.read_isolated(wms, "T", "true", ["Name"])


def test_nothing_we_advertise_carries_a_control_character() -> None:
    cleaned, changed = protocol.sendable({"Name": "a", "UpdraftCycle": "x\0y", "Bound": "a\nb\x7f", "N": 3})
    assert cleaned == {"Name": "a", "UpdraftCycle": "xy", "Bound": "ab", "N": 3} and changed == [
        "UpdraftCycle",
        "Bound",
    ]
    wms = FakeCollector()
    wms.advertise([{"MyType": "T", "Name": "a", "V": "x\0y"}])
    assert wms.ads[0]["V"] == "xy" and wms.generic_ads("T")[0]["V"] == "xy"


def test_the_trusted_constraint_compares_the_identity_first_and_trusts_nobody_by_default() -> None:
    assert adread.trusted_constraint("F", {}) == "false"
    text = adread.trusted_constraint("F", {"vo": "vo@lab"})
    assert text.index("AuthenticatedIdentity") < text.index("F =?=")


class RecordingCollector(FakeCollector):
    """A fake collector that remembers what each query asked for."""

    def __init__(self, fake: FakeCollector) -> None:
        super().__init__(fake.address, fake.ads, fake.schedds)
        self.asked: list[tuple[str, list[str]]] = []

    def query(self, ad_type: Any, constraint: str = "true", projection: Iterable[str] = ()) -> list[dict[str, Any]]:
        wanted = list(projection)
        self.asked.append((constraint, wanted))
        return super().query(ad_type, constraint, wanted)


def test_every_collector_query_of_a_factory_cycle_projects(factory: FactoryConfig) -> None:
    _ports, fake, _schedd = factory_fake_ports(factory, NOW)
    wms = RecordingCollector(fake)
    wms.ads.append(request(idle=2))
    view = factory_observe(factory, FactoryPorts.through(wms, factory.schedd), NOW)
    assert [r.idle for r in view.requests] == [2]
    assert len(wms.asked) >= 2 and all(projection for _, projection in wms.asked), wms.asked


def test_every_collector_query_of_a_frontend_cycle_projects_and_asks_for_trusted_identities(
    frontend: FrontendConfig,
) -> None:
    _ports, vo_fake, wms_fake = frontend_fake_ports(frontend)
    vo, wms = RecordingCollector(vo_fake), RecordingCollector(wms_fake)
    wms.ads.append(entry_ad("site1"))
    seen = frontend_observe(frontend, FrontendPorts(vo, wms), NOW)
    assert [e.name for e in seen.entries] == ["site1"]
    asked = vo.asked + wms.asked
    assert len(wms.asked) >= 3 and all(projection for _, projection in asked), asked
    assert all("AuthenticatedIdentity" in constraint for constraint, _ in wms.asked), wms.asked


def test_the_frontend_takes_as_its_own_only_requests_its_identity_sent(frontend: FrontendConfig) -> None:
    ports, _vo, wms = frontend_fake_ports(frontend)
    mine = {**request(idle=1), protocol.R_FRONTEND: "test-vo", protocol.IDENTITY: "vo@lab"}
    forged = {**mine, "Name": "test-vo.main/site2@test-factory", protocol.IDENTITY: "mallory@lab"}
    wms.ads += [entry_ad("site1"), mine, forged]
    published = frontend_observe(frontend, ports, NOW).published
    assert published is not None and [p.identity for p in published] == ["vo@lab"]
