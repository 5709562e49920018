"""Files written whole or not at all: the one way Updraft replaces a file others may read.

Every file a reader may open while it is being rewritten (checkpoints,
totals, downtimes, the applied config, monitoring pages, lab state, and
the secret files of `updraft.secretfiles`) goes through `write_atomically`,
so a crash or a full disk leaves the old file in place, never half a new one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PUBLIC_MODE = 0o644
"""Readable by everyone (monitoring may read as another user), writable by the owner only."""


def write_atomically(
    path: Path,
    data: bytes | str,
    mode: int = PUBLIC_MODE,
    owner: tuple[int, int] | None = None,
    *,
    sync: bool = True,
) -> None:
    """Write `data` so that a reader sees the old file or the new one, never half of one.

    The temporary file has `mode` (and `owner`) from before the first byte
    is written, so a secret is never readable by others, not even for a
    moment; it is created anew (O_EXCL) and renamed over the target, so a
    symlink planted at the target's name is replaced, never followed.

    `sync` flushes the data to disk before the rename, so after a power loss
    the name holds the old content or the new, never an empty file; files
    rewritten every cycle anyway (monitoring output) may skip that cost.
    Text is written as UTF-8. An OSError propagates, with no temporary left behind.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _fill(fd, payload, mode, owner, sync)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # only still there if something failed before the rename


def _fill(fd: int, payload: bytes, mode: int, owner: tuple[int, int] | None, sync: bool) -> None:
    """Sets the open temporary file's mode and owner first, then writes it; closes `fd` in every case."""
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), mode)
        if owner is not None:
            os.fchown(out.fileno(), *owner)
        out.write(payload)
        out.flush()
        if sync:
            os.fsync(out.fileno())
