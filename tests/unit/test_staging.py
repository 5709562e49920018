"""Staging areas: manifest lines the pilot accepts, content-addressed releases, config checks.

The pilot's rules for a manifest line are the ones in glidein/README.md,
section "Manifest"; `pilot_reads` below applies them the way
glidein_startup.sh does, so the property test checks Updraft's writer
against the reader it has to satisfy.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft.errors import ConfigError
from updraft.factory.config import load_factory_config
from updraft.staging import (
    MANIFEST,
    FileKind,
    Origin,
    StagedFile,
    StagedFileConfig,
    StagingError,
    StagingRelease,
    StagingSettings,
    configured_files,
    manifest_path_problem,
    manifest_text,
    pilot_kind,
    publish,
    read_files,
)

URL = "https://web.example.org/staging"
PILOT_KINDS = ("validate-entry", "validate-frontend", "condor-config", "file")
_PILOT_SHA = re.compile(r"[0-9a-f]{64}")
_PILOT_PATH = re.compile(r"[A-Za-z0-9._/-]+")


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def area(tmp_path: Path, **changes: object) -> StagingSettings:
    return StagingSettings.model_validate({"dir": str(tmp_path / "area"), "url": URL, **changes})


def staged(path: str, content: bytes = b"x", kind: str = "file") -> StagedFile:
    return StagedFile(path, kind, content)


def lines_of(text: str) -> list[str]:
    """The manifest's file lines (what the pilot does not skip)."""
    return [line for line in text.split("\n") if line.strip() and not line.strip().startswith("#")]


def pilot_line_problem(line: str) -> str | None:
    """Why the pilot refuses one manifest line (glidein/README.md "Manifest"), or None."""
    fields = line.split()
    if len(fields) != 3:
        return f"{len(fields)} fields"
    digest, path, kind = fields
    if not _PILOT_SHA.fullmatch(digest):
        return "bad sha256"
    if path.startswith("/") or not _PILOT_PATH.fullmatch(path) or ".." in path.split("/"):
        return "path not allowed"
    if kind not in PILOT_KINDS:
        return "unknown kind"
    return None


def pilot_reads(text: str) -> list[tuple[str, str, str]]:
    """(sha256, path, kind) per line as the pilot reads the manifest; AssertionError for a line it refuses."""
    read = []
    for number, line in enumerate(text.split("\n"), start=1):
        trimmed = line.strip()
        if not trimmed or trimmed.startswith("#"):
            continue
        problem = pilot_line_problem(trimmed)
        assert problem is None, f"manifest line {number}: {problem}: {line!r}"
        digest, path, kind = trimmed.split()
        read.append((digest, path, kind))
    return read


def releases_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def age(path: Path, seconds: float) -> None:
    """Set `path`'s mtime, so the order of releases does not hang on the clock's resolution."""
    os.utime(path, (seconds, seconds))


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


# --------------------------------------------------------------------------
# manifest_text
# --------------------------------------------------------------------------


def test_each_file_is_one_sha_path_kind_line_in_the_order_given() -> None:
    script, config = b"#!/bin/sh\nexit 0\n", b"SEC_DEFAULT_AUTHENTICATION = REQUIRED\n"
    files = [
        staged("z_last_name_first.sh", script, "validate-entry"),
        staged("vo/security.config", config, "condor-config"),
        staged("empty", b"", "file"),
    ]
    text = manifest_text(files)
    assert lines_of(text) == [
        f"{hashlib.sha256(script).hexdigest()}  z_last_name_first.sh  validate-entry",
        f"{hashlib.sha256(config).hexdigest()}  vo/security.config  condor-config",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  empty  file",
    ]
    assert text.startswith("#") and text.endswith("\n")


def test_the_sha_of_a_line_is_the_file_content_digest() -> None:
    content = bytes(range(256))
    (line,) = lines_of(manifest_text([staged("blob.bin", content)]))
    assert line.split()[0] == hashlib.sha256(content).hexdigest() == staged("blob.bin", content).sha256


def test_an_empty_list_gives_a_manifest_the_pilot_reads_as_no_files() -> None:
    assert pilot_reads(manifest_text([])) == []


