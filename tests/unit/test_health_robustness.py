"""Entry health against bad files, bad ads and a bad clock: out-of-range times, damaged files, a clock stepping back.

Each of these once stopped whole cycles (or a delivery retried forever); here each is set aside with a
warning naming the file and key, or shown as it is, and the cycle goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from updraft import protocol, timefmt
from updraft.errors import ConfigError
from updraft.factory import health_store
from updraft.factory.config import FactoryConfig
from updraft.factory.decide import _since
from updraft.factory.health import GOOD, HealthSettings, History, decide_health
from updraft.factory.health_cli import _show
from updraft.factory.health_model import EntryHealth, HealthState, Override
from updraft.factory.ports import fake_ports
from updraft.factory.service import run_cycle
from updraft.frontend.decide import decide
from updraft.frontend.model import AdvertisedHealth, Observation
from updraft.frontend.observe import parse_entry
from updraft.monitoring import outbox
from updraft.monitoring.notifiers import base
from updraft.monitoring.notifiers.base import Change
from updraft.monitoring.outbox import NotifierState
from updraft.monitoring.writers import status_pages

from ..receivers import Trickler
from .conftest import ConfigTree
from .test_factory_health_cycle import NOW, config, request, submitted_by_entry  # noqa: F401
from .test_frontend_decide import config as frontend_config
from .test_frontend_decide import jobs
from .test_fuzz_inputs import TRUSTED, good_entry_ad
from .test_notifiers import T0, A, Clock, D, change, hook_section, reporter_for, snapshot

CHANGE = Change("k1", "f", "site1", "active", "degraded", "3 of 4 pilots failed", NOW, "policy")
FAR = 1e20
"""Finite, so it passes a finite-number check, but no date: gmtime and datetime refuse it."""


# --------------------------------------------------------------------------
# A. Times out of range
# --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [FAR, -1.0, 2.0**62, float("nan"), float("inf"), timefmt.LATEST + 1])
def test_every_place_that_shows_a_time_shows_one_out_of_range_as_itself(value: float) -> None:
    shown = [
        timefmt.utc(value),
        _since(value),
        _show(value),
        base.utc(value),
        status_pages.utc(value),
        AdvertisedHealth(HealthState.DEGRADED, "x", value).described(),
    ]
    assert all(f"out of range: {value!r}" in text for text in shown), shown


def test_each_place_keeps_its_format_for_a_time_in_range() -> None:
    moment = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC
    assert _since(moment) == base.utc(moment) == status_pages.utc(moment) == "2026-09-21 14:13:20 UTC"
    assert _show(moment) == "2026-09-21 14:13 UTC"
    assert AdvertisedHealth(HealthState.BANNED, "why", moment).described() == "banned since 2026-09-21T14:13:20Z: why"
    assert timefmt.utc(timefmt.LATEST) == "9999-12-31 23:59:59 UTC" and timefmt.utc(0) == "1970-01-01 00:00:00 UTC"


def test_an_ad_with_a_since_out_of_range_is_a_problem_line_and_decide_goes_on() -> None:
    ad = {**good_entry_ad(), protocol.E_HEALTH: "degraded", protocol.E_HEALTH_SINCE: FAR, protocol.E_HEALTH_CAP: 2}
    entry, why = parse_entry(ad, TRUSTED)
    assert entry is not None and entry.health is not None
    assert entry.health.since is None and entry.health.state is HealthState.DEGRADED and entry.health.cap == 2
    assert why is not None and protocol.E_HEALTH_SINCE in why and timefmt.RANGE in why
    decide(Observation(shapes=(jobs(10, GLIDEIN_Site="x"),), entries=(entry,)), frontend_config(), NOW)


def test_a_memory_with_a_since_out_of_range_is_set_aside_and_the_cycle_goes_on(
    config: FactoryConfig,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = health_store.memory_path(config.work_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"state": "banned", "reason": "x", "since": FAR, "next_review": None, "cap": 0, "override": None}
    entry |= {"good": [], "bad": [], "causes": []}
    path.write_text(json.dumps({"version": 1, "evaluated_at": NOW - 60, "entries": {"dead": entry}}))
    with caplog.at_level(logging.WARNING, logger="updraft.factory.health_store"):
        assert health_store.load_memory(path) == health_store.HealthMemory()
    assert str(path) in caplog.text and "entries.dead.since" in caplog.text and timefmt.RANGE in caplog.text
    ports, wms, _schedd = fake_ports(config, NOW)
    wms.ads.append(request("dead", idle=4))
    result = run_cycle(config, 1, NOW, releases={}, ports=ports)
    assert submitted_by_entry(result)["dead"] == 4


def test_an_override_until_out_of_range_is_an_error_naming_the_file_and_key(tmp_path: Path) -> None:
    path = health_store.overrides_path(tmp_path)
    item = {"entry": "e", "state": "banned", "reason": "r", "until": FAR, "set_by": "alice", "set_at": NOW}
    path.write_text(json.dumps({"overrides": [item]}))
    with pytest.raises(ConfigError, match=r"overrides\[0\]\.until") as caught:
        health_store.load_overrides(path)
    assert str(path) in str(caught.value)


# --------------------------------------------------------------------------
# B. Damaged files set aside, never a broken cycle
# --------------------------------------------------------------------------

DEEP = "[" * 100_000
"""Valid JSON's start, nested deeper than the parser's recursion limit."""


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{"version": 1, "notifiers": []}', "notifiers"),
        ('{"version": 1, "notifiers": {"chat": []}}', "notifiers.chat"),
        ('{"version": 1, "notifiers": {"chat": {"dropped": "3"}}}', "notifiers.chat.dropped"),
        ('{"version": 1, "notifiers": {"chat": {"failures": -1}}}', "notifiers.chat.failures"),
        ('{"version": 1, "notifiers": {"chat": {"pending": {}}}}', "notifiers.chat.pending"),
        ('{"version": 1, "notifiers": {"chat": {"pending": [{"key": 1}], "queued_at": [0]}}}', "pending[0].key"),
        ('{"version": 1, "notifiers": {"chat": {"sent": [["k"]]}}}', "notifiers.chat.sent"),
        (DEEP, "recursion"),
    ],
)
def test_a_damaged_outbox_of_any_shape_is_set_aside_and_the_next_write_works(
    tmp_path: Path, text: str, named: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = outbox.outbox_path(tmp_path, "f")
    path.write_text(text)
    with outbox.opened(path) as box:
        assert box.states == {}
        box.states["chat"] = outbox.queue(NotifierState(), [CHANGE], NOW, 10)
        box.save()
    assert path.with_name(path.name + ".damaged").read_text() == text
    assert str(path) in caplog.text and named in caplog.text
    with outbox.opened(path) as box:
        assert box.states["chat"].pending == (CHANGE,)


def test_an_outbox_round_trips_every_field(tmp_path: Path) -> None:
    path = outbox.outbox_path(tmp_path, "f")
    state = outbox.queue(NotifierState(), [CHANGE], NOW, 10)
    state = outbox.delivered(state, (CHANGE,), 0, NOW + 1)
    state = outbox.queue(state, [dataclasses.replace(CHANGE, key="k2")], NOW + 2, 10)
    with outbox.opened(path) as box:
        box.states["chat"] = state
        box.save()
    with outbox.opened(path) as box:
        assert box.states == {"chat": state}
    assert not path.with_name(path.name + ".damaged").exists()


def test_a_memory_nested_too_deep_is_a_warning_and_a_fresh_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = health_store.memory_path(tmp_path)
    path.write_text(DEEP)
    with caplog.at_level(logging.WARNING, logger="updraft.factory.health_store"):
        assert health_store.load_memory(path) == health_store.HealthMemory()
    assert str(path) in caplog.text and "every entry starts active" in caplog.text


def test_overrides_nested_too_deep_are_an_error_naming_the_file(tmp_path: Path) -> None:
    path = health_store.overrides_path(tmp_path)
    path.write_text(DEEP)
    with pytest.raises(ConfigError, match="unreadable health override file") as caught:
        health_store.load_overrides(path)
    assert str(path) in str(caught.value)


# --------------------------------------------------------------------------
# C. The outbox's lease and back-off on the wall clock
# --------------------------------------------------------------------------


def test_a_lease_runs_from_the_delivery_so_a_reloaded_reporter_does_not_send_again(tmp_path: Path) -> None:
    """The cycle starts at T0, its act takes 50 s; a SIGHUP reload's reporter (no record of the running
    thread) reports the next cycle while the first delivery is still under way: it must leave it alone."""
    hang = Trickler(b"HTTP/1.1 200 OK\r\n", b"X-Wait: 1\r\n")
    section = hook_section(tmp_path, "slack", hang.port) | {"timeout_seconds": 2.0, "retry_seconds": 30.0}
    try:
        reporter, notes = reporter_for(tmp_path / "mon", {"n": section})
        notes.clock = Clock(T0 + 50)
        assert reporter.report(snapshot(T0, change("site1", A, D, T0 - 1, "held"))) == {}
        with outbox.opened(outbox.outbox_path(tmp_path / "mon", "lab-factory")) as box:
            assert box.states["n"].lease_until == T0 + 50 + 2.0 + outbox.LEASE_MARGIN_SECONDS
        reloaded, again = reporter_for(tmp_path / "mon", {"n": section})
        again.clock = Clock(T0 + 55)
        assert reloaded.report(snapshot(T0 + 10)) == {}
        notes.clock.now = T0 + 53  # when the first delivery is cut off
        assert notes.wait(30) and again.wait(30)
    finally:
        hang.stop()
    assert hang.connections == 1
    status = notes.status("lab-factory")["n"]
    assert status.failures == 1 and status.next_attempt == T0 + 53 + 30.0  # back-off from the failure


# --------------------------------------------------------------------------
# D. Two operators at once
# --------------------------------------------------------------------------


def test_a_set_waits_for_another_operators_change_and_keeps_it(tree: ConfigTree, tmp_path: Path) -> None:
    """Another `set` holds the lock and writes its override: ours waits for it, then adds to it, losing nothing."""
    main_file = tree.factory(("50-work.yaml", f"work_dir: {tmp_path / 'work'}\n"))
    path = health_store.overrides_path(tmp_path / "work")
    path.parent.mkdir(parents=True)
    theirs = Override("site2", HealthState.DEGRADED, "slow CE", time.time() + 3600, "bob", time.time())
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        args = ["factory", "health", "-c", str(main_file), "set", "site1", "banned", "--reason", "CE upgrade"]
        args += ["--until", str(int(time.time() + 3600))]
        ours = subprocess.Popen(
            [sys.executable, "-c", "from updraft.cli import main; main()", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        with contextlib.suppress(subprocess.TimeoutExpired):
            ours.wait(3)  # the command alone takes under 1 s here
        still_waiting = ours.poll() is None
        health_store.save_overrides(path, {"site2": theirs})
        fcntl.flock(lock, fcntl.LOCK_UN)
    output, _ = ours.communicate(timeout=60)
    assert ours.returncode == 0, output
    assert still_waiting, f"the command wrote while another operator held the lock: {output}"
    stored = health_store.load_overrides(path)
    assert sorted(stored) == ["site1", "site2"] and stored["site2"] == theirs


# --------------------------------------------------------------------------
# E. The clock stepping back
# --------------------------------------------------------------------------


def test_outcomes_after_the_clock_stepped_back_are_stamped_at_the_last_time_kept() -> None:
    history = History((NOW + 100,), (NOW + 200,), ("held",))
    later = history.added(["held", GOOD], NOW)  # the clock is now 200 s behind
    assert later.good == (NOW + 100, NOW + 200) and later.bad == (NOW + 200, NOW + 200)
    assert later.causes == ("held", "held")
    assert later.added(["held"], NOW + 300).bad[-1] == NOW + 300  # the clock back ahead: its own time


def test_a_memory_with_outcomes_out_of_order_is_kept_sorted_with_its_ban(tmp_path: Path) -> None:
    path = health_store.memory_path(tmp_path)
    entry = {"state": "banned", "reason": "8 of 8 failed", "since": NOW, "next_review": NOW + 3600, "cap": 0}
    entry |= {
        "override": None,
        "good": [NOW + 5, NOW + 1],
        "bad": [NOW + 9, NOW + 2, NOW + 9],
        "causes": ["a", "b", "c"],
    }
    path.write_text(json.dumps({"version": 1, "evaluated_at": NOW + 9, "entries": {"dead": entry}}))
    memory = health_store.load_memory(path)
    assert memory.states["dead"].state is HealthState.BANNED
    assert memory.history["dead"] == History((NOW + 1, NOW + 5), (NOW + 2, NOW + 9, NOW + 9), ("b", "a", "c"))


def test_a_ban_survives_cycles_after_the_clock_stepped_back(tmp_path: Path) -> None:
    """The memory was written 10 min ahead of the clock the next cycles read, which bring new failures."""
    ahead = NOW + 600
    banned = EntryHealth("dead", HealthState.BANNED, "8 of 8 pilots failed", ahead - 60, next_review=ahead + 3600)
    memory = health_store.HealthMemory({"dead": banned}, {"dead": History((), (ahead - 30,) * 8, ("held",) * 8)}, ahead)
    path = health_store.memory_path(tmp_path)
    for step in range(3):
        health_store.save_memory(path, memory)
        memory = health_store.load_memory(path)
        assert memory.states["dead"].state is HealthState.BANNED, f"cycle {step}: the ban was lifted"
        decided = decide_health(memory.states, memory.history, {"dead": ["held"]}, {}, {"dead": HealthSettings()}, NOW)
        memory = health_store.HealthMemory(decided.health, decided.history, NOW)
        assert list(decided.history["dead"].bad) == sorted(decided.history["dead"].bad)
