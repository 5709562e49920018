"""Completed-pilot statistics: history ads and output files in, each pilot counted once, totals that only add."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from updraft.condor import Ad
from updraft.errors import CondorError
from updraft.factory.completed import (
    BAD_STATUS,
    HISTORY_PROJECTION,
    NO_OUTPUT,
    NO_REPORT,
    NOT_READ,
    OTHER_PILOT,
    OUTPUT_TOO_LARGE,
    OUTPUT_UNREADABLE,
    REPORT_CUT,
    Checkpoint,
    CompletedPilot,
    CompletedStats,
    CompletedTotals,
    advance,
    attach_report,
    checkpoint_of_record,
    history_constraint,
    key_from_json,
    load_checkpoint,
    merge,
    parse_history_ad,
    pilot_stats,
    prune_pilot_logs,
    read_completed,
    read_report,
    report_cores,
    report_from_tail,
    report_lifetime,
    save_checkpoint,
    summarize,
    totals,
)
from updraft.glidein.report import REPORT_BEGIN, REPORT_END, PilotReport, parse_report

NOW = 1_800_000_000
SLACK = 3600


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def report_text(**fields: object) -> str:
    """A pilot report as the pilot prints it; `fields` override an ok pilot's defaults."""
    values: dict[str, object] = {
        "report_version": 1,
        "status": "ok",
        "failed_step": "",
        "reason": "",
        "factory": "fac",
        "entry": "ce1",
        "frontend": "vo",
        "group": "main",
        "job_id": "",
        "start_time": 1000,
        "end_time": 4600,
        "lifetime": 3600,
        "jobs_run": 3,
        "busy_seconds": 3000,
    }
    values.update(fields)
    body = "".join(f"{key}={value}\n" for key, value in values.items() if value is not None)
    return f"{REPORT_BEGIN}\n{body}{REPORT_END}\n"


def report(**fields: object) -> PilotReport:
    parsed = parse_report(report_text(**fields))
    assert parsed is not None
    return parsed


def pilot(
    job_id: str = "1.0",
    *,
    at: int = NOW,
    entry: str = "ce1",
    frontend: str = "vo",
    removed: bool = False,
    rep: PilotReport | None = None,
    problem: str | None = None,
    wall: int = 0,
) -> CompletedPilot:
    return CompletedPilot(
        job_id=job_id,
        entry=entry,
        member=entry,
        frontend=frontend,
        group="main",
        removed=removed,
        finished_at=at,
        entered_status_at=at,
        wall_seconds=wall,
        report=rep,
        report_problem=("" if rep is not None else NO_REPORT) if problem is None else problem,
    )


def history_ad(
    cluster: int, proc: int = 0, *, at: int = NOW, status: int = 4, out: str | None = None, **extra: object
) -> dict[str, object]:
    ad: dict[str, object] = {
        "ClusterId": cluster,
        "ProcId": proc,
        "JobStatus": status,
        "EnteredCurrentStatus": at,
        "CompletionDate": at if status == 4 else 0,
        "RemoteWallClockTime": 120.0,
        "UpdraftEntry": "ce1",
        "UpdraftFrontend": "vo",
        "UpdraftGroup": "main",
    }
    if out is not None:
        ad["Out"] = out
    ad.update(extra)
    return ad


class FakeSchedd:
    """Answers history queries with canned ads, one list per call, and records what was asked."""

    def __init__(self, *answers: list[Ad] | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, tuple[str, ...], int]] = []

    def history(self, constraint: str, projection: Iterable[str] = (), limit: int = -1) -> list[Ad]:
        self.calls.append((constraint, tuple(projection), limit))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