@pytest.mark.parametrize(
    ("paths", "first", "second"),
    [
        (["a.sh", "b.sh", "a.sh"], 1, 3),
        (["x", "dir/y", "dir/y"], 2, 3),
    ],
)
def test_a_path_listed_twice_is_refused_naming_both_positions(paths: list[str], first: int, second: int) -> None:
    duplicate = paths[second - 1]
    with pytest.raises(StagingError) as caught:
        manifest_text([staged(p, p.encode()) for p in paths])
    assert str(caught.value) == f"{duplicate!r} is listed twice (files {first} and {second})"


def test_the_same_content_under_two_paths_is_fine() -> None:
    assert len(lines_of(manifest_text([staged("a", b"same"), staged("b", b"same")]))) == 2


BAD_PATHS = [
    ("/etc/passwd", "use only letters"),
    ("../escape.sh", "'.' and '..' are not allowed"),
    ("dir/../../escape.sh", "'.' and '..' are not allowed"),
    ("..", "'.' and '..' are not allowed"),
    ("./x.sh", "'.' and '..' are not allowed"),
    ("my script.sh", "use only letters"),
    ("tab\there", "use only letters"),
    ("line\nbreak", "use only letters"),
    ("dir//x.sh", "use only letters"),
    ("dir/", "use only letters"),
    ("", "use only letters"),
    ("caf\u00e9.sh", "use only letters"),
    ("x;rm", "use only letters"),
    ("manifest", "'manifest' is the manifest's own name"),
]


@pytest.mark.parametrize(("path", "problem"), BAD_PATHS, ids=[repr(p) for p, _ in BAD_PATHS])
def test_a_path_the_pilot_must_not_get_is_refused_naming_the_file(path: str, problem: str) -> None:
    assert problem in (manifest_path_problem(path) or "")
    with pytest.raises(StagingError) as caught:
        manifest_text([staged("fine.sh"), staged(path)])
    assert str(caught.value).startswith(f"file 2 ({path!r}): ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "path",
    ["x", "check_disk.sh", "entry/site-1/check.sh", ".hidden", "a..b", "-", "vo/manifest", "manifest.d/x", "A_b-C.9"],
)
def test_plain_relative_paths_are_accepted(path: str) -> None:
    assert manifest_path_problem(path) is None
    assert pilot_reads(manifest_text([staged(path)]))[0][1] == path


_PATH_CHARS = "ab0._-/"
any_paths = st.one_of(
    st.lists(st.text(st.sampled_from("abZ09._-"), min_size=1, max_size=6), min_size=1, max_size=3).map("/".join),
    st.text(st.sampled_from(_PATH_CHARS + " \t\n#\\~\u00e9"), max_size=10),
    st.text(max_size=10),
    st.sampled_from(["manifest", "..", ".", "a/..", "/abs"]),
)
staged_files = st.builds(StagedFile, any_paths, st.sampled_from(PILOT_KINDS), st.binary(max_size=32))


@settings(max_examples=300, deadline=None)
@given(st.lists(staged_files, max_size=6))
def test_every_manifest_written_is_read_by_the_pilot_as_the_files_given(files: list[StagedFile]) -> None:
    try:
        text = manifest_text(files)
    except StagingError:
        paths = [f.path for f in files]
        nested = any(a.startswith(b + "/") for a in paths for b in paths)
        assert len(set(paths)) < len(paths) or nested or any(manifest_path_problem(p) for p in paths)
        return
    assert pilot_reads(text) == [(f.sha256, f.path, f.kind) for f in files]


@settings(max_examples=300, deadline=None)
@given(any_paths)
def test_a_path_updraft_accepts_is_one_the_pilot_accepts(path: str) -> None:
    if manifest_path_problem(path) is None:
        assert pilot_line_problem(f"{'0' * 64}  {path}  file") is None


# --------------------------------------------------------------------------
# publish
# --------------------------------------------------------------------------

