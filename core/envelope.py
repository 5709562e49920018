"""Credentials from a frontend to a factory, sealed to the factory's public key.

Request ads travel through the WMS collector, which every frontend and
factory of the grid can read. What a pilot needs to join the VO pool (a
token) and who the frontend claims to be must therefore be readable by the
one factory it is meant for and by nobody else, and must not survive being
edited or copied into another ad.

The sealing is HPKE (RFC 9180) in base mode, as the `cryptography` library
implements it: X25519, HKDF-SHA256, ChaCha20-Poly1305. Nothing here is a
cipher of our own; this module only decides what gets bound to what:

- the **key id** (SHA-256 of the factory's raw public key) travels in the
  clear, so the factory picks the right key during a rotation and a blob
  for an unknown key is refused before any decryption is tried;
- the HPKE **info** (the context every key and nonce is derived from, so
  it works as associated data) names the format and the request the blob
  was sealed for: factory, frontend, group and entry (`Binding`). A blob
  copied from frontend A's ad into frontend B's, sent to another factory,
  or replayed in the same frontend's request for another entry or group
  (a per-entry pilot token used for an entry it was not minted for) does
  not open;
- the AEAD tag makes any flipped bit fail.

Pure: keys and texts in, texts and mappings out, `now` passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from updraft.errors import SealError
from updraft.protocol import MAX_SEALED

FORMAT = "updraft-seal-2"
"""Version 2 binds group and entry too; a version-1 blob no longer opens (seal and open must agree)."""
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
MAX_SEALED_CHARS = MAX_SEALED
"""A request ad has no business carrying more; longer input is refused before decoding."""


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: X25519PublicKey) -> str:
    """The SHA-256 of the raw public key, in hex: what factory ads and sealed blobs name a key by."""
    return hashlib.sha256(_raw(public)).hexdigest()


def public_key_text(public: X25519PublicKey) -> str:
    """The public key as a factory advertises it (URL-safe base64 of the 32 raw bytes)."""
    return base64.urlsafe_b64encode(_raw(public)).decode("ascii")


def parse_public_key(text: str, claimed_id: str) -> X25519PublicKey:
    """A factory's advertised key, checked against the key id advertised beside it."""
    try:
        public = X25519PublicKey.from_public_bytes(_strict_b64(text))
    except (ValueError, binascii.Error, UnicodeEncodeError) as err:
        raise SealError("the advertised public key is not 32 bytes of URL-safe base64") from err
    if key_id(public) != claimed_id:
        raise SealError(f"the advertised public key does not match its key id {claimed_id[:16]!r}...")
    return public


def _strict_b64(text: str) -> bytes:
    """URL-safe base64 that refuses stray characters (the stdlib default skips them)."""
    return base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)


@dataclass(frozen=True)
class Binding:
    """The one request a sealed credential is for: the factory that opens it, the frontend that sent it,
    and the group and entry it was minted for."""

    factory: str
    frontend: str
    group: str
    entry: str

    def info(self) -> bytes:
        """The HPKE info; NUL cannot occur in any name of a valid ad, so no two bindings share one."""
        return "\0".join((FORMAT, self.factory, self.frontend, self.group, self.entry)).encode()

    def describe(self) -> str:
        return f"frontend {self.frontend!r}, group {self.group!r}, entry {self.entry!r}"


def seal(payload: Mapping[str, str], public: X25519PublicKey, binding: Binding) -> str:
    """`payload` sealed for the request `binding` names: "<key id>:<base64 blob>"."""
    plaintext = json.dumps(dict(payload), sort_keys=True, separators=(",", ":")).encode()
    blob = SUITE.encrypt(plaintext, public, binding.info())
    return f"{key_id(public)}:{base64.urlsafe_b64encode(blob).decode('ascii')}"


def sealed_key_id(text: str) -> str:
    """The key id a sealed text names, without opening it (for logs and monitoring)."""
    return _split(text)[0]