# --------------------------------------------------------------------------
# History ads
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {},
            {
                "job_id": "7.2",
                "removed": False,
                "finished_at": NOW - 5,
                "entered_status_at": NOW,
                "wall_seconds": 120,
                "member": "ce1",
                "group": "main",
            },
        ),
        ({"JobStatus": 3, "CompletionDate": 0}, {"removed": True, "finished_at": NOW}),
        ({"CompletionDate": None}, {"finished_at": NOW}),
        ({"UpdraftMember": "ce1-b"}, {"member": "ce1-b", "entry": "ce1"}),
        ({"UpdraftMember": ""}, {"member": "ce1"}),
        ({"RemoteWallClockTime": 59.9}, {"wall_seconds": 59}),
        ({"RemoteWallClockTime": None}, {"wall_seconds": 0}),
        ({"Out": "/w/entries/ce1/vo/pilot.7.2.out"}, {"output": "/w/entries/ce1/vo/pilot.7.2.out"}),
        ({"Out": "pilot.7.2.out", "Iwd": "/w/entries/ce1/vo"}, {"output": "/w/entries/ce1/vo/pilot.7.2.out"}),
        ({"Out": "pilot.7.2.out"}, {"output": "pilot.7.2.out"}),
        ({"Out": ""}, {"output": ""}),
    ],
)
def test_a_history_ad_becomes_a_completed_pilot(change: dict[str, object], expected: dict[str, object]) -> None:
    ad = {**history_ad(7, 2), "CompletionDate": NOW - 5, **change}
    parsed = parse_history_ad({k: v for k, v in ad.items() if v is not None})
    assert parsed is not None
    assert {name: getattr(parsed, name) for name in expected} == expected
    assert (parsed.report, parsed.report_problem) == (None, NOT_READ)


@pytest.mark.parametrize(
    "change",
    [
        {"UpdraftEntry": None},
        {"UpdraftFrontend": None},
        {"UpdraftEntry": 5},
        {"ClusterId": None},
        {"ProcId": "x"},
        {"JobStatus": 2},
        {"JobStatus": True},
        {"JobStatus": None},
    ],
)
def test_an_ad_that_is_not_a_finished_pilot_is_skipped(change: dict[str, object]) -> None:
    ad = {**history_ad(7), **change}
    assert parse_history_ad({k: v for k, v in ad.items() if v is not None}) is None


def test_the_history_query_is_this_factorys_window_quoted() -> None:
    assert history_constraint('fac"x', 1000) == 'UpdraftFactory == "fac\\"x" && EnteredCurrentStatus >= 1000'


# --------------------------------------------------------------------------
# Reports in output files
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cut", "problem"),
    [
        ("condor banner\n" + report_text(), False, ""),
        ("condor banner\n" + report_text(), True, ""),
        (report_text().replace(f"{REPORT_END}\n", ""), False, REPORT_CUT),  # killed while printing
        (report_text().replace(f"{REPORT_END}\n", ""), True, REPORT_CUT),
        (report_text(status="maybe"), False, BAD_STATUS),
        ("only condor chatter\n", False, NO_REPORT),
        ("", False, NO_REPORT),
        ("jobs_run=3\n" + REPORT_END + "\n", True, OUTPUT_TOO_LARGE),  # began before the tail that was read
        ("only condor chatter\n", True, OUTPUT_TOO_LARGE),
    ],
)
def test_what_the_tail_of_an_output_says(text: str, cut: bool, problem: str) -> None:
    parsed, why = report_from_tail(text, cut)
    assert why == problem
    assert (parsed is not None) is (problem == "")


def test_a_report_after_much_output_is_found_in_the_tail(tmp_path: Path) -> None:
    out = tmp_path / "pilot.1.0.out"
    out.write_text("noise line\n" * 100_000 + report_text(job_id="1.0"))
    parsed, problem = read_report(str(out), max_bytes=4096)
    assert problem == "" and parsed is not None and parsed.jobs_run == 3


def test_a_report_that_began_before_the_tail_is_output_too_large(tmp_path: Path) -> None:
    out = tmp_path / "pilot.1.0.out"
    out.write_text(report_text(reason="x" * 10_000))
    assert read_report(str(out), max_bytes=1024) == (None, OUTPUT_TOO_LARGE)


@pytest.mark.parametrize(("prefix", "found"), [("", True), ("xx", False)])
def test_the_tail_starts_at_a_whole_line(tmp_path: Path, prefix: str, found: bool) -> None:
    """A tail cut in the middle of a line must not read its end as a marker; one cut at a line start keeps it."""
    tail = REPORT_BEGIN + "\n" + report_text().split("\n", 1)[1]
    out = tmp_path / "pilot.1.0.out"
    out.write_text("a" * 5000 + "\n" + prefix + tail)
    parsed, problem = read_report(str(out), max_bytes=len(tail.encode()))
    assert (parsed is not None) is found
    assert problem == ("" if found else OUTPUT_TOO_LARGE)