FILES = [
    staged("check.sh", b"#!/bin/sh\nexit 0\n", "validate-entry"),
    staged("conf/site.config", b"STARTD_ATTRS = $(STARTD_ATTRS) Site\n", "condor-config"),
    staged("data/deep/tools.tar.gz", bytes(range(200)), "file"),
]


def test_a_release_is_the_manifest_and_files_under_name_and_manifest_digest(tmp_path: Path) -> None:
    settings_ = area(tmp_path)
    release = publish(settings_, "site1", FILES)
    digest = sha(manifest_text(FILES))
    assert release == StagingRelease(
        name="site1",
        manifest_url=f"{URL}/site1/{digest[:16]}/manifest",
        manifest_sha256=digest,
        directory=tmp_path / "area" / "site1" / digest[:16],
    )
    assert release.release_id == digest[:16]
    written = (release.directory / MANIFEST).read_bytes()
    assert hashlib.sha256(written).hexdigest() == release.manifest_sha256
    assert written.decode() == manifest_text(FILES)
    for f in FILES:
        assert (release.directory / f.path).read_bytes() == f.content
    assert sorted(str(p.relative_to(release.directory)) for p in release.directory.rglob("*") if p.is_file()) == sorted(
        [MANIFEST, *(f.path for f in FILES)]
    )


def test_every_listed_file_sits_next_to_the_manifest_at_its_path(tmp_path: Path) -> None:
    """The pilot fetches the manifest URL's folder plus each path."""
    release = publish(area(tmp_path), "site1", FILES)
    folder_url = release.manifest_url.rsplit("/", 1)[0]
    for digest, path, _ in pilot_reads((release.directory / MANIFEST).read_text()):
        relative = f"{folder_url}/{path}".removeprefix(f"{URL}/")
        assert sha((tmp_path / "area" / relative).read_bytes()) == digest


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_listed_files_are_644_and_release_folders_755_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    with umask(mask):
        release = publish(area(tmp_path), "site1", FILES)
    folders = [release.directory, *(p for p in release.directory.rglob("*") if p.is_dir())]
    assert {mode(p) for p in folders} == {0o755}
    assert {mode(release.directory / f.path) for f in FILES} == {0o644}


def test_the_manifest_is_readable_by_the_web_server(tmp_path: Path) -> None:
    with umask(0o022):
        release = publish(area(tmp_path), "site1", FILES)
    assert mode(release.directory / MANIFEST) == 0o644
    assert mode(release.directory.parent) & 0o005 == 0o005


def test_a_release_is_readable_by_the_web_server_under_a_private_umask(tmp_path: Path) -> None:
    with umask(0o077):
        release = publish(area(tmp_path), "site1", FILES)
    assert mode(release.directory / MANIFEST) == 0o644
    assert mode(release.directory.parent) & 0o005 == 0o005


def test_publishing_the_same_files_again_returns_the_same_release_and_rewrites_nothing(tmp_path: Path) -> None:
    settings_ = area(tmp_path)
    first = publish(settings_, "site1", FILES)
    old = 1_000_000
    for path in [first.directory / MANIFEST, first.directory / "check.sh", first.directory]:
        age(path, old)
    again = publish(settings_, "site1", [StagedFile(f.path, f.kind, bytes(f.content)) for f in FILES])
    assert again == first
    assert [(first.directory / name).stat().st_mtime for name in (MANIFEST, "check.sh")] == [old] * 2
    assert first.directory.stat().st_mtime > old  # touched: the newest release as far as pruning goes
    assert releases_in(tmp_path / "area" / "site1") == {first.release_id}


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda fs: [fs[0], fs[1], staged(fs[2].path, b"new", fs[2].kind)], id="content"),
        pytest.param(lambda fs: [fs[1], fs[0], fs[2]], id="order"),
        pytest.param(lambda fs: [fs[0], fs[1], staged(fs[2].path, fs[2].content, "validate-frontend")], id="kind"),
        pytest.param(lambda fs: [*fs, staged("more", b"")], id="one-more-file"),
    ],
)
def test_a_change_gives_a_new_release_and_keeps_the_old_one_untouched(tmp_path: Path, change) -> None:
    settings_ = area(tmp_path)
    old = publish(settings_, "site1", FILES)
    old_manifest = (old.directory / MANIFEST).read_bytes()
    new = publish(settings_, "site1", change(FILES))
    assert new.release_id != old.release_id and new.manifest_sha256 != old.manifest_sha256
    assert releases_in(tmp_path / "area" / "site1") == {old.release_id, new.release_id}
    assert (old.directory / MANIFEST).read_bytes() == old_manifest
    assert sha(old_manifest) == old.manifest_sha256
    assert all((old.directory / f.path).read_bytes() == f.content for f in FILES)


