"""Entry health on the lab: a site whose pilots fail validation is degraded, banned, probed and let back,
every change announced once to each real receiver; an operator's ban holds until it ends.

Layers: the lab's configs with short health settings, a factory of its own
name with the two grid sites' entries, and notifiers to an SMTP server
(STARTTLS and login) and to Slack and Mattermost webhook servers started
here -> `updraft factory run` and `updraft frontend run` as services ->
the story (`story`): site1 broken by a drop-in giving its entry a
validation script that exits 1 (applied by `updraft factory reconfig`,
which sends the factory SIGHUP), VO jobs that accept either site queued;
once site1 is banned the drop-in removed the same way and jobs only site1
runs queued, until it is active again; then `updraft factory health set
site1 banned` until soon, held until it ends -> assertions on what the
story recorded: the states and their times, the factory schedd's pilots,
the jobs, the entry ads, what the frontend asked and `explain` said, the
receivers' messages, the audit log.

The transition times seen are printed as one summary line (``-s``, or in
the report of a failing test).
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from updraft import pilot_ad, protocol
from updraft.condor import Collector, Schedd
from updraft.factory import health_store
from updraft.factory.health import EMPTY, History
from updraft.lab.demo import Services, start_services, updraft_command
from updraft.lab.labconfig import FRONTEND_NAME, factory_config, frontend_config, write_component_configs
from updraft.lab.topology import FACTORY, Topology
from updraft.lab.workload import WORKLOAD_ATTR, Shape, submit_description
from updraft.monitoring.notifiers.base import utc

from ..receivers import SmtpInbox, WebhookServer, self_signed, smtp_server
from .jobs import wait_for

NAME = "health-factory"
"""A factory name of its own: its first look back at the schedd's history must not count other tests' pilots."""
BROKEN, HEALTHY = "site1", "site2"
CYCLE = 10  # both services' cycle_seconds, as in the lab's configs
HEALTH: dict[str, Any] = {
    "window_seconds": 300,
    "min_outcomes": 2,
    "degrade_fraction": 0.5,
    "ban_fraction": 0.8,
    "recover_fraction": 0.2,
    "min_time_in_state_seconds": 15,
    "ban_seconds": 40,
    "probe_count": 2,
    "degraded_max_idle": 1,
    "healthy_after_seconds": 40,
    "start_seconds": 300,
    "history_seconds": 600,
    "ignore_causes": ["no_job"],
}
"""Short enough for the lab: one failed pilot (of at least two outcomes) degrades, two ban. The ban outlasts
the last broken pilot still out (probing counts every outcome after it began), and a failed pilot never runs
for `healthy_after_seconds`, so it is never a good outcome first. A pilot that ran no job is not counted: at
the end of a burst the frontend has asked for a pilot more than the jobs needed (the healthy site got one
in every trial run), which says nothing about the site."""
GLIDEIN = {"failure_sleep_seconds": 0, "idle_tail_seconds": 10, "retire_spread_seconds": 0}
"""A failed pilot leaves at once; a probe leaves soon after its jobs (a good outcome when it ends)."""
EITHER = Shape("health-either", 4, 1, 256, ("Site1", "Site2"), 20)
SITE1_ONLY = Shape("health-site1", 4, 1, 256, ("Site1",), 5)
"""Demand only site1 can meet: two 2-core pilots, the probes."""
SMTP_USER, SMTP_PASSWORD = "updraft-lab", "pw-lab-Hq7-never-logged"
HOOK_ID = "h19labq8w3rz5ktn1vx0cmy6ps"
OVERRIDE_REASON = "CE upgrade (lab test)"
OVERRIDE_SECONDS = 25
"""Shorter than the ban time: when it ends the policy takes over the ban it left, with its "since"."""
SUBMISSIONS = ["ClusterId", "ProcId", pilot_ad.Q_DATE, pilot_ad.ENTRY]


# --------------------------------------------------------------------------
# Receivers and configs
# --------------------------------------------------------------------------


@dataclass
class Receivers:
    inbox: SmtpInbox
    slack: WebhookServer
    mattermost: WebhookServer


@pytest.fixture(scope="module")
def receivers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Receivers, dict[str, Any]]]:
    """An SMTP server (STARTTLS required, then login) and two webhook servers; the notifiers' sections."""
    folder = tmp_path_factory.mktemp("receivers")
    cert, key = self_signed(folder)
    inbox = SmtpInbox(SMTP_USER, SMTP_PASSWORD)
    smtp = smtp_server(inbox, cert, key, exclude=["PLAIN"])
    slack, mattermost = WebhookServer(), WebhookServer()
    sections = {
        "ops-mail": {
            "type": "email",
            "host": "127.0.0.1",
            "port": smtp.port,
            "ca_file": str(cert),
            "username_file": str(_secret(folder, "smtp.user", SMTP_USER)),
            "password_file": str(_secret(folder, "smtp.password", SMTP_PASSWORD)),
            "from": "updraft@lab.test",
            "to": ["grid-ops@lab.test"],
            "interval_seconds": 0,
            "timeout_seconds": 10.0,
        },
        "ops-slack": _hook(folder, "slack", slack.port),
        "ops-mattermost": _hook(folder, "mattermost", mattermost.port),
    }
    try:
        yield Receivers(inbox, slack, mattermost), sections
    finally:
        smtp.stop()
        slack.stop()
        mattermost.stop()