def test_output_files_that_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "outside").write_text(report_text())
    (tmp_path / "link.out").symlink_to(tmp_path / "outside")
    (tmp_path / "folder.out").mkdir()
    os.mkfifo(tmp_path / "fifo.out")  # opened without blocking, then refused
    (tmp_path / "empty.out").write_text("")
    cases = {
        "": (None, NO_OUTPUT),
        str(tmp_path / "missing.out"): (None, NO_OUTPUT),
        str(tmp_path / "link.out"): (None, OUTPUT_UNREADABLE),
        str(tmp_path / "folder.out"): (None, OUTPUT_UNREADABLE),
        str(tmp_path / "fifo.out"): (None, OUTPUT_UNREADABLE),
        str(tmp_path / "empty.out"): (None, NO_REPORT),
    }
    assert {path: read_report(path) for path in cases} == cases


def test_undecodable_bytes_do_not_hide_the_report(tmp_path: Path) -> None:
    out = tmp_path / "pilot.1.0.out"
    out.write_bytes(b"\xff\xfe garbage\n" + report_text().encode())
    parsed, problem = read_report(str(out))
    assert problem == "" and parsed is not None


@pytest.mark.parametrize(
    ("job_id", "problem", "kept"),
    [("1.0", "", True), ("", "", True), ("9.9", OTHER_PILOT, False)],
)
def test_a_report_naming_another_job_is_not_counted_for_this_one(job_id: str, problem: str, kept: bool) -> None:
    attached = attach_report(pilot("1.0", problem=NOT_READ), report(job_id=job_id), "")
    assert attached.report_problem == problem
    assert (attached.report is not None) is kept


# --------------------------------------------------------------------------
# Counting once
# --------------------------------------------------------------------------


def ids(rows: list[CompletedPilot]) -> list[str]:
    return [row.job_id for row in rows]


def test_a_job_in_two_overlapping_answers_is_counted_once() -> None:
    start = Checkpoint(since=NOW - 100)
    first, checkpoint = advance(start, [pilot("1.0", at=NOW - 50), pilot("2.0", at=NOW - 10)], slack_seconds=SLACK)
    second, checkpoint = advance(
        checkpoint, [pilot("2.0", at=NOW - 10), pilot("3.0", at=NOW - 20)], slack_seconds=SLACK
    )
    assert (ids(first), ids(second)) == (["1.0", "2.0"], ["3.0"])
    assert checkpoint.since == NOW - 10
    assert set(checkpoint.seen) == {"1.0", "2.0", "3.0"}


def test_a_job_twice_in_one_answer_is_counted_once() -> None:
    new, _ = advance(Checkpoint(since=NOW), [pilot("1.0"), pilot("1.0"), pilot("2.0")], slack_seconds=SLACK)
    assert ids(new) == ["1.0", "2.0"]


@pytest.mark.parametrize(
    ("rows", "since", "seen"),
    [
        ([], NOW, {"old": NOW - SLACK}),  # nothing new: nothing forgotten either
        ([pilot("1.0", at=NOW + 10)], NOW + 10, {"1.0": NOW + 10}),  # "old" fell out of the window
        ([pilot("1.0", at=NOW - 20)], NOW, {"old": NOW - SLACK, "1.0": NOW - 20}),  # since never goes back
    ],
)
def test_the_checkpoint_moves_forward_and_forgets_what_no_query_can_return(
    rows: list[CompletedPilot], since: int, seen: dict[str, int]
) -> None:
    _, checkpoint = advance(Checkpoint(since=NOW, seen={"old": NOW - SLACK}), rows, slack_seconds=SLACK)
    assert (checkpoint.since, dict(checkpoint.seen)) == (since, seen)


def test_a_job_older_than_the_window_is_never_counted_since_it_may_have_been_forgotten() -> None:
    new, checkpoint = advance(Checkpoint(since=NOW), [pilot("1.0", at=NOW - SLACK - 1)], slack_seconds=SLACK)
    assert (new, dict(checkpoint.seen)) == ([], {})


