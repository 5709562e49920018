"""The frontend's staging area and what its request ads tell the pilots (PilotParams).

Per enabled group one release; per group the pool to join, the release's
manifest and the group's START, carried to the factory in the request ad
and read back unchanged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft import protocol
from updraft.errors import ConfigError
from updraft.factory.config import FactoryConfig
from updraft.factory.pilot_args import glidein_arguments, glidein_environment
from updraft.factory.stage import stage_entries
from updraft.frontend.config import FrontendConfig
from updraft.frontend.model import Decision, EntryAd, Plan
from updraft.frontend.publish import request_ad, request_ads
from updraft.frontend.stage import pilot_params, stage_groups
from updraft.protocol import PilotParams, RemoveMode, parse_request, pilot_params_ad, pilot_params_problem
from updraft.staging import MANIFEST, StagingError, StagingRelease

from .glidein_helpers import dry_run_pilot

URL = "https://vo.example.org/staging"
VO = "vo.example.org:9618"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(root: Path, name: str, content: str) -> str:
    path = root / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return str(path)


def frontend(tmp_path: Path, url: str = URL, **top: Any) -> FrontendConfig:
    """Groups main (with its own file and START), gpu (shared files only) and off (disabled)."""
    return FrontendConfig.model_validate(
        {
            "name": "vo",
            "vo_collector": VO,
            "wms_collector": "127.0.0.1:9619",
            "factories": {"fac": {"identity": "fac@lab"}},
            "staging": {
                "dir": str(tmp_path / "area" / "frontend"),
                "url": url,
                "files": [
                    {"source": write(tmp_path, "vo_check.sh", "#!/bin/sh\n: vo check\nexit 0\n"), "kind": "validate"},
                    {
                        "source": write(tmp_path, "security.config", "SEC_DEFAULT_ENCRYPTION = REQUIRED\n"),
                        "kind": "condor-config",
                        "name": "vo/security.config",
                    },
                ],
            },
            "groups": {
                "main": {
                    "pilot_start": 'Owner == "alice"',
                    "staging_files": [
                        {
                            "source": write(tmp_path, "main_check.sh", "#!/bin/sh\n: main check\nexit 0\n"),
                            "kind": "validate",
                            "name": "main/check.sh",
                        }
                    ],
                },
                "gpu": {},
                "off": {"enabled": False, "pilot_start": "false"},
            },
            **top,
        }
    )


def manifest_rows(release: StagingRelease) -> list[tuple[str, ...]]:
    text = (release.directory / MANIFEST).read_text()
    return [tuple(line.split()) for line in text.splitlines() if line and not line.startswith("#")]


# --------------------------------------------------------------------------
# stage_groups
# --------------------------------------------------------------------------


def test_every_enabled_group_gets_its_own_release(tmp_path: Path) -> None:
    releases = stage_groups(frontend(tmp_path))
    assert set(releases) == {"main", "gpu"}
    for name, release in releases.items():
        assert release.directory.parent == tmp_path / "area" / "frontend" / name
        assert release.manifest_url == f"{URL}/{name}/{release.release_id}/manifest"
        assert sha((release.directory / MANIFEST).read_bytes()) == release.manifest_sha256
    assert not (tmp_path / "area" / "frontend" / "off").exists()


def test_a_group_gets_the_shared_files_then_its_own_as_frontend_kinds(tmp_path: Path) -> None:
    releases = stage_groups(frontend(tmp_path))
    vo, security, own = (
        sha((tmp_path / "src" / n).read_bytes()) for n in ("vo_check.sh", "security.config", "main_check.sh")
    )
    assert manifest_rows(releases["main"]) == [
        (vo, "vo_check.sh", "validate-frontend"),
        (security, "vo/security.config", "condor-config"),
        (own, "main/check.sh", "validate-frontend"),
    ]
    assert manifest_rows(releases["gpu"]) == manifest_rows(releases["main"])[:2]
    assert (releases["main"].directory / "vo" / "security.config").read_text() == "SEC_DEFAULT_ENCRYPTION = REQUIRED\n"


def test_without_staging_no_group_is_staged(tmp_path: Path) -> None:
    config = FrontendConfig.model_validate({**frontend(tmp_path).model_dump(), "staging": None})
    assert dict(stage_groups(config)) == {}
    assert not (tmp_path / "area").exists()


def test_a_missing_group_file_names_the_group_key(tmp_path: Path) -> None:
    config = frontend(tmp_path)
    (tmp_path / "src" / "main_check.sh").unlink()
    with pytest.raises(ConfigError, match=r"^groups\.main\.staging_files\[0\]\.source: cannot read "):
        stage_groups(config)


def test_a_disabled_group_with_a_missing_file_does_not_stop_staging(tmp_path: Path) -> None:
    base = frontend(tmp_path).model_dump()
    base["groups"]["off"]["staging_files"] = [{"source": str(tmp_path / "src" / "gone.sh")}]
    assert set(stage_groups(FrontendConfig.model_validate(base))) == {"main", "gpu"}


# --------------------------------------------------------------------------
# pilot_params
# --------------------------------------------------------------------------


def test_each_group_tells_its_pilots_the_pool_its_release_and_its_start(tmp_path: Path) -> None:
    config = frontend(tmp_path)
    releases = stage_groups(config)
    params = pilot_params(config, releases)
    assert params["main"] == PilotParams(
        collector=VO,
        manifest_url=releases["main"].manifest_url,
        manifest_sha256=releases["main"].manifest_sha256,
        group_start='Owner == "alice"',
    )
    assert params["gpu"] == PilotParams(
        collector=VO, manifest_url=releases["gpu"].manifest_url, manifest_sha256=releases["gpu"].manifest_sha256
    )
    assert params["main"].manifest_url != params["gpu"].manifest_url


def test_pilot_collector_wins_over_the_vo_collector(tmp_path: Path) -> None:
    config = frontend(tmp_path, pilot_collector="pilots.example.org:9620")
    assert {p.collector for p in pilot_params(config, stage_groups(config)).values()} == {"pilots.example.org:9620"}


def test_a_group_without_a_release_gets_no_manifest(tmp_path: Path) -> None:
    config = frontend(tmp_path)
    params = pilot_params(config, {})
    assert params["main"] == PilotParams(collector=VO, group_start='Owner == "alice"')
    assert params["off"] == PilotParams(collector=VO, group_start="false")


def test_what_a_frontend_tells_its_pilots_is_what_a_factory_accepts(tmp_path: Path) -> None:
    for config in (frontend(tmp_path), frontend(tmp_path, pilot_collector="[::1]:9620")):
        for name, params in pilot_params(config, stage_groups(config)).items():
            assert pilot_params_problem(params) is None, name


# --------------------------------------------------------------------------
# Through the request ad (protocol)
# --------------------------------------------------------------------------

FULL = PilotParams(
    collector=VO,
    manifest_url=f"{URL}/main/0123456789abcdef/manifest",
    manifest_sha256="ab" * 32,
    group_start='Owner == "alice" && RequestGPUs > 0',
)


def decision(group: str = "main", entry: str = "ce1") -> Decision:
    return Decision(group=group, entry=EntryAd(entry, "fac", {}), idle=3, max_pilots=10, remove=RemoveMode.IDLE)


@pytest.mark.parametrize(
    ("params", "attributes"),
    [
        (PilotParams(), {}),
        (PilotParams(collector=VO), {"UpdraftPilotCollector": VO}),
        (
            FULL,
            {
                "UpdraftPilotCollector": VO,
                "UpdraftFrontendManifestURL": FULL.manifest_url,
                "UpdraftFrontendManifestSHA256": "ab" * 32,
                "UpdraftGroupStart": FULL.group_start,
            },
        ),
        (PilotParams(collector=VO, group_start="true"), {"UpdraftPilotCollector": VO, "UpdraftGroupStart": "true"}),
    ],
)
def test_only_the_given_pilot_params_are_written_to_the_ad(params: PilotParams, attributes: dict) -> None:
    assert pilot_params_ad(params) == attributes


def request(pilot: dict[str, str]) -> dict[str, Any]:
    return {
        "UpdraftSchema": protocol.SCHEMA,
        protocol.R_FRONTEND: "vo",
        protocol.R_GROUP: "main",
        protocol.R_FACTORY: "fac",
        protocol.R_ENTRY: "ce1",
        protocol.R_IDLE: 1,
        protocol.R_MAX: 2,
        protocol.R_REMOVE: "none",
        protocol.R_REMOVE_MAX: 0,
        **pilot,
    }


@settings(max_examples=200, deadline=None)
@given(st.builds(PilotParams, st.text(max_size=20), st.text(max_size=20), st.text(max_size=20), st.text(max_size=20)))
def test_pilot_params_read_back_as_written(params: PilotParams) -> None:
    back = parse_request(request(pilot_params_ad(params)))
    assert back is not None and back.pilot == params


def test_a_request_without_pilot_params_reads_as_empty_ones_that_the_factory_refuses() -> None:
    back = parse_request(request({}))
    assert back is not None and back.pilot == PilotParams()
    assert "no UpdraftPilotCollector" in (pilot_params_problem(back.pilot) or "")


def test_a_group_request_ad_carries_the_group_pilot_params(tmp_path: Path) -> None:
    config = frontend(tmp_path)
    params = pilot_params(config, stage_groups(config))
    ads = request_ads(Plan(0.0, (decision("main"), decision("gpu"), decision("main", "ce2"))), config, 1, params)
    back = [parse_request({**ad, "AuthenticatedIdentity": "vo@lab"}) for ad in ads]
    assert [(r.group, r.entry, r.pilot) for r in back] == [
        ("main", "ce1", params["main"]),
        ("gpu", "ce1", params["gpu"]),
        ("main", "ce2", params["main"]),
    ]


def test_without_pilot_params_a_request_still_names_the_vo_pool(tmp_path: Path) -> None:
    config = frontend(tmp_path)
    back = parse_request(request_ad(decision(), config, 1, 0.0))
    assert back is not None and back.pilot == PilotParams(collector=VO)


# --------------------------------------------------------------------------
# The real pilot: factory and frontend releases, entry checks before the frontend's
# --------------------------------------------------------------------------


def test_a_pilot_runs_the_entry_checks_then_the_group_checks(tmp_path: Path, web: str) -> None:
    fe = frontend(tmp_path, url=f"{web}/frontend", pilot_collector="127.0.0.1:29618")
    params = pilot_params(fe, stage_groups(fe))["main"]
    factory = FactoryConfig.model_validate(
        {
            "name": "fac",
            "wms_collector": "127.0.0.1:9619",
            "schedd": "s@x",
            "staging": {
                "dir": str(tmp_path / "area" / "factory"),
                "url": f"{web}/factory",
                "files": [
                    {
                        "source": write(tmp_path, "entry_check.sh", "#!/bin/sh\n: entry check\nexit 0\n"),
                        "kind": "validate",
                    }
                ],
            },
            "entries": {
                "site1": {
                    "grid_type": "condor",
                    "resource": "ce x:1",
                    "glidein": {"failure_sleep_seconds": 0, "start": "true"},
                }
            },
        }
    )
    entry = factory.entries["site1"]
    release = stage_entries(factory)["site1"]
    report = dry_run_pilot(
        tmp_path, glidein_arguments(entry, release, params), dict(glidein_environment(entry, params))
    )
    assert [(v.script, v.ok) for v in report.validations] == [
        ("entry/entry_check.sh", True),
        ("frontend/vo_check.sh", True),
        ("frontend/main/check.sh", True),
    ]


def test_staging_refuses_to_publish_a_group_through_a_symlink_and_names_it(tmp_path: Path) -> None:
    """`reconfig` stages through this: a link planted for a group's folder stops it with the path, and
    nothing is written where the link leads."""
    config = frontend(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "area" / "frontend").mkdir(parents=True)
    (tmp_path / "area" / "frontend" / "gpu").symlink_to(elsewhere)
    with pytest.raises(StagingError, match=f"refusing to publish through {tmp_path / 'area' / 'frontend' / 'gpu'}"):
        stage_groups(config)
    assert list(elsewhere.iterdir()) == []
