"""Downtimes: which apply when, and a file that never half-writes or silently empties."""

from __future__ import annotations

from pathlib import Path

import pytest

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