def test_a_job_missing_from_a_truncated_answer_is_still_remembered() -> None:
    """Forgetting goes by time, not by what an answer held: a job absent once may come back."""
    _, checkpoint = advance(Checkpoint(since=NOW - 100), [pilot("1.0", at=NOW - 100)], slack_seconds=SLACK)
    _, checkpoint = advance(checkpoint, [pilot("2.0", at=NOW)], slack_seconds=SLACK)  # 1.0 cut from this answer
    again, _ = advance(checkpoint, [pilot("1.0", at=NOW - 100), pilot("2.0", at=NOW)], slack_seconds=SLACK)
    assert again == []


def test_read_completed_asks_once_and_counts_overlapping_answers_once(tmp_path: Path) -> None:
    (tmp_path / "pilot.1.0.out").write_text("condor says hi\n" + report_text(job_id="1.0"))
    (tmp_path / "pilot.2.0.out").write_text(report_text(job_id="2.0", status="failed", failed_step="validate"))
    ad1 = history_ad(1, at=NOW - 30, out=str(tmp_path / "pilot.1.0.out"))
    ad2 = history_ad(2, at=NOW - 20, out=str(tmp_path / "pilot.2.0.out"))
    removed = history_ad(3, at=NOW - 10, status=3, out=str(tmp_path / "pilot.3.0.out"))  # no output came back
    schedd = FakeSchedd([ad2, ad1], [removed, ad2, ad1])
    start = Checkpoint(since=NOW - 600)

    first, checkpoint = read_completed(schedd, "fac", start, max_ads=50, slack_seconds=SLACK)
    second, checkpoint = read_completed(schedd, "fac", checkpoint, max_ads=50, slack_seconds=SLACK)

    assert [(p.job_id, p.report_problem, p.report is not None) for p in first] == [("2.0", "", True), ("1.0", "", True)]
    assert [(p.job_id, p.removed, p.report_problem, p.report) for p in second] == [("3.0", True, NO_OUTPUT, None)]
    assert schedd.calls == [
        (f'UpdraftFactory == "fac" && EnteredCurrentStatus >= {NOW - 600 - SLACK}', HISTORY_PROJECTION, 50),
        (f'UpdraftFactory == "fac" && EnteredCurrentStatus >= {NOW - 20 - SLACK}', HISTORY_PROJECTION, 50),
    ]
    assert checkpoint.since == NOW - 10


def test_output_is_read_only_for_new_pilots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import updraft.factory.completed as completed

    read: list[str] = []

    def fake_read_report(path: str, max_bytes: int) -> tuple[None, str]:
        read.append(path)
        return None, NO_REPORT

    monkeypatch.setattr(completed, "read_report", fake_read_report)
    schedd = FakeSchedd([history_ad(1, out="/o/1")], [history_ad(1, out="/o/1"), history_ad(2, out="/o/2")])
    _, checkpoint = read_completed(schedd, "fac", Checkpoint(since=NOW))
    read_completed(schedd, "fac", checkpoint)
    assert read == ["/o/1", "/o/2"]


def test_a_schedd_failure_reaches_the_caller() -> None:
    with pytest.raises(CondorError):
        read_completed(FakeSchedd(CondorError("history of schedd f: timeout")), "fac", Checkpoint(since=NOW))


def test_a_full_answer_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    schedd = FakeSchedd([history_ad(2), history_ad(1)])
    with caplog.at_level(logging.WARNING, logger="updraft.factory.completed"):
        new, _ = read_completed(schedd, "fac", Checkpoint(since=NOW), max_ads=2)
    assert len(new) == 2
    assert "max_ads=2" in caplog.text


# --------------------------------------------------------------------------
# The checkpoint file
# --------------------------------------------------------------------------