def _secret(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def _hook(folder: Path, kind: str, port: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/hooks/{HOOK_ID}"
    return {"type": kind, "url_file": str(_secret(folder, f"{kind}.url", url)), "timeout_seconds": 10.0}


def _configs(lab: Topology, folder: Path, notifiers: dict[str, Any]) -> dict[str, Path]:
    """The lab's configs for the two grid sites, with the health settings and the notifiers."""
    write_component_configs(lab)  # installs the glidein the factory submits
    factory = factory_config(lab)
    factory.update(
        name=NAME,
        work_dir=str(folder / "factory"),
        health=HEALTH,
        health_save_seconds=1,  # the evidence is written every cycle: the test reads it (the ban's outcomes)
        monitoring={"dir": str(folder / "factory" / "monitoring"), "writers": {"json": {}}, "notifiers": notifiers},
        entries={name: factory["entries"][name] for name in (BROKEN, HEALTHY)},
    )
    for entry in factory["entries"].values():
        entry["glidein"] = {**entry["glidein"], **GLIDEIN}
    frontend = frontend_config(lab)
    frontend.update(
        factories={NAME: {"identity": FACTORY.identity}},
        work_dir=str(folder / "frontend"),
        monitoring={"dir": str(folder / "frontend" / "monitoring"), "writers": {"json": {}}},
    )
    paths = {}
    for component, content in (("factory", factory), ("frontend", frontend)):
        paths[component] = folder / f"{component}.yaml"
        paths[component].write_text(yaml.safe_dump(content, sort_keys=False))
    return paths


# --------------------------------------------------------------------------
# What the story watches
# --------------------------------------------------------------------------


def updraft(*args: str) -> str:
    done = subprocess.run([updraft_command(), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"updraft {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Seen:
    """One state of the broken entry as the factory saved it: when it began and why."""

    state: str
    since: float
    reason: str
    override: bool
    """An operator's state, not the policy's."""
    next_review: float | None
    evaluated_at: float
    """The factory cycle that first saved it."""


@dataclass
class Watch:
    """The broken entry's states as the factory's health.json showed them, each once, in order (the
    policy taking over an operator's state counts as a new one).

    The minimum time in a state (15 s) is well above the polling interval, so no state is missed.
    """

    memory: Path
    services: Services
    states: list[Seen] = field(default_factory=list)

    def sample(self) -> Seen | None:
        self.services.check_alive()
        memory = health_store.load_memory(self.memory) if self.memory.exists() else None
        health = memory.states.get(BROKEN) if memory else None
        if health is None:
            return None
        seen = Seen(
            health.state.value,
            health.since,
            health.reason,
            health.override is not None,
            health.next_review,
            memory.evaluated_at or 0.0,
        )
        last = self.states[-1] if self.states else None
        if last is None or (seen.state, seen.since, seen.override) != (last.state, last.since, last.override):
            self.states.append(seen)
        return seen

    def until(
        self, state: str, timeout: float, check: Callable[[Seen], None] | None = None, override: bool | None = None
    ) -> Seen:
        """Poll until the entry is in `state` (by an operator or not, if `override` says); `check` sees
        every sample on the way."""

        def reached() -> Seen | None:
            seen = self.sample()
            if seen is None:
                return None
            if check is not None:
                check(seen)
            return seen if seen.state == state and override in (None, seen.override) else None

        found: Seen = wait_for(reached, timeout, interval=0.5)
        return found

    def since(self, state: str, nth: int = 0) -> float:
        return [s.since for s in self.states if s.state == state][nth]


@dataclass
class Story:
    lab: Topology
    folder: Path
    configs: dict[str, Path]
    receivers: Receivers
    watch: Watch
    services: Services
    marks: dict[str, float] = field(default_factory=dict)
    """When the test did something: break, repair, override (set, applied, ended)."""
    override_samples: list[tuple[float, Seen]] = field(default_factory=list)
    """(when, what) the watch saw from the cycle that applied the operator's ban until a second before its end."""
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The frontend's row for the broken entry once it followed the entry's state, by state."""
    explained: str = ""
    """`updraft frontend explain --entry site1` while the override was in force."""
    ads: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The broken entry's ad as the WMS collector held it in each state the story looked at."""
    table: str = ""
    """`updraft factory health` while the override was in force."""
    history: History = EMPTY
    """The broken entry's outcomes as the factory kept them when it banned the entry."""

    @property
    def work_dir(self) -> Path:
        return self.folder / "factory"

    def factory_log(self) -> str:
        return self.services.logs["factory"].read_text()


def _entry_ad(lab: Topology, entry: str) -> dict[str, Any] | None:
    ads = Collector(lab.wms.collector).generic_ads(
        protocol.ENTRY_TYPE,
        f'{protocol.E_FACTORY} == "{NAME}" && {protocol.E_ENTRY} == "{entry}"',
        [protocol.E_ENTRY, protocol.E_HEALTH, protocol.E_HEALTH_REASON, protocol.E_HEALTH_SINCE, protocol.E_HEALTH_CAP],
    )
    return dict(ads[0]) if ads else None


def _ad_in(lab: Topology, state: str, reason: str = "", timeout: float = 3 * CYCLE) -> dict[str, Any]:
    """The broken entry's ad once it advertises `state`, for a reason starting with `reason` (the factory
    advertises every cycle)."""

    def advertised() -> dict[str, Any] | None:
        ad = _entry_ad(lab, BROKEN)
        if ad is None or ad.get(protocol.E_HEALTH) != state:
            return None
        return ad if str(ad.get(protocol.E_HEALTH_REASON, "")).startswith(reason) else None

    found: dict[str, Any] = wait_for(advertised, timeout)
    return found


def _frontend_follows(
    here: Story, states: tuple[str, ...], most: int, meanwhile: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """The frontend's row for the broken entry (its monitoring, each cycle) once the frontend has read one of
    `states` from the entry ad and asks at most `most` idle pilots; for none, while jobs wait for the entry
    and with the entry's health named as the bound. `meanwhile` is called at every look."""
    path = here.folder / "frontend" / "monitoring" / f"frontend-{FRONTEND_NAME}.json"

    def followed() -> dict[str, Any] | None:
        meanwhile()
        try:
            rows = json.loads(path.read_text())["rows"]
        except (OSError, ValueError):  # not written yet
            return None
        for row in rows:
            if row["entry"] != f"{BROKEN}@{NAME}" or row["health"] not in states or row["requested_idle"] > most:
                continue
            if most == 0 and not (row["jobs_idle"] and "entry.health" in row["bound_by"]):
                continue
            return dict(row)
        return None

    found: dict[str, Any] = wait_for(followed, 2 * CYCLE + 5, interval=0.5)
    return found


def _pilots(schedd: Schedd, entry: str) -> list[dict[str, Any]]:
    """Every pilot the factory submitted to `entry`, queued or gone."""
    constraint = f'{pilot_ad.FACTORY} == "{NAME}" && {pilot_ad.ENTRY} == "{entry}"'
    return [*schedd.query(constraint, SUBMISSIONS), *schedd.history(constraint, SUBMISSIONS)]


def _submit(lab: Topology, shape: Shape, folder: Path) -> None:
    log = folder / "jobs" / "jobs.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.parent.chmod(0o777)
    Collector(lab.vo.collector).schedd(lab.vo.schedd_name).submit(submit_description(shape, log), count=shape.count)


def _write_break(config: Path, script: Path) -> Path:
    """The drop-in that breaks site1: its own validation script, which fails."""
    script.write_text("#!/bin/sh\necho 'site1 is broken on purpose (lab health test)' >&2\nexit 1\n")
    script.chmod(0o755)
    drop_in = config.with_name(f"{config.stem}.d") / "50-break-site1.yaml"
    drop_in.parent.mkdir(exist_ok=True)
    broken = {"staging_files": [{"source": str(script), "kind": "validate"}]}
    drop_in.write_text(yaml.safe_dump({"entries": {BROKEN: broken}}))
    return drop_in


# --------------------------------------------------------------------------
# The story
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def story(lab: Topology, receivers: tuple[Receivers, dict[str, Any]]) -> Iterator[Story]:
    folder = lab.work_dir / "entry-health"
    folder.mkdir(parents=True, exist_ok=True)
    configs = _configs(lab, folder, receivers[1])
    updraft("factory", "reconfig", "--config", str(configs["factory"]))  # stages both entries' releases
    services = start_services(lab, configs, folder)
    watch = Watch(health_store.memory_path(folder / "factory"), services)
    here = Story(lab, folder, configs, receivers[0], watch, services)
    try:
        _tell(here)
        yield here
    finally:
        vo = Collector(lab.vo.collector).schedd(lab.vo.schedd_name)
        vo.remove(f'regexp("^health-", {WORKLOAD_ATTR} ?: "")', "entry health test done")
        services.stop()  # SIGTERM: the frontend withdraws its requests, the factory its ads
        Collector(lab.wms.collector).schedd(lab.factory.schedd_name).remove(
            f'{pilot_ad.FACTORY} == "{NAME}" && JobStatus != 3', "entry health test done"
        )


def _tell(here: Story) -> None:
    """Break site1, watch it go down; repair it, watch it come back; ban it by hand until soon."""
    lab, marks, watch = here.lab, here.marks, here.watch
    watch.until("active", 6 * CYCLE)
    here.ads["active"] = _ad_in(lab, "active")
    drop_in = _write_break(here.configs["factory"], here.folder / "fail-validation.sh")
    assert "applied; the running factory" in updraft("factory", "reconfig", "--config", str(here.configs["factory"]))
    marks["break"] = time.time()
    _submit(lab, EITHER, here.folder)

    watch.until("degraded", 24 * CYCLE)
    here.ads["degraded"] = _ad_in(lab, "degraded")
    here.requests["degraded"] = _frontend_follows(here, ("degraded", "banned"), HEALTH["degraded_max_idle"])
    watch.until("banned", 6 * CYCLE)
    # The failures behind the ban, read now: once probes succeed the factory forgets what came before them.
    here.history = health_store.load_memory(watch.memory).history[BROKEN]
    drop_in.unlink()
    assert "applied; the running factory" in updraft("factory", "reconfig", "--config", str(here.configs["factory"]))
    marks["repair"] = time.time()
    here.ads["banned"] = _ad_in(lab, "banned")
    _submit(lab, SITE1_ONLY, here.folder)
    here.requests["banned"] = _frontend_follows(here, ("banned",), 0)
    watch.until("probing", HEALTH["ban_seconds"] + 4 * CYCLE)
    watch.until("active", 18 * CYCLE)
    marks["active"] = time.time()

    until = time.time() + OVERRIDE_SECONDS
    updraft(
        "factory", "health", "set", BROKEN, "banned", "--reason", OVERRIDE_REASON, "--until", f"{until:.0f}",
        "--config", str(here.configs["factory"]),
    )  # fmt: skip
    marks["override_set"] = time.time()
    marks["override_until"] = float(f"{until:.0f}")
    _submit(lab, SITE1_ONLY, here.folder)  # demand the override must refuse

    def overridden_until_it_ends(seen: Seen | None) -> None:
        if seen is not None and time.time() < marks["override_until"] - 1:
            here.override_samples.append((time.time(), seen))

    held = watch.until("banned", 3 * CYCLE)
    marks["override_applied"] = held.since
    overridden_until_it_ends(held)
    here.ads["override"] = _ad_in(lab, "banned", reason="set by root: ")
    here.table = updraft("factory", "health", "--config", str(here.configs["factory"]))
    here.explained = updraft("frontend", "explain", "--entry", BROKEN, "--config", str(here.configs["frontend"]))
    overridden_until_it_ends(watch.sample())
    here.requests["override"] = _frontend_follows(
        here, ("banned",), 0, meanwhile=lambda: overridden_until_it_ends(watch.sample())
    )

    watch.until("banned", OVERRIDE_SECONDS + 3 * CYCLE, overridden_until_it_ends, override=False)
    here.ads["resumed"] = _ad_in(lab, "banned", reason="override by root ended; ")
    marks["end"] = time.time()
    wait_for(lambda: all(len(changes) >= len(_transitions(here)) for changes in _announced(here).values()), 3 * CYCLE)
    print(f"\n{_summary(here)}")


# --------------------------------------------------------------------------
# What the receivers and the factory's log say
# --------------------------------------------------------------------------

TRANSITION_LINE = re.compile(r"WARNING \S+: entry (?P<entry>\S+): (?P<old>\w+) -> (?P<new>\w+) \((?P<by>[^)]*)\): ")
SLACK_SECTION = re.compile(r"^\*(?P<entry>[^*]+)\*: (?P<old>\w+) → \*(?P<new>\w+)\*\n.*\n_(?P<at>[^,]+ UTC), by ", re.S)
MATTERMOST_ROW = re.compile(
    r"^\| (?P<at>[^|]+ UTC) \| (?P<entry>[^|]+) \| (?P<old>\w+) → \*\*(?P<new>\w+)\*\* \|", re.M
)
MAIL_LINE = re.compile(r"^(?P<at>\S+ \S+ UTC)  (?P<entry>\S+)  (?P<old>\w+) -> (?P<new>\w+)\r?$", re.M)

Change = tuple[str, str, str, str]
"""(when, as notifications show it; entry; old state; new state)."""


def _transitions(here: Story) -> list[tuple[str, str, str, str]]:
    """(entry, old, new, by) of every change the factory logged, in order."""
    return [(m["entry"], m["old"], m["new"], m["by"]) for m in TRANSITION_LINE.finditer(here.factory_log())]


def _change(found: re.Match[str]) -> Change:
    return found["at"], found["entry"], found["old"], found["new"]


def _announced(here: Story) -> dict[str, list[Change]]:
    """Every change each receiver got, in the order received (a digest's changes oldest first)."""
    mails = [email.message_from_bytes(m.content, policy=email.policy.default) for m in here.receivers.inbox.mails]
    slack = [
        block["text"]["text"]
        for post in here.receivers.slack.posts
        for block in post.body["blocks"]
        if block["type"] == "section"
    ]
    return {
        "email": [_change(m) for mail in mails for m in MAIL_LINE.finditer(mail.get_content())],
        "slack": [_change(m) for text in slack if (m := SLACK_SECTION.match(text))],
        "mattermost": [
            _change(m) for post in here.receivers.mattermost.posts for m in MATTERMOST_ROW.finditer(post.body["text"])
        ],
    }


def _expected_changes(here: Story) -> list[Change]:
    """The broken entry's changes of state as the watch saw them, with when each happened."""
    states = here.watch.states
    return [
        (utc(new.since), BROKEN, old.state, new.state)
        for old, new in itertools.pairwise(states)
        if new.state != old.state
    ]


def _durations(here: Story) -> dict[str, float]:
    watch, marks = here.watch, here.marks
    return {
        "break->degraded": watch.since("degraded") - marks["break"],
        "break->banned": watch.since("banned") - marks["break"],
        "degraded->banned": watch.since("banned") - watch.since("degraded"),
        "ban->probing": watch.since("probing") - watch.since("banned"),
        "repair->probing": watch.since("probing") - marks["repair"],
        "repair->active": watch.since("active", 1) - marks["repair"],
        "probing->active": watch.since("active", 1) - watch.since("probing"),
        "override set->applied": marks["override_applied"] - marks["override_set"],
        "override end->policy": watch.states[-1].evaluated_at - marks["override_until"],
    }


def _summary(here: Story) -> str:
    figures = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in _durations(here).items())
    return f"entry health on the lab ({CYCLE} s cycles): {figures}"


# --------------------------------------------------------------------------
# Assertions
# --------------------------------------------------------------------------


def test_the_broken_entry_goes_down_and_comes_back_through_every_state_in_order(story: Story) -> None:
    states = [(s.state, s.override) for s in story.watch.states]
    assert states == [
        ("active", False),
        ("degraded", False),
        ("banned", False),
        ("probing", False),
        ("active", False),
        ("banned", True),
        ("banned", False),
    ], story.watch.states
    assert "validation" in story.watch.states[1].reason, story.watch.states[1]
    assert "site works again" in story.watch.states[4].reason, story.watch.states[4]


def test_each_change_takes_no_less_than_its_minimum_and_about_a_cycle_more(story: Story) -> None:
    """Degraded in the cycle that saw the first failure; banned once the minimum time in a state is over
    and the failures reach the ban fraction, at the first cycle both hold; probing at the first cycle after
    the ban; the rest within their deadlines. (Outcomes carry the time of the cycle that saw them.)"""
    took = _durations(story)
    print(f"\n{_summary(story)}")
    watch, history = story.watch, story.history
    minimum, ban = HEALTH["min_time_in_state_seconds"], HEALTH["ban_seconds"]
    assert history.good == () or history.good[0] > watch.since("banned"), "no good outcome while broken"
    assert history.bad[0] == watch.since("degraded"), (history, watch.states)
    enough = history.bad[1]  # with no good outcome, 2 failures of at least 2 outcomes: a fraction of 1
    banned = watch.since("banned")
    assert max(watch.since("degraded") + minimum, enough) <= banned, (history, watch.states)
    assert banned <= max(watch.since("degraded") + minimum, enough) + CYCLE + 2, (history, watch.states)
    assert ban <= took["ban->probing"] <= ban + 2 * CYCLE + 2, took
    assert minimum <= took["probing->active"], took
    assert took["break->degraded"] > 0 and took["override set->applied"] <= 2 * CYCLE + 2, took
    assert 0 <= took["override end->policy"] <= CYCLE + 2, took


def test_the_healthy_entry_stays_active_and_every_change_is_logged(story: Story) -> None:
    logged = _transitions(story)
    assert [(entry, old, new) for entry, old, new, _ in logged] == [c[1:] for c in _expected_changes(story)], logged
    assert {by for *_, by in logged} == {"policy", "root"}, logged


def test_every_receiver_gets_each_change_exactly_once(story: Story) -> None:
    expected = _expected_changes(story)
    for receiver, changes in _announced(story).items():
        assert changes == expected, f"{receiver}: {changes}"
    assert all(m.tls and m.login == SMTP_USER.encode() for m in story.receivers.inbox.mails)
    assert {p.path for p in story.receivers.slack.posts + story.receivers.mattermost.posts} == {f"/hooks/{HOOK_ID}"}


def test_no_secret_reaches_the_logs_or_the_monitoring_files(story: Story) -> None:
    files = [*story.services.logs.values(), *(p for p in story.folder.rglob("*") if p.is_file())]
    for path in files:
        text = path.read_bytes()
        assert HOOK_ID.encode() not in text and SMTP_PASSWORD.encode() not in text, path


def test_the_vos_jobs_that_accept_either_site_finish_on_the_healthy_one(story: Story, vo_schedd: Schedd) -> None:
    constraint = f'{WORKLOAD_ATTR} == "{EITHER.name}"'
    projection = ["JobStatus", "MachineAttrGLIDEIN_Site0"]
    jobs = wait_for(lambda: len(done := vo_schedd.history(constraint, projection)) == EITHER.count and done, 120)
    assert [(j["JobStatus"], j["MachineAttrGLIDEIN_Site0"]) for j in jobs] == [(4, "Site2")] * EITHER.count


def test_the_broken_site_gets_no_pilot_while_banned_and_no_more_than_the_probes_while_probing(
    story: Story, factory_schedd: Schedd
) -> None:
    """Counted by submission time (QDate, whole seconds) from the factory schedd's queue and history: a
    state's pilots are those submitted from the second its cycle decided it (after the decision) until
    the second the next state was decided (the cycle before submitted at least a cycle earlier)."""
    watch, marks = story.watch, story.marks
    submitted = sorted(int(p[pilot_ad.Q_DATE]) for p in _pilots(factory_schedd, BROKEN))

    def between(start: float, end: float) -> int:
        return sum(1 for q in submitted if int(start) <= q < int(end))

    assert between(marks["break"], watch.since("banned")) > 0, "the broken site was sent pilots to fail"
    assert between(watch.since("banned"), watch.since("probing")) == 0, submitted
    assert 0 < between(watch.since("probing"), watch.since("active", 1)) <= HEALTH["probe_count"], submitted
    assert between(marks["override_applied"], marks["end"] + 1) == 0, submitted
    assert _pilots(factory_schedd, HEALTHY), "the healthy site got pilots"


def test_the_entry_ad_carries_the_state_its_reason_since_when_and_the_cap(story: Story) -> None:
    ads = story.ads
    assert protocol.E_HEALTH_CAP not in ads["active"], ads["active"]
    assert ads["degraded"][protocol.E_HEALTH_CAP] == HEALTH["degraded_max_idle"]
    assert ads["degraded"][protocol.E_HEALTH_SINCE] == pytest.approx(story.watch.since("degraded"), abs=1)
    assert "validation" in ads["degraded"][protocol.E_HEALTH_REASON]
    assert ads["banned"][protocol.E_HEALTH_CAP] == 0
    assert ads["override"][protocol.E_HEALTH_REASON] == f"set by root: {OVERRIDE_REASON}"


def test_the_frontend_holds_a_degraded_entry_at_its_cap_and_asks_nothing_of_a_banned_one(story: Story) -> None:
    """Found within two frontend cycles of each state (waits in the story): degraded at most the cap (or
    already nothing, if the ban came first), banned nothing though jobs wait for it, the bound named;
    `explain` says why and since when."""
    requests = story.requests
    assert requests["degraded"]["requested_idle"] <= HEALTH["degraded_max_idle"], requests
    for state in ("banned", "override"):
        row = requests[state]
        assert row["requested_idle"] == 0 and row["jobs_idle"] > 0 and "entry.health" in row["bound_by"], requests
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(story.marks["override_applied"]))
    told = f"zero by entry.health: entry banned since {since}: set by root: {OVERRIDE_REASON}"
    assert told in story.explained, story.explained


def test_an_operators_ban_holds_against_the_policy_until_it_ends_and_is_audited(story: Story) -> None:
    """Banned by the operator while the site works (the policy had just made it active), at every look
    until it ends; then the policy's, from the same "since", so the ban time counts from the operator's."""
    samples = [seen for _, seen in story.override_samples]
    assert all((s.state, s.override) == ("banned", True) for s in samples), samples
    assert {s.since for s in samples} == {story.marks["override_applied"]}, samples
    assert story.override_samples[-1][0] >= story.marks["override_until"] - 2, "watched until the end"
    resumed = story.watch.states[-1]
    assert (resumed.state, resumed.override, resumed.since) == ("banned", False, story.marks["override_applied"])
    assert resumed.reason.startswith("override by root ended; "), resumed
    assert resumed.next_review == pytest.approx(resumed.since + HEALTH["ban_seconds"]), resumed
    assert story.ads["resumed"][protocol.E_HEALTH_REASON].startswith("override by root ended; ")
    row = next(line for line in story.table.splitlines() if line.startswith(BROKEN))
    assert " banned " in row and OVERRIDE_REASON in row, story.table
    audit = [json.loads(line) for line in health_store.audit_path(story.work_dir).read_text().splitlines()]
    assert len(audit) == 1, audit
    assert {k: audit[0][k] for k in ("action", "entry", "state", "reason", "who", "until")} == {
        "action": "set",
        "entry": BROKEN,
        "state": "banned",
        "reason": OVERRIDE_REASON,
        "who": "root",
        "until": story.marks["override_until"],
    }
