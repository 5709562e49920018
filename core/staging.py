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
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
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
        if item.kind == "condor-config":
            _refuse_secret_settings(where, item.source, content)
        files.append(StagedFile(item.manifest_name, pilot_kind(item.kind, origin), content))
    return files


SECRET_SETTINGS = frozenset(
    {
        "SEC_TOKEN_POOL_SIGNING_KEY_FILE",
        "SEC_TOKEN_POOL_SIGNING_KEY",
        "SEC_PASSWORD_FILE",
        "SEC_PASSWORD_DIRECTORY",
        "SEC_TOKEN_SYSTEM_DIRECTORY",
        "AUTH_SSL_SERVER_KEYFILE",
        "AUTH_SSL_CLIENT_KEYFILE",
        "GSI_DAEMON_KEY",
    }
)
"""Settings that say where a pool keeps a secret: a pilot never needs one, and a staged file is public."""


def secret_settings(content: bytes) -> list[tuple[int, str]]:
    """(line number, name) of each line of a condor config that sets one of SECRET_SETTINGS,
    with or without a subsystem prefix (names are case-insensitive)."""
    found = []
    for number, line in enumerate(content.decode(errors="replace").splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        name, sep, _value = line.strip().partition("=")
        if sep and name.strip().rsplit(".", 1)[-1].upper() in SECRET_SETTINGS:
            found.append((number, name.strip()))
    return found


def _refuse_secret_settings(where: str, source: Path, content: bytes) -> None:
    """ConfigError naming each line of a staged condor config that would tell pilots where a secret lives."""
    found = secret_settings(content)
    if found:
        lines = ", ".join(f"line {number} sets {name}" for number, name in found)
        raise ConfigError(
            f"{where}.source: {source}: {lines}: a condor-config file is served to every pilot, which needs no "
            "pool secret; stage only the settings pilots use (docs/security.md)"
        )


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
    """Write `files` as a release of `name` (an entry or a group), unless it is already there.

    Safe by construction: below the staging folder everything is opened
    relative to its parent's descriptor without following symlinks, and
    only regular files and plain folders are written. A symlink where the
    name's folder or the release should be is a StagingError naming it:
    a web server that follows links would serve whatever it points at.
    """
    text = manifest_text(files)
    sha = digest(text)
    release = StagingRelease(
        name,
        f"{settings.url}/{name}/{sha[:RELEASE_ID_LENGTH]}/{MANIFEST}",
        sha,
        settings.dir / name / sha[:RELEASE_ID_LENGTH],
    )
    if not _MANIFEST_PATH.fullmatch(name) or "/" in name or name.startswith("."):
        raise StagingError(f"cannot stage under the name {name!r}: it must be one plain path component, not hidden")
    try:
        with _name_folder(settings.dir, name) as folder:
            if _intact(folder, release):
                # Published again: now the newest, so pruning keeps it.
                os.utime(release.release_id, dir_fd=folder.fd, follow_symlinks=False)
                return release
            _write_release(folder, release, text, files)
            _prune(folder, keep=settings.keep_releases, current=release.release_id)
    except OSError as err:
        raise StagingError(f"cannot write the staging area {settings.dir / name}: {err}") from err
    log.info("staged %d file(s) for %s as release %s", len(files), name, release.release_id)
    return release


@dataclass(frozen=True)
class _Folder:
    """A folder of the staging area held open: its descriptor, and its path for messages."""

    fd: int
    path: Path

    def kind_of(self, entry: str) -> str | None:
        """What `entry` is: symlink, folder, file, other, or None when it is not there (never follows a link)."""
        try:
            mode = os.stat(entry, dir_fd=self.fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(mode):
            return "symlink"
        return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"

    def refuse_link(self, entry: str, doing: str) -> None:
        """StagingError when `entry` is a symlink: never published through or over."""
        if self.kind_of(entry) == "symlink":
            raise StagingError(
                f"refusing to {doing} {self.path / entry}: it is a symlink, and the web server serving "
                "the staging area must never be led outside it (remove the link)"
            )

    def open_folder(self, entry: str, create: bool = False) -> _Folder:
        """`entry` as a folder of its own: made when missing and `create`; a symlink is refused."""
        self.refuse_link(entry, "publish through")
        if create and self.kind_of(entry) is None:
            os.mkdir(entry, 0o755, dir_fd=self.fd)
        return _Folder(os.open(entry, _DIR_FLAGS, dir_fd=self.fd), self.path / entry)

    def remove(self, entry: str) -> None:
        """Delete `entry` whatever it is; a symlink is unlinked, never followed."""
        kind = self.kind_of(entry)
        if kind == "folder":
            shutil.rmtree(entry, dir_fd=self.fd)
        elif kind is not None:
            os.unlink(entry, dir_fd=self.fd)

    def close(self) -> None:
        os.close(self.fd)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


@contextmanager
def _name_folder(root: Path, name: str) -> Iterator[_Folder]:
    """The name's folder below the staging root, made 0755 (a web server, often another user, reads it all).

    The root itself is the operator's choice and may be reached through a
    link; below it nothing is.
    """
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    top = _Folder(os.open(root, os.O_RDONLY | os.O_DIRECTORY), root)
    try:
        folder = top.open_folder(name, create=True)
    finally:
        top.close()
    try:
        os.fchmod(folder.fd, 0o755)
        yield folder
    finally:
        folder.close()


def _intact(folder: _Folder, release: StagingRelease) -> bool:
    """Already published, with the manifest it should have and nothing but plain files and folders
    (a half-written folder never is: it is renamed in). A symlink in the release's place is refused."""
    folder.refuse_link(release.release_id, "publish over")
    if folder.kind_of(release.release_id) != "folder":
        return False
    try:
        fd = os.open(f"{release.release_id}/{MANIFEST}", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder.fd)
        with os.fdopen(fd, "rb") as manifest:
            intact = digest(manifest.read().decode()) == release.manifest_sha256
    except (OSError, UnicodeDecodeError):
        return False
    return intact and not _has_links(folder, release.release_id)


def _has_links(folder: _Folder, entry: str) -> bool:
    """Whether anything below `entry` is not a plain file or folder (a link planted in a release)."""
    for top, dirs, files, top_fd in os.fwalk(entry, dir_fd=folder.fd):
        for name in (*dirs, *files):
            mode = os.stat(name, dir_fd=top_fd, follow_symlinks=False).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                log.warning("%s holds %s, which is not a plain file: publishing it again", folder.path / top, name)
                return True
    return False


def _write_release(folder: _Folder, release: StagingRelease, text: str, files: Sequence[StagedFile]) -> None:
    """Written in a temporary folder then renamed: a pilot never sees a release half written."""
    tmp = f".{release.release_id}.{os.getpid()}.tmp"
    folder.remove(tmp)
    os.mkdir(tmp, 0o700, dir_fd=folder.fd)
    try:
        staging = _Folder(os.open(tmp, _DIR_FLAGS, dir_fd=folder.fd), folder.path / tmp)
        try:
            for staged in files:
                _write_file(staging, PurePosixPath(staged.path).parts, staged.content)
            _write_file(staging, (MANIFEST,), text.encode())
            os.fchmod(staging.fd, 0o755)
        finally:
            staging.close()
        folder.refuse_link(release.release_id, "publish over")
        folder.remove(release.release_id)
        os.rename(tmp, release.release_id, src_dir_fd=folder.fd, dst_dir_fd=folder.fd)
    finally:
        folder.remove(tmp)


def _write_file(top: _Folder, parts: Sequence[str], content: bytes) -> None:
    """A new regular file (0644) at `parts` below `top`, its folders made 0755; never through a link."""
    folders: list[_Folder] = []
    try:
        here = top
        for part in parts[:-1]:
            here = here.open_folder(part, create=True)
            os.fchmod(here.fd, 0o755)
            folders.append(here)
        fd = os.open(parts[-1], _NEW_FILE_FLAGS, 0o644, dir_fd=here.fd)
        with os.fdopen(fd, "wb") as target:
            target.write(content)
            os.fchmod(target.fileno(), 0o644)
    finally:
        for opened in folders:
            opened.close()


def _prune(folder: _Folder, keep: int, current: str) -> None:
    """Drop the oldest releases beyond `keep`; never the current one. Links are deleted, never followed."""
    releases = []
    with os.scandir(folder.fd) as entries:
        for entry in entries:
            if entry.name.endswith(".tmp") and entry.name.startswith("."):
                folder.remove(entry.name)  # a writer killed mid-release
            elif entry.is_symlink():
                log.warning("deleting the symlink %s from the staging area", folder.path / entry.name)
                folder.remove(entry.name)
            elif entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                releases.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
    older = [name for _, name in sorted(releases, reverse=True) if name != current]
    for old in older[max(0, keep - 1) :]:
        folder.remove(old)