def test_a_checkpoint_survives_a_save_and_a_load(tmp_path: Path) -> None:
    path = tmp_path / "state" / "completed-checkpoint.json"
    checkpoint = Checkpoint(since=NOW, seen={"2.0": NOW, "1.0": NOW - 5})
    save_checkpoint(path, checkpoint)
    assert load_checkpoint(path, now=NOW + 999) == checkpoint
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_no_checkpoint_file_starts_lookback_seconds_ago(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert load_checkpoint(tmp_path / "none.json", now=NOW, lookback_seconds=600) == Checkpoint(since=NOW - 600)
    assert caplog.text == ""


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        b'{"since": "yesterday", "seen": {}}',
        b'{"since": true, "seen": {}}',
        b'{"since": 5}',
        b'{"since": 5, "seen": ["1.0"]}',
        b'{"since": 5, "seen": {"1.0": "now"}}',
        b"",
    ],
)
def test_a_corrupt_checkpoint_starts_afresh_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "checkpoint.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="updraft.factory.completed"):
        assert load_checkpoint(path, now=NOW, lookback_seconds=600) == Checkpoint(since=NOW - 600)
    assert "unusable" in caplog.text


def test_an_unreadable_checkpoint_starts_afresh(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.json").mkdir()
    assert load_checkpoint(tmp_path / "checkpoint.json", now=NOW, lookback_seconds=60) == Checkpoint(since=NOW - 60)


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


def test_waste_of_a_two_node_four_cpu_pilot() -> None:
    rep = report(cpus=4, nodes=2, lifetime=1000, busy_core_seconds=5000, goodput_core_seconds=4000)
    stats = pilot_stats(pilot(rep=rep))
    assert report_cores(rep) == 8
    assert (stats.core_seconds, stats.busy_core_seconds, stats.waste_core_seconds) == (8000, 5000, 3000)
    assert stats.goodput_core_seconds == 4000
    assert stats.goodput_fraction == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("fields", "cores", "core_seconds", "waste"),
    [
        ({}, 1, 3600, 3600),  # no cpus/nodes: one core
        ({"cpus": 8}, 8, 28_800, 28_800),
        ({"cpus": 4, "nodes": 2, "busy_core_seconds": 99_999}, 8, 28_800, 0),  # busier than possible: no negative waste
        ({"cpus": 0, "nodes": -1}, 1, 3600, 3600),  # nonsense counts as one core
        ({"cpus": "many"}, 1, 3600, 3600),
        ({"lifetime": None, "start_time": 100, "end_time": 160}, 1, 60, 60),
        ({"lifetime": None, "start_time": None, "end_time": None}, 1, 0, 0),
        ({"lifetime": -5}, 1, 0, 0),
    ],
)
def test_cores_lifetime_and_waste(fields: dict[str, object], cores: int, core_seconds: int, waste: int) -> None:
    rep = report(**fields)
    stats = pilot_stats(pilot(rep=rep))
    assert (report_cores(rep), stats.core_seconds, stats.waste_core_seconds) == (cores, core_seconds, waste)
    assert stats.lifetime_seconds == report_lifetime(rep)


def test_a_pilot_without_a_report_counts_but_adds_no_time() -> None:
    stats = pilot_stats(pilot(removed=True, problem=NO_OUTPUT, wall=5000))
    assert stats == CompletedStats(pilots=1, no_report=1, removed=1, no_report_by_problem={NO_OUTPUT: 1})
    assert (stats.jobs_per_pilot, stats.mean_lifetime_seconds, stats.goodput_fraction) == (0.0, 0.0, 0.0)


def test_a_removed_pilot_with_a_report_counts_as_removed_and_by_its_report() -> None:
    stats = pilot_stats(pilot(removed=True, rep=report(jobs_run=2)))
    assert (stats.pilots, stats.removed, stats.ok, stats.no_report, stats.jobs_run) == (1, 1, 1, 0, 2)


def test_failures_are_counted_by_step_and_validation_kind() -> None:
    rep = report(
        **{
            "status": "failed",
            "failed_step": "validate",
            "jobs_run": 0,
            "validation.1": "a.sh OK",
            "validation.2": "b.sh network no route",
            "validation.3": "c.sh network dns",
            "validation.4": "d.sh resources disk full",
        }
    )
    stats = pilot_stats(pilot(rep=rep))
    assert (stats.ok, stats.failed, stats.pilots_without_jobs) == (0, 1, 1)
    assert stats.failed_by_step == {"validate": 1}
    assert stats.validation_failures_by_kind == {"network": 2, "resources": 1}


