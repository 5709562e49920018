"""Sealed credentials: they open only for the factory, key and frontend they were sealed for."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft.envelope import (
    Keyring,
    key_id,
    open_sealed,
    parse_public_key,
    public_key_text,
    seal,
    sealed_key_id,
)
from updraft.errors import SealError

TOKEN = "eyJhbGciOiJIUzI1NiJ9.canary-token-7f3a.sig"
PAYLOAD = {"identity": "vo-frontend@lab", "token": TOKEN}


@pytest.fixture(scope="module")
def factory_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def keys_of(*private: X25519PrivateKey) -> dict:
    return {key_id(k.public_key()): k for k in private}


def test_a_sealed_payload_opens_for_its_factory_and_frontend(factory_key) -> None:
    sealed = seal(PAYLOAD, factory_key.public_key(), "fac1", "vo1")
    assert TOKEN not in sealed and "vo-frontend" not in sealed
    assert sealed_key_id(sealed) == key_id(factory_key.public_key())
    assert open_sealed(sealed, keys_of(factory_key), "fac1", "vo1") == PAYLOAD


def test_sealing_twice_gives_different_texts(factory_key) -> None:
    """A fresh ephemeral key each time: equal tokens cannot be spotted across ads."""
    public = factory_key.public_key()
    assert seal(PAYLOAD, public, "fac1", "vo1") != seal(PAYLOAD, public, "fac1", "vo1")


@pytest.mark.parametrize(("factory", "frontend"), [("fac1", "vo2"), ("fac2", "vo1"), ("fac1", "vo1\0")])
def test_a_blob_moved_to_another_frontend_or_factory_does_not_open(factory_key, factory, frontend) -> None:
    sealed = seal(PAYLOAD, factory_key.public_key(), "fac1", "vo1")
    with pytest.raises(SealError, match="does not verify") as caught:
        open_sealed(sealed, keys_of(factory_key), factory, frontend)
    assert TOKEN not in str(caught.value)


def test_an_unknown_key_id_is_refused_before_decrypting(factory_key) -> None:
    other = X25519PrivateKey.generate()
    sealed = seal(PAYLOAD, other.public_key(), "fac1", "vo1")
    with pytest.raises(SealError, match="does not hold"):
        open_sealed(sealed, keys_of(factory_key), "fac1", "vo1")


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_in_the_blob_is_refused(factory_key, position, bit) -> None:
    kid, _, body = seal(PAYLOAD, factory_key.public_key(), "fac1", "vo1").partition(":")
    blob = bytearray(base64.urlsafe_b64decode(body))
    blob[position % len(blob)] ^= 1 << bit
    tampered = f"{kid}:{base64.urlsafe_b64encode(bytes(blob)).decode()}"
    with pytest.raises(SealError, match="does not verify"):
        open_sealed(tampered, keys_of(factory_key), "fac1", "vo1")


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.text(max_size=300), st.binary(max_size=100).map(lambda b: b.hex() + ":" + b.decode("latin-1")))
)
def test_garbage_is_refused_with_a_seal_error_only(factory_key, text) -> None:
    with pytest.raises(SealError):
        open_sealed(text, keys_of(factory_key), "fac1", "vo1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nocolon", "64-digit lowercase hex key id"),
        ("ABCD" * 16 + ":AAAA", "64-digit lowercase hex key id"),
        ("a" * 64 + ":***", "not URL-safe base64"),
        ("a" * 64 + ":" + "A" * 70000, "at most"),
    ],
)
def test_malformed_texts_say_what_is_wrong(factory_key, text, message) -> None:
    with pytest.raises(SealError, match=message):
        open_sealed(text, keys_of(factory_key), "fac1", "vo1")


def test_a_payload_that_is_not_an_object_of_strings_is_refused(factory_key) -> None:
    from updraft import envelope

    for bad in (b"[1, 2]", b'{"token": 3}', b"\xff"):
        blob = envelope.SUITE.encrypt(bad, factory_key.public_key(), envelope._info("fac1", "vo1"))
        text = f"{key_id(factory_key.public_key())}:{base64.urlsafe_b64encode(blob).decode()}"
        with pytest.raises(SealError, match="not"):
            open_sealed(text, keys_of(factory_key), "fac1", "vo1")


def test_an_advertised_key_must_match_its_key_id(factory_key) -> None:
    public = factory_key.public_key()
    text = public_key_text(public)
    assert key_id(parse_public_key(text, key_id(public))) == key_id(public)
    with pytest.raises(SealError, match="does not match"):
        parse_public_key(text, "0" * 64)
    with pytest.raises(SealError, match="32 bytes"):
        parse_public_key("c2hvcnQ=", key_id(public))


def test_a_rotated_key_still_opens_during_its_grace_and_not_after() -> None:
    ring = Keyring(X25519PrivateKey.generate(), grace_seconds=600)
    old_public = ring.current.public_key()
    sealed_before = seal(PAYLOAD, old_public, "fac1", "vo1")
    ring = ring.rotate(now=1000)
    assert key_id(ring.current.public_key()) != key_id(old_public)
    assert open_sealed(sealed_before, ring.openers(now=1599), "fac1", "vo1") == PAYLOAD
    with pytest.raises(SealError, match="does not hold"):
        open_sealed(sealed_before, ring.openers(now=1600), "fac1", "vo1")
    sealed_after = seal(PAYLOAD, ring.current.public_key(), "fac1", "vo1")
    assert open_sealed(sealed_after, ring.openers(now=5000), "fac1", "vo1") == PAYLOAD


def test_rotation_drops_keys_past_their_grace() -> None:
    ring = Keyring(X25519PrivateKey.generate(), grace_seconds=100)
    ring = ring.rotate(now=0).rotate(now=50).rotate(now=200)
    assert len(ring.retired) == 1 and ring.retired[0].retired_at == 200
    assert len(ring.openers(now=250)) == 2
