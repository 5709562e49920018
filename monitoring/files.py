"""File helpers every file-based writer shares."""

from __future__ import annotations

import os
import re
from pathlib import Path

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


def write_atomically(target: Path, text: str) -> None:
    """Readers (a web server, a browser) see the old file or the new one, never half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    tmp.replace(target)


def path_part(value: str) -> str:
    """`value` as one safe file-name component.

    Entry and group names reach a frontend from other parties' ads, so
    anything outside a plain name (``/``, ``..``, spaces) is percent-encoded
    rather than trusted; plain names stay readable.
    """
    if _SAFE.fullmatch(value) and value not in (".", ".."):
        return value
    return "%" + "".join(f"{b:02x}" for b in value.encode())[:240]