def test_summaries_per_entry_and_frontend_and_in_total() -> None:
    pilots = [
        pilot("1.0", rep=report(jobs_run=4, lifetime=100)),
        pilot("2.0", rep=report(jobs_run=0, lifetime=300)),
        pilot("3.0", rep=report(status="failed", failed_step="fetch", jobs_run=0, lifetime=20)),
        pilot("4.0", removed=True, problem=NO_OUTPUT),
        pilot("5.0", frontend="other", rep=report(jobs_run=1, lifetime=50)),
        pilot("6.0", entry="ce0", problem=OUTPUT_TOO_LARGE),
    ]
    stats = summarize(pilots)
    assert list(stats) == [("ce0", "vo"), ("ce1", "other"), ("ce1", "vo")]
    vo = stats["ce1", "vo"]
    assert (vo.pilots, vo.ok, vo.failed, vo.no_report, vo.removed) == (4, 2, 1, 1, 1)
    assert (vo.jobs_run, vo.pilots_without_jobs, vo.lifetime_seconds) == (4, 2, 420)
    assert vo.failed_by_step == {"fetch": 1}
    assert vo.no_report_by_problem == {NO_OUTPUT: 1}
    assert (vo.jobs_per_pilot, vo.mean_lifetime_seconds) == pytest.approx((4 / 3, 140))
    everything = totals(stats)
    assert (everything.pilots, everything.ok, everything.no_report, everything.jobs_run) == (6, 3, 2, 5)
    assert everything.no_report_by_problem == {NO_OUTPUT: 1, OUTPUT_TOO_LARGE: 1}
    assert totals({}) == CompletedStats()


def test_goodput_fraction_weighs_big_pilots_more() -> None:
    big = pilot_stats(pilot(rep=report(cpus=8, lifetime=100, goodput_core_seconds=800)))
    small = pilot_stats(pilot(rep=report(cpus=1, lifetime=100, goodput_core_seconds=0)))
    assert (big + small).goodput_fraction == pytest.approx(800 / 900)


# --------------------------------------------------------------------------
# Running totals
# --------------------------------------------------------------------------


def test_merge_adds_counts_and_keeps_every_key() -> None:
    previous = {
        ("ce1", "vo"): CompletedStats(pilots=2, ok=1, failed=1, failed_by_step={"fetch": 1}, jobs_run=5),
        ("ce2", "vo"): CompletedStats(pilots=1, no_report=1, no_report_by_problem={NO_OUTPUT: 1}),
    }
    new = {
        ("ce1", "vo"): CompletedStats(pilots=3, failed=3, failed_by_step={"fetch": 1, "validate": 2}, jobs_run=1),
        ("ce3", "vo"): CompletedStats(pilots=1, ok=1),
    }
    merged = merge(previous, new)
    assert list(merged) == [("ce1", "vo"), ("ce2", "vo"), ("ce3", "vo")]
    assert merged["ce1", "vo"] == CompletedStats(
        pilots=5, ok=1, failed=4, failed_by_step={"fetch": 2, "validate": 1 + 1}, jobs_run=6
    )
    assert merged["ce2", "vo"] == previous["ce2", "vo"]
    assert merged["ce3", "vo"] == new["ce3", "vo"]
    assert merge({}, {}) == {}


def test_totals_survive_a_save_and_a_load(tmp_path: Path) -> None:
    store = CompletedTotals(tmp_path / "completed-totals.json")
    assert store.load() == {}
    stats = summarize(
        [
            pilot("1.0", rep=report(cpus=2, busy_core_seconds=100)),
            pilot("2.0", removed=True, problem=NO_OUTPUT),
            pilot("3.0", frontend="other", rep=report(status="failed", failed_step="install")),
        ]
    )
    store.save(stats)
    assert store.load() == stats
    assert list(json.loads(store.path.read_text())["totals"]) == ["ce1/other", "ce1/vo"]
    store.save(merge(store.load(), stats))
    assert store.load()["ce1", "vo"].pilots == 4


