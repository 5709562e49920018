"""Staging areas: the files pilots fetch over HTTP(S), listed in a manifest they verify.

The factory and the frontend each publish one. A pilot is told the
manifest's URL and SHA-256 by its submit description (the trusted
channel), checks the manifest against that digest and every file against
the manifest (glidein/README.md), so the web server needs no trust at all.

Each set of files is published as a *release*: a folder named after the
manifest's digest, holding the manifest and the files. Content decides the
name, so publishing the same files again changes nothing, and a new
release never changes the files of one a queued pilot was already told
about; older releases are pruned only beyond ``keep_releases``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from updraft.config import MAX_TEXT_LENGTH, AbsolutePath, ConfigModel, FrozenList, PositiveCount
from updraft.errors import ConfigError, UpdraftError
from updraft.filechecks import ReadHere

log = logging.getLogger(__name__)

MANIFEST = "manifest"
RELEASE_ID_LENGTH = 16
"""Hex digits of the manifest digest that name a release folder."""

Origin = Literal["entry", "frontend"]
"""Whose staging area: the factory's (per entry) or the frontend's (per group)."""
FileKind = Literal["validate", "condor-config", "file"]
"""What a file is for; ``validate`` becomes validate-entry or validate-frontend by origin."""

_MANIFEST_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


class StagingError(UpdraftError):
    """A staging area could not be written."""


def manifest_path_problem(path: str) -> str | None:
    """Why `path` cannot be listed in a manifest (the pilot applies the same rule), or None."""
    if not _MANIFEST_PATH.fullmatch(path):
        return "use only letters, digits, '.', '_', '-' and '/' between non-empty parts"
    if any(part in (".", "..") for part in path.split("/")):
        return "'.' and '..' are not allowed as parts"
    if path == MANIFEST:
        return f"{MANIFEST!r} is the manifest's own name"
    return None


def _check_manifest_path(value: str) -> str:
    problem = manifest_path_problem(value)
    if problem:
        raise PydanticCustomError("manifest_path", "{problem}", {"problem": problem})
    return value


def _check_url(value: str) -> str:
    if len(value) > MAX_TEXT_LENGTH:
        raise PydanticCustomError("url", "too long: at most {limit} characters", {"limit": MAX_TEXT_LENGTH})
    if not _URL.fullmatch(value):
        raise PydanticCustomError("url", "expected an http:// or https:// URL with no query or spaces")
    return value.rstrip("/")


ManifestPath = Annotated[str, AfterValidator(_check_manifest_path)]
HttpUrl = Annotated[str, AfterValidator(_check_url)]


class StagedFileConfig(ConfigModel):
    """One file every pilot gets: where it is on this host, and what the pilot does with it."""

    source: ReadHere
    kind: FileKind = "file"
    name: ManifestPath | None = None
    """Its path in the manifest (and under the pilot's files folder); default: the source's name."""

    @model_validator(mode="after")
    def _source_name_fits_a_manifest(self) -> StagedFileConfig:
        """Caught when the config loads, not at the next reconfig: a name the pilot would refuse."""
        problem = None if self.name else manifest_path_problem(self.source.name)
        if problem:
            raise PydanticCustomError(
                "manifest_path",
                "the file name {name!r} cannot be listed in a manifest ({problem}): set `name`",
                {"name": self.source.name, "problem": problem},
            )
        return self

    @property
    def manifest_name(self) -> str:
        return self.name or self.source.name


class StagingSettings(ConfigModel):
    """Where the staging area is written, and the URL a web server serves that folder at."""

    dir: AbsolutePath
    url: HttpUrl
    files: FrozenList[StagedFileConfig] = ()
    """Files for every pilot (entries or groups add their own after these)."""
    keep_releases: PositiveCount = Field(default=10)
    """Releases kept per entry or group: queued pilots may still fetch an older one."""


@dataclass(frozen=True)
class StagedFile:
    """A file as it goes into a release: its manifest path, kind (as the pilot spells it), and bytes."""

    path: str
    kind: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class StagingRelease:
    """A published set of files: what goes into a pilot's submit description."""

    name: str
    manifest_url: str
    manifest_sha256: str
    directory: Path

    @property
    def release_id(self) -> str:
        return self.manifest_sha256[:RELEASE_ID_LENGTH]


# --------------------------------------------------------------------------
# Pure: the manifest
# --------------------------------------------------------------------------


def pilot_kind(kind: FileKind, origin: Origin) -> str:
    """The manifest kind the pilot reads: entry scripts and frontend scripts run at different times."""
    return f"validate-{origin}" if kind == "validate" else kind


def manifest_text(files: Sequence[StagedFile]) -> str:
    """The manifest: one ``sha256  path  kind`` line per file, in the order given (the run order)."""
    seen: dict[str, int] = {}
    for index, staged in enumerate(files):
        problem = manifest_path_problem(staged.path)
        if problem:
            raise StagingError(f"file {index + 1} ({staged.path!r}): {problem}")
        if staged.path in seen:
            raise StagingError(f"{staged.path!r} is listed twice (files {seen[staged.path] + 1} and {index + 1})")
        for other, position in seen.items():
            if other.startswith(staged.path + "/") or staged.path.startswith(other + "/"):
                raise StagingError(
                    f"{staged.path!r} (file {index + 1}) and {other!r} (file {position + 1}): "
                    "one would be a file inside the other"
                )
        seen[staged.path] = index
    header = "# Updraft staging manifest: sha256  path  kind\n"
    return header + "".join(f"{f.sha256}  {f.path}  {f.kind}\n" for f in files)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------
# Reading the configured files
# --------------------------------------------------------------------------


def read_files(configured: Iterable[tuple[str, StagedFileConfig]], origin: Origin) -> list[StagedFile]:
    """The configured files' contents; a missing source or a clash names its config key."""
    files = []
    claimed: dict[str, str] = {}
    for where, item in configured:
        clash = _clash(item.manifest_name, claimed)
        if clash:
            raise ConfigError(
                f"{where}: {item.manifest_name!r} clashes with {clash[0]!r} of {clash[1]} "
                "(set `name` to tell them apart)"
            )
        claimed[item.manifest_name] = where
        try:
            content = item.source.read_bytes()
        except OSError as err:
            raise ConfigError(f"{where}.source: cannot read {item.source}: {err.strerror or err}") from err
        files.append(StagedFile(item.manifest_name, pilot_kind(item.kind, origin), content))
    return files


def _clash(path: str, claimed: dict[str, str]) -> tuple[str, str] | None:
    """A listed path equal to `path`, or one that is a folder of it or inside it (a file cannot be both)."""
    for other, where in claimed.items():
        if other == path or other.startswith(path + "/") or path.startswith(other + "/"):
            return other, where
    return None


def configured_files(
    settings: StagingSettings, own: Sequence[StagedFileConfig], own_where: str
) -> list[tuple[str, StagedFileConfig]]:
    """The shared files then the entry's or group's own, each with its config key for messages."""
    return [
        *((f"staging.files[{i}]", f) for i, f in enumerate(settings.files)),
        *((f"{own_where}[{i}]", f) for i, f in enumerate(own)),
    ]


# --------------------------------------------------------------------------
# Writing releases
# --------------------------------------------------------------------------


def publish_all(
    settings: StagingSettings | None, own_files: Mapping[str, Sequence[StagedFileConfig]], section: str, origin: Origin
) -> Mapping[str, StagingRelease]:
    """One release per name (entry or group): the shared files, then its own from ``<section>.<name>``.

    {} without a staging area.
    """
    if settings is None:
        return MappingProxyType({})
    releases = {}
    for name, own in own_files.items():
        files = configured_files(settings, own, f"{section}.{name}.staging_files")
        releases[name] = publish(settings, name, read_files(files, origin))
    return MappingProxyType(releases)


def describe_releases(releases: Mapping[str, StagingRelease]) -> list[str]:
    """One line per staged entry or group, for `reconfig`: where its pilots fetch the manifest from."""
    return [
        f"staged {name}: {r.manifest_url} (sha256 {r.manifest_sha256[:12]}...)" for name, r in sorted(releases.items())
    ]


def publish(settings: StagingSettings, name: str, files: Sequence[StagedFile]) -> StagingRelease:
    """Write `files` as a release of `name` (an entry or a group), unless it is already there."""
    text = manifest_text(files)
    sha = digest(text)
    release = StagingRelease(
        name,
        f"{settings.url}/{name}/{sha[:RELEASE_ID_LENGTH]}/{MANIFEST}",
        sha,
        settings.dir / name / sha[:RELEASE_ID_LENGTH],
    )
    try:
        if _intact(release):
            os.utime(release.directory)  # published again: it is the newest, so pruning keeps it
            return release
        _write_release(release, text, files)
        _prune(settings.dir / name, keep=settings.keep_releases, current=release.directory)
    except OSError as err:
        raise StagingError(f"cannot write the staging area {settings.dir / name}: {err}") from err
    log.info("staged %d file(s) for %s as release %s", len(files), name, release.release_id)
    return release


def _intact(release: StagingRelease) -> bool:
    """Already published, with the manifest it should have (a half-written folder never is: it is renamed in)."""
    try:
        return digest((release.directory / MANIFEST).read_text()) == release.manifest_sha256
    except (OSError, UnicodeDecodeError):
        return False


def _write_release(release: StagingRelease, text: str, files: Sequence[StagedFile]) -> None:
    """Written in a temporary folder then renamed: a pilot never sees a release half written."""
    parent = release.directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    # Whatever the umask, the web server (often another user) must read it all.
    for folder in (parent.parent, parent):
        folder.chmod(0o755)
    tmp = parent / f".{release.release_id}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for staged in files:
            target = tmp / PurePosixPath(staged.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(staged.content)
            target.chmod(0o644)
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / MANIFEST).write_text(text)
        (tmp / MANIFEST).chmod(0o644)
        for folder in (tmp, *(p for p in tmp.rglob("*") if p.is_dir())):
            folder.chmod(0o755)
        shutil.rmtree(release.directory, ignore_errors=True)
        tmp.rename(release.directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _prune(folder: Path, keep: int, current: Path) -> None:
    """Drop the oldest releases beyond `keep`; never the current one."""
    releases = sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for leftover in folder.glob(".*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)  # a writer killed mid-release
    for old in [p for p in releases if p != current][max(0, keep - 1) :]:
        shutil.rmtree(old)
