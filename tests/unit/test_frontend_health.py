"""The frontend follows the entries' advertised health (issue 19): banned as downtime, degraded and probing capped.

The factory decides each entry's state and advertises it (``UpdraftHealth*``);
these tests hold the frontend to its side: reading the attributes (and
surviving hostile ones), placing no demand on a banned entry while another
entry takes the jobs, bounding a degraded or probing entry's request by the
advertised cap with ``entry.health`` in the record, and saying why in
``explain``, ``--unmatched`` and monitoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft import protocol
from updraft.cli import main
from updraft.factory.health_model import HealthState
from updraft.fakes import FakeSchedd
from updraft.frontend.config import FrontendConfig, load_frontend_config
from updraft.frontend.decide import HEALTH_BOUND, decide
from updraft.frontend.explain import explain, explain_plan, why_no_request
from updraft.frontend.model import AdvertisedHealth, Decision, EntryAd, Observation, Plan
from updraft.frontend.observe import HEALTH_REASON_CHARS, parse_entry
from updraft.frontend.ports import fake_ports
from updraft.frontend.service import run_cycle
from updraft.frontend.whynot import describe, refused_shapes

from .conftest import ConfigTree, Snapshots
from .test_frontend_cycle import FRONTEND, daemons, entry_ad, idle_jobs, requests_in
from .test_frontend_decide import IDLE, NOW, config, configs, entry, jobs, observations, slots
from .test_fuzz_inputs import TRUSTED, good_entry_ad, junk

SINCE = NOW - 3600
SINCE_TEXT = "1970-01-12T12:46:40Z"
BANNED = AdvertisedHealth(HealthState.BANNED, "7 of 10 pilots failed validation", SINCE, 0)


def health(state: str, cap: int | None = None, reason: str = "holds", since: float | None = SINCE) -> AdvertisedHealth:
    return AdvertisedHealth(HealthState(state), reason, since, cap)


def decided(plan: Plan, key: str) -> Decision | None:
    found = [d for d in plan.decisions if d.entry.key == key]
    return found[0] if found else None


# --------------------------------------------------------------------------
# decide: one table
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    entries: tuple[EntryAd, ...]
    expected: dict[str, int]
    """Idle pilots asked per entry key; an entry left out must get no request above 0."""
    bound: dict[str, tuple[str, ...]] = field(default_factory=dict)
    shapes: tuple[Any, ...] = (jobs(12),)
    group: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("banned alone: nothing", (entry(health=BANNED),), {"e1@f": 0}, {"e1@f": (HEALTH_BOUND,)}),
    Case("active health: as before", (entry(health=health("active")),), {"e1@f": 12}),
    Case(
        "banned next to a healthy entry: every job goes to the healthy one",
        (entry("bad", health=BANNED), entry("good")),
        {"good@f": 12},
    ),
    Case(
        "multi-core jobs on 8-core pilots: all of the pilots they need go to the healthy entry",
        (entry("bad", cpus=8, health=BANNED), entry("good", cpus=8)),
        {"good@f": 6},
        shapes=(jobs(12, cpus=4),),
    ),
    Case(
        "the split is over live entries only: banned takes no share",
        (entry("a"), entry("bad", health=BANNED), entry("b")),
        {"a@f": 6, "b@f": 6},
    ),
    Case("degraded: held at the cap", (entry(health=health("degraded", 3)),), {"e1@f": 3}, {"e1@f": (HEALTH_BOUND,)}),
    Case("degraded cap above the need binds nothing", (entry(health=health("degraded", 50)),), {"e1@f": 12}),
    Case("degraded without a cap: as active", (entry(health=health("degraded")),), {"e1@f": 12}),
    Case(
        "degraded cap below the entry's own max idle: both named, health last",
        (entry(max_idle=3, health=health("degraded", 3)),),
        {"e1@f": 3},
        {"e1@f": ("entry.max_idle", HEALTH_BOUND)},
    ),
    Case(
        "probing next to a healthy entry: its share, capped at the probes",
        (entry("good"), entry("probe", health=health("probing", 1))),
        {"good@f": 6, "probe@f": 1},
        {"probe@f": (HEALTH_BOUND,)},
    ),
    Case(
        "banned with a cap above 0 still asks nothing",
        (entry(health=health("banned", 5)),),
        {"e1@f": 0},
        {"e1@f": (HEALTH_BOUND,)},
    ),
    Case(
        "banned and in downtime: both named",
        (entry(in_downtime=True, health=BANNED),),
        {"e1@f": 0},
        {"e1@f": ("entry.downtime", HEALTH_BOUND)},
    ),
    Case(
        "a degraded entry is capped before the group's shares, so the healthy one gets the rest",
        (entry("a", health=health("degraded", 2)), entry("b")),
        {"a@f": 2, "b@f": 4},
        {"a@f": (HEALTH_BOUND,), "b@f": ("group.max_idle_pilots",)},
        group={"limits": {"max_idle_pilots": 6}},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_health_table(case: Case) -> None:
    observation = Observation(shapes=case.shapes, entries=case.entries)
    plan = decide(observation, config({"main": case.group}), NOW)
    asked = {d.entry.key: d.idle for d in plan.decisions if d.idle or d.entry.key in case.expected}
    assert asked == case.expected, [(d.entry.key, d.steps) for d in plan.decisions]
    for key, bound in case.bound.items():
        found = decided(plan, key)
        assert found is not None and [b for b in found.bound_by if b in bound] == list(bound), found
    for d in plan.decisions:
        if d.entry.key not in case.bound:
            assert HEALTH_BOUND not in d.bound_by, d.bound_by


def test_a_banned_entry_says_banned_why_and_since_when() -> None:
    plan = decide(Observation(shapes=(jobs(10),), entries=(entry(max_pilots=40, health=BANNED),)), config(), NOW)
    [decision] = plan.decisions
    said = f"entry banned since {SINCE_TEXT}: 7 of 10 pilots failed validation"
    assert said in decision.notes and decision.max_pilots == 40, "running pilots are left alone, as in downtime"
    text = explain(decision)
    assert f"zero by {HEALTH_BOUND}: {said}" in text and f"bound by: {HEALTH_BOUND}" in text
    assert plan.in_downtime == {"main": 10}, "jobs whose only entries are banned count as downtime's do"
    assert "10 only entries in downtime or banned" in explain_plan(plan)


def test_a_degraded_entry_names_its_cap() -> None:
    capped = entry(health=health("degraded", 2, "slow to start"))
    [decision] = decide(Observation(shapes=(jobs(10),), entries=(capped,)), config(), NOW).decisions
    assert f"entry degraded since {SINCE_TEXT}: slow to start; the factory keeps at most 2 idle pilots there" in (
        decision.notes
    )
    assert f"capped at 2 by {HEALTH_BOUND}: entry degraded since {SINCE_TEXT}: slow to start" in explain(decision)


def test_jobs_for_a_banned_entry_only_are_counted_with_downtime_not_unmatched() -> None:
    entries = (entry("bad", health=BANNED), entry("small", cpus=1))
    plan = decide(Observation(shapes=(jobs(4, cpus=1), jobs(3, cpus=2)), entries=entries), config(), NOW)
    assert decided(plan, "small@f").idle == 4
    assert plan.in_downtime == {"main": 0} and plan.unmatched == {"main": 3}, "2-cpu jobs fit no entry: unmatched"
    alone = decide(Observation(shapes=(jobs(3),), entries=(entry("bad", health=BANNED),)), config(), NOW)
    assert (alone.in_downtime, alone.unmatched) == ({"main": 3}, {"main": 0})


def test_a_kept_request_for_a_banned_entry_is_zeroed() -> None:
    """Pilot slots unreadable keeps the last request; the entry's ad is data, and it says banned."""
    last = protocol.PublishedRequest("vo", "main", "f", "e1", 5, 40, "none", 0, "vo@lab", time=NOW - 60)
    seen = Observation(
        shapes=(jobs(30),), entries=(entry(max_pilots=40, health=BANNED),), slots_unread=True, published=(last,)
    )
    [decision] = decide(seen, config(), NOW).decisions
    assert decision.idle == 0 and HEALTH_BOUND in decision.bound_by and decision.held_since is not None