def test_names_are_separate_areas(tmp_path: Path) -> None:
    settings_ = area(tmp_path)
    a = publish(settings_, "site1", FILES)
    b = publish(settings_, "site2", FILES)
    assert a.manifest_sha256 == b.manifest_sha256
    assert (a.directory.parent.name, b.directory.parent.name) == ("site1", "site2")
    assert b.manifest_url == f"{URL}/site2/{b.release_id}/manifest"


def publish_versions(settings_: StagingSettings, count: int, start: int = 0) -> list[StagingRelease]:
    """`count` releases of 'site1', each newer (by mtime) than the one before."""
    releases = []
    for n in range(start, start + count):
        release = publish(settings_, "site1", [staged("v", str(n).encode())])
        age(release.directory, 1_000_000 + 100 * n)
        releases.append(release)
    return releases


@pytest.mark.parametrize("keep", [1, 2, 3, 5])
def test_only_the_newest_keep_releases_are_kept(tmp_path: Path, keep: int) -> None:
    releases = publish_versions(area(tmp_path, keep_releases=keep), 6)
    assert releases_in(tmp_path / "area" / "site1") == {r.release_id for r in releases[-keep:]}


def test_the_current_release_is_never_pruned_even_when_others_look_newer(tmp_path: Path) -> None:
    settings_ = area(tmp_path, keep_releases=2)
    _a, b, c = publish_versions(settings_, 3)  # keep 2: a is gone already
    for r in (b, c):
        age(r.directory, 4_000_000_000)  # from the future: newer than the next release
    current = publish(settings_, "site1", [staged("v", b"current")])
    assert releases_in(tmp_path / "area" / "site1") == {c.release_id, current.release_id}
    assert sha((current.directory / MANIFEST).read_bytes()) == current.manifest_sha256


def test_keep_one_leaves_only_the_current_release(tmp_path: Path) -> None:
    *_, last = publish_versions(area(tmp_path, keep_releases=1), 3)
    assert releases_in(tmp_path / "area" / "site1") == {last.release_id}


def test_releases_of_other_names_are_not_pruned(tmp_path: Path) -> None:
    settings_ = area(tmp_path, keep_releases=1)
    other = publish(settings_, "site2", FILES)
    publish_versions(settings_, 3)
    assert releases_in(tmp_path / "area" / "site2") == {other.release_id}


def test_a_release_published_again_counts_as_the_newest_when_pruning(tmp_path: Path) -> None:
    settings_ = area(tmp_path, keep_releases=2)
    a, _b = publish_versions(settings_, 2)
    again = publish(settings_, "site1", [staged("v", b"0")])  # back to a: pilots are told about a again
    assert again == a
    (c,) = publish_versions(settings_, 1, start=9)
    assert releases_in(tmp_path / "area" / "site1") == {a.release_id, c.release_id}


def test_a_leftover_temporary_folder_does_not_count_as_a_release(tmp_path: Path) -> None:
    settings_ = area(tmp_path, keep_releases=2)
    (first,) = publish_versions(settings_, 1)
    leftover = tmp_path / "area" / "site1" / ".0123456789abcdef.99999.tmp"
    (leftover / "half").mkdir(parents=True)
    age(leftover, 4_000_000_000)
    (second,) = publish_versions(settings_, 1, start=1)
    assert releases_in(tmp_path / "area" / "site1") == {first.release_id, second.release_id}


