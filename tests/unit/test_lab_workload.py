"""The demo's workload and its progress, from plain ads."""

from __future__ import annotations

from pathlib import Path

from updraft.lab.demo import Sample, Watch, pilot_ending, repeated_in_a_cycle, tracebacks
from updraft.lab.workload import (
    DEMO_WORKLOAD,
    WORKLOAD_ATTR,
    EntryPilots,
    jobs_progress,
    progress_line,
    submit_description,
)


def test_the_workload_has_shapes_no_lab_pilot_can_run() -> None:
    assert sum(s.count for s in DEMO_WORKLOAD) == 49
    assert sum(s.count for s in DEMO_WORKLOAD if s.runnable) == 38
    assert any(s.sites == ("HPC",) for s in DEMO_WORKLOAD), "one shape runs only on the Slurm site"
    assert any(s.sites == ("Cloud",) for s in DEMO_WORKLOAD), "one shape runs only on cloud instances"
    wide, huge, shared = [s for s in DEMO_WORKLOAD if not s.runnable]
    assert wide.cpus > 2 and all(s.cpus <= 2 for s in DEMO_WORKLOAD if s.runnable)
    assert huge.memory_mb >= 4_000_000 and all(s.memory_mb <= 2048 for s in DEMO_WORKLOAD if s.runnable)
    assert shared.shared_filesystem and not any(s.shared_filesystem for s in DEMO_WORKLOAD if s.runnable)


def test_a_shared_filesystem_shape_transfers_no_files(tmp_path: Path) -> None:
    shared = next(s for s in DEMO_WORKLOAD if s.shared_filesystem)
    description = submit_description(shared, tmp_path / "demo.log")
    assert description["should_transfer_files"] == "NO" and "when_to_transfer_output" not in description
    assert submit_description(DEMO_WORKLOAD[0], tmp_path / "demo.log")["should_transfer_files"] == "YES"


def test_a_shape_becomes_a_submit_description_that_only_pilots_of_its_sites_match(tmp_path: Path) -> None:
    shape = DEMO_WORKLOAD[2]
    description = submit_description(shape, tmp_path / "demo.log")
    assert (description["request_cpus"], description["request_memory"], description["arguments"]) == ("1", "256", "10")
    assert description["requirements"].startswith("TARGET.IS_GLIDEIN =?= true")
    assert description["+DESIRED_Sites"] == '"Site1,Site2"'
    assert description["initialdir"] == str(tmp_path)
    assert set(description["job_machine_attrs"].split()) == {"IS_GLIDEIN", "GLIDEIN_Site"}
    assert description[f"+{WORKLOAD_ATTR}"] == '"short-anywhere"'


def ad(shape: str, status: int, site: str | None = None, glidein: bool = True) -> dict:
    found = {WORKLOAD_ATTR: shape, "JobStatus": status}
    if site:
        found.update(MachineAttrGLIDEIN_Site0=site, MachineAttrIS_GLIDEIN0=glidein)
    return found


def test_progress_counts_states_and_where_finished_jobs_ran() -> None:
    ads = [ad("small-site1", 4, "Site1")] * 10 + [ad("double-site2", 4, "Site2")] * 7 + [ad("double-site2", 2)]
    ads += [ad("short-anywhere", 4, "Site2")] * 7 + [ad("short-anywhere", 4, "Site1", glidein=False)]
    ads += [ad("hpc-only", 4, "HPC")] * 6 + [ad("two-node-hpc", 4, "HPC2N")] * 2 + [ad("too-wide", 1)] * 4
    ads += [ad("cloud-only", 4, "Cloud")] * 4
    progress = jobs_progress(ads)
    assert progress.count("done") == 37 and progress.count("running") == 1
    assert progress.count("idle", runnable=False) == 4
    assert (progress.done_on_pilots, progress.done_elsewhere) == (36, 1)
    assert not progress.runnable_finished()
    finished = jobs_progress([*ads[:17], ad("double-site2", 4, "Site2"), *ads[18:]])
    assert finished.runnable_finished()