def test_idle_pilots_of_a_banned_entry_are_removed_when_the_jobs_go_elsewhere() -> None:
    entries = (entry("bad", health=BANNED), entry("good"))
    plan = decide(Observation(shapes=(jobs(10),), entries=entries, slots=slots(2, IDLE, "bad")), config(), NOW)
    bad = decided(plan, "bad@f")
    assert bad is not None and bad.idle == 0 and (bad.remove.value, bad.remove_max) == ("idle", 2)
    assert decided(plan, "good@f").idle == 10


STATES = st.sampled_from(tuple(HealthState))


@settings(max_examples=150, deadline=None)
@given(observations(), configs(), st.data())
def test_health_holds_for_random_cycles(observation: Observation, cfg: FrontendConfig, data: st.DataObject) -> None:
    """Whatever else the cycle holds: banned asks nothing, a cap is never exceeded, and the health
    bound is named exactly when the health held back something wanted."""
    sick = tuple(
        replace(e, health=AdvertisedHealth(data.draw(STATES), "r", NOW, data.draw(st.none() | st.integers(0, 5))))
        if data.draw(st.booleans())
        else e
        for e in observation.entries
    )
    plan = decide(replace(observation, entries=sick), cfg, NOW)
    for d in plan.decisions:
        found = d.entry.health
        wished = [step.value for step in d.steps if step.name in ("request", "hold")]
        wanted = wished[-1] if wished else 0
        if found is None or d.withdrawn:
            assert HEALTH_BOUND not in d.bound_by
            continue
        if found.banned:
            assert d.idle == 0
            assert (HEALTH_BOUND in d.bound_by) == (wanted > 0), "a bound only holds back what was wanted"
        elif found.cap is not None:
            assert d.idle <= found.cap
            assert HEALTH_BOUND not in d.bound_by or found.cap < wanted
        else:
            assert HEALTH_BOUND not in d.bound_by
    for capped in sick:
        if capped.health is not None and capped.health.cap is not None:
            asked = sum(d.idle for d in plan.decisions if d.entry.key == capped.key)
            assert asked <= capped.health.cap, "the groups together stay within the entry's cap"


