"""Restarted jobs: the schedd's ads to (group, entry) figures, and the read through the fakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from updraft.fakes import FakeSchedd
from updraft.frontend.config import FrontendConfig
from updraft.frontend.observe import observe
from updraft.frontend.ports import fake_ports
from updraft.frontend.restarts import (
    LAST_HOUR_SECONDS,
    RESTART_PROJECTION,
    UNKNOWN_ENTRY,
    RestartedJob,
    entry_key,
    restart_rows,
    restarted_job,
)
from updraft.monitoring.snapshot import RestartRow

NOW = 1_800_000_000.0
ON_CE1 = {"MachineAttrGLIDEIN_Entry_Name0": "ce1", "MachineAttrGLIDEIN_Factory0": "fac"}


def ad(**attrs: Any) -> dict[str, Any]:
    return {"NumJobStarts": 2, **ON_CE1, **attrs}


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        (ON_CE1, "ce1@fac"),
        ({"MachineAttrGLIDEIN_Entry_Name0": "ce1"}, UNKNOWN_ENTRY),
        ({"MachineAttrGLIDEIN_Factory0": "fac"}, UNKNOWN_ENTRY),
        ({}, UNKNOWN_ENTRY),
        ({"MachineAttrGLIDEIN_Entry_Name0": "", "MachineAttrGLIDEIN_Factory0": "fac"}, UNKNOWN_ENTRY),
        ({"MachineAttrGLIDEIN_Entry_Name0": 3, "MachineAttrGLIDEIN_Factory0": "fac"}, UNKNOWN_ENTRY),
    ],
)
def test_the_entry_is_the_one_the_job_last_ran_on_or_unknown(attrs: dict[str, Any], expected: str) -> None:
    assert entry_key(attrs) == expected


@pytest.mark.parametrize(
    ("attrs", "starts", "badput", "latest"),
    [
        ({"RemoteWallClockTime": 300.0, "CommittedTime": 0.0}, 2, 300.0, None),
        ({"NumJobStarts": 5, "RemoteWallClockTime": 900.0, "CommittedTime": 100.0}, 5, 800.0, None),
        # Missing clocks read as 0; a committed time above the wall time (a clock gone back) is no badput.
        ({}, 2, 0.0, None),
        ({"RemoteWallClockTime": 50.0, "CommittedTime": 80.0}, 2, 0.0, None),
        ({"RemoteWallClockTime": "soon"}, 2, 0.0, None),
        # The latest start: the current one, the previous one when it is missing, 0 meaning never.
        ({"JobCurrentStartDate": NOW - 10, "JobLastStartDate": NOW - 500}, 2, 0.0, NOW - 10),
        ({"JobLastStartDate": NOW - 500}, 2, 0.0, NOW - 500),
        ({"JobCurrentStartDate": 0, "JobLastStartDate": 0}, 2, 0.0, None),
    ],
)
def test_a_restarted_job_from_its_ad(attrs: dict[str, Any], starts: int, badput: float, latest: float | None) -> None:
    job = restarted_job("main", ad(**attrs))
    assert job is not None
    assert (job.starts, job.restarts, job.badput_seconds, job.latest_start) == (starts, starts - 1, badput, latest)
    assert job.entry == "ce1@fac" and job.group == "main"


@pytest.mark.parametrize("starts", [None, 0, 1, "two", 1.5])
def test_a_job_that_started_once_or_never_is_not_restarted(starts: Any) -> None:
    attrs = ad()
    attrs["NumJobStarts"] = starts
    assert restarted_job("main", attrs) is None


def job(entry: str = "ce1@fac", group: str = "main", **fields: Any) -> RestartedJob:
    return RestartedJob(group=group, entry=entry, **{"starts": 2, **fields})


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        ([], ()),
        (
            [job(starts=3, wall_seconds=100.0, latest_start=NOW - 60, cpus=4), job(wall_seconds=10.0)],
            (RestartRow("main", "ce1@fac", 2, 3, 1, 110.0, 410.0),),
        ),
        # The hour is (now - 3600, now]: a start exactly an hour ago is older; one from a clock ahead counts.
        (
            [job(latest_start=NOW - LAST_HOUR_SECONDS), job(latest_start=NOW + 30), job(latest_start=None)],
            (RestartRow("main", "ce1@fac", 3, 3, 1, 0.0, 0.0),),
        ),
        (
            [job(entry=UNKNOWN_ENTRY), job(group="other"), job()],
            (
                RestartRow("main", "ce1@fac", 1, 1, 0, 0.0, 0.0),
                RestartRow("main", UNKNOWN_ENTRY, 1, 1, 0, 0.0, 0.0),
                RestartRow("other", "ce1@fac", 1, 1, 0, 0.0, 0.0),
            ),
        ),
    ],
)
def test_restarts_are_summed_per_group_and_entry(jobs: list[RestartedJob], expected: tuple[RestartRow, ...]) -> None:
    assert restart_rows(jobs, NOW) == expected


def test_known_pairs_get_zeros_and_unread_groups_get_nothing() -> None:
    rows = restart_rows(
        [job(group="main"), job(group="down")],
        NOW,
        unread=["down"],
        known=[("main", "ce2@fac"), ("down", "ce1@fac"), ("main", "ce1@fac")],
    )
    assert rows == (RestartRow("main", "ce1@fac", 1, 1, 0, 0.0, 0.0), RestartRow("main", "ce2@fac"))


def config(tmp_path: Path, **groups: dict[str, Any]) -> FrontendConfig:
    return FrontendConfig.model_validate(
        {
            "name": "vo",
            "vo_collector": "127.0.0.1:29618",
            "wms_collector": "127.0.0.1:29619",
            "schedds": ["s1@lab", "s2@lab"],
            "work_dir": str(tmp_path),
            "factories": {"fac": {"identity": "fac@lab"}},
            "groups": groups or {"main": {}},
        }
    )


def test_observe_reads_each_groups_restarted_jobs_from_every_schedd(tmp_path: Path) -> None:
    cfg = config(tmp_path, cms={"job_constraint": 'VO == "cms"'}, atlas={"job_constraint": 'VO == "atlas"'})
    ports, vo, _wms = fake_ports(cfg)
    vo.schedds["s1@lab"] = FakeSchedd("s1@lab", jobs=[ad(VO="cms"), ad(VO="cms", NumJobStarts=1), ad(VO="atlas")])
    vo.schedds["s2@lab"] = FakeSchedd("s2@lab", jobs=[ad(VO="cms", NumJobStarts=4), ad(VO="lhcb")])
    seen = observe(cfg, ports, NOW)
    found = sorted((j.group, j.starts) for j in seen.restarted)
    assert found == [("atlas", 2), ("cms", 2), ("cms", 4)]
    assert not seen.restarts_unread


def test_the_restart_query_projects_only_what_it_needs(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    ports, vo, _wms = fake_ports(cfg)
    asked: list[tuple[str, tuple[str, ...]]] = []

    class Recording(FakeSchedd):
        def query(self, constraint: str = "true", projection: Any = ()) -> list[dict[str, Any]]:
            asked.append((constraint, tuple(projection)))
            return super().query(constraint, projection)

    for name in cfg.schedds:
        vo.schedds[name] = Recording(name, jobs=[ad(Secret="x" * 10)])
    seen = observe(cfg, ports, NOW)
    assert sorted(asked) == [("NumJobStarts > 1 && (true)", RESTART_PROJECTION)] * 2
    assert len(seen.restarted) == 2


def test_an_unreadable_schedd_leaves_the_groups_restarts_unknown_never_zero(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    ports, vo, _wms = fake_ports(cfg)
    vo.schedds["s1@lab"] = FakeSchedd("s1@lab", jobs=[ad()])
    vo.schedds["s2@lab"] = FakeSchedd("s2@lab", unreachable=True)
    seen = observe(cfg, ports, NOW)
    assert seen.restarts_unread == {"main"}
    assert any(p.source == "schedd s2@lab" and "restarted jobs" in p.message for p in seen.problems)
    assert restart_rows(seen.restarted, NOW, seen.restarts_unread, [("main", "ce1@fac")]) == ()
