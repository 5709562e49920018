"""The user data a cloud pilot boots from: one format for EC2 and GCE, defined here.

A cloud pilot is a machine image with no input files: everything it needs
to start the glidein travels in the instance's user data (EC2) or metadata
(GCE), which the image's entry script, ``glidein/vm/updraft-vm-bootstrap``,
reads at boot. The format is an ASCII
``application/x-www-form-urlencoded`` query string: ``NAME=value`` pairs
joined by ``&``, each value percent-encoded with
``urllib.parse.quote(value, safe='')`` (so only ``A-Z a-z 0-9 _ . - ~``
and ``%XX`` appear in a value), names matching ``[A-Za-z_][A-Za-z0-9_]*``;
a name may repeat and the order is kept. Chosen because it is one line of
printable ASCII (it fits an HTCondor submit value and a GCE metadata item,
neither of which takes newlines, and GCE's comma-separated list never meets
a raw comma), and a shell can take it apart without any interpreter.

The text is the concatenation of two parts, so the secret never enters the
job ad:

1. the public part (`public_part`), in the job ad: ``UPDRAFT_USER_DATA=1``
   first, then the pilot's environment, then where the glidein is
   (manifest URL and digest, the glidein's name in it), then the glidein's
   command line as repeated ``UPDRAFT_VM_ARG`` pairs;
2. the secret part (`secret_part`), from a 0600 file beside the pilot
   token: ``&UPDRAFT_PILOT_TOKEN_VALUE=<token>``; absent without a token.

On GCE the public part is the metadata item `GCE_USER_DATA_ITEM` and the
raw token the item `GCE_TOKEN_ITEM`; the bootstrap joins them with
`gce_join`'s rule and parses the result the same way.

`parse` is strict and is mirrored, rule for rule, by the bootstrap's
``parse_user_data`` (tests/unit/test_vm_bootstrap.py feeds both the same
texts). Its errors name the pair and what is wrong, never a value: the
token may be the value at fault.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from updraft.errors import UpdraftError

USER_DATA = "UPDRAFT_USER_DATA"
"""First pair, value `USER_DATA_VERSION`: tells Updraft user data from anything else an image may receive."""
USER_DATA_VERSION = "1"
VM_MANIFEST_URL = "UPDRAFT_VM_MANIFEST_URL"
VM_MANIFEST_SHA256 = "UPDRAFT_VM_MANIFEST_SHA256"
VM_GLIDEIN = "UPDRAFT_VM_GLIDEIN"
"""The glidein's path in the manifest (a ``file`` line), fetched next to the manifest."""
VM_ARG = "UPDRAFT_VM_ARG"
"""One word of the glidein's command line; repeated, in order."""
PILOT_TOKEN_VALUE = "UPDRAFT_PILOT_TOKEN_VALUE"
"""The pilot token itself (secret): only ever in the secret part."""
PILOT_TOKEN_FILE = "UPDRAFT_PILOT_TOKEN"
"""What the glidein reads: the token's file NAME in its sandbox. The bootstrap sets it, never the user data."""

RESERVED = (USER_DATA, VM_MANIFEST_URL, VM_MANIFEST_SHA256, VM_GLIDEIN, VM_ARG, PILOT_TOKEN_VALUE)
"""Names that steer the bootstrap; every other pair is the pilot's environment."""
SINGLE = (VM_MANIFEST_URL, VM_MANIFEST_SHA256, VM_GLIDEIN, PILOT_TOKEN_VALUE)
"""Reserved names that may appear at most once (the first three exactly once)."""

GCE_USER_DATA_ITEM = "updraft-user-data"
GCE_TOKEN_ITEM = "updraft-pilot-token"