def _split(text: object) -> tuple[str, bytes]:
    """Any value a request ad carries: the wire is not trusted to send a string."""
    if not isinstance(text, str) or len(text) > MAX_SEALED_CHARS:
        raise SealError(f"a sealed credential is a string of at most {MAX_SEALED_CHARS} characters")
    kid, sep, body = text.partition(":")
    if not sep or len(kid) != 64 or any(c not in "0123456789abcdef" for c in kid):
        raise SealError("a sealed credential starts with a 64-digit lowercase hex key id and a colon")
    try:
        return kid, _strict_b64(body)
    except (ValueError, binascii.Error, UnicodeEncodeError) as err:
        raise SealError(f"the sealed credential for key {kid[:16]}... is not URL-safe base64") from err


def open_sealed(text: str, keys: Mapping[str, X25519PrivateKey], binding: Binding) -> dict[str, str]:
    """The payload, if `text` was sealed with one of `keys` for exactly the request `binding` names.

    Every failure is a SealError that says which check failed and never
    what the blob holds: unknown key id, bad encoding, a tag that does not
    verify (tampered, or sealed for another factory, frontend, group or
    entry), or a payload that is not a JSON object of strings.
    """
    kid, blob = _split(text)
    private = keys.get(kid)
    if private is None:
        raise SealError(f"sealed with key {kid[:16]}..., which this factory does not hold (retired, or never ours)")
    try:
        plaintext = SUITE.decrypt(blob, private, binding.info())
    except (InvalidTag, ValueError) as err:
        raise SealError(
            f"the credential sealed with key {kid[:16]}... does not verify for {binding.describe()}: "
            "tampered, or sealed for another factory, frontend, group or entry"
        ) from err
    return _payload(plaintext)


def _payload(plaintext: bytes) -> dict[str, str]:
    try:
        found = json.loads(plaintext)
    except (ValueError, UnicodeDecodeError) as err:
        raise SealError("the opened credential is not JSON") from err
    if not isinstance(found, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        raise SealError("the opened credential is not an object of strings")
    return found


@dataclass(frozen=True)
class RetiredKey:
    key: X25519PrivateKey
    retired_at: float


@dataclass(frozen=True)
class Keyring:
    """A factory's current key and the keys it rotated out, each honoured for `grace_seconds`.

    Frontends seal with the key they last saw advertised; during the grace
    period requests sealed with the previous key still open, so a rotation
    never refuses a frontend that has not re-read the factory ad yet.
    """

    current: X25519PrivateKey
    retired: tuple[RetiredKey, ...] = ()
    grace_seconds: float = 3600.0
    created_at: float = 0.0
    """When `current` became current: what rotation is timed from."""

    def rotate(self, now: float, new: X25519PrivateKey | None = None) -> Keyring:
        """A new current key; the old one is kept for the grace period, expired ones dropped."""
        keep = tuple(r for r in self.retired if now - r.retired_at < self.grace_seconds)
        return Keyring(
            new or X25519PrivateKey.generate(), (RetiredKey(self.current, now), *keep), self.grace_seconds, now
        )

    def without_expired(self, now: float) -> Keyring:
        """This keyring without the retired keys past their grace period."""
        keep = tuple(r for r in self.retired if now - r.retired_at < self.grace_seconds)
        return self if keep == self.retired else Keyring(self.current, keep, self.grace_seconds, self.created_at)

    def due(self, now: float, rotation_seconds: float) -> bool:
        """Whether the current key has served its time."""
        return now - self.created_at >= rotation_seconds

    def openers(self, now: float) -> dict[str, X25519PrivateKey]:
        """The keys a request may be sealed with at `now`, by key id."""
        keys = {key_id(self.current.public_key()): self.current}
        for retired in self.retired:
            if now - retired.retired_at < self.grace_seconds:
                keys.setdefault(key_id(retired.key.public_key()), retired.key)
        return keys
