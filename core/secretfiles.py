"""Files written whole or not at all, and the private ones that hold secrets."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Write `data` so that a reader sees the old file or the new one, never half of one.

    The temporary file has `mode` (and `owner`) from before the first byte
    is written, so a secret is never readable by others, not even for a
    moment; it is created anew (O_EXCL) and renamed over the target, so a
    symlink planted at the target's name is replaced, never followed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # only still there if something failed before the rename


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
