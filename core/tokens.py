"""HTCondor IDTOKENS for pilots, minted by the frontend from its pool's signing key.

A pilot's startd must prove to the VO collector that the VO sent it. The
frontend holds (read access to) the VO pool's signing key and mints, per
entry, a short-lived token whose only authorization is to advertise a
startd: a token stolen from a worker node can register a slot for a few
hours and do nothing else.

The token is the JWT the daemons verify: HS256 over the claims, keyed by
HKDF-SHA256 of the unscrambled signing key (salt "htcondor", info
"master jwt"; the POOL key is used doubled), with the key's file name as
the JWT ``kid``. These are facts of HTCondor's wire format; PyJWT does the
JWT itself and `cryptography` the HKDF. Everything except `load_signing_key`
is pure and takes `now`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from updraft.errors import TokenError

SCRAMBLE = bytes((0xDE, 0xAD, 0xBE, 0xEF))
POOL_KEY_ID = "POOL"
PILOT_AUTHZ = ("ADVERTISE_STARTD",)
"""What a pilot token allows: the startd advertises itself, and nothing more."""


@dataclass(frozen=True)
class SigningKey:
    """The derived JWT key of one signing key file; the key bytes never show in a repr."""

    key_id: str
    jwt_key: bytes = field(repr=False)


def derive_jwt_key(stored: bytes, key_id: str) -> bytes:
    """The HMAC key HTCondor derives from a signing key file's bytes (as condor_store_cred wrote them)."""
    password = bytes(b ^ s for b, s in zip(stored, cycle(SCRAMBLE)))
    password = password.split(b"\0", 1)[0]
    if not password:
        raise TokenError(f"signing key {key_id!r} is empty")
    if key_id == POOL_KEY_ID:
        password += password
    return HKDF(algorithm=SHA256(), length=32, salt=b"htcondor", info=b"master jwt").derive(password)


SIGNING_KEY_SETTING = "pilot_tokens.signing_key_file"
"""The config key that names the signing key, for errors about it."""


def load_signing_key(path: Path) -> SigningKey:
    """The key in `path`, named after its file (as in SEC_PASSWORD_DIRECTORY); errors never show its bytes.

    An error names the config key as well as the path: the operator edits the key.
    """
    try:
        stored = path.read_bytes()
    except OSError as err:
        raise TokenError(f"{SIGNING_KEY_SETTING}: cannot read the signing key {path}: {err.strerror}") from err
    return SigningKey(path.name, derive_jwt_key(stored, path.name))


@dataclass(frozen=True)
class TokenClaims:
    """What the frontend needs to know of a token it minted: for whom, until when."""

    identity: str
    issuer: str
    issued_at: int
    expires_at: int | None
    """None: the token never expires (condor_token_create without -lifetime)."""
    authz: tuple[str, ...]
    token_id: str


def mint(
    key: SigningKey, identity: str, issuer: str, lifetime_seconds: int, now: float, authz: tuple[str, ...] = PILOT_AUTHZ
) -> str:
    """A token for `identity`, valid from `now` for `lifetime_seconds`, limited to `authz`.

    `issuer` is the pool's TRUST_DOMAIN: daemons offer and accept only
    tokens their own trust domain issued.
    """
    if lifetime_seconds <= 0:
        raise TokenError(f"a token lifetime must be positive, got {lifetime_seconds}")
    if not authz:
        raise TokenError("a pilot token must be limited to at least one authorization level")
    issued = int(now)
    claims = {
        "sub": identity,
        "iss": issuer,
        "iat": issued,
        "exp": issued + lifetime_seconds,
        "jti": uuid.uuid4().hex,
        "scope": " ".join(f"condor:/{level}" for level in authz),
    }
    return jwt.encode(claims, key.jwt_key, algorithm="HS256", headers={"kid": key.key_id})


def read_claims(token: str) -> TokenClaims:
    """The claims of a token, unverified: the frontend reads back its own tokens to time their refresh."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as err:
        raise TokenError(f"not a readable token: {type(err).__name__}") from err
    try:
        return TokenClaims(
            identity=str(claims["sub"]),
            issuer=str(claims["iss"]),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]) if "exp" in claims else None,
            authz=tuple(s.removeprefix("condor:/") for s in str(claims.get("scope", "")).split()),
            token_id=str(claims.get("jti", "")),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise TokenError(f"token claims incomplete: {err}") from err


def verify(token: str, key: SigningKey, now: float) -> TokenClaims:
    """The claims, if `key` signed the token and it has not expired at `now` (what a daemon checks)."""
    try:
        jwt.decode(token, key.jwt_key, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})
    except jwt.PyJWTError as err:
        raise TokenError(f"token does not verify with key {key.key_id!r}: {type(err).__name__}") from err
    claims = read_claims(token)
    if claims.expires_at is not None and claims.expires_at <= now:
        raise TokenError(f"token for {claims.identity} expired {int(now - claims.expires_at)} s ago")
    return claims


def needs_refresh(claims: TokenClaims | None, now: float, refresh_seconds: int) -> bool:
    """Mint a new token when there is none, or less than `refresh_seconds` of it is left.

    Pilots queued now may start hours later; the margin keeps the token a
    pilot receives worth having.
    """
    if claims is None:
        return True
    return claims.expires_at is not None and claims.expires_at - now < refresh_seconds
