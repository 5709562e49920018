"""glidein_startup.sh black-hole protection: the startd's own cut, and the verdict after condor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .test_glidein_startup import Pilot, Run, assert_failed, fake_condor, history_ad, history_master

RETIRE_START = "(time() < GLIDEIN_ToRetire)"


@pytest.fixture
def pilot(tmp_path: Path) -> Pilot:
    return Pilot(tmp_path)


def starts(*times: int, attr: str = "JobCurrentStartDate") -> str:
    """A startd history with one job started at each of TIMES."""
    return "".join(
        history_ad(f"ClusterId=1 ProcId={n}", **{attr: t, "JobDuration": 5, "ExitCode": 1}) for n, t in enumerate(times)
    )


def run_condor_with_history(pilot: Pilot, history: str, *extra: str, env: dict[str, str] | None = None) -> Run:
    """Run the pilot for real with a condor_master that leaves HISTORY as its startd history."""
    (pilot.root / "history.0").write_text(history)
    condor = fake_condor(pilot.root, history_master(pilot.root))
    return pilot.run("--condor-dir", str(condor), *extra, dry_run=False, env=env)


def test_off_by_default_leaves_start_and_shutdown_alone(pilot: Pilot) -> None:
    config = pilot.run().config
    assert "GLIDEIN_BlackHole" not in config
    assert f"START = {RETIRE_START}" in config.splitlines()


def test_on_it_stops_matching_and_leaves_once_nothing_runs(pilot: Pilot) -> None:
    run = pilot.run("--blackhole-jobs", "2", "--blackhole-window", "900")
    lines = run.config.splitlines()
    assert run.report.ok and (run.report.blackhole_jobs, run.report.blackhole_window) == (2, 900)
    for line in [
        "GLIDEIN_BlackHole_Jobs = 2",
        "GLIDEIN_BlackHole_Window = 900",
        "GLIDEIN_BlackHole = (RecentJobStarts =!= undefined) && (RecentJobStarts > 2)",
        "GLIDEIN_NothingRuns = (PartitionableSlot =?= True && NumDynamicSlots =?= 0)",
        f"START = {RETIRE_START} && (GLIDEIN_BlackHole =!= True)",
    ]:
        assert line in lines, line
    shutdown = next(line for line in lines if line.startswith("STARTD.DAEMON_SHUTDOWN = "))
    assert shutdown.endswith(" || ((GLIDEIN_BlackHole =?= True) && $(GLIDEIN_NothingRuns))")
    attrs = next(line for line in lines if line.startswith("STARTD_ATTRS"))
    for name in ["GLIDEIN_BlackHole", "GLIDEIN_BlackHole_Jobs", "GLIDEIN_BlackHole_Window"]:
        assert f" {name}" in attrs, name
    # The startd's recent window is fixed; claiming to set it would mislead.
    assert "STATISTICS_WINDOW_SECONDS" not in run.config


def test_fixed_slots_wait_for_every_slot_to_be_free(pilot: Pilot) -> None:
    run = pilot.run("--blackhole-jobs", "1", env={"GLIDEIN_Slots_Layout": "fixed", "GLIDEIN_CPUS": "2"})
    lines = run.config.splitlines()
    assert "STARTD_SLOT_ATTRS = $(STARTD_SLOT_ATTRS) State" in lines
    assert (
        'GLIDEIN_NothingRuns = (State =!= "Claimed") && (slot1_State =!= "Claimed") && (slot2_State =!= "Claimed")'
    ) in lines


def test_settings_from_glidein_attributes(pilot: Pilot) -> None:
    run = pilot.run(env={"GLIDEIN_BlackHole_Jobs": "4", "GLIDEIN_BlackHole_Window": "120"})
    assert "GLIDEIN_BlackHole = (RecentJobStarts =!= undefined) && (RecentJobStarts > 4)" in run.config.splitlines()
    assert run.report.blackhole_window == 120


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--blackhole-jobs", "many"), "--blackhole-jobs"),
        (("--blackhole-jobs", "3", "--blackhole-window", "0"), "--blackhole-window must be positive"),
        (("--blackhole-window", "-5"), "--blackhole-window"),
    ],
)
def test_bad_settings_fail_args(pilot: Pilot, args: tuple[str, ...], named: str) -> None:
    assert_failed(pilot.run(*args), "args", named)


def test_too_many_starts_in_the_window_fail_even_after_a_clean_exit(pilot: Pilot) -> None:
    # 1000..1599: five starts less than 600 s apart; 5000 is on its own.
    run = run_condor_with_history(pilot, starts(1000, 1010, 1020, 1030, 1599, 5000), "--blackhole-jobs", "2")
    report = assert_failed(
        run, "blackhole", "5 jobs started within 600 s (limit 2): the node fails jobs as fast as it gets them"
    )
    assert report.condor_exit == 0 and report.jobs_run == 6


def test_failure_sleep_applies_to_a_black_hole(pilot: Pilot) -> None:
    bin_dir = pilot.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "sleep").write_text(f'#!/bin/sh\necho "$1" > {pilot.root}/slept\n')
    (bin_dir / "sleep").chmod(0o755)
    run = run_condor_with_history(
        pilot,
        starts(1, 2, 3),
        "--blackhole-jobs",
        "1",
        "--failure-sleep",
        "45",
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert_failed(run, "blackhole", "3 jobs started within 600 s (limit 1)")
    assert (pilot.root / "slept").read_text().strip() == "45"


def test_starts_spread_wider_than_the_window_are_fine(pilot: Pilot) -> None:
    # Less than 600 s apart: 1000 and 1300, 1300 and 1600; 1000 and 1600 are exactly 600 s apart.
    report = run_condor_with_history(pilot, starts(1600, 1000, 1300, 2400), "--blackhole-jobs", "2").report
    assert report.ok and report.jobs_run == 4, report.reason


def test_exactly_the_limit_is_not_a_black_hole(pilot: Pilot) -> None:
    report = run_condor_with_history(pilot, starts(10, 11), "--blackhole-jobs", "2").report
    assert report.ok, report.reason


def test_job_start_date_stands_in_for_the_current_start(pilot: Pilot) -> None:
    run = run_condor_with_history(
        pilot, starts(100, 101, 102, attr="JobStartDate"), "--blackhole-jobs", "2", "--blackhole-window", "60"
    )
    assert_failed(run, "blackhole", "3 jobs started within 60 s (limit 2)")


def test_history_is_not_judged_when_protection_is_off(pilot: Pilot) -> None:
    report = run_condor_with_history(pilot, starts(1, 2, 3, 4, 5)).report
    assert report.ok and report.jobs_run == 5, report.reason


def test_dry_run_is_not_judged(pilot: Pilot) -> None:
    log = pilot.work / "condor" / "log"
    log.mkdir(parents=True)
    (log / "startd_history").write_text(starts(1, 2, 3, 4, 5))
    assert pilot.run("--blackhole-jobs", "1").report.ok
