"""File helpers every file-based writer shares."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_MAX_HEX = 200


def write_atomically(target: Path, text: str) -> None:
    """Readers (a web server, a browser) see the old file or the new one, never half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        tmp.replace(target)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def path_part(value: str) -> str:
    """`value` as one safe file-name component, also safe in a URL with no escaping.

    Entry and group names reach a frontend from other parties' ads, so
    anything outside a plain name (``/``, ``..``, spaces, ``%``) is written
    as ``_`` and its UTF-8 bytes in hex, or ``_h`` and a SHA-256 when that
    would be too long. Plain names never start with ``_``, so the two kinds
    cannot collide, and plain names stay readable.
    """
    if _SAFE.fullmatch(value) and value not in (".", ".."):
        return value
    encoded = value.encode("utf-8", "surrogatepass").hex()
    if len(encoded) > _MAX_HEX:
        return "_h" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return "_" + encoded
