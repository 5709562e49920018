"""The factory's side of sealed credentials: its key pair, opening requests, keeping pilot tokens.

- The **keyring** lives in ``<work_dir>/keyring/keyring.json`` (0600): the current
  X25519 key and the retired ones still inside their grace period. It is
  rotated when the current key has served ``key_rotation_seconds``.
- **Opening** is pure: a request ad's sealed text, the keys and the names
  in; a `Credential` or the reason it did not open out.
- The **store** keeps each opened token as ``<store>/<frontend>/<id>.token``
  (folders 0700, files 0600, written atomically), where the submit
  description's encrypted input transfer picks it up, and deletes tokens no
  queued pilot and no current request still names.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from updraft import envelope
from updraft.errors import SealError, TokenError, UpdraftError
from updraft.factory.config import FactoryConfig
from updraft.factory.model import Credential
from updraft.protocol import F_KEY_ID, F_PUBLIC_KEY, NAME, PublishedRequest
from updraft.secretfiles import private_dir, write_private
from updraft.tokens import read_claims

log = logging.getLogger(__name__)

KEYRING_FILE = "keyring.json"
TOKEN_SUFFIX = ".token"
USER_DATA_SUFFIX = ".userdata"
"""A cloud pilot's token, written the way its user data carries it (`save_user_data`)."""
STORED_SUFFIXES = (TOKEN_SUFFIX, USER_DATA_SUFFIX)
CREDENTIAL_ID = re.compile(r"[0-9a-f]{32}")
PAYLOAD_IDENTITY, PAYLOAD_TOKEN = "identity", "token"
MAX_TOKEN_CHARS = 16 * 1024


class CredentialStoreError(UpdraftError):
    """The keyring or a pilot token could not be read or written."""


def credential_id(token: str) -> str:
    """Names a token without revealing it: in job ads, file names and logs."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def store_dir(config: FactoryConfig) -> Path:
    return config.credentials.store_dir or config.work_dir / "credentials"


def keyring_path(config: FactoryConfig) -> Path:
    """Apart from the token store: the store may belong to the pilots' owner, the private key never does."""
    return config.work_dir / "keyring" / KEYRING_FILE


# ------------------------------------------------------------------ keyring


def _raw_private(key: X25519PrivateKey) -> str:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(raw).decode("ascii")


def _private(text: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))


class _CurrentKeyJson(TypedDict):
    key: str
    created_at: float


class _RetiredKeyJson(TypedDict):
    key: str
    retired_at: float


class KeyringJson(TypedDict):
    """The keyring file's content: base64 raw X25519 private keys."""

    current: _CurrentKeyJson
    retired: NotRequired[list[_RetiredKeyJson]]


def keyring_to_json(ring: envelope.Keyring) -> KeyringJson:
    return {
        "current": {"key": _raw_private(ring.current), "created_at": ring.created_at},
        "retired": [{"key": _raw_private(r.key), "retired_at": r.retired_at} for r in ring.retired],
    }


def keyring_from_json(data: KeyringJson, grace_seconds: float) -> envelope.Keyring:
    current = data["current"]
    retired = tuple(envelope.RetiredKey(_private(r["key"]), float(r["retired_at"])) for r in data.get("retired", ()))
    return envelope.Keyring(_private(current["key"]), retired, grace_seconds, float(current["created_at"]))


def load_keyring(config: FactoryConfig, now: float, *, read_only: bool = False) -> envelope.Keyring | None:
    """The factory's keyring, created on first use and rotated when due; saved whenever it changes.

    `read_only` (for `plan` and `status`) neither creates, rotates nor saves:
    None when there is no keyring yet. A keyring that cannot be read is an
    error, not a reason to make a new one silently: every frontend's sealed
    requests would stop opening.
    """
    settings = config.credentials
    path = keyring_path(config)
    try:
        ring = keyring_from_json(json.loads(path.read_bytes()), settings.key_grace_seconds)
    except FileNotFoundError:
        if read_only:
            return None
        ring = envelope.Keyring(X25519PrivateKey.generate(), (), settings.key_grace_seconds, now)
        log.warning("new credential key %s in %s", envelope.key_id(ring.current.public_key())[:16], path)
        _save_keyring(path, ring)
        return ring
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CredentialStoreError(
            f"the factory keyring {path} is unreadable ({type(err).__name__}); "
            "move it aside to start a new one (frontends then re-seal to the new key)"
        ) from err
    if read_only:
        return ring
    kept = ring.without_expired(now)
    if ring.due(now, settings.key_rotation_seconds):
        kept = kept.rotate(now)
        log.warning(
            "credential key rotated to %s; the previous one opens requests for %d s more",
            envelope.key_id(kept.current.public_key())[:16],
            settings.key_grace_seconds,
        )
    if kept != ring:
        _save_keyring(path, kept)  # a retired key past its grace is gone from disk too
    return kept


def _save_keyring(path: Path, ring: envelope.Keyring) -> None:
    try:
        write_private(path, json.dumps(keyring_to_json(ring)).encode())
    except OSError as err:
        raise CredentialStoreError(f"cannot write the factory keyring {path}: {err.strerror}") from err