def test_totals_from_an_older_or_newer_factory_still_load(tmp_path: Path) -> None:
    path = tmp_path / "totals.json"
    path.write_text(json.dumps({"version": 1, "totals": {"ce1/vo": {"pilots": 3, "future_counter": 9}}}))
    assert CompletedTotals(path).load() == {("ce1", "vo"): CompletedStats(pilots=3)}


@pytest.mark.parametrize(
    "content",
    [
        "nonsense",
        "{}",
        '{"version": 99, "totals": {}}',
        '{"version": 1, "totals": {"no-slash": {}}}',
        '{"version": 1, "totals": {"ce1/vo": {"pilots": "three"}}}',
        '{"version": 1, "totals": {"ce1/vo": {"failed_by_step": {"fetch": 1.5}}}}',
        '{"version": 1, "totals": {"ce1/vo": []}}',
    ],
)
def test_damaged_totals_restart_from_zero_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    path = tmp_path / "totals.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="updraft.factory.completed"):
        assert CompletedTotals(path).load() == {}
    assert "restart from 0" in caplog.text


@pytest.mark.parametrize(
    ("text", "key"), [("ce1/vo", ("ce1", "vo")), ("ce1/", ("ce1", "")), ("ce1/a/b", ("ce1", "a/b"))]
)
def test_keys_split_at_the_first_slash(text: str, key: tuple[str, str]) -> None:
    assert key_from_json(text) == key


# --------------------------------------------------------------------------
# Pruning pilot logs
# --------------------------------------------------------------------------


def touch(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    os.utime(path, (mtime, mtime))
    return path


def test_old_pilot_logs_are_deleted_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "entries"
    old, new = NOW - 10_000, NOW - 10
    deleted = [
        touch(root / "ce1/vo/pilot.1.0.out", old),
        touch(root / "ce1/vo/pilot.1.0.err", old),
        touch(root / "ce2/other/pilot.7.3.out", old),
    ]
    kept = [
        touch(root / "ce1/vo/pilot.2.0.out", new),
        touch(root / "ce1/vo/pilots.log", old),
        touch(root / "ce1/vo/pilot.1.0.log", old),
        touch(root / "ce1/vo/notes.out", old),
    ]
    outside = touch(tmp_path / "elsewhere" / "pilot.9.0.out", old)
    (root / "ce1/vo/pilot.8.0.out").symlink_to(outside)  # a link is not followed, nor deleted
    (root / "ce1/linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    assert prune_pilot_logs(root, older_than_seconds=3600, now=NOW) == len(deleted)
    assert not any(path.exists() for path in deleted)
    assert all(path.exists() for path in kept)
    assert outside.exists() and (root / "ce1/vo/pilot.8.0.out").is_symlink()


def test_a_file_exactly_at_the_cutoff_is_kept(tmp_path: Path) -> None:
    touch(tmp_path / "pilot.1.0.out", NOW - 3600)
    assert prune_pilot_logs(tmp_path, older_than_seconds=3600, now=NOW) == 0


def test_pruning_a_missing_folder_deletes_nothing(tmp_path: Path) -> None:
    assert prune_pilot_logs(tmp_path / "nothing-here", older_than_seconds=0, now=NOW) == 0


# --------------------------------------------------------------------------
# The pieces together
# --------------------------------------------------------------------------


def test_a_cycle_end_to_end(tmp_path: Path) -> None:
    """observe -> decide -> act, twice, with a history answer that overlaps: totals count each pilot once."""
    out = tmp_path / "entries/ce1/vo"
    out.mkdir(parents=True)
    (out / "pilot.1.0.out").write_text(
        report_text(job_id="1.0", cpus=4, nodes=2, lifetime=1000, busy_core_seconds=5000)
    )
    ads = [history_ad(1, at=NOW - 5, out=str(out / "pilot.1.0.out")), history_ad(2, at=NOW - 3, status=3)]
    schedd = FakeSchedd(ads[:1], ads)
    store = CompletedTotals(tmp_path / "completed-totals.json")
    checkpoint_path = tmp_path / "completed-checkpoint.json"

    for _ in range(2):
        checkpoint = load_checkpoint(checkpoint_path, now=NOW)
        new, checkpoint = read_completed(schedd, "fac", checkpoint)
        save_checkpoint(checkpoint_path, checkpoint)
        store.save(merge(store.load(), summarize(new)))

    stats = store.load()["ce1", "vo"]
    assert (stats.pilots, stats.ok, stats.removed, stats.no_report) == (2, 1, 1, 1)
    assert (stats.core_seconds, stats.waste_core_seconds) == (8000, 3000)
    assert stats.no_report_by_problem == {NO_OUTPUT: 1}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"cpus": 10**9}, "report field cpus out of range"),
        ({"nodes": -3}, "report field nodes out of range"),
        ({"lifetime": 10**15}, "report field lifetime out of range"),
        ({"lifetime": None, "start_time": 0, "end_time": 10**11}, "report field lifetime out of range"),
        ({"busy_core_seconds": -1}, "report field busy_core_seconds out of range"),
        ({"status": "failed", "failed_step": "x" * 300}, "report field failed_step unknown"),
        ({"validation.1": "entry/check.sh weird-kind boom"}, "report field validation unknown"),
        ({"reason": "r" * 5000}, "report text too long"),
    ],
)
def test_a_report_beyond_what_a_pilot_can_say_is_refused_naming_the_field(
    tmp_path: Path, change: dict[str, object], problem: str
) -> None:
    out = tmp_path / "pilot.1.0.out"
    out.write_text(report_text(**change))
    assert read_report(str(out)) == (None, problem)
    stats = pilot_stats(attach_report(pilot(), *read_report(str(out))))
    assert stats.no_report_by_problem == {problem: 1} and stats.core_seconds == 0


