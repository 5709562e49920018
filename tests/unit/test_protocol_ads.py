"""Both ends of the WMS protocol: entry ads from the factory, request ads from the frontend."""

from __future__ import annotations

from updraft import protocol
from updraft.factory.advertise import entry_ads
from updraft.factory.config import FactoryConfig
from updraft.frontend.config import FrontendConfig
from updraft.frontend.model import Decision, EntryAd, Plan, RemoveMode
from updraft.frontend.observe import parse_entry
from updraft.frontend.publish import diff, request_ad, request_ads

FACTORY = FactoryConfig.model_validate({
    "name": "fac", "wms_collector": "127.0.0.1:9619", "schedd": "s@x", "cycle_seconds": 20,
    "entries": {
        "ce1": {"grid_type": "condor", "resource": "ce x:1", "attributes": {"GLIDEIN_Site": "S1", "GLIDEIN_CPUS": 4}},
        "ce2": {"grid_type": "condor", "resource": "ce x:2", "downtime": True, "attributes": {"GLIDEIN_CPUS": "auto"}},
        "off": {"grid_type": "condor", "resource": "ce x:3", "enabled": False},
    },
})
FRONTEND = FrontendConfig.model_validate({
    "name": "vo", "vo_collector": "127.0.0.1:1", "wms_collector": "127.0.0.1:2", "cycle_seconds": 10,
    "factories": {"fac": {"identity": "fac@lab"}}, "groups": {"main": {}},
})


def test_factory_advertises_enabled_entries_that_the_frontend_reads_back() -> None:
    ads = {ad["Name"]: ad for ad in entry_ads(FACTORY)}
    assert set(ads) == {"ce1@fac", "ce2@fac"}
    assert ads["ce1@fac"]["ClassAdLifetime"] == 60
    entries = {}
    for ad in ads.values():
        entry, why = parse_entry({**ad, "AuthenticatedIdentity": "fac@lab"}, {"fac": "fac@lab"})
        assert why is None
        entries[entry.name] = entry
    assert entries["ce1"].cpus_per_pilot == 4 and entries["ce1"].attrs["GLIDEIN_Site"] == "S1"
    assert entries["ce1"].max_pilots == 100 and not entries["ce1"].in_downtime
    assert entries["ce2"].in_downtime and entries["ce2"].cpus_per_pilot == 1


def test_published_attributes_cannot_overwrite_the_protocol_ones() -> None:
    config = FactoryConfig.model_validate({**FACTORY.model_dump(), "entries": {
        "ce1": {"grid_type": "condor", "resource": "ce x:1", "attributes": {"UpdraftFactory": "forged", "MyType": "Machine"}}}})
    (ad,) = entry_ads(config)
    assert (ad["UpdraftFactory"], ad["MyType"]) == ("fac", "UpdraftEntry")


def decision(idle: int, entry: str = "ce1", remove: RemoveMode = RemoveMode.NONE) -> Decision:
    return Decision(group="main", entry=EntryAd(entry, "fac", {}), idle=idle, max_pilots=40, remove=remove,
                    remove_max=2, inputs={"idle_jobs": 12.5, "running_slots": 3}, bound_by=("group.max_idle_per_entry",))


def test_a_request_ad_reads_back_as_the_same_request() -> None:
    ad = request_ad(decision(7, remove=RemoveMode.IDLE), FRONTEND, cycle=4, now=1000.0)
    assert ad["Name"] == "vo.main/ce1@fac"
    assert ad["ClassAdLifetime"] == 30
    assert (ad[protocol.R_JOBS_IDLE], ad[protocol.R_SLOTS_RUNNING], ad[protocol.R_BOUND_BY]) == (12.5, 3, "group.max_idle_per_entry")
    back = protocol.parse_request({**ad, "AuthenticatedIdentity": "vo@lab"})
    assert (back.frontend, back.group, back.entry, back.factory) == ("vo", "main", "ce1", "fac")
    assert (back.idle, back.max_pilots, back.remove, back.remove_max, back.identity) == (7, 40, "idle", 2, "vo@lab")
    assert back.security_class == "default"


def test_malformed_or_foreign_request_ads_are_not_read() -> None:
    ad = request_ad(decision(1), FRONTEND, 1, 0.0)
    assert protocol.parse_request({**ad, "UpdraftSchema": 2}) is None
    assert protocol.parse_request({**ad, protocol.R_IDLE: "many"}) is None
    assert protocol.parse_request({k: v for k, v in ad.items() if k != protocol.R_MAX}) is None


def test_diff_marks_new_changed_unchanged_and_withdrawn_requests() -> None:
    published = [protocol.parse_request(request_ad(decision(n, e), FRONTEND, 1, 0.0)) for n, e in ((1, "a"), (2, "b"), (3, "c"))]
    planned = request_ads(Plan(0.0, (decision(1, "a"), decision(5, "b"), decision(1, "d"))), FRONTEND, 2)
    lines = [change.describe() for change in diff(published, planned)]
    assert [line[0] for line in lines] == ["=", "~", "-", "+"]
    assert "idle 2" in lines[1] and "idle 5" in lines[1]
    assert lines[2].endswith("withdrawn") and "not published" in lines[3]
