"""From factory config to entry policies and ads: field mapping, downtime, entry sets, member choice."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft import protocol
from updraft.errors import ConfigError
from updraft.factory.advertise import entry_ads, factory_ad, pilots_attribute
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.downtime import Downtime
from updraft.factory.model import CycleCaps, EntryPolicy, FrontendAccess, HoldPolicy, Limits, StaleAges
from updraft.factory.policy import (
    advertised_entries,
    available_members,
    choose_members,
    entries_in_downtime,
    entry_policies,
    frontend_in_downtime,
    member_entry,
)
from updraft.frontend.observe import parse_entry

REPO = Path(__file__).resolve().parents[2]
NOW = 1_000_000.0


def ce(resource: str = "ce x:1", **settings: Any) -> dict[str, Any]:
    return {"grid_type": "condor", "resource": resource, **settings}


def factory(entries: dict[str, Any], **top: Any) -> FactoryConfig:
    return FactoryConfig.model_validate(
        {
            "name": "fac",
            "wms_collector": "127.0.0.1:9619",
            "schedd": "s@x",
            "cycle_seconds": 20,
            "entries": entries,
            **top,
        }
    )


def policy_of(entry: dict[str, Any], downtimes: list[Downtime] | None = None) -> EntryPolicy:
    return entry_policies(factory({"ce1": entry}), downtimes or [], NOW)["ce1"]


# --------------------------------------------------------------------------
# Config -> EntryPolicy
# --------------------------------------------------------------------------


def test_an_entry_with_only_defaults_gets_the_documented_policy() -> None:
    assert policy_of(ce()) == EntryPolicy(
        name="ce1",
        limits=Limits(max_pilots=100, max_idle=20, max_held=10),
        frontend_limits={},
        default_frontend_limits=Limits(),
        per_cycle=CycleCaps(max_submits=20, max_removals=20, max_releases=10),
        cluster_size=5,
        stale=StaleAges(idle_seconds=86400.0),
        holds=HoldPolicy(frozenset({0, 12, 13}), max_releases=3, backoff_seconds=300.0, max_backoff_seconds=3600.0),
        in_downtime=False,
        frontends={},
    )


FULL = ce(
    limits={"max_pilots": 7, "max_idle": 0, "max_held": 2, "per_frontend": {"max_pilots": 5, "max_idle": 3}},
    frontends={
        "cms": {"identity": "cms@fe", "security_classes": ["prod", "test"], "limits": {"max_pilots": 4, "max_held": 0}},
        "atlas": {"identity": "atlas@fe", "require_credential": False},
    },
    submit={"max_submits_per_cycle": 0, "max_removals_per_cycle": 4, "max_releases_per_cycle": 1, "cluster_size": 2},
    stale={"idle_seconds": None, "running_seconds": 7200, "held_seconds": 600},
    holds={"recoverable_codes": [0, 40], "max_releases": 0, "backoff_seconds": 60, "max_backoff_seconds": 60},
)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("limits", Limits(max_pilots=7, max_idle=0, max_held=2)),  # 0 stays a real zero
        ("default_frontend_limits", Limits(max_pilots=5, max_idle=3, max_held=None)),
        (
            "frontend_limits",
            {
                "cms": Limits(max_pilots=4, max_idle=3, max_held=0),  # own caps, the rest by default
                "atlas": Limits(max_pilots=5, max_idle=3, max_held=None),
            },
        ),
        ("per_cycle", CycleCaps(max_submits=0, max_removals=4, max_releases=1)),
        ("cluster_size", 2),
        ("stale", StaleAges(idle_seconds=None, running_seconds=7200.0, held_seconds=600.0)),
        ("holds", HoldPolicy(frozenset({0, 40}), max_releases=0, backoff_seconds=60.0, max_backoff_seconds=60.0)),
        (
            "frontends",
            {
                "cms": FrontendAccess("cms@fe", frozenset({"prod", "test"}), require_credential=True),
                "atlas": FrontendAccess("atlas@fe", frozenset({"default"})),
            },
        ),
        ("in_downtime", False),
    ],
)
def test_every_config_field_reaches_the_policy(field: str, expected: object) -> None:
    assert getattr(policy_of(FULL), field) == expected


def test_the_policy_is_what_decide_reads_through_limits_for() -> None:
    policy = policy_of(FULL)
    assert policy.limits_for("cms") == Limits(4, 3, 0)
    assert policy.limits_for("unlisted") == Limits(5, 3, None)


def test_only_advertised_entries_get_a_policy() -> None:
    config = factory({"on": ce(), "off": ce(enabled=False)})
    assert set(entry_policies(config, [], NOW)) == {"on"}


# --------------------------------------------------------------------------
# Downtime
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "downtimes", "down"),
    [
        (False, [], False),
        (True, [], True),
        (False, [Downtime("ce1", NOW - 10)], True),  # open-ended, started
        (False, [Downtime("all", NOW - 10, NOW + 10)], True),  # every entry
        (False, [Downtime("ce1", NOW - 20, NOW - 10)], False),  # over
        (False, [Downtime("ce1", NOW + 10)], False),  # not yet
        (False, [Downtime("other", NOW - 10)], False),
        (False, [Downtime("ce1", NOW - 10, frontend="cms")], False),  # one frontend: not the whole entry
    ],
)
def test_an_entry_is_in_downtime_by_its_flag_or_an_active_downtime(
    flag: bool, downtimes: list[Downtime], down: bool
) -> None:
    assert policy_of(ce(downtime=flag), downtimes).in_downtime is down
    config = factory({"ce1": ce(downtime=flag)})
    assert ("ce1" in entries_in_downtime(config, downtimes, NOW)) is down
    (ad,) = entry_ads(config, entries_in_downtime(config, downtimes, NOW))
    assert ad[protocol.E_DOWNTIME] is down


def test_entry_ads_refuse_downtime_records_in_place_of_names() -> None:
    with pytest.raises(TypeError):
        entry_ads(factory({"ce1": ce()}), [Downtime("ce1", NOW - 10)])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("downtime", "frontend", "down"),
    [
        (Downtime("ce1", NOW - 10, frontend="cms"), "cms", True),
        (Downtime("ce1", NOW - 10, frontend="cms"), "atlas", False),
        (Downtime("ce1", NOW - 10, NOW - 5, frontend="cms"), "cms", False),
        (Downtime("ce1", NOW - 10), "atlas", True),  # the entry's: every frontend
        (Downtime("ce2", NOW - 10, frontend="cms"), "cms", False),
    ],
)
def test_a_downtime_for_one_frontend_is_answered_per_frontend(downtime: Downtime, frontend: str, down: bool) -> None:
    assert frontend_in_downtime([downtime], "ce1", frontend, NOW) is down


# --------------------------------------------------------------------------
# Entry sets
# --------------------------------------------------------------------------


SET_CONFIG = {
    "entries": {
        "a": ce(
            "ce a:1",
            grid_type="arc",
            submit={"cluster_size": 3},
            stale={"idle_seconds": 100},
            holds={"max_releases": 1},
            frontends={"ignored": {"identity": "x@y"}},
            limits={"max_idle": 1},
        ),
        "b": ce("ce b:1", submit={"cluster_size": 9}),
        "c": ce("ce c:1", enabled=False),
        "solo": ce("ce s:1", attributes={"GLIDEIN_CPUS": 8}),
    },
    "entry_sets": {
        "us": {
            "members": ["a", "b", "c"],
            "policy": "round_robin",
            "attributes": {"GLIDEIN_Site": "US"},
            "limits": {"max_pilots": 40, "max_idle": 6, "max_held": 3, "per_frontend": {"max_idle": 2}},
            "frontends": {"cms": {"identity": "cms@fe"}},
        },
    },
}


def set_config(**changes: Any) -> FactoryConfig:
    data = {**SET_CONFIG, **changes}
    return factory(data["entries"], entry_sets=data["entry_sets"])


def test_a_set_is_advertised_instead_of_its_members() -> None:
    advertised = advertised_entries(set_config())
    assert list(advertised) == ["solo", "us"]
    us = advertised["us"]
    assert (us.is_set, us.members, us.grid_type) == (True, ("a", "b"), "arc")  # c is disabled; a is first
    assert (us.attributes, us.limits.max_pilots, us.downtime) == ({"GLIDEIN_Site": "US"}, 40, False)
    assert advertised["solo"].members == ("solo",) and not advertised["solo"].is_set


def test_a_set_ad_reads_back_in_the_frontend_like_any_entry() -> None:
    ads = {ad["Name"]: ad for ad in entry_ads(set_config())}
    assert set(ads) == {"us@fac", "solo@fac"}
    entry, why = parse_entry({**ads["us@fac"], "AuthenticatedIdentity": "fac@lab"}, {"fac": "fac@lab"})
    assert why is None
    assert (entry.name, entry.max_pilots, entry.cpus_per_pilot, entry.attrs["GLIDEIN_Site"]) == ("us", 40, 1, "US")
    assert ads["us@fac"][protocol.E_GRID_TYPE] == "arc"
    assert ads["solo@fac"][protocol.E_CPUS] == 8


def test_a_set_uses_its_own_limits_and_frontends_and_its_first_members_tuning() -> None:
    policies = entry_policies(set_config(), [], NOW)
    assert set(policies) == {"solo", "us"}
    us = policies["us"]
    assert us.limits == Limits(40, 6, 3)
    assert us.frontends == {"cms": FrontendAccess("cms@fe", frozenset({"default"}), require_credential=True)}
    assert us.frontend_limits == {"cms": Limits(None, 2, None)} and us.default_frontend_limits == Limits(None, 2, None)
    assert (us.cluster_size, us.stale.idle_seconds, us.holds.max_releases) == (3, 100.0, 1)


@pytest.mark.parametrize(
    ("set_flag", "downtimes", "down", "available"),
    [
        (False, [], False, ("a", "b")),
        (True, [], True, ("a", "b")),
        (False, [Downtime("us", NOW - 1)], True, ("a", "b")),
        (False, [Downtime("a", NOW - 1)], False, ("b",)),  # one CE down: the set goes on
        (False, [Downtime("a", NOW - 1), Downtime("b", NOW - 1)], True, ()),  # every CE down: the set is down
        (False, [Downtime("a", NOW - 1, frontend="cms")], False, ("a", "b")),
    ],
)
def test_a_set_is_down_by_its_flag_its_downtime_or_all_its_members_down(
    set_flag: bool, downtimes: list[Downtime], down: bool, available: tuple[str, ...]
) -> None:
    sets = {"us": {**SET_CONFIG["entry_sets"]["us"], "downtime": set_flag}}
    config = set_config(entry_sets=sets)
    assert entry_policies(config, downtimes, NOW)["us"].in_downtime is down
    assert ("us" in entries_in_downtime(config, downtimes, NOW)) is down
    assert available_members(config, "us", downtimes, NOW) == available


def test_a_member_down_by_its_own_flag_leaves_the_rotation() -> None:
    entries = {**SET_CONFIG["entries"], "b": ce("ce b:1", downtime=True)}
    config = set_config(entries=entries)
    assert available_members(config, "us", [], NOW) == ("a",)
    assert available_members(config, "solo", [], NOW) == ("solo",)
    assert available_members(config, "nowhere", [], NOW) == ()


@pytest.mark.parametrize(
    ("change", "advertised"),
    [
        ({"enabled": False}, ["solo"]),  # a disabled set takes its members with it
        ({"members": ["c"]}, ["a", "b", "solo"]),  # only disabled members: nowhere to send pilots
    ],
)
def test_a_set_with_nowhere_to_send_pilots_is_not_advertised(change: dict[str, Any], advertised: list[str]) -> None:
    sets = {"us": {**SET_CONFIG["entry_sets"]["us"], **change}}
    assert list(advertised_entries(set_config(entry_sets=sets))) == advertised


def test_member_entry_is_the_config_a_pilot_is_rendered_from() -> None:
    config = set_config()
    assert member_entry(config, "us", "b") is config.entries["b"]
    assert member_entry(config, "solo", "solo") is config.entries["solo"]
    for advertised, member in (("us", "solo"), ("solo", "a"), ("nowhere", "nowhere")):
        with pytest.raises(KeyError):
            member_entry(config, advertised, member)


@pytest.mark.parametrize(
    ("entry_sets", "loc", "message"),
    [
        ({"us": {"members": ["a", "x"]}}, ("entry_sets", "us", "members", 1), "no entry named 'x'"),
        (
            {"eu": {"members": ["a"]}, "us": {"members": ["b", "a"]}},
            ("entry_sets", "us", "members", 1),
            "entry 'a' is already a member of entry set 'eu'",
        ),
        ({"us": {"members": ["a", "a"]}}, ("entry_sets", "us", "members", 1), "entry 'a' is listed twice"),
        ({"a": {"members": ["b"]}}, ("entry_sets", "a"), "'a' is also the name of an entry"),
        (
            {"us": {"members": ["a", "quad"]}},
            ("entry_sets", "us", "members", 1),
            "entry 'quad' has 4-core pilots but the set advertises 1",
        ),
        ({"us": {"members": []}}, ("entry_sets", "us", "members"), "at least 1 item"),
        (
            {"us": {"members": ["a"], "policy": "random"}},
            ("entry_sets", "us", "policy"),
            "'least_idle' or 'round_robin'",
        ),
    ],
)
def test_invalid_entry_sets_are_refused_at_their_key_path(
    entry_sets: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        factory({"a": ce(), "b": ce(), "quad": ce(attributes={"GLIDEIN_CPUS": 4})}, entry_sets=entry_sets)
    errors = {tuple(error["loc"]): error["msg"] for error in caught.value.errors()}
    assert loc in errors, errors
    assert message in errors[loc]


def test_the_loader_names_the_file_and_key_path_of_a_bad_set_member(tree) -> None:
    main = tree.factory(("20-sets.yaml", "entry_sets: {us: {members: [site1, x]}}"))
    with pytest.raises(ConfigError) as caught:
        load_factory_config(main)
    assert re.search(r"20-sets\.yaml: entry_sets\.us\.members\[1\]: no entry named 'x'", str(caught.value))


# --------------------------------------------------------------------------
# Other config additions
# --------------------------------------------------------------------------


def test_factory_level_settings_have_their_documented_defaults() -> None:
    config = factory({})
    assert config.query_timeout_seconds == 20.0 and config.condor_config is None
    assert config.pilot.executable.name == "glidein_startup.sh" and config.pilot.executable.is_file()
    assert config.pilot.arguments == "" and config.staging is None
    assert config.entry_sets == {}
    assert factory({}, query_timeout_seconds=5).query_timeout_seconds == 5.0


@pytest.mark.parametrize(
    ("top", "entry", "loc"),
    [
        ({"query_timeout_seconds": 0}, {}, ("query_timeout_seconds",)),
        ({"condor_config": "relative/condor_config"}, {}, ("condor_config",)),
        ({"pilot": {"executable": "glidein_startup.sh"}}, {}, ("pilot", "executable")),
        (
            {},
            {"holds": {"backoff_seconds": 600, "max_backoff_seconds": 300}},
            ("entries", "ce1", "holds", "max_backoff_seconds"),
        ),
        ({}, {"holds": {"recoverable_codes": [-1]}}, ("entries", "ce1", "holds", "recoverable_codes", 0)),
        ({}, {"submit": {"cluster_size": 0}}, ("entries", "ce1", "submit", "cluster_size")),
        ({}, {"stale": {"idle_seconds": 0}}, ("entries", "ce1", "stale", "idle_seconds")),
        ({}, {"frontends": {"cms": {"identity": "cms"}}}, ("entries", "ce1", "frontends", "cms", "identity")),
        (
            {},
            {"frontends": {"cms": {"identity": "cms@fe", "security_classes": []}}},
            ("entries", "ce1", "frontends", "cms", "security_classes"),
        ),
        ({}, {"limits": {"per_frontend": {"max_idle": -1}}}, ("entries", "ce1", "limits", "per_frontend", "max_idle")),
    ],
)
def test_bad_new_settings_are_refused_where_they_are(
    top: dict[str, Any], entry: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        factory({"ce1": ce(**entry)}, **top)
    assert any(tuple(error["loc"])[: len(loc)] == loc for error in caught.value.errors()), caught.value.errors()


def _uncommented(text: str, keys: tuple[str, ...]) -> str:
    """`text` with the commented example blocks of `keys` turned into YAML again."""
    lines, indent = [], None
    for line in text.splitlines():
        start = re.match(rf"^(\s*)# ({'|'.join(keys)}):", line)
        if start:
            indent = start[1]
        elif indent is None or not line.startswith(f"{indent}#  "):
            indent = None
            lines.append(line)
            continue
        lines.append(indent + line[len(indent) + 2 :])
    return "\n".join(lines) + "\n"


def test_the_shipped_examples_validate_as_shipped_and_with_every_example_uncommented(tree) -> None:
    shipped = load_factory_config(REPO / "etc" / "factory.yaml", on_warning=lambda _: None).config
    assert set(advertised_entries(shipped)) == {"site1", "site2"}
    main_text = (REPO / "etc" / "factory.yaml").read_text()
    sites_text = (REPO / "etc" / "factory.d" / "10-example-sites.yaml").read_text()
    main = tree.factory(
        (
            "10-example-sites.yaml",
            _uncommented(sites_text, ("per_frontend", "frontends", "submit", "stale", "holds", "site3")),
        ),
        main=_uncommented(main_text, ("query_timeout_seconds", "condor_config", "pilot", "entry_sets")),
    )
    config = load_factory_config(main, on_warning=lambda _: None).config
    assert set(config.entry_sets) == {"lab-site1"} and config.pilot.arguments == ""
    assert config.entries["site1"].frontends["lab-vo"].identity == "frontend@lab"
    assert config.entries["site1"].limits.per_frontend.max_pilots == 60
    assert set(advertised_entries(config)) == {"lab-site1", "site2"}
    assert entry_policies(config, [], NOW)["lab-site1"].holds.recoverable_codes == frozenset({0, 12, 13})


# --------------------------------------------------------------------------
# Spreading a set's pilots
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "idle", "start", "policy", "expected"),
    [
        (0, {}, 0, "least_idle", {}),
        (3, {}, 0, "least_idle", {"a": 1, "b": 1, "c": 1}),
        (4, {}, 0, "least_idle", {"a": 2, "b": 1, "c": 1}),  # ties: member order
        (4, {"a": 3, "b": 1}, 0, "least_idle", {"b": 2, "c": 2}),  # b: 1+2, c: 0+2, a keeps 3
        (5, {"a": 3, "b": 1}, 0, "least_idle", {"b": 2, "c": 3}),
        (1, {"a": 0, "b": 0, "c": 0}, 2, "least_idle", {"a": 1}),  # start is for round_robin only
        (4, {"a": 9}, 0, "round_robin", {"a": 2, "b": 1, "c": 1}),  # idle is not looked at
        (4, {}, 1, "round_robin", {"a": 1, "b": 2, "c": 1}),
        (2, {}, 2, "round_robin", {"a": 1, "c": 1}),
        (2, {}, 7, "round_robin", {"b": 1, "c": 1}),  # start wraps: the cycle number will do
    ],
)
def test_choose_members(count: int, idle: dict[str, int], start: int, policy: str, expected: dict[str, int]) -> None:
    assert choose_members(count, ("a", "b", "c"), idle, policy, start) == expected


@pytest.mark.parametrize(
    ("count", "members", "policy"),
    [
        (-1, ("a",), "least_idle"),
        (1, (), "least_idle"),
        (1, ("a",), "random"),
    ],
)
def test_choose_members_refuses_what_it_cannot_do(count: int, members: tuple[str, ...], policy: str) -> None:
    with pytest.raises(ValueError):
        choose_members(count, members, {}, policy)


MEMBERS = st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=8, unique=True)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 200),
    MEMBERS,
    st.lists(st.integers(0, 50), min_size=8, max_size=8),
    st.sampled_from(["least_idle", "round_robin"]),
    st.integers(0, 1000),
)
def test_every_pilot_goes_to_exactly_one_member(
    count: int, members: list[str], idle: list[int], policy: str, start: int
) -> None:
    chosen = choose_members(count, members, dict(zip("abcdefgh", idle, strict=True)), policy, start)
    assert sum(chosen.values()) == count
    assert set(chosen) <= set(members) and all(n > 0 for n in chosen.values())


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 200),
    MEMBERS,
    st.integers(0, 50),
    st.sampled_from(["least_idle", "round_robin"]),
    st.integers(0, 1000),
)
def test_members_starting_equal_end_within_one_pilot(
    count: int, members: list[str], idle: int, policy: str, start: int
) -> None:
    chosen = choose_members(count, members, dict.fromkeys(members, idle), policy, start)
    given_each = [chosen.get(member, 0) for member in members]
    assert max(given_each) - min(given_each) <= 1


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), MEMBERS, st.lists(st.integers(0, 50), min_size=8, max_size=8))
def test_least_idle_only_tops_up_members_that_end_lowest(count: int, members: list[str], idle: list[int]) -> None:
    idle_by = dict(zip("abcdefgh", idle, strict=True))
    chosen = choose_members(count, members, idle_by, "least_idle")
    after = {member: idle_by[member] + chosen.get(member, 0) for member in members}
    lowest = min(after.values())
    assert all(after[member] - 1 <= lowest for member in chosen)


# --------------------------------------------------------------------------
# The factory ad
# --------------------------------------------------------------------------


def test_the_factory_ad_names_the_factory_and_carries_its_totals() -> None:
    ad = factory_ad(set_config(), {"idle": 3, "running": 2, "held": 0, "stale_idle": 1})
    assert ad == {
        "MyType": "UpdraftFactory",
        "Name": "fac",
        "UpdraftSchema": protocol.SCHEMA,
        "UpdraftFactory": "fac",
        "UpdraftEntries": 2,
        "ClassAdLifetime": 60,
        "UpdraftPilotsIdle": 3,
        "UpdraftPilotsRunning": 2,
        "UpdraftPilotsHeld": 0,
        "UpdraftPilotsStaleIdle": 1,
    }


@pytest.mark.parametrize("totals", [{"Idle": 1}, {"idle pilots": 1}, {"": 1}, {"idle": 1.5}, {"idle": True}])
def test_the_factory_ad_refuses_totals_it_cannot_name_or_count(totals: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        factory_ad(set_config(), totals)


def test_pilot_attribute_names() -> None:
    assert [pilots_attribute(s) for s in ("idle", "stale_running", "held2")] == [
        "UpdraftPilotsIdle",
        "UpdraftPilotsStaleRunning",
        "UpdraftPilotsHeld2",
    ]


@pytest.mark.parametrize(
    ("downtimes", "members"),
    [
        ([], ("a", "b")),  # c is disabled
        ([Downtime("a", NOW - 1)], ("b",)),
        ([Downtime("a", NOW - 100, end=NOW - 1)], ("a", "b")),  # over by `now`
        ([Downtime("b", NOW + 1)], ("a", "b")),  # not begun at `now`
        ([Downtime("a", NOW - 1), Downtime("b", NOW - 1)], ()),
    ],
)
def test_a_sets_policy_names_the_members_available_at_now_and_how_to_spread_over_them(
    downtimes: list[Downtime], members: tuple[str, ...]
) -> None:
    config = set_config()
    policies = entry_policies(config, downtimes, NOW)
    assert policies["us"].members == members == available_members(config, "us", downtimes, NOW)
    assert policies["us"].set_policy == "round_robin"
    assert (policies["solo"].members, policies["solo"].set_policy) == (None, "least_idle")