def test_a_leftover_temporary_folder_of_the_same_release_does_not_stop_it(tmp_path: Path) -> None:
    settings_ = area(tmp_path)
    release_id = sha(manifest_text(FILES))[:16]
    leftover = tmp_path / "area" / "site1" / f".{release_id}.99999.tmp"
    leftover.mkdir(parents=True)
    (leftover / "check.sh").write_bytes(b"half")
    release = publish(settings_, "site1", FILES)
    assert release.release_id == release_id
    assert (release.directory / "check.sh").read_bytes() == FILES[0].content
    assert sha((release.directory / MANIFEST).read_bytes()) == release.manifest_sha256


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda d: (d / MANIFEST).unlink(), id="manifest-missing"),
        pytest.param(lambda d: (d / MANIFEST).write_text("# edited by hand\n"), id="manifest-edited"),
        pytest.param(lambda d: (d / MANIFEST).write_bytes(b"\xff\xfe"), id="manifest-not-text"),
    ],
)
def test_a_release_folder_without_its_manifest_is_written_again(tmp_path: Path, damage) -> None:
    settings_ = area(tmp_path)
    release = publish(settings_, "site1", FILES)
    damage(release.directory)
    (release.directory / "stray").write_text("not listed")
    assert publish(settings_, "site1", FILES) == release
    assert (release.directory / MANIFEST).read_text() == manifest_text(FILES)
    assert not (release.directory / "stray").exists()


def test_a_staging_dir_that_cannot_be_written_is_a_staging_error(tmp_path: Path) -> None:
    blocker = tmp_path / "area"
    blocker.write_text("a file where the staging folder should be")
    with pytest.raises(StagingError, match=re.escape(f"cannot write the staging area {blocker / 'site1'}")):
        publish(area(tmp_path), "site1", FILES)


def test_a_path_that_is_also_a_folder_of_another_is_a_staging_error(tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="one would be a file inside the other"):
        publish(area(tmp_path), "site1", [staged("a"), staged("a/b")])
    assert not (tmp_path / "area" / "site1").exists() or not list((tmp_path / "area" / "site1").iterdir())


def test_a_bad_manifest_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="listed twice"):
        publish(area(tmp_path), "site1", [staged("a"), staged("a")])
    assert not (tmp_path / "area").exists()


# --------------------------------------------------------------------------
# read_files / configured_files
# --------------------------------------------------------------------------


def source(tmp_path: Path, name: str, content: bytes = b"x") -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_configured_files_are_the_shared_then_the_own_each_with_its_config_key(tmp_path: Path) -> None:
    shared = [StagedFileConfig(source=Path("/s/a")), StagedFileConfig(source=Path("/s/b"))]
    own = [StagedFileConfig(source=Path("/o/c"))]
    settings_ = area(tmp_path, files=[f.model_dump() for f in shared])
    assert configured_files(settings_, own, "entries.site1.staging_files") == [
        ("staging.files[0]", shared[0]),
        ("staging.files[1]", shared[1]),
        ("entries.site1.staging_files[0]", own[0]),
    ]


@pytest.mark.parametrize(
    ("missing_shared", "missing_own", "key"),
    [
        (False, True, "entries.site1.staging_files[0].source"),
        (True, False, "staging.files[1].source"),
    ],
)
def test_a_missing_source_names_its_config_key(
    tmp_path: Path, missing_shared: bool, missing_own: bool, key: str
) -> None:
    gone = tmp_path / "src" / "gone.sh"
    shared = [
        {"source": str(source(tmp_path, "ok.sh"))},
        {"source": str(gone if missing_shared else source(tmp_path, "b"))},
    ]
    own = [StagedFileConfig(source=gone if missing_own else source(tmp_path, "c"))]
    configured = configured_files(area(tmp_path, files=shared), own, "entries.site1.staging_files")
    with pytest.raises(ConfigError) as caught:
        read_files(configured, "entry")
    assert str(caught.value).startswith(f"{key}: cannot read {gone}: ")


