"""Downtimes: which apply when, and a file that never half-writes or silently empties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from updraft.cli import main as cli_main
from updraft.errors import ConfigError
from updraft.factory.downtime import Downtime, active, end_now, load, save

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("downtime", "entry", "frontend", "applies"),
    [
        (Downtime("ce1", NOW - 10), "ce1", None, True),
        (Downtime("ce1", NOW - 10), "ce1", "vo", True),
        (Downtime("ce1", NOW - 10), "ce2", None, False),
        (Downtime("all", NOW - 10), "ce2", "vo", True),
        (Downtime("ce1", NOW + 10), "ce1", None, False),
        (Downtime("ce1", NOW - 10, end=NOW), "ce1", None, False),
        (Downtime("ce1", NOW - 10, end=NOW + 1), "ce1", None, True),
        (Downtime("ce1", NOW - 10, frontend="vo"), "ce1", "vo", True),
        (Downtime("ce1", NOW - 10, frontend="vo"), "ce1", "other", False),
        (Downtime("ce1", NOW - 10, frontend="vo"), "ce1", None, False),
    ],
)
def test_which_downtime_applies(downtime: Downtime, entry: str, frontend: str | None, applies: bool) -> None:
    assert (active([downtime], entry, frontend, NOW) is downtime) is applies


def test_up_closes_only_the_running_downtimes_of_that_entry_and_frontend() -> None:
    stored = [
        Downtime("ce1", NOW - 10),
        Downtime("ce1", NOW + 100),
        Downtime("ce2", NOW - 10),
        Downtime("ce1", NOW - 10, frontend="vo"),
    ]
    result, closed = end_now(stored, "ce1", None, NOW)
    assert closed == 1
    assert result[0].end == NOW and result[1].end is None and result[2].end is None and result[3].end is None
    assert active(result, "ce1", None, NOW) is None


def test_round_trip_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "downtimes.json"
    assert load(path) == []
    stored = [Downtime("ce1", NOW, None, "vo", "CE upgrade"), Downtime("all", NOW, NOW + 60)]
    save(path, stored)
    assert load(path) == stored
    assert [p.name for p in tmp_path.iterdir()] == ["downtimes.json"]


@pytest.mark.parametrize("text", ["{not json", '{"downtimes": [{"entry": "x"}]}', '{"other": []}'])
def test_a_damaged_file_is_an_error_naming_it_never_no_downtimes(tmp_path: Path, text: str) -> None:
    path = tmp_path / "downtimes.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=str(path)):
        load(path)


@pytest.mark.parametrize(
    ("start", "end", "problem"),
    [
        (NOW, NOW - 1, "must be after start"),
        (NOW, NOW, "must be after start"),
        (float("nan"), None, "start: expected epoch seconds"),
        (NOW, float("inf"), "end: expected epoch seconds"),
        ("2026-01-01", None, "start: expected epoch seconds"),
        (True, None, "start: expected epoch seconds"),
        (1e20, None, "start: expected epoch seconds"),
        (-1, None, "start: expected epoch seconds"),
    ],
)
def test_a_downtime_that_is_not_a_period_is_refused(start: object, end: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Downtime("ce1", start, end)  # type: ignore[arg-type]


def test_a_stored_downtime_ending_before_its_start_is_an_error_naming_file_and_item(tmp_path: Path) -> None:
    path = tmp_path / "downtimes.json"
    ok = {"entry": "ce1", "start": NOW}
    path.write_text(json.dumps({"downtimes": [ok, {"entry": "ce1", "start": NOW, "end": NOW - 60}, ok]}))
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == (
        f"{path}: not a downtime file: downtimes[1]: end ({NOW - 60}) must be after start ({NOW})"
    )


def test_up_right_after_down_drops_the_downtime_instead_of_storing_an_empty_period() -> None:
    result, closed = end_now([Downtime("ce1", NOW)], "ce1", None, NOW)
    assert (result, closed) == ([], 1)


@pytest.fixture
def factory_main(tree, tmp_path: Path) -> Path:
    return tree.factory(("50-work.yaml", f"work_dir: {tmp_path / 'work'}\n"))


def down(main_file: Path, *options: str):
    return CliRunner().invoke(cli_main, ["factory", "down", "-c", str(main_file), "--entry", "site1", *options])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--start", "2026-06-01T12:00", "--end", "2026-06-01T11:00"), "is not after the start (2026-06-01 12:00 UTC)"),
        (("--start", "1800000000", "--end", "1800000000"), "is not after the start"),
        (("--end", "1000"), "is not after the start"),
        (("--end", "inf"), "not a moment between the years 1970 and 9999"),
        (("--start", "nan"), "not a moment between the years 1970 and 9999"),
        (("--end", "1e20"), "not a moment between the years 1970 and 9999"),
        (("--start", "-5"), "not a moment between the years 1970 and 9999"),
    ],
)
def test_down_refuses_a_period_that_ends_before_it_starts_as_a_usage_error(factory_main, tmp_path, options, message):
    result = down(factory_main, *options)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "work" / "downtimes.json").exists()  # nothing stored


def test_down_with_an_end_after_the_start_is_stored(factory_main, tmp_path):
    result = down(factory_main, "--start", "2026-06-01T11:00", "--end", "2026-06-01T12:00")
    assert result.exit_code == 0, result.output
    [stored] = load(tmp_path / "work" / "downtimes.json")
    assert stored.end is not None and stored.end - stored.start == 3600