def test_a_wrong_site_is_not_counted_as_done_on_pilots() -> None:
    progress = jobs_progress([ad("small-site1", 4, "Site2")])
    assert (progress.done_on_pilots, progress.done_elsewhere) == (0, 1)


def test_the_progress_line_shows_jobs_and_each_entry() -> None:
    line = progress_line(
        42.4,
        jobs_progress([ad("small-site1", 2), ad("small-site1", 4, "Site1")]),
        [EntryPilots("site1", 3, 1, 2), EntryPilots("site2", held=1)],
    )
    assert line.startswith("[   42s] jobs idle 0 running 1 done 1/38")
    assert "site1: req 3 idle 1 run 2" in line and "site2: req 0 idle 0 run 0 held 1" in line


def sample(elapsed: float, *entries: EntryPilots) -> Sample:
    return Sample(elapsed, jobs_progress([]), entries)


def test_pilots_are_checked_against_the_most_the_frontend_asked_until_then() -> None:
    watch = Watch(
        started=0.0,
        samples=[
            sample(5, EntryPilots("site1", requested_idle=3, requested_max=3)),
            sample(10, EntryPilots("site1", idle=3, requested_max=3)),
            sample(15, EntryPilots("site1", running=3, requested_max=1)),  # the ask shrank; pilots run on
            sample(20, EntryPilots("site1", idle=1, running=3, requested_max=1)),
        ],
    )
    assert watch.pilots_beyond_ask() == ["20 s: site1 had 4 pilots, asked at most 3"]
    assert watch.first_running_pilot == 15
    assert watch.most("site1", lambda e: e.pilots) == 4
    assert watch.most("site9", lambda e: e.pilots) == 0


def test_pilots_before_any_ask_are_beyond_it() -> None:
    watch = Watch(started=0.0, samples=[sample(5, EntryPilots("site2", idle=1))])
    assert watch.pilots_beyond_ask() == ["5 s: site2 had 1 pilots, asked at most 0"]
    assert watch.first_running_pilot is None


def test_a_log_with_a_traceback_is_named(tmp_path: Path) -> None:
    clean, broken = tmp_path / "factory.log", tmp_path / "frontend.log"
    clean.write_text("INFO cycle 1: submitted 0\n")
    broken.write_text("ERROR boom\nTraceback (most recent call last):\n  File ...\n")
    assert tracebacks([clean, broken, tmp_path / "missing.log"]) == [str(broken)]


def test_a_complaint_repeated_within_one_cycle_is_found_and_one_per_cycle_is_not() -> None:
    lines = [
        "2026-11-22 10:00:00,1 ERROR updraft.factory.observe: requests unreadable this cycle: down",
        "2026-11-22 10:00:01,1 INFO updraft.factory.service: cycle 3: submitted 0",
        "2026-11-22 10:00:02,1 ERROR updraft.factory.observe: requests unreadable this cycle: still down",
        "  a continuation line",
        "2026-11-22 10:00:03,1 WARNING updraft.factory.observe: requests unreadable this cycle: other text",
        "2026-11-22 10:00:04,1 INFO updraft.factory.observe: requests unreadable this cycle: info is fine",
    ]
    assert repeated_in_a_cycle(lines) == [lines[4]]
    assert repeated_in_a_cycle(lines[:3]) == []


def test_a_pilot_ending_says_whether_it_retired_or_why_it_was_removed() -> None:
    assert pilot_ending({"JobStatus": 4}) == "retired on their own"
    assert (
        pilot_ending({"JobStatus": 3, "RemoveReason": "Updraft factory: excess idle"})
        == "removed unstarted, no longer needed"
    )
    assert (
        pilot_ending({"JobStatus": 3, "RemoveReason": "Updraft factory: stale running"})
        == "removed: Updraft factory: stale running"
    )
    assert pilot_ending({"JobStatus": 1}) == "still queued"
