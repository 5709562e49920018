"""The private files that hold secrets: 0600 in 0700 folders, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

from updraft.atomicwrite import write_atomically


def private_dir(path: Path, owner: tuple[int, int] | None = None, mode: int = 0o700) -> Path:
    """`path` (and missing parents) as a folder only its owner can enter; never follows a symlink."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    if path.is_symlink() or not path.is_dir():
        raise OSError(f"{path} is not a plain folder")
    os.chmod(path, mode, follow_symlinks=False)
    if owner is not None:
        os.chown(path, *owner, follow_symlinks=False)
    return path


def write_private(path: Path, data: bytes, owner: tuple[int, int] | None = None) -> None:
    """A 0600 file in a 0700 folder (both handed to `owner` when given), written atomically.

    `owner` (uid, gid) is for a factory running as root whose schedd reads
    the file as the pilots' owner.
    """
    private_dir(path.parent, owner)
    write_atomically(path, data, 0o600, owner)


def read_secret(path: Path) -> str:
    """The stripped text of a file holding one secret (a token, a password, a webhook URL).

    ValueError when the file cannot serve: its message names the file and
    what is wrong with it, never what it holds, so callers can put it in
    their own errors under the config key that named the file.
    """
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or type(err).__name__}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    if not text:
        raise ValueError(f"{path} is empty")
    return text
