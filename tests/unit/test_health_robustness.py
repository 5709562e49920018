"""Entry health against bad files, bad ads and a bad clock: out-of-range times, damaged files, a clock stepping back.

Each of these once stopped whole cycles (or a delivery retried forever); here each is set aside with a
warning naming the file and key, or shown as it is, and the cycle goes on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from updraft import protocol, timefmt
from updraft.errors import ConfigError
from updraft.factory import health_store
from updraft.factory.config import FactoryConfig
from updraft.factory.decide import _since
from updraft.factory.health_cli import _show
from updraft.factory.health_model import HealthState
from updraft.factory.ports import fake_ports
from updraft.factory.service import run_cycle
from updraft.frontend.decide import decide
from updraft.frontend.model import AdvertisedHealth, Observation
from updraft.frontend.observe import parse_entry
from updraft.monitoring.notifiers import base
from updraft.monitoring.writers import status_pages

from .test_factory_health_cycle import NOW, config, request, submitted_by_entry  # noqa: F401
from .test_frontend_decide import config as frontend_config
from .test_frontend_decide import jobs
from .test_fuzz_inputs import TRUSTED, good_entry_ad

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