# --------------------------------------------------------------------------
# observe: reading the attributes, and hostile ones
# --------------------------------------------------------------------------


def ad_with(**attrs: Any) -> dict[str, Any]:
    names = {"state": protocol.E_HEALTH, "reason": protocol.E_HEALTH_REASON}
    names |= {"since": protocol.E_HEALTH_SINCE, "cap": protocol.E_HEALTH_CAP}
    return {**good_entry_ad(), **{names[k]: v for k, v in attrs.items()}}


def test_the_health_attributes_are_read() -> None:
    read, why = parse_entry(ad_with(state="degraded", reason="slow starts", since=SINCE, cap=4), TRUSTED)
    assert why is None and read is not None
    assert read.health == AdvertisedHealth(HealthState.DEGRADED, "slow starts", SINCE, 4)
    plain, why = parse_entry(good_entry_ad(), TRUSTED)
    assert why is None and plain is not None and plain.health is None and plain.health_state is HealthState.ACTIVE


@pytest.mark.parametrize(
    ("attrs", "expected", "problem"),
    [
        ({"state": "quarantined", "cap": 0}, None, "UpdraftHealth 'quarantined' is not one of active, degraded"),
        ({"state": 3}, None, "UpdraftHealth 3 is not one of"),
        ({"state": "degraded", "cap": -1}, health("degraded", None, "", None), "UpdraftHealthCap -1 is not a whole"),
        ({"state": "degraded", "cap": 10**30}, health("degraded", None, "", None), "UpdraftHealthCap 1000000000000"),
        ({"state": "degraded", "cap": "2"}, health("degraded", None, "", None), "UpdraftHealthCap '2' is not"),
        ({"state": "banned", "since": "noon"}, health("banned", None, "", None), "UpdraftHealthSince 'noon' is not"),
        ({"state": "banned", "reason": ["x"]}, health("banned", None, "", None), "UpdraftHealthReason ['x'] is not"),
        ({"state": "BANNED"}, health("banned", None, "", None), None),
        ({"state": "degraded", "cap": 2.0}, health("degraded", 2, "", None), None),
    ],
)
def test_bad_health_costs_only_itself_and_is_named(
    attrs: dict[str, Any], expected: AdvertisedHealth | None, problem: str | None
) -> None:
    read, why = parse_entry(ad_with(**attrs), TRUSTED)
    assert read is not None, "the entry itself is still read"
    assert read.health == expected
    if problem is None:
        assert why is None
    else:
        assert why is not None and why.startswith("entry ad 'ce1@fac1': ") and problem in why, why


def test_a_reason_becomes_one_bounded_line() -> None:
    read, _ = parse_entry(ad_with(state="banned", reason="held:\nCE said no\x00" + "x" * 10_000), TRUSTED)
    assert read is not None and read.health is not None
    assert read.health.reason.startswith("held: CE said no ") and len(read.health.reason) == HEALTH_REASON_CHARS