def test_a_source_that_is_a_folder_names_its_config_key(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(ConfigError, match=re.escape(f"groups.main.staging_files[0].source: cannot read {folder}")):
        read_files([("groups.main.staging_files[0]", StagedFileConfig(source=folder))], "frontend")


@pytest.mark.parametrize(
    ("kind", "origin", "pilot"),
    [
        ("validate", "entry", "validate-entry"),
        ("validate", "frontend", "validate-frontend"),
        ("condor-config", "entry", "condor-config"),
        ("condor-config", "frontend", "condor-config"),
        ("file", "entry", "file"),
        ("file", "frontend", "file"),
    ],
)
def test_kind_is_written_as_the_pilot_spells_it_for_its_origin(
    tmp_path: Path, kind: FileKind, origin: Origin, pilot: str
) -> None:
    assert pilot_kind(kind, origin) == pilot
    item = StagedFileConfig(source=source(tmp_path, "f"), kind=kind)
    (read,) = read_files([("k", item)], origin)
    assert read.kind == pilot


@pytest.mark.parametrize(
    ("name", "path"),
    [
        (None, "check_disk.sh"),
        ("disk.sh", "disk.sh"),
        ("entry/site1/disk.sh", "entry/site1/disk.sh"),
    ],
)
def test_name_overrides_the_source_basename(tmp_path: Path, name: str | None, path: str) -> None:
    item = StagedFileConfig(source=source(tmp_path, "check_disk.sh", b"#!/bin/sh\n"), kind="validate", name=name)
    assert item.manifest_name == path
    assert read_files([("k", item)], "entry") == [StagedFile(path, "validate-entry", b"#!/bin/sh\n")]


def test_files_are_read_in_configured_order_with_their_bytes(tmp_path: Path) -> None:
    items = [
        ("a", StagedFileConfig(source=source(tmp_path, "z", b"\x00\xff"))),
        ("b", StagedFileConfig(source=source(tmp_path, "a", b"text\n"), kind="condor-config")),
    ]
    assert read_files(items, "frontend") == [
        StagedFile("z", "file", b"\x00\xff"),
        StagedFile("a", "condor-config", b"text\n"),
    ]


# --------------------------------------------------------------------------
# StagingSettings / StagedFileConfig validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("http://web", "http://web"),
        ("http://web/", "http://web"),
        ("https://web.example.org:8443/staging/", "https://web.example.org:8443/staging"),
        ("https://web.example.org/a/b//", "https://web.example.org/a/b"),
        ("http://127.0.0.1:8080/updraft", "http://127.0.0.1:8080/updraft"),
    ],
)
def test_http_urls_are_kept_without_trailing_slashes(tmp_path: Path, url: str, stored: str) -> None:
    assert area(tmp_path, url=url).url == stored


