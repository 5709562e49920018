"""`updraft factory health`: the table, and overrides set and cleared durably, audited, bad input refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from updraft.cli import main as cli_main
from updraft.factory import health_store
from updraft.factory.health_cli import invoking_user
from updraft.factory.health_model import EntryHealth, HealthState


@pytest.fixture
def factory_main(tree, tmp_path: Path) -> Path:
    return tree.factory(("50-work.yaml", f"work_dir: {tmp_path / 'work'}\n"))


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


def health(main_file: Path, *args: str) -> Result:
    return CliRunner().invoke(cli_main, ["factory", "health", "-c", str(main_file), *args])


def later(seconds: float) -> str:
    return str(int(time.time() + seconds))


def test_set_stores_the_override_and_audits_who_when_what_and_why(factory_main: Path, work: Path) -> None:
    result = health(factory_main, "set", "site1", "banned", "--reason", "CE upgrade", "--until", later(3600))
    assert result.exit_code == 0, result.output
    assert "site1: banned until" in result.output
    [override] = health_store.load_overrides(health_store.overrides_path(work)).values()
    assert (override.entry, override.state, override.reason) == ("site1", HealthState.BANNED, "CE upgrade")
    assert override.set_by == invoking_user() and abs(override.set_at - time.time()) < 60
    [line] = health_store.audit_path(work).read_text().splitlines()
    audit = json.loads(line)
    assert audit["action"] == "set" and audit["who"] == invoking_user() and audit["reason"] == "CE upgrade"
    assert audit["state"] == "banned" and audit["entry"] == "site1"


def test_the_table_shows_a_new_override_before_the_factory_applies_it(factory_main: Path) -> None:
    health(factory_main, "set", "site1", "degraded", "--reason", "slow CE", "--until", later(600))
    table = health(factory_main)
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split() == ["entry", "state", "since", "next", "review", "reason"]
    [row] = [line for line in table.output.splitlines() if line.startswith("site1")]
    assert "degraded" in row and "set by" in row and "slow CE (from the next cycle)" in row
    [item] = json.loads(health(factory_main, "--json").output)
    assert item["entry"] == "site1" and item["state"] == "degraded" and item["override"]["reason"] == "slow CE"


def test_the_table_shows_what_the_factory_last_decided(factory_main: Path, work: Path) -> None:
    decided = EntryHealth("site1", HealthState.BANNED, "8 of 8 pilots failed", 1_800_000_000.0, 1_800_003_600.0, 0)
    health_store.save_memory(health_store.memory_path(work), health_store.HealthMemory({"site1": decided}))
    [item] = json.loads(health(factory_main, "--json").output)
    assert item == {
        "entry": "site1",
        "state": "banned",
        "reason": "8 of 8 pilots failed",
        "since": 1_800_000_000.0,
        "next_review": 1_800_003_600.0,
        "cap": 0,
        "override": None,
    }
    table = health(factory_main).output
    assert "2027-01-15 08:00 UTC" in table and "2027-01-15 09:00 UTC" in table


def test_clear_ends_the_override_and_audits_it(factory_main: Path, work: Path) -> None:
    health(factory_main, "set", "site1", "active", "--reason", "fixed", "--until", later(600))
    result = health(factory_main, "clear", "site1", "--reason", "done early")
    assert result.exit_code == 0, result.output
    assert health_store.load_overrides(health_store.overrides_path(work)) == {}
    lines = [json.loads(line) for line in health_store.audit_path(work).read_text().splitlines()]
    assert [line["action"] for line in lines] == ["set", "clear"]
    assert lines[1]["reason"] == "done early" and lines[1]["ended"]["reason"] == "fixed"


def test_config_given_on_the_health_group_reaches_the_subcommand(factory_main: Path, work: Path) -> None:
    args = ["factory", "health", "-c", str(factory_main), "set", "site1", "probing", "--reason", "r"]
    result = CliRunner().invoke(cli_main, [*args, "--until", later(60)])
    assert result.exit_code == 0, result.output
    assert "site1" in health_store.load_overrides(health_store.overrides_path(work))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set", "nosuch", "banned", "--reason", "r", "--until", later(60)), "'nosuch' is not an entry of the factory"),
        (("set", "site1", "sleepy", "--reason", "r", "--until", later(60)), "'sleepy' is not a health state"),
        (("set", "site1", "banned", "--until", later(60)), "Missing option '--reason'"),
        (("set", "site1", "banned", "--reason", "  ", "--until", later(60)), "a reason is required"),
        (("set", "site1", "banned", "--reason", "a\nb", "--until", later(60)), "without control characters"),
        (("set", "site1", "banned", "--reason", "r"), "Missing option '--until'"),
        (("set", "site1", "banned", "--reason", "r", "--until", "tomorrow"), "expected ISO 8601"),
        (("set", "site1", "banned", "--reason", "r", "--until", "2020-01-01T00:00"), "is not in the future"),
        (("set", "site1", "banned", "--reason", "r", "--until", "nan"), "not a moment between the years"),
        (("clear", "site1"), "'site1' has no override in force"),
        (("clear", "nosuch"), "'nosuch' is not an entry of the factory"),
    ],
)
def test_bad_input_is_a_usage_error_and_nothing_is_written(
    factory_main: Path, work: Path, args: tuple[str, ...], message: str
) -> None:
    result = health(factory_main, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not health_store.overrides_path(work).exists() and not health_store.audit_path(work).exists()


def test_a_damaged_override_file_is_an_error_naming_it_and_is_not_written_over(factory_main: Path, work: Path) -> None:
    path = health_store.overrides_path(work)
    path.parent.mkdir(parents=True)
    path.write_text('{"overrides": [{"entry": "site1", "state": "gone"}]}')
    result = health(factory_main, "set", "site1", "banned", "--reason", "r", "--until", later(60))
    assert result.exit_code == 1, result.output
    assert str(path) in result.output and "overrides[0].state" in result.output
    assert path.read_text() == '{"overrides": [{"entry": "site1", "state": "gone"}]}'
    assert not health_store.audit_path(work).exists()
    assert health(factory_main).exit_code == 1


def test_an_audit_log_that_cannot_be_written_leaves_the_overrides_as_they_were(factory_main: Path, work: Path) -> None:
    health_store.audit_path(work).mkdir(parents=True)  # a folder where the log should be: appending fails
    result = health(factory_main, "set", "site1", "banned", "--reason", "r", "--until", later(60))
    assert result.exit_code == 1 and "audit log not written" in result.output
    assert health_store.load_overrides(health_store.overrides_path(work)) == {}