HEALTH_ATTRS = (protocol.E_HEALTH, protocol.E_HEALTH_REASON, protocol.E_HEALTH_SINCE, protocol.E_HEALTH_CAP)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            protocol.E_HEALTH: junk | st.sampled_from(("active", "degraded", "banned", "probing", "Banned ")),
            protocol.E_HEALTH_REASON: junk,
            protocol.E_HEALTH_SINCE: junk,
            protocol.E_HEALTH_CAP: junk | st.integers(-3, 10),
        },
    )
)
def test_mangled_health_never_loses_the_entry_nor_crashes(changes: dict[str, Any]) -> None:
    read, why = parse_entry({**good_entry_ad(), **changes}, TRUSTED)
    assert read is not None and read.name == "ce1"
    assert why is None or len(why) < 600
    found = read.health
    if found is None:
        assert changes.get(protocol.E_HEALTH) is None or why is not None, "a state not read is named"
        return
    assert found.state in HealthState
    assert found.cap is None or 0 <= found.cap <= protocol.MAX_COUNT
    assert found.since is None or isinstance(found.since, float)
    assert len(found.reason) <= HEALTH_REASON_CHARS and found.reason.isprintable()


# --------------------------------------------------------------------------
# A whole cycle on the fakes, explain and --unmatched
# --------------------------------------------------------------------------


@pytest.fixture
def cycle_config(tree: ConfigTree, tmp_path: Path) -> FrontendConfig:
    return load_frontend_config(tree.frontend(main=FRONTEND.format(work=tmp_path / "work"))).config


def sick_ad(name: str, state: str, cap: int | None, reason: str = "pilots fail validation") -> dict[str, Any]:
    ad = {**entry_ad(name), protocol.E_HEALTH: state, protocol.E_HEALTH_REASON: reason}
    ad[protocol.E_HEALTH_SINCE] = int(SINCE)
    if cap is not None:
        ad[protocol.E_HEALTH_CAP] = cap
    return ad


