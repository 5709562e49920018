"""Pilot tokens: HTCondor's IDTOKEN format, limited scope, lifetime and refresh.

That the daemons accept these tokens is proven on the lab
(tests/integration/test_security.py); here the format and the timing.
"""

from __future__ import annotations

import base64
import json
from itertools import cycle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from updraft.errors import TokenError
from updraft.tokens import (
    PILOT_AUTHZ,
    SCRAMBLE,
    SigningKey,
    derive_jwt_key,
    load_signing_key,
    mint,
    needs_refresh,
    read_claims,
    verify,
)

NOW = 1_800_000_000.0


def scrambled(password: bytes) -> bytes:
    """What condor_store_cred -f writes for `password`."""
    return bytes(b ^ s for b, s in zip(password, cycle(SCRAMBLE)))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "POOL"
    path.write_bytes(scrambled(b"correct horse battery staple"))
    return path


def _segments(token: str) -> tuple[dict, dict]:
    header, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(header))), json.loads(base64.urlsafe_b64decode(pad(payload)))


def test_a_pilot_token_carries_identity_issuer_lifetime_and_only_the_startd_scope(key_file: Path) -> None:
    token = mint(load_signing_key(key_file), "pilot@lab", "lab", 86400, NOW)
    header, claims = _segments(token)
    assert header == {"alg": "HS256", "kid": "POOL", "typ": "JWT"}
    assert claims["sub"] == "pilot@lab" and claims["iss"] == "lab"
    assert claims["iat"] == int(NOW) and claims["exp"] == int(NOW) + 86400
    assert claims["scope"] == "condor:/ADVERTISE_STARTD"
    assert len(claims["jti"]) == 32


def test_every_token_has_its_own_id(key_file: Path) -> None:
    key = load_signing_key(key_file)
    ids = {read_claims(mint(key, "pilot@lab", "lab", 60, NOW)).token_id for _ in range(20)}
    assert len(ids) == 20


def test_the_pool_key_is_used_doubled_and_a_named_key_as_it_is() -> None:
    stored = scrambled(b"secret")
    assert derive_jwt_key(stored, "POOL") == derive_jwt_key(scrambled(b"secretsecret"), "OTHER")
    assert derive_jwt_key(stored, "POOL") != derive_jwt_key(stored, "OTHER")


def test_a_trailing_nul_of_the_stored_password_is_not_part_of_the_key() -> None:
    assert derive_jwt_key(scrambled(b"secret\0"), "POOL") == derive_jwt_key(scrambled(b"secret"), "POOL")


def test_verify_accepts_our_key_and_refuses_another_and_an_expired_token(key_file: Path, tmp_path: Path) -> None:
    key = load_signing_key(key_file)
    token = mint(key, "pilot@lab", "lab", 600, NOW)
    assert verify(token, key, NOW + 599).authz == PILOT_AUTHZ
    other = tmp_path / "other" / "POOL"
    other.parent.mkdir()
    other.write_bytes(scrambled(b"another pool"))
    with pytest.raises(TokenError, match="does not verify"):
        verify(token, load_signing_key(other), NOW)
    with pytest.raises(TokenError, match="expired"):
        verify(token, key, NOW + 600)


@given(st.binary(min_size=1, max_size=64).filter(lambda b: b"\0" not in b), st.integers(0, 200))
def test_a_token_verifies_with_the_key_it_was_minted_with(password: bytes, index: int) -> None:
    key = SigningKey("POOL", derive_jwt_key(scrambled(password), "POOL"))
    token = mint(key, f"pilot{index}@lab", "lab", 60, NOW)
    assert verify(token, key, NOW).identity == f"pilot{index}@lab"
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(TokenError):
        verify(flipped, key, NOW)


def test_a_missing_or_empty_key_is_a_clear_error_that_shows_no_key(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match=r"^pilot_tokens\.signing_key_file: cannot read the signing key .*/absent"):
        load_signing_key(tmp_path / "absent")
    empty = tmp_path / "POOL"
    empty.write_bytes(b"")
    with pytest.raises(TokenError, match="empty"):
        load_signing_key(empty)
    assert "correct" not in repr(SigningKey("POOL", b"correct horse"))


@pytest.mark.parametrize("lifetime, authz, message", [(0, PILOT_AUTHZ, "positive"), (60, (), "at least one")])
def test_unlimited_tokens_are_refused(key_file: Path, lifetime: int, authz: tuple, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        mint(load_signing_key(key_file), "pilot@lab", "lab", lifetime, NOW, authz)


@pytest.mark.parametrize(
    "left, refresh, expected",
    [
        (None, 3600, True),
        (7200, 3600, False),
        (3601, 3600, False),
        (3599, 3600, True),
        (-10, 3600, True),
    ],
)
def test_a_token_is_refreshed_before_it_expires(key_file: Path, left: int | None, refresh: int, expected: bool) -> None:
    claims = (
        None
        if left is None
        else read_claims(mint(load_signing_key(key_file), "p@lab", "lab", 86400, NOW - 86400 + left))
    )
    assert needs_refresh(claims, NOW, refresh) is expected


def test_garbage_is_not_a_token() -> None:
    with pytest.raises(TokenError, match="not a readable token"):
        read_claims("not.a.token")


def test_a_token_without_expiry_is_never_refreshed(key_file: Path) -> None:
    import jwt

    key = load_signing_key(key_file)
    token = jwt.encode({"sub": "updraft@lab", "iss": "lab", "iat": int(NOW)}, key.jwt_key, headers={"kid": "POOL"})
    claims = verify(token, key, NOW + 10**8)
    assert claims.expires_at is None and needs_refresh(claims, NOW + 10**8, 3600) is False
