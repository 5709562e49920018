"""Every place that shows a time to people goes through `updraft.timefmt`: one format per kind of
reader, and a time out of range (a finite number no calendar can show, from an ad or an API we do
not control) shown as itself instead of an exception that would stop a cycle."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from updraft import timefmt
from updraft.factory import holds
from updraft.factory.cli import _show as downtime_show
from updraft.factory.cloud import CloudAccount, CloudCredentials, CloudInstance, UnknownInstance, unknown_line
from updraft.factory.health_cli import _show as health_show
from updraft.factory.model import PilotState
from updraft.frontend.config import IdleFeedback
from updraft.frontend.feedback import Exclusion, note

from .test_factory_holds import pilot_of

MOMENT = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC
FAR = 1e20
ACCOUNT = CloudAccount("http://ec2.example/", CloudCredentials(Path("/a"), Path("/s")))


def cloud_line(launched: float) -> str:
    return unknown_line(UnknownInstance("cloud", CloudInstance("i-1", "running", launched), ACCOUNT, "no pilot"))


def unavailable_line(since: float) -> str:
    pilot = replace(pilot_of("", "7.0", state=PilotState.RUNNING), resource_unavailable_since=since)
    [line] = holds.unavailable_problems([pilot])
    return line


def exclusion_note(since: float, now: float) -> str:
    exclusion = Exclusion("e@f", frozenset({"s"}), 3, since, since)
    return note(exclusion, 4, 1, IdleFeedback(), now)


def test_the_operator_tables_show_minutes() -> None:
    assert timefmt.utc(MOMENT, timefmt.MINUTES) == "2026-09-21 14:13 UTC"
    assert downtime_show(MOMENT) == health_show(MOMENT) == "2026-09-21 14:13 UTC"
    assert "(running since 2026-09-21 14:13 UTC, no pilot tag)" in cloud_line(MOMENT)


def test_problem_lines_show_seconds_and_frontend_records_iso() -> None:
    assert "down since 2026-09-21 14:13:20 UTC (1 pilots)" in unavailable_line(MOMENT)
    assert exclusion_note(MOMENT, MOMENT).endswith("refused them for 3 cycles since 2026-09-21T14:13:20Z")
    retry = timefmt.utc(MOMENT + IdleFeedback().hold_seconds, timefmt.ISO)
    held = exclusion_note(MOMENT, MOMENT + 1)
    assert held.endswith(f"from 2026-09-21T14:13:20Z to 2026-09-21T14:13:20Z; tried again after {retry}")


@pytest.mark.parametrize("value", [FAR, float("inf"), float("nan"), -1.0, timefmt.LATEST + 1])
def test_a_time_out_of_range_is_shown_as_itself_never_raised(value: float) -> None:
    shown = [downtime_show(value), cloud_line(value), unavailable_line(value), exclusion_note(value, 0.0)]
    assert all(f"(time out of range: {value!r})" in text for text in shown), shown