def test_a_number_of_thousands_of_digits_reads_as_absent_not_a_crash() -> None:
    parsed = report(cpus="9" * 5000, jobs_run="9" * 19)
    assert parsed.cpus == 0 and parsed.jobs_run == 0


def test_a_factory_killed_between_its_two_writes_neither_loses_nor_doubles_a_pilot(tmp_path: Path) -> None:
    """The soak caught it: the checkpoint file saved, the totals not, two pilots never counted.
    The totals now carry their checkpoint in the same atomic write, and that copy is the record."""
    ads = [history_ad(1, at=NOW - 5, status=3), history_ad(2, at=NOW - 3, status=3)]
    schedd = FakeSchedd(ads, ads, ads)
    store = CompletedTotals(tmp_path / "completed-totals.json")
    checkpoint_file = tmp_path / "completed-checkpoint.json"

    def cycle(*, killed_before_checkpoint_file: bool = False) -> None:
        checkpoint = checkpoint_of_record(store, checkpoint_file, now=NOW)
        new, following = read_completed(schedd, "fac", checkpoint)
        store.save(merge(store.load(), summarize(new)), following)
        if not killed_before_checkpoint_file:
            save_checkpoint(checkpoint_file, following)

    cycle(killed_before_checkpoint_file=True)
    assert not checkpoint_file.exists()
    cycle()
    cycle()
    assert store.load()["ce1", "vo"].pilots == 2
    assert load_checkpoint(checkpoint_file, now=NOW) == store.saved_checkpoint()


def test_a_fresh_work_folder_starts_from_the_checkpoint_file(tmp_path: Path) -> None:
    """Totals without a checkpoint (none yet, or written before they carried one) leave the file in charge."""
    checkpoint_file = tmp_path / "completed-checkpoint.json"
    seeded = Checkpoint(since=int(NOW) - 100, seen={"7.0": int(NOW) - 120})
    save_checkpoint(checkpoint_file, seeded)
    store = CompletedTotals(tmp_path / "completed-totals.json")
    assert checkpoint_of_record(store, checkpoint_file, now=NOW) == seeded
    store.save({("ce1", "vo"): CompletedStats(pilots=1)})
    assert store.saved_checkpoint() is None
    assert checkpoint_of_record(store, checkpoint_file, now=NOW) == seeded
    store.path.write_text('{"version": 1, "totals": {}, "checkpoint": {"since": "soon"}}')
    assert checkpoint_of_record(store, checkpoint_file, now=NOW) == seeded