def test_a_cycle_asks_the_healthy_entry_and_names_health_where_it_binds(cycle_config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(cycle_config, with_pilot=False)
    wms.ads.append(sick_ad("broken", "banned", 0))
    reporter = Snapshots()
    result = run_cycle(cycle_config, reporter, 1, NOW, releases={}, ports=ports)
    assert result.failure is None
    by_entry = {ad[protocol.R_ENTRY]: ad for ad in requests_in(wms)}
    assert by_entry["site1"][protocol.R_IDLE] == 2, "all 5 jobs on the healthy entry: 5 needed, a third asked"
    assert "broken" not in by_entry or by_entry["broken"][protocol.R_IDLE] == 0

    wms.ads = [ad for ad in wms.ads if ad.get(protocol.E_ENTRY) != "site1"]
    wms.ads.append(sick_ad("site1", "degraded", 1, "slow starts"))
    reporter = Snapshots()
    run_cycle(cycle_config, reporter, 2, NOW + 60, releases={}, ports=ports)
    by_entry = {ad[protocol.R_ENTRY]: ad for ad in requests_in(wms)}
    assert by_entry["site1"][protocol.R_IDLE] == 1
    assert HEALTH_BOUND in str(by_entry["site1"][protocol.R_BOUND_BY])
    [snapshot] = reporter.seen
    rows = {row.entry: row for row in snapshot.rows}
    assert rows["site1@test-factory"].health == "degraded"
    assert HEALTH_BOUND in rows["site1@test-factory"].bound_by


def test_a_bad_health_value_is_a_problem_line_and_the_entry_is_asked_as_before(cycle_config: FrontendConfig) -> None:
    ports, _vo, wms, _ = daemons(cycle_config, with_pilot=False)
    wms.ads = [{**entry_ad(), protocol.E_HEALTH: "on fire"}]
    result = run_cycle(cycle_config, Snapshots(), 1, NOW, releases={}, ports=ports)
    assert result.failure is None
    assert any("UpdraftHealth 'on fire' is not one of" in problem for problem in result.problems), result.problems
    [request] = requests_in(wms)
    assert request[protocol.R_IDLE] == 2


def test_unmatched_names_the_ban_and_counts_the_jobs_with_downtime() -> None:
    banned = entry("bad", health=BANNED)
    [verdict] = refused_shapes((jobs(4),), (banned,), config())
    text = describe(verdict)
    assert verdict.only_downtime and "match only entries in downtime or banned" in text
    assert f"bad@f: matches, but the entry is banned since {SINCE_TEXT}: 7 of 10 pilots failed validation" in text
    assert refused_shapes((jobs(4),), (banned, entry("good")), config()) == [], "a live entry takes them"
    capped = entry("slow", health=health("degraded", 1))
    assert refused_shapes((jobs(4),), (capped,), config()) == [], "a degraded entry still takes jobs"


def test_explain_says_why_a_banned_entry_without_a_decision_gets_nothing() -> None:
    assert why_no_request(entry("bad", health=BANNED)) == (
        f"entry bad@f: no request: banned since {SINCE_TEXT}: 7 of 10 pilots failed validation; "
        "idle jobs it would take go to other entries that match them"
    )
    assert "no request: in downtime" in why_no_request(entry("down", in_downtime=True))


def test_the_cap_does_not_apply_to_a_group_that_wants_less() -> None:
    """A cap the request stays below is not a bound (`updraft.records`), so an operator is not sent to the factory."""
    capped = entry(health=health("probing", 2))
    [decision] = decide(Observation(shapes=(jobs(1),), entries=(capped,)), config(), NOW).decisions
    assert decision.idle == 1 and decision.bound_by == ()


def use_fakes(monkeypatch: pytest.MonkeyPatch, *ads: dict[str, Any]) -> None:
    """The CLI's cycles read fakes holding 3 idle jobs and the given entry ads."""

    def connect(config: FrontendConfig) -> Any:
        ports, vo, wms = fake_ports(config)
        vo.schedds["vo-schedd@lab"] = FakeSchedd("vo-schedd@lab", jobs=idle_jobs(3))
        wms.ads.extend(ads)
        return ports

    for module in ("updraft.frontend.service", "updraft.frontend.ports"):
        monkeypatch.setattr(f"{module}.connect", connect)


def cli(tree: ConfigTree, tmp_path: Path, *args: str) -> Result:
    path = tree.frontend(main=FRONTEND.format(work=tmp_path / "work"))
    return CliRunner().invoke(main, ["frontend", "explain", *args, "-c", str(path)], prog_name="updraft")


def test_explain_entry_says_banned_with_or_without_a_decision(
    tree: ConfigTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fakes(monkeypatch, sick_ad("site1", "banned", 0))
    alone = cli(tree, tmp_path, "--entry", "site1")
    assert alone.exit_code == 0, alone.stderr
    said = f"entry banned since {SINCE_TEXT}: pilots fail validation"
    assert f"zero by {HEALTH_BOUND}: {said}" in alone.stdout, "its only jobs are placed there, and zeroed"
    use_fakes(monkeypatch, sick_ad("site1", "banned", 0), entry_ad("site2"))
    beside = cli(tree, tmp_path, "--entry", "site1")
    assert beside.exit_code == 0, beside.stderr
    assert beside.stdout.startswith(f"entry site1@test-factory: no request: banned since {SINCE_TEXT}")


def test_explain_unmatched_names_the_ban(tree: ConfigTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fakes(monkeypatch, sick_ad("site1", "banned", 0))
    result = cli(tree, tmp_path, "--unmatched")
    assert result.exit_code == 0, result.stderr
    assert "3 idle job(s) on vo-schedd@lab match only entries in downtime or banned" in result.stdout
    assert f"site1@test-factory: matches, but the entry is banned since {SINCE_TEXT}" in result.stdout


def test_groups_share_one_entrys_cap() -> None:
    """The cap is the factory's for the entry's idle pilots, whoever asks: two groups together stay within it."""
    capped = entry(health=health("degraded", 3))
    two = config({"main": {}, "mc": {}})
    plan = decide(Observation(shapes=(jobs(10), jobs(10, group="mc")), entries=(capped,)), two, NOW)
    asked = {d.group: d.idle for d in plan.decisions}
    assert sum(asked.values()) == 3 and set(asked) == {"main", "mc"} and min(asked.values()) >= 1, asked
    assert all(HEALTH_BOUND in d.bound_by for d in plan.decisions)
    one = decide(Observation(shapes=(jobs(1), jobs(1, group="mc")), entries=(capped,)), two, NOW)
    assert [d.idle for d in one.decisions] == [1, 1] and all(d.bound_by == () for d in one.decisions)