def public_key_attributes(ring: envelope.Keyring | None) -> dict[str, str]:
    """What the factory ad publishes: the current public key and its id (nothing without a keyring)."""
    if ring is None:
        return {}
    public = ring.current.public_key()
    return {F_PUBLIC_KEY: envelope.public_key_text(public), F_KEY_ID: envelope.key_id(public)}


# ------------------------------------------------------------------ opening (pure)


def open_credential(
    request: PublishedRequest, openers: Mapping[str, X25519PrivateKey], factory: str
) -> tuple[Credential | None, str | None]:
    """(the credential, None), (None, why it does not open), or (None, None) when none was sent."""
    if not request.sealed:
        return None, None
    try:
        binding = envelope.Binding(factory, request.frontend, request.group, request.entry)
        payload = envelope.open_sealed(request.sealed, openers, binding)
    except SealError as err:
        return None, str(err)
    identity, token = payload.get(PAYLOAD_IDENTITY), payload.get(PAYLOAD_TOKEN)
    if not identity or not token:
        return None, f"the opened credential lacks {PAYLOAD_IDENTITY!r} or {PAYLOAD_TOKEN!r}"
    if len(token) > MAX_TOKEN_CHARS or any(c.isspace() for c in token):
        return None, f"the opened token is not one line of at most {MAX_TOKEN_CHARS} characters"
    expires_at, authz = _claims(token)
    return Credential(credential_id(token), identity, token, expires_at, authz), None


def _claims(token: str) -> tuple[int | None, tuple[str, ...]]:
    """The token's expiry and scope, where it is a JWT; a token the factory cannot read (another
    pool's format) passes through as it did, allowing nothing that `decide` could rely on."""
    try:
        claims = read_claims(token)
    except TokenError:
        return None, ()
    return claims.expires_at, claims.authz


# ------------------------------------------------------------------ the store


@dataclass(frozen=True)
class CredentialStore:
    """Pilot tokens on disk, one folder per frontend."""

    root: Path
    owner: tuple[int, int] | None = None

    @classmethod
    def of(cls, config: FactoryConfig) -> CredentialStore:
        settings = config.credentials
        owner = None
        if settings.owner_uid is not None:
            owner = (settings.owner_uid, settings.owner_gid if settings.owner_gid is not None else settings.owner_uid)
        return cls(store_dir(config), owner)

    def path(self, frontend: str, cid: str, suffix: str = TOKEN_SUFFIX) -> Path:
        """Where a token lives; names are checked again here, since they become paths."""
        if not NAME.fullmatch(frontend) or not CREDENTIAL_ID.fullmatch(cid):
            raise CredentialStoreError(f"refusing a credential path for frontend {frontend[:40]!r}, id {cid[:40]!r}")
        return self.root / frontend / f"{cid}{suffix}"

    def save(self, frontend: str, credential: Credential) -> Path:
        """The token's file, written if it is not there yet (tokens are immutable: same id, same bytes).

        With an `owner`, the store's root stays the factory's and is only
        traversable by others (0711), while each frontend's folder (0700) and
        token (0600) belong to the owner: the owner cannot swap a folder for
        a symlink that the factory, running as root, would then write through.
        """
        return self._write(frontend, credential, TOKEN_SUFFIX, credential.token + "\n")

    def save_user_data(self, frontend: str, credential: Credential, text: str) -> Path:
        """The secret part of a cloud pilot's user data (`text`: the token as its grid type writes it),
        beside the token and kept the same way: the submit description names this file, so the
        token reaches the instance without ever being in the job ad (docs/security.md)."""
        return self._write(frontend, credential, USER_DATA_SUFFIX, text)

    def _write(self, frontend: str, credential: Credential, suffix: str, text: str) -> Path:
        path = self.path(frontend, credential.credential_id, suffix)
        if path.exists():
            return path
        try:
            private_dir(self.root, mode=0o711 if self.owner is not None else 0o700)
            write_private(path, text.encode(), self.owner)
        except OSError as err:
            raise CredentialStoreError(
                f"cannot store the pilot token {credential.credential_id} of frontend {frontend}: {err.strerror or err}"
            ) from err
        return path

    def prune(self, needed: Iterable[tuple[str, str]]) -> list[Path]:
        """Delete every stored token not in `needed` ((frontend, id) pairs); returns what was deleted.

        Only plain files in plain folders of the store are looked at; a
        symlink is never followed (it is deleted like a stray token).
        """
        keep = set(needed)
        deleted: list[Path] = []
        if not self.root.is_dir():
            return deleted
        for folder in sorted(self.root.iterdir()):
            if folder.is_symlink() or not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                suffix = next((s for s in STORED_SUFFIXES if path.name.endswith(s)), None)
                if suffix is not None and (folder.name, path.name.removesuffix(suffix)) not in keep:
                    path.unlink(missing_ok=True)
                    deleted.append(path)
        return deleted


def keyring_or_problem(
    config: FactoryConfig, now: float, *, read_only: bool = False
) -> tuple[envelope.Keyring | None, list[str]]:
    """The keyring (`read_only`: as stored, None when there is none yet), or none and why: then no
    credential opens this cycle, and the rest of the cycle goes on."""
    try:
        return load_keyring(config, now, read_only=read_only), []
    except CredentialStoreError as err:
        log.error("%s", err)
        return None, [str(err)]
