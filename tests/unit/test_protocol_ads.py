"""Both ends of the WMS protocol: entry ads from the factory, request ads from the frontend."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft import protocol
from updraft.factory.advertise import entry_ads
from updraft.factory.config import FactoryConfig
from updraft.frontend.config import FrontendConfig
from updraft.frontend.model import Decision, DecisionInputs, EntryAd, Plan
from updraft.frontend.observe import parse_entry
from updraft.frontend.publish import diff, request_ad, request_ads
from updraft.protocol import RemoveMode

FACTORY = FactoryConfig.model_validate(
    {
        "name": "fac",
        "wms_collector": "127.0.0.1:9619",
        "schedd": "s@x",
        "cycle_seconds": 20,
        "entries": {
            "ce1": {
                "grid_type": "condor",
                "resource": "ce x:1",
                "attributes": {"GLIDEIN_Site": "S1", "GLIDEIN_CPUS": 4},
            },
            "ce2": {
                "grid_type": "condor",
                "resource": "ce x:2",
                "downtime": True,
                "attributes": {"GLIDEIN_CPUS": "auto"},
            },
            "off": {"grid_type": "condor", "resource": "ce x:3", "enabled": False},
        },
    }
)
FRONTEND = FrontendConfig.model_validate(
    {
        "name": "vo",
        "vo_collector": "127.0.0.1:1",
        "wms_collector": "127.0.0.1:2",
        "cycle_seconds": 10,
        "factories": {"fac": {"identity": "fac@lab"}},
        "groups": {"main": {}},
    }
)


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
    config = FactoryConfig.model_validate(
        {
            **FACTORY.model_dump(),
            "entries": {
                "ce1": {
                    "grid_type": "condor",
                    "resource": "ce x:1",
                    "attributes": {"UpdraftFactory": "forged", "MyType": "Machine"},
                }
            },
        }
    )
    (ad,) = entry_ads(config)
    assert (ad["UpdraftFactory"], ad["MyType"]) == ("fac", "UpdraftEntry")


def decision(idle: int, entry: str = "ce1", remove: RemoveMode = RemoveMode.NONE) -> Decision:
    return Decision(
        group="main",
        entry=EntryAd(entry, "fac", {}),
        idle=idle,
        max_pilots=40,
        remove=remove,
        remove_max=2,
        inputs=DecisionInputs(idle_jobs=12.5, running_slots=3),
        bound_by=("group.max_idle_per_entry",),
    )


def test_a_request_ad_reads_back_as_the_same_request() -> None:
    ad = request_ad(decision(7, remove=RemoveMode.IDLE), FRONTEND, cycle=4, now=1000.0)
    assert ad["Name"] == "vo.main/ce1@fac"
    assert ad["ClassAdLifetime"] == 30
    assert (ad[protocol.R_JOBS_IDLE], ad[protocol.R_SLOTS_RUNNING], ad[protocol.R_BOUND_BY]) == (
        12.5,
        3,
        "group.max_idle_per_entry",
    )
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
    published = [
        protocol.parse_request(request_ad(decision(n, e), FRONTEND, 1, 0.0)) for n, e in ((1, "a"), (2, "b"), (3, "c"))
    ]
    planned = request_ads(Plan(0.0, (decision(1, "a"), decision(5, "b"), decision(1, "d"))), FRONTEND, 2)
    lines = [change.describe() for change in diff(published, planned)]
    assert [line[0] for line in lines] == ["=", "~", "-", "+"]
    assert "idle 2" in lines[1] and "idle 5" in lines[1]
    assert lines[2].endswith("withdrawn") and "not published" in lines[3]


GOOD = request_ad(decision(7, remove=RemoveMode.IDLE), FRONTEND, cycle=4, now=1000.0)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({protocol.R_FRONTEND: "../../etc"}, "UpdraftFrontend '../../etc' is not a name"),
        ({protocol.R_ENTRY: "ce1/evil"}, "UpdraftEntry 'ce1/evil' is not a name"),
        ({protocol.R_GROUP: "x" * 200}, "at most 128 characters"),
        ({protocol.R_SECURITY_CLASS: ""}, "UpdraftSecurityClass '' is not a name"),
        ({protocol.R_IDLE: "many"}, "UpdraftReqIdlePilots is a str, not an integer"),
        ({protocol.R_IDLE: True}, "UpdraftReqIdlePilots is a bool, not an integer"),
        ({protocol.R_IDLE: 2.5}, "UpdraftReqIdlePilots is a float, not an integer"),
        ({protocol.R_MAX: -1}, "UpdraftReqMaxPilots -1 is outside 0..1000000"),
        ({protocol.R_MAX: 10**12}, "is outside 0..1000000"),
        ({protocol.R_REMOVE: "everything"}, "UpdraftReqRemoveMode 'everything' is not one of none, idle, all"),
        ({"UpdraftSchema": 2}, "UpdraftSchema '2' is not 1"),
        ({"UpdraftSchema": True}, "UpdraftSchema 'True' is not 1"),
        ({protocol.R_PILOT_COLLECTOR: 7}, "UpdraftPilotCollector is a int, not a string"),
        ({protocol.R_GROUP_START: "x" * 70000}, "UpdraftGroupStart is longer than 65536 characters"),
        ({protocol.IDENTITY: ["vo@lab"]}, "AuthenticatedIdentity is a list, not a string"),
    ],
)
def test_a_malformed_request_ad_is_refused_naming_the_attribute(change, reason) -> None:
    with pytest.raises(protocol.MalformedAd) as caught:
        protocol.read_request({**GOOD, **change})
    assert reason in str(caught.value)
    assert protocol.parse_request({**GOOD, **change}) is None


def test_a_missing_attribute_is_named() -> None:
    for attr in (protocol.R_FRONTEND, protocol.R_IDLE, protocol.R_MAX, protocol.R_REMOVE_MAX):
        with pytest.raises(protocol.MalformedAd, match=f"{attr} is missing"):
            protocol.read_request({k: v for k, v in GOOD.items() if k != attr})


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=300),
    st.lists(st.integers(), max_size=3),
    st.sampled_from(["a/b", "..", "x\x00y", "idle", "fac", "1"]),
)


@settings(max_examples=400, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(sorted(GOOD)), VALUES, max_size=6))
def test_any_request_ad_is_read_or_refused_with_a_reason_never_crashes(changes) -> None:
    ad = {**GOOD, **changes}
    try:
        request = protocol.read_request(ad)
    except protocol.MalformedAd as err:
        assert str(err)
        return
    for name in (request.frontend, request.group, request.factory, request.entry, request.security_class):
        assert protocol.NAME.fullmatch(name) and "/" not in name and len(name) <= protocol.MAX_NAME
    assert 0 <= request.idle <= protocol.MAX_COUNT and 0 <= request.max_pilots <= protocol.MAX_COUNT
