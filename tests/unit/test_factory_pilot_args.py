"""What the factory tells a pilot: staged entry releases, glidein_startup.sh's options, its environment.

From config (and a request's PilotParams) to the words of the submit
description, and once through the real glidein_startup.sh to check that
the pilot accepts them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import htcondor2
import pytest

from updraft.errors import ConfigError
from updraft.factory.config import Entry, FactoryConfig
from updraft.factory.pilot_args import glidein_arguments, glidein_environment
from updraft.factory.render import PilotSpec, render_submit
from updraft.factory.slotad import member_slot, pilot_domains
from updraft.factory.stage import stage_entries
from updraft.protocol import PilotParams
from updraft.staging import MANIFEST, StagingRelease

from .glidein_helpers import dry_run_pilot

URL = "https://web.example.org/staging"
SHA = "0123456789abcdef" * 4
FRONTEND_SHA = "fedcba9876543210" * 4
RELEASE = StagingRelease(
    name="site1",
    manifest_url=f"{URL}/site1/0123456789abcdef/manifest",
    manifest_sha256=SHA,
    directory=Path("/srv/updraft/staging/site1/0123456789abcdef"),
)
POOL = PilotParams(collector="vo.example.org:9618")
WITH_FRONTEND = PilotParams(
    collector="vo.example.org:9618",
    manifest_url="https://vo.example.org/staging/main/fedcba9876543210/manifest",
    manifest_sha256=FRONTEND_SHA,
    group_start='Owner == "alice"',
)


def entry(**settings: Any) -> Entry:
    return Entry.model_validate({"grid_type": "condor", "resource": "ce ce.example.org:9619", **settings})


def option(args: tuple[str, ...], name: str) -> str | None:
    """The value after `name`, or None when the option is not there (it must be there at most once)."""
    assert args.count(name) <= 1, args
    return args[args.index(name) + 1] if name in args else None


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


# --------------------------------------------------------------------------
# stage_entries
# --------------------------------------------------------------------------


def write(root: Path, name: str, content: str) -> str:
    path = root / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return str(path)


def staged_factory(tmp_path: Path, url: str = URL, **top: Any) -> FactoryConfig:
    """Two entries sharing two files; site1 adds one of its own."""
    return FactoryConfig.model_validate(
        {
            "name": "fac",
            "wms_collector": "127.0.0.1:9619",
            "schedd": "s@x",
            "staging": {
                "dir": str(tmp_path / "area"),
                "url": url,
                "files": [
                    {"source": write(tmp_path, "common.sh", "#!/bin/sh\nexit 0\n"), "kind": "validate"},
                    {
                        "source": write(tmp_path, "site.config", "STARTD_ATTRS = $(STARTD_ATTRS)\n"),
                        "kind": "condor-config",
                    },
                ],
            },
            "entries": {
                "site1": {
                    "grid_type": "condor",
                    "resource": "ce x:1",
                    "staging_files": [
                        {
                            "source": write(tmp_path, "site1_check.sh", "#!/bin/sh\n: site1 check\nexit 0\n"),
                            "kind": "validate",
                            "name": "site1/check.sh",
                        }
                    ],
                },
                "site2": {"grid_type": "condor", "resource": "ce x:2"},
                "off": {"grid_type": "condor", "resource": "ce x:3", "enabled": False},
            },
            **top,
        }
    )


def manifest_rows(release: StagingRelease) -> list[tuple[str, ...]]:
    text = (release.directory / MANIFEST).read_text()
    return [tuple(line.split()) for line in text.splitlines() if line and not line.startswith("#")]


def test_every_entry_gets_its_own_release(tmp_path: Path) -> None:
    config = staged_factory(tmp_path)
    releases = stage_entries(config)
    # Disabled entries are staged as well today (unlike disabled frontend groups); only the enabled ones are pinned.
    assert {"site1", "site2"} <= set(releases) <= {"site1", "site2", "off"}
    for name, release in releases.items():
        assert release.name == name
        assert release.directory.parent == tmp_path / "area" / name
        assert release.manifest_url == f"{URL}/{name}/{release.release_id}/manifest"
        assert sha((release.directory / MANIFEST).read_bytes()) == release.manifest_sha256


def test_an_entry_gets_the_shared_files_then_its_own(tmp_path: Path) -> None:
    releases = stage_entries(staged_factory(tmp_path))
    common, config, own = (
        sha(Path(tmp_path / "src" / n).read_bytes()) for n in ("common.sh", "site.config", "site1_check.sh")
    )
    assert manifest_rows(releases["site1"]) == [
        (common, "common.sh", "validate-entry"),
        (config, "site.config", "condor-config"),
        (own, "site1/check.sh", "validate-entry"),
    ]
    assert manifest_rows(releases["site2"]) == manifest_rows(releases["site1"])[:2]
    assert (releases["site1"].directory / "site1" / "check.sh").read_text() == "#!/bin/sh\n: site1 check\nexit 0\n"


def test_staging_again_gives_the_same_releases(tmp_path: Path) -> None:
    config = staged_factory(tmp_path)
    assert dict(stage_entries(config)) == dict(stage_entries(config))
    assert len([p for p in (tmp_path / "area" / "site1").iterdir()]) == 1


def test_a_changed_source_gives_the_entries_a_new_release(tmp_path: Path) -> None:
    config = staged_factory(tmp_path)
    before = stage_entries(config)
    write(tmp_path, "common.sh", "#!/bin/sh\nexit 1\n")
    after = stage_entries(config)
    assert all(after[name].manifest_sha256 != before[name].manifest_sha256 for name in before)


def test_without_staging_nothing_is_staged(tmp_path: Path) -> None:
    config = FactoryConfig.model_validate({**staged_factory(tmp_path).model_dump(), "staging": None})
    assert dict(stage_entries(config)) == {}
    assert not (tmp_path / "area").exists()


def test_a_missing_entry_file_names_the_entry_key(tmp_path: Path) -> None:
    config = staged_factory(tmp_path)
    (tmp_path / "src" / "site1_check.sh").unlink()
    with pytest.raises(ConfigError, match=r"^entries\.site1\.staging_files\[0\]\.source: cannot read "):
        stage_entries(config)


# --------------------------------------------------------------------------
# glidein_arguments
# --------------------------------------------------------------------------


def test_a_default_entry_with_a_release_gets_exactly_these_arguments() -> None:
    assert glidein_arguments(entry(), RELEASE, POOL) == (
        "--manifest-url",
        "https://web.example.org/staging/site1/0123456789abcdef/manifest",
        "--manifest-sha256",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "--collector",
        "vo.example.org:9618",
        "--max-walltime",
        "86400",
        "--max-job-time",
        "0",
        "--shutdown-margin",
        "300",
        "--spread",
        "0",
        "--max-idle",
        "1200",
        "--idle-tail",
        "300",
        "--failure-sleep",
        "600",
    )


def test_a_frontend_manifest_follows_the_entry_manifest() -> None:
    args = glidein_arguments(entry(), RELEASE, WITH_FRONTEND)
    assert args[:10] == (
        "--manifest-url",
        RELEASE.manifest_url,
        "--manifest-sha256",
        SHA,
        "--frontend-manifest-url",
        "https://vo.example.org/staging/main/fedcba9876543210/manifest",
        "--frontend-manifest-sha256",
        FRONTEND_SHA,
        "--collector",
        "vo.example.org:9618",
    )


@pytest.mark.parametrize(
    ("release", "params", "absent"),
    [
        (RELEASE, POOL, ("--frontend-manifest-url", "--frontend-manifest-sha256")),
        (None, POOL, ("--manifest-url", "--manifest-sha256", "--frontend-manifest-url")),
        (RELEASE, PilotParams(), ("--collector", "--frontend-manifest-url")),
    ],
)
def test_options_not_given_are_left_out(release, params: PilotParams, absent: tuple[str, ...]) -> None:
    args = glidein_arguments(entry(), release, params)
    assert not set(absent) & set(args)
    assert option(args, "--max-walltime") == "86400"


def test_entry_settings_become_their_options() -> None:
    args = glidein_arguments(
        entry(
            max_walltime_seconds=7200,
            glidein={
                "max_job_seconds": 3600,
                "shutdown_margin_seconds": 120,
                "retire_spread_seconds": 600,
                "max_idle_seconds": 900,
                "idle_tail_seconds": 60,
                "failure_sleep_seconds": 30,
            },
        ),
        RELEASE,
        POOL,
    )
    assert {
        name: option(args, name)
        for name in (
            "--max-walltime",
            "--max-job-time",
            "--shutdown-margin",
            "--spread",
            "--max-idle",
            "--idle-tail",
            "--failure-sleep",
        )
    } == {
        "--max-walltime": "7200",
        "--max-job-time": "3600",
        "--shutdown-margin": "120",
        "--spread": "600",
        "--max-idle": "900",
        "--idle-tail": "60",
        "--failure-sleep": "30",
    }


TARBALL = {"url": "https://downloads.example.org/condor-24.0.tar.gz", "sha256": "AB" * 32}


@pytest.mark.parametrize(
    ("glidein", "expected"),
    [
        ({}, {"--condor-dir": None, "--condor-tarball-url": None, "--condor-tarball-sha256": None}),
        ({"condor_dir": "/opt/condor"}, {"--condor-dir": "/opt/condor", "--condor-tarball-url": None}),
        (
            {"condor_tarball": TARBALL},
            {"--condor-dir": None, "--condor-tarball-url": TARBALL["url"], "--condor-tarball-sha256": "ab" * 32},
        ),
        (
            {"condor_dir": "/opt/condor", "condor_tarball": TARBALL},
            {"--condor-dir": "/opt/condor", "--condor-tarball-url": None, "--condor-tarball-sha256": None},
        ),
    ],
    ids=["neither", "dir", "tarball", "dir-wins"],
)
def test_an_installed_condor_wins_over_a_tarball(glidein: dict, expected: dict) -> None:
    args = glidein_arguments(entry(glidein=glidein), RELEASE, POOL)
    assert {name: option(args, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("glidein", "jobs", "window"),
    [
        ({}, None, None),
        ({"blackhole_window_seconds": 900}, None, None),
        ({"blackhole_jobs": 5}, "5", "600"),
        ({"blackhole_jobs": 1, "blackhole_window_seconds": 60}, "1", "60"),
    ],
)
def test_black_hole_detection_only_when_blackhole_jobs_is_set(
    glidein: dict, jobs: str | None, window: str | None
) -> None:
    args = glidein_arguments(entry(glidein=glidein), RELEASE, POOL)
    assert (option(args, "--blackhole-jobs"), option(args, "--blackhole-window")) == (jobs, window)


@pytest.mark.parametrize(("nodes", "given"), [(1, None), (2, "/local/scratch")])
def test_node_scratch_only_for_multi_node_pilots(nodes: int, given: str | None) -> None:
    settings = {"node_scratch": "/local/scratch"}
    args = glidein_arguments(entry(attributes={"GLIDEIN_Nodes": nodes}, glidein=settings), RELEASE, POOL)
    assert option(args, "--node-scratch") == given


@pytest.mark.parametrize(
    ("attributes", "glidein", "nodes", "launcher"),
    [
        ({}, {}, None, None),
        ({"GLIDEIN_Nodes": 1}, {"node_launcher": "srun"}, None, None),
        ({"GLIDEIN_Nodes": 4}, {}, "4", None),
        ({"GLIDEIN_Nodes": 4}, {"node_launcher": "srun --ntasks-per-node=1"}, "4", "srun --ntasks-per-node=1"),
        ({"GLIDEIN_Nodes": "4"}, {}, None, None),
        ({"GLIDEIN_Nodes": True}, {}, None, None),
        ({"GLIDEIN_Nodes": 0}, {}, None, None),
        ({"GLIDEIN_Nodes": -3}, {}, None, None),
    ],
    ids=["absent", "one", "four", "four-launcher", "text", "bool", "zero", "negative"],
)
def test_nodes_only_for_more_than_one_node_per_pilot(
    attributes: dict, glidein: dict, nodes: str | None, launcher: str | None
) -> None:
    args = glidein_arguments(entry(attributes=attributes, glidein=glidein), RELEASE, POOL)
    assert (option(args, "--nodes"), option(args, "--node-launcher")) == (nodes, launcher)


@pytest.mark.parametrize(
    ("extra", "tail"),
    [
        ("", ()),
        ("--dry-run", ("--dry-run",)),
        ("--work-dir '/scratch/my pilot' --x=\"a b\"", ("--work-dir", "/scratch/my pilot", "--x=a b")),
    ],
)
def test_extra_arguments_are_split_shell_like_and_come_last(extra: str, tail: tuple[str, ...]) -> None:
    base = glidein_arguments(entry(glidein={"blackhole_jobs": 2}), RELEASE, WITH_FRONTEND)
    args = glidein_arguments(entry(glidein={"blackhole_jobs": 2}), RELEASE, WITH_FRONTEND, extra)
    assert args == (*base, *tail)


def test_the_same_inputs_give_the_same_arguments() -> None:
    e = entry(attributes={"GLIDEIN_Nodes": 2}, glidein={"blackhole_jobs": 3, "condor_dir": "/opt/c"})
    assert glidein_arguments(e, RELEASE, WITH_FRONTEND, "-x") == glidein_arguments(e, RELEASE, WITH_FRONTEND, "-x")


# --------------------------------------------------------------------------
# glidein_environment
# --------------------------------------------------------------------------


def test_environment_has_the_advertised_glidein_attributes_then_settings_then_pilot_attributes() -> None:
    e = entry(
        attributes={"GLIDEIN_Site": "Site1", "GLIDEIN_CPUS": 4, "UpdraftRank": 3, "Glidein_Lower": "x"},
        memory_mb=8000,
        glidein={"start": "TARGET.RequestGPUs =?= undefined"},
        pilot_attributes={"GLIDEIN_Site": "Site 1", "GLIDEIN_Debug": True},
    )
    assert glidein_environment(e, WITH_FRONTEND) == (
        ("GLIDEIN_Site", "Site 1"),
        ("GLIDEIN_CPUS", 4),
        ("GLIDEIN_MaxMemMBs", 8000),
        ("GLIDEIN_Slots_Layout", "partitionable"),
        ("GLIDEIN_Entry_Start", "TARGET.RequestGPUs =?= undefined"),
        ("GLIDECLIENT_Group_Start", 'Owner == "alice"'),
        ("GLIDEIN_Debug", True),
    )


def test_a_default_entry_only_sets_the_slot_layout() -> None:
    assert glidein_environment(entry(), POOL) == (("GLIDEIN_Slots_Layout", "partitionable"),)


@pytest.mark.parametrize(
    ("attributes", "memory_mb", "expected"),
    [
        ({}, None, None),
        ({}, 8000, 8000),
        ({"GLIDEIN_MaxMemMBs": 4000}, 8000, 4000),
        ({"GLIDEIN_MaxMemMBs": 4000}, None, 4000),
    ],
)
def test_memory_mb_is_the_pilot_memory_unless_the_entry_advertises_one(
    attributes: dict, memory_mb: int | None, expected: int | None
) -> None:
    env = dict(glidein_environment(entry(attributes=attributes, memory_mb=memory_mb), POOL))
    assert env.get("GLIDEIN_MaxMemMBs") == expected


def test_only_glidein_attributes_reach_the_pilot() -> None:
    env = dict(
        glidein_environment(
            entry(attributes={"GLIDEIN_Site": "S", "GLIDEIN_Nodes": 2, "Site": "S", "UpdraftX": 1, "MyGLIDEIN_Y": 1}),
            POOL,
        )
    )
    assert set(env) == {"GLIDEIN_Site", "GLIDEIN_Nodes", "GLIDEIN_Slots_Layout"}


@pytest.mark.parametrize(
    ("glidein", "params", "expected"),
    [
        ({"slots_layout": "fixed"}, POOL, {"GLIDEIN_Slots_Layout": "fixed"}),
        (
            {"start": "TARGET.x > 1"},
            POOL,
            {"GLIDEIN_Slots_Layout": "partitionable", "GLIDEIN_Entry_Start": "TARGET.x > 1"},
        ),
        (
            {},
            PilotParams(collector="vo:1", group_start='Owner == "bob"'),
            {"GLIDEIN_Slots_Layout": "partitionable", "GLIDECLIENT_Group_Start": 'Owner == "bob"'},
        ),
        (
            {"start": "a", "slots_layout": "fixed"},
            PilotParams(group_start="b"),
            {"GLIDEIN_Slots_Layout": "fixed", "GLIDEIN_Entry_Start": "a", "GLIDECLIENT_Group_Start": "b"},
        ),
    ],
    ids=["fixed-slots", "entry-start", "group-start", "both-starts"],
)
def test_slot_layout_and_start_expressions(glidein: dict, params: PilotParams, expected: dict) -> None:
    assert dict(glidein_environment(entry(glidein=glidein), params)) == expected


def test_pilot_attributes_win_over_everything_else() -> None:
    e = entry(
        attributes={"GLIDEIN_Site": "Advertised"},
        memory_mb=8000,
        glidein={"start": "entry", "slots_layout": "fixed"},
        pilot_attributes={
            "GLIDEIN_Site": "Mine",
            "GLIDEIN_MaxMemMBs": 1000,
            "GLIDEIN_Slots_Layout": "partitionable",
            "GLIDEIN_Entry_Start": "mine",
            "GLIDECLIENT_Group_Start": "mine too",
        },
    )
    assert dict(glidein_environment(e, WITH_FRONTEND)) == {
        "GLIDEIN_Site": "Mine",
        "GLIDEIN_MaxMemMBs": 1000,
        "GLIDEIN_Slots_Layout": "partitionable",
        "GLIDEIN_Entry_Start": "mine",
        "GLIDECLIENT_Group_Start": "mine too",
    }


# --------------------------------------------------------------------------
# Into the submit description
# --------------------------------------------------------------------------


def new_syntax_words(value: str) -> list[str]:
    """Split a new-syntax ``arguments``/``environment`` value the way condor_submit does."""
    assert value[0] == value[-1] == '"', value
    text = value[1:-1].replace('""', '"')
    words: list[str] = []
    word, in_word, quoted, i = "", False, False, 0
    while i < len(text):
        ch = text[i]
        if quoted and ch == "'" and text[i + 1 : i + 2] == "'":
            word, i = word + "'", i + 2
            continue
        if ch == "'":
            quoted, in_word = not quoted, True
        elif ch in " \t" and not quoted:
            if in_word:
                words.append(word)
            word, in_word = "", False
        else:
            word, in_word = word + ch, True
        i += 1
    assert not quoted, value
    if in_word:
        words.append(word)
    return words


RENDER_FACTORY = FactoryConfig.model_validate(
    {
        "name": "fac",
        "wms_collector": "127.0.0.1:9619",
        "schedd": "s@x",
        "entries": {
            "site1": {
                "grid_type": "condor",
                "resource": "ce ce.example.org:9619",
                "attributes": {"GLIDEIN_Site": "Site 1", "GLIDEIN_CPUS": 4},
                "memory_mb": 8000,
                "glidein": {"start": "TARGET.RequestCpus <= 4", "blackhole_jobs": 3},
                "pilot_attributes": {"GLIDEIN_Debug": True},
            }
        },
    }
)


def rendered(params: PilotParams) -> dict[str, str]:
    e = RENDER_FACTORY.entries["site1"]
    spec = PilotSpec(
        frontend="vo",
        group="main",
        security_class="default",
        credential_id="vo.main",
        executable=Path("/usr/libexec/updraft/glidein_startup.sh"),
        work_dir=Path("/var/lib/updraft/factory/site1/vo"),
        arguments=glidein_arguments(e, RELEASE, params),
        environment=glidein_environment(e, params),
    )
    return render_submit(RENDER_FACTORY, "site1", e, spec)


def test_the_environment_command_carries_the_identity_then_the_settings() -> None:
    assert new_syntax_words(rendered(WITH_FRONTEND)["environment"]) == [
        "UPDRAFT_FACTORY=fac",
        "UPDRAFT_ENTRY=site1",
        "UPDRAFT_FRONTEND=vo",
        "UPDRAFT_GROUP=main",
        "UPDRAFT_SECURITY_CLASS=default",
        "UPDRAFT_CREDENTIAL_ID=vo.main",
        "UPDRAFT_JOB_ID=$(Cluster).$(Process)",
        "GLIDEIN_Debug=true",
        "GLIDEIN_Site=Site 1",
        "GLIDEIN_CPUS=4",
        "GLIDEIN_MaxMemMBs=8000",
        "GLIDEIN_Slots_Layout=partitionable",
        "GLIDEIN_Entry_Start=TARGET.RequestCpus <= 4",
        'GLIDECLIENT_Group_Start=Owner == "alice"',
    ]


def test_the_arguments_command_carries_every_option_with_the_manifest_digests() -> None:
    description = rendered(WITH_FRONTEND)
    words = new_syntax_words(description["arguments"])
    assert words == list(glidein_arguments(RENDER_FACTORY.entries["site1"], RELEASE, WITH_FRONTEND))
    assert words[words.index("--manifest-sha256") + 1] == SHA
    assert words[words.index("--frontend-manifest-sha256") + 1] == FRONTEND_SHA
    assert f"--manifest-sha256 {SHA}" in description["arguments"]
    assert words[-4:] == ["--blackhole-jobs", "3", "--blackhole-window", "600"]


def test_htcondor_reads_the_description_with_the_pilot_settings() -> None:
    submit = htcondor2.Submit(rendered(WITH_FRONTEND))
    assert f"--manifest-sha256 {SHA}" in submit.expand("arguments")
    assert "GLIDEIN_MaxMemMBs=8000" in submit.expand("environment")


# --------------------------------------------------------------------------
# The real pilot accepts what the factory writes
# --------------------------------------------------------------------------


def test_the_pilot_verifies_a_staged_release_given_the_factory_arguments(tmp_path: Path, web: str) -> None:
    config = staged_factory(tmp_path, url=web)
    e = Entry.model_validate(
        {
            **config.entries["site1"].model_dump(),
            "glidein": {"failure_sleep_seconds": 0},
            "attributes": {"GLIDEIN_Site": "Site1"},
        }
    )
    release = stage_entries(config)["site1"]
    params = PilotParams(collector="127.0.0.1:29618")
    report = dry_run_pilot(tmp_path, glidein_arguments(e, release, params), dict(glidein_environment(e, params)))
    assert [v.ok for v in report.validations] == [True, True]
    assert len(report.validations) == 2


def test_the_pilots_startd_gets_the_cores_memory_and_domains_its_entry_ad_announces(tmp_path: Path, web: str) -> None:
    config = staged_factory(tmp_path, url=web)
    e = Entry.model_validate(
        {
            **config.entries["site1"].model_dump(),
            "glidein": {"failure_sleep_seconds": 0},
            "attributes": {"GLIDEIN_CPUS": 3},
            "memory_mb": 3000,
        }
    )
    params = PilotParams(collector="127.0.0.1:29618")
    domains = pilot_domains("fac", "site1", e)
    args = glidein_arguments(e, stage_entries(config)["site1"], params, domains=domains)
    dry_run_pilot(tmp_path, args, dict(glidein_environment(e, params)))
    written = (tmp_path / "updraft-glidein" / "condor" / "condor_config").read_text().splitlines()
    slot = member_slot("fac", "site1", e)
    for line in (
        f"NUM_CPUS = {slot['Cpus']}",
        f"MEMORY = {slot['Memory']}",
        f"FILESYSTEM_DOMAIN = {slot['FileSystemDomain']}",
        f"UID_DOMAIN = {slot['UidDomain']}",
        'GLIDEIN_Site = "site1"',
        f"GLIDEIN_Max_Walltime = {slot['GLIDEIN_Max_Walltime']}",
    ):
        assert line in written, line
    assert slot["FileSystemDomain"] == "site1.fac.updraft.invalid"
