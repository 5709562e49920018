"""Files that hold secrets: private folders, private files, written whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def private_dir(path: Path, owner: tuple[int, int] | None = None) -> Path:
    """`path` (and missing parents) as a folder only its owner can enter (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    if owner is not None:
        os.chown(path, *owner)
    return path


def write_private(path: Path, data: bytes, owner: tuple[int, int] | None = None) -> None:
    """Write `data` as a 0600 file in a 0700 folder; a reader sees the old file or the new one.

    The temporary file is 0600 from its creation, so the secret is never
    readable by others, not even for a moment. `owner` (uid, gid) hands the
    file to another user, for a factory running as root whose schedd reads
    the file as the pilot's owner.
    """
    private_dir(path.parent, owner)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