NAME_RULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENCODED_VALUE = re.compile(r"(?:[A-Za-z0-9_.~-]|%[0-9A-Fa-f]{2})*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME_SHOWN = 40
"""How much of a bad name an error repeats."""


class UserDataError(UpdraftError):
    """User data that cannot be written or read: a bad name, a bad encoding, a missing pair.

    Its message names the pair (position and name) and the rule it breaks,
    never a value, since the value at fault may be the pilot token.
    """


@dataclass(frozen=True)
class BootPlan:
    """What the bootstrap does with parsed user data (the same split it makes in bash)."""

    environment: tuple[tuple[str, str], ...]
    manifest_url: str
    manifest_sha256: str
    glidein: str
    arguments: tuple[str, ...]
    token: str | None

    def __repr__(self) -> str:
        # A BootPlan in a traceback or a log line must not show the token.
        token = "None" if self.token is None else "'<hidden>'"
        return (
            f"BootPlan(environment={self.environment!r}, manifest_url={self.manifest_url!r}, "
            f"manifest_sha256={self.manifest_sha256!r}, glidein={self.glidein!r}, "
            f"arguments={self.arguments!r}, token={token})"
        )


# --- writing -------------------------------------------------------------------


def encode(pairs: Iterable[tuple[str, str]]) -> str:
    """``NAME=value&...`` for `pairs`, in order; refuses what `parse` (or an environment) could not carry.

    A NUL cannot be an environment variable's value, and a name outside the
    rule could not be exported by the bootstrap, so both are refused here,
    on the factory, rather than on a VM that is already costing money.
    """
    return "&".join(_encode_pair(index, name, value) for index, (name, value) in enumerate(pairs, start=1))


def public_part(
    environment: Iterable[tuple[str, str]],
    manifest_url: str,
    manifest_sha256: str,
    arguments: Sequence[str],
    glidein: str = "glidein_startup.sh",
) -> str:
    """The part of the user data that may be in the job ad: everything but the token.

    Reserved names in `environment` are refused: the bootstrap would read
    them as instructions, not pass them on.
    """
    env = tuple(environment)
    for index, (name, _value) in enumerate(env, start=1):
        if name in RESERVED or name == PILOT_TOKEN_FILE:
            raise UserDataError(f"environment variable {index} ({name}) is a name the VM bootstrap reserves")
    if not _SHA256.fullmatch(manifest_sha256):
        raise UserDataError(f"{VM_MANIFEST_SHA256} must be 64 lowercase hex digits")
    return encode(
        (
            (USER_DATA, USER_DATA_VERSION),
            *env,
            (VM_MANIFEST_URL, manifest_url),
            (VM_MANIFEST_SHA256, manifest_sha256),
            (VM_GLIDEIN, glidein),
            *((VM_ARG, word) for word in arguments),
        )
    )


def secret_part(token: str) -> str:
    """``&UPDRAFT_PILOT_TOKEN_VALUE=<token>``: appended to the public part, kept in a 0600 file.

    It starts with ``&`` because HTCondor's EC2 GAHP sends ``ec2_user_data``
    followed directly by the contents of ``ec2_user_data_file``.
    """
    if not token:
        raise UserDataError(f"{PILOT_TOKEN_VALUE}: the pilot token is empty")
    return "&" + _encode_pair(1, PILOT_TOKEN_VALUE, token)


def gce_metadata(public: str) -> str:
    """The ``gce_metadata`` submit value: the public part as the one item `GCE_USER_DATA_ITEM`.

    The query string has no comma (``quote`` encodes it), so GCE's
    comma-separated ``name=value`` list cannot split it.
    """
    return f"{GCE_USER_DATA_ITEM}={public}"


def gce_token_line(token: str) -> str:
    """The ``gce_metadata_file`` contents: the raw token as the item `GCE_TOKEN_ITEM`, one line."""
    if not token or "\n" in token or "\0" in token:
        raise UserDataError(f"{GCE_TOKEN_ITEM}: the pilot token must be one non-empty line")
    return f"{GCE_TOKEN_ITEM}={token}\n"


def gce_join(public: str, token: str | None) -> str:
    """What the bootstrap parses on GCE: the user-data item, then ``&UPDRAFT_PILOT_TOKEN_VALUE=<token item>``.

    The token item is joined as it is (a JWT is already URL-safe); one that
    is not fails `parse` like any other bad value.
    """
    return public if token is None else f"{public}&{PILOT_TOKEN_VALUE}={token}"


def _encode_pair(index: int, name: str, value: str) -> str:
    if not NAME_RULE.fullmatch(name):
        raise UserDataError(f"pair {index}: name {_shown(name)} does not match {NAME_RULE.pattern}")
    if "\0" in value:
        raise UserDataError(f"pair {index} ({name}): the value holds a NUL, which no environment can carry")
    try:
        encoded = quote(value, safe="")
    except UnicodeEncodeError as err:
        raise UserDataError(f"pair {index} ({name}): the value is not encodable as UTF-8") from err
    return f"{name}={encoded}"


# --- reading -------------------------------------------------------------------


def parse(text: str) -> list[tuple[str, str]]:
    """The pairs of `text`, in order, each value decoded; refuses anything `encode` would not write.

    Trailing newlines are dropped (a file written by hand or by ``echo``
    ends with one); anything else outside the format is an error: a pair
    without ``=``, an empty pair, a name outside the rule, a value with a
    character ``quote`` would have encoded (``+`` included, which form
    decoders read as a space), a bad ``%XX``, an encoded NUL, bytes that are
    not UTF-8, and a first pair other than ``UPDRAFT_USER_DATA=1``.
    """
    body = text.rstrip("\n")
    if not body:
        raise UserDataError(f"the user data is empty: it must start with {USER_DATA}={USER_DATA_VERSION}")
    if not body.isascii():
        raise UserDataError("the user data holds a non-ASCII character: values must be percent-encoded")
    pairs = [_parse_pair(index, piece) for index, piece in enumerate(body.split("&"), start=1)]
    if pairs[0] != (USER_DATA, USER_DATA_VERSION):
        raise UserDataError(f"the first pair must be {USER_DATA}={USER_DATA_VERSION}: this is not Updraft user data")
    return pairs


def boot_plan(pairs: Sequence[tuple[str, str]]) -> BootPlan:
    """The bootstrap's reading of parsed pairs: its own instructions apart, the rest the pilot's environment.

    The manifest URL, its digest and the glidein's name must each appear
    exactly once, the token at most once; the digest is 64 lowercase hex
    digits and the glidein a plain file name (it lands in the sandbox).
    """
    counts = {name: sum(1 for n, _ in pairs if n == name) for name in SINGLE}
    for name in SINGLE:
        if counts[name] > 1:
            raise UserDataError(f"{name} appears {counts[name]} times; at most once")
    for name in (VM_MANIFEST_URL, VM_MANIFEST_SHA256, VM_GLIDEIN):
        if counts[name] == 0:
            raise UserDataError(f"{name} is missing")
    single = {name: value for name, value in pairs if name in SINGLE}
    if not _SHA256.fullmatch(single[VM_MANIFEST_SHA256]):
        raise UserDataError(f"{VM_MANIFEST_SHA256} must be 64 lowercase hex digits")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", single[VM_GLIDEIN]) or single[VM_GLIDEIN].startswith("."):
        raise UserDataError(f"{VM_GLIDEIN} must be a plain file name (letters, digits, '.', '_', '-')")
    return BootPlan(
        environment=tuple((n, v) for n, v in pairs[1:] if n not in RESERVED),
        manifest_url=single[VM_MANIFEST_URL],
        manifest_sha256=single[VM_MANIFEST_SHA256],
        glidein=single[VM_GLIDEIN],
        arguments=tuple(v for n, v in pairs if n == VM_ARG),
        token=single.get(PILOT_TOKEN_VALUE),
    )


def _parse_pair(index: int, piece: str) -> tuple[str, str]:
    if not piece:
        raise UserDataError(f"pair {index} is empty (two '&' in a row, or one at an end)")
    name, sep, encoded = piece.partition("=")
    if not sep:
        # The piece may be a token that lost its name: never repeat it.
        raise UserDataError(f"pair {index} has no '='")
    if not NAME_RULE.fullmatch(name):
        raise UserDataError(f"pair {index}: name {_shown(name)} does not match {NAME_RULE.pattern}")
    if not _ENCODED_VALUE.fullmatch(encoded):
        raise UserDataError(f"pair {index} ({name}): the value is not percent-encoded (a raw character or a bad %XX)")
    value_bytes = _decode_bytes(encoded)
    if b"\0" in value_bytes:
        raise UserDataError(f"pair {index} ({name}): the value holds an encoded NUL")
    try:
        return name, value_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise UserDataError(f"pair {index} ({name}): the decoded value is not UTF-8") from None


def _decode_bytes(encoded: str) -> bytes:
    """Percent-decoding to bytes, after `_ENCODED_VALUE` has vouched for every ``%XX``."""
    out = bytearray()
    i = 0
    while i < len(encoded):
        if encoded[i] == "%":
            out.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(encoded[i]))
            i += 1
    return bytes(out)


def _shown(name: str) -> str:
    """A bad name as an error shows it: quoted, cut short, printable.

    It may be anything, even a value that lost its '='. The bootstrap
    shows it the same way, so both say the same thing.
    """
    shown = re.sub(r"[^\x20-\x7e]", "?", name[:_NAME_SHOWN])
    return f"'{shown}" + ("...'" if len(name) > _NAME_SHOWN else "'")