@pytest.mark.parametrize(
    "url",
    [
        "ftp://web/staging",
        "file:///srv/staging",
        "web.example.org/staging",
        "https://",
        "http:/web",
        "HTTP://web",
        "https://web/a b",
        "https://web/x?token=1",
        "https://web/x#frag",
        "https://web/x\nStart=true",
        "",
    ],
)
def test_only_http_and_https_urls_are_accepted(tmp_path: Path, url: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="expected an http:// or https:// URL") as caught:
        area(tmp_path, url=url)
    assert caught.value.errors()[0]["loc"] == ("url",)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../check.sh", "'.' and '..' are not allowed as parts"),
        ("entry/../../x", "'.' and '..' are not allowed as parts"),
        ("manifest", "'manifest' is the manifest's own name"),
        ("/abs.sh", "use only letters, digits"),
        ("two words.sh", "use only letters, digits"),
    ],
)
def test_a_file_name_the_pilot_would_refuse_is_a_config_error(tmp_path: Path, name: str, problem: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        area(tmp_path, files=[{"source": "/s/check.sh", "name": name}])
    (error,) = caught.value.errors()
    assert error["loc"] == ("files", 0, "name")
    assert error["msg"].startswith(problem)


@pytest.mark.parametrize(
    ("changes", "loc", "message"),
    [
        ({"dir": "relative/area"}, ("dir",), "expected an absolute path"),
        ({"keep_releases": 0}, ("keep_releases",), "greater than or equal to 1"),
        ({"files": [{"source": "check.sh"}]}, ("files", 0, "source"), "expected an absolute path"),
        ({"files": [{"source": "/s/x", "kind": "validate-entry"}]}, ("files", 0, "kind"), "'validate'"),
        ({"files": [{"source": "/s/x", "mode": "755"}]}, ("files", 0, "mode"), "Extra inputs are not permitted"),
    ],
)
def test_other_bad_staging_settings_are_refused_at_their_key(
    tmp_path: Path, changes: dict, loc: tuple, message: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        area(tmp_path, **changes)
    (error,) = caught.value.errors()
    assert error["loc"] == loc and message in error["msg"]


def test_defaults_keep_ten_releases_and_no_shared_files(tmp_path: Path) -> None:
    settings_ = area(tmp_path)
    assert (settings_.keep_releases, settings_.files) == (10, ())


def test_the_config_loader_names_file_and_key_of_a_bad_staging_setting(tree) -> None:
    main = tree.factory(
        (
            "50-staging.yaml",
            """\
        staging:
          dir: /srv/updraft/staging
          url: ftp://web.example.org/staging
          files:
            - source: /etc/updraft/check.sh
              name: ../check.sh
        entries:
          site1:
            staging_files:
              - {source: /etc/updraft/site1.config, kind: condor-config, name: manifest}
        """,
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_factory_config(main)
    drop_in = main.parent / "factory.d" / "50-staging.yaml"
    lines = str(caught.value).splitlines()
    assert (
        f"  {drop_in}: staging.url: expected an http:// or https:// URL with no query or spaces "
        "(got 'ftp://web.example.org/staging')" in lines
    )
    assert f"  {drop_in}: staging.files[0].name: '.' and '..' are not allowed as parts (got '../check.sh')" in lines
    assert (
        f"  {drop_in}: entries.site1.staging_files[0].name: 'manifest' is the manifest's own name "
        "(got 'manifest')" in lines
    )


# --------------------------------------------------------------------------
# Safe by construction: regular files only, never through or over a symlink


def entries_below(folder: Path) -> list[Path]:
    return [folder, *folder.rglob("*")]


def outside(tmp_path: Path) -> Path:
    """A folder beside the staging area, with one file: what a planted link would lead the writer or server to."""
    folder = tmp_path / "outside"
    folder.mkdir(exist_ok=True)
    (folder / "secret").write_bytes(b"not for pilots\n")
    return folder


def untouched(folder: Path) -> bool:
    return sorted(p.name for p in folder.iterdir()) == ["secret"] and (folder / "secret").read_bytes() == (
        b"not for pilots\n"
    )


def test_a_release_is_plain_folders_and_regular_files_only(tmp_path: Path) -> None:
    release = publish(area(tmp_path), "site1", FILES)
    kinds = {stat.S_IFMT(p.lstat().st_mode) for p in entries_below(tmp_path / "area")}
    assert kinds == {stat.S_IFDIR, stat.S_IFREG}
    assert (release.directory / "data" / "deep" / "tools.tar.gz").read_bytes() == bytes(range(200))


def test_a_symlink_in_place_of_the_names_folder_is_refused_naming_it(tmp_path: Path) -> None:
    target = outside(tmp_path)
    (tmp_path / "area").mkdir()
    (tmp_path / "area" / "site1").symlink_to(target)
    with pytest.raises(StagingError) as refused:
        publish(area(tmp_path), "site1", FILES)
    assert f"refusing to publish through {tmp_path / 'area' / 'site1'}: it is a symlink" in str(refused.value)
    assert untouched(target)


def test_a_symlink_in_place_of_the_release_is_refused_even_when_it_holds_the_right_manifest(tmp_path: Path) -> None:
    """Content-addressed is not enough: the web server would serve whatever else lies beside that manifest."""
    target = outside(tmp_path)
    (target / MANIFEST).write_text(manifest_text(FILES))
    release_id = sha(manifest_text(FILES))[:16]
    (tmp_path / "area" / "site1").mkdir(parents=True)
    (tmp_path / "area" / "site1" / release_id).symlink_to(target)
    with pytest.raises(StagingError, match=re.escape(f"publish over {tmp_path / 'area' / 'site1' / release_id}")):
        publish(area(tmp_path), "site1", FILES)
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, "secret"]


def test_a_file_of_a_release_replaced_by_a_symlink_makes_the_release_written_again_without_it(
    tmp_path: Path,
) -> None:
    target = outside(tmp_path)
    settings_ = area(tmp_path)
    release = publish(settings_, "site1", FILES)
    (release.directory / "check.sh").unlink()
    (release.directory / "check.sh").symlink_to(target / "secret")
    (release.directory / "extra").symlink_to(target)
    assert publish(settings_, "site1", FILES) == release
    assert not any(p.is_symlink() for p in entries_below(release.directory))
    assert (release.directory / "check.sh").read_bytes() == FILES[0].content
    assert untouched(target)


def test_a_link_planted_at_the_writers_temporary_name_is_not_written_through(tmp_path: Path) -> None:
    target = outside(tmp_path)
    release_id = sha(manifest_text(FILES))[:16]
    (tmp_path / "area" / "site1").mkdir(parents=True)
    (tmp_path / "area" / "site1" / f".{release_id}.{os.getpid()}.tmp").symlink_to(target)
    release = publish(area(tmp_path), "site1", FILES)
    assert (release.directory / "check.sh").read_bytes() == FILES[0].content
    assert untouched(target)
    assert not any(p.is_symlink() for p in entries_below(tmp_path / "area"))


def test_a_link_among_the_releases_is_deleted_when_pruning_and_never_followed(tmp_path: Path) -> None:
    target = outside(tmp_path)
    settings_ = area(tmp_path, keep_releases=1)
    (tmp_path / "area" / "site1").mkdir(parents=True)
    (tmp_path / "area" / "site1" / "0123456789abcdef").symlink_to(target)
    (only,) = publish_versions(settings_, 1)
    assert releases_in(tmp_path / "area" / "site1") == {only.release_id}
    assert not (tmp_path / "area" / "site1" / "0123456789abcdef").is_symlink()
    assert untouched(target)


def test_the_staging_root_itself_may_be_reached_through_a_link(tmp_path: Path) -> None:
    """The operator's choice (a web server configured from its document root); below it nothing is a link."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "area").symlink_to(real)
    release = publish(area(tmp_path), "site1", FILES)
    assert (real / "site1" / release.release_id / MANIFEST).is_file()


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "", "x y"])
def test_a_name_that_is_not_one_plain_path_component_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(StagingError, match="one plain path component"):
        publish(area(tmp_path), name, FILES)
    assert not (tmp_path / "area").exists()


@pytest.mark.parametrize(
    "line",
    [
        "SEC_TOKEN_POOL_SIGNING_KEY_FILE = /etc/condor/passwords.d/POOL",
        "sec_password_directory=/etc/condor/passwords.d",
        "  STARTD.SEC_PASSWORD_FILE = /etc/condor/pool_password",
        "AUTH_SSL_SERVER_KEYFILE = /etc/grid-security/hostkey.pem",
    ],
)
def test_a_staged_condor_config_that_locates_a_pool_secret_is_refused_naming_the_line(
    tmp_path: Path, line: str
) -> None:
    source = tmp_path / "pool.config"
    source.write_text(f"TRUST_DOMAIN = vo.example\n# a comment\n{line}\n")
    config = StagedFileConfig(source=source, kind="condor-config")
    with pytest.raises(ConfigError) as refused:
        read_files([("staging.files[0]", config)], "frontend")
    name = line.split("=")[0].strip()
    assert f"staging.files[0].source: {source}: line 3 sets {name}" in str(refused.value)
    assert "/etc/" not in str(refused.value)  # the name and line, never the value


def test_the_same_settings_in_a_plain_file_or_a_comment_are_not_a_condor_config_problem(tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("# SEC_PASSWORD_FILE = /x\nSEC_TOKEN_DIRECTORY = /pilot/tokens\n")
    assert read_files([("f", StagedFileConfig(source=source, kind="condor-config"))], "entry")
    source.write_text("SEC_PASSWORD_FILE = /x\n")
    assert read_files([("f", StagedFileConfig(source=source, kind="file"))], "entry")
