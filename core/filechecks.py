"""The files a configuration names, checked by ``check-config`` with file, key and reason.

A config model marks each path field by who reads the file: `ReadHere`
(Updraft itself, on this host: the signing key, an InfluxDB token file, a
staged file's source, the HTCondor client config) or `ReadBySchedd` (the
schedd or its grid manager, usually on this host but not always: the pilot
executable, cloud credentials). A file Updraft reads that is missing or
unreadable is an error, found by ``check-config`` instead of at the first
cycle; one the schedd reads is a warning, since the schedd may run
elsewhere. Directories Updraft creates (``work_dir``...) and paths on the
workers (``glidein.condor_dir``) are not marked.

The check runs as the user who runs ``check-config``: run it as the
service's user for an answer that holds for the service.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel

from updraft.config import AbsolutePath, KeyPath, Loaded, dotted
from updraft.errors import ConfigError


@dataclass(frozen=True)
class _Reader:
    """A marker in a path field's ``Annotated`` metadata: who reads the file."""

    who: str


_HERE = _Reader("updraft")
_SCHEDD = _Reader("schedd")

ReadHere = Annotated[AbsolutePath, _HERE]
"""An absolute path to a file Updraft reads on this host: ``check-config`` fails if it cannot."""

ReadBySchedd = Annotated[AbsolutePath, _SCHEDD]
"""An absolute path to a file the schedd (or its grid manager) reads: ``check-config`` warns if
this host cannot read it."""


@dataclass(frozen=True)
class FileProblem:
    """A named file that cannot be read: where it is named, and why."""

    key: KeyPath
    path: Path
    reason: str
    fatal: bool


def _reader_of(annotation: object) -> _Reader | None:
    """The marker in `annotation` (through ``X | None`` and ``tuple[X, ...]``), if any."""
    if typing.get_origin(annotation) is Annotated:
        found = [meta for meta in typing.get_args(annotation)[1:] if isinstance(meta, _Reader)]
        if found:
            return found[0]
    for arg in typing.get_args(annotation):
        reader = _reader_of(arg)
        if reader is not None:
            return reader
    return None


def named_files(model: BaseModel, where: KeyPath = ()) -> Iterator[tuple[KeyPath, Path, _Reader]]:
    """Every marked path in `model` at any depth, with its key path as the YAML spells it.

    A field excluded from dumps (a factory entry's ``grid``) holds keys written
    beside its parent's, so it adds nothing to the path.
    """
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        path = where if info.exclude else (*where, name)
        # pydantic moves a plain field's Annotated metadata to `info.metadata`; ``X | None`` keeps it
        marked = [meta for meta in info.metadata if isinstance(meta, _Reader)]
        reader = marked[0] if marked else _reader_of(info.annotation)
        yield from _files_in(value, path, reader)


def _files_in(value: Any, where: KeyPath, reader: _Reader | None) -> Iterator[tuple[KeyPath, Path, _Reader]]:
    if isinstance(value, BaseModel):
        yield from named_files(value, where)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _files_in(item, (*where, key), reader)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _files_in(item, (*where, index), reader)
    elif isinstance(value, Path) and reader is not None:
        yield where, value, reader


def unreadable(path: Path) -> str | None:
    """Why `path` cannot be read as a file by this process, or None if it can."""
    try:
        if not path.exists():
            return "no such file"
        if path.is_dir():
            return "is a directory, expected a file"
    except OSError as err:
        return f"cannot be checked: {err.strerror or err}"
    if not os.access(path, os.R_OK):
        return "cannot be read by this user"
    return None


def file_problems(model: BaseModel) -> list[FileProblem]:
    """Every marked file of `model` this process cannot read."""
    problems = []
    for key, path, reader in named_files(model):
        reason = unreadable(path)
        if reason is not None:
            problems.append(FileProblem(key, path, reason, fatal=reader is _HERE))
    return problems


def describe(loaded: Loaded[Any], problem: FileProblem) -> str:
    """``config file: key: path: reason``; for the schedd's files, a note that it may run elsewhere."""
    files = ", ".join(str(file) for file in loaded.files_for(problem.key))
    note = "" if problem.fatal else " on this host (fine only if the schedd runs elsewhere and has it)"
    return f"{files}: {dotted(problem.key)}: {problem.path}: {problem.reason}{note}"


def check_files(loaded: Loaded[Any], on_warning: Callable[[str], None]) -> None:
    """``check-config``'s file check: warnings for the schedd's files, then one ConfigError
    listing every file Updraft itself cannot read."""
    problems = file_problems(loaded.config)
    for problem in problems:
        if not problem.fatal:
            on_warning(describe(loaded, problem))
    fatal = [describe(loaded, problem) for problem in problems if problem.fatal]
    if fatal:
        lines = "\n".join(f"  {line}" for line in fatal)
        count = f"{len(fatal)} file{'s' if len(fatal) != 1 else ''}"
        raise ConfigError(f"invalid configuration ({count} cannot be read):\n{lines}")
