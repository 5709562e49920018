"""File helpers every file-based writer shares."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from updraft import atomicwrite

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_MAX_HEX = 200


def write_atomically(target: Path, text: str) -> None:
    """Readers (a web server, a browser) see the old file or the new one, never half of one.

    Not synced to disk: every file here is rewritten each cycle, so one lost
    to a power cut is back a cycle later, and a thousand fsyncs per cycle are not.
    """
    atomicwrite.write_atomically(target, text, atomicwrite.PUBLIC_MODE, sync=False)


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
