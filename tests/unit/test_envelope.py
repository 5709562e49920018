"""Sealed credentials: they open only with their key, for the factory, frontend, group and entry sealed for."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft.envelope import (
    Binding,
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
FOR = Binding("fac1", "vo1", "main", "site1")
"""The request every blob here is sealed for, unless a test says otherwise."""


@pytest.fixture(scope="module")
def factory_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def keys_of(*private: X25519PrivateKey) -> dict:
    return {key_id(k.public_key()): k for k in private}


def test_a_sealed_payload_opens_for_its_factory_and_frontend(factory_key) -> None:
    sealed = seal(PAYLOAD, factory_key.public_key(), FOR)
    assert TOKEN not in sealed and "vo-frontend" not in sealed
    assert sealed_key_id(sealed) == key_id(factory_key.public_key())
    assert open_sealed(sealed, keys_of(factory_key), FOR) == PAYLOAD


def test_sealing_twice_gives_different_texts(factory_key) -> None:
    """A fresh ephemeral key each time: equal tokens cannot be spotted across ads."""
    public = factory_key.public_key()
    assert seal(PAYLOAD, public, FOR) != seal(PAYLOAD, public, FOR)


@pytest.mark.parametrize(
    "other",
    [
        Binding("fac1", "vo2", "main", "site1"),
        Binding("fac2", "vo1", "main", "site1"),
        Binding("fac1", "vo1\0", "main", "site1"),
    ],
    ids=["other frontend", "other factory", "name with NUL"],
)
def test_a_blob_moved_to_another_frontend_or_factory_does_not_open(factory_key, other) -> None:
    sealed = seal(PAYLOAD, factory_key.public_key(), FOR)
    with pytest.raises(SealError, match="does not verify") as caught:
        open_sealed(sealed, keys_of(factory_key), other)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("other", "named"),
    [
        (Binding("fac1", "vo1", "main", "site2"), "entry 'site2'"),
        (Binding("fac1", "vo1", "cms", "site1"), "group 'cms'"),
        (Binding("fac1", "vo1", "cms", "site2"), "group 'cms', entry 'site2'"),
        (Binding("fac1", "vo1", "mainsite1", ""), "entry ''"),
        (Binding("fac1", "vo1", "main\0site1", ""), "entry ''"),
    ],
    ids=["other entry", "other group", "both", "names run together", "names run together with NUL"],
)
def test_a_per_entry_credential_replayed_for_another_entry_or_group_of_the_same_frontend_does_not_open(
    factory_key, other, named
) -> None:
    """The token was minted for (main, site1): copied into the same frontend's request for another
    entry or group, it must not reach pilots there."""
    sealed = seal(PAYLOAD, factory_key.public_key(), FOR)
    assert open_sealed(sealed, keys_of(factory_key), FOR) == PAYLOAD
    with pytest.raises(SealError, match="does not verify") as caught:
        open_sealed(sealed, keys_of(factory_key), other)
    assert named in str(caught.value) and TOKEN not in str(caught.value)


def test_a_version_1_blob_bound_to_factory_and_frontend_alone_no_longer_opens(factory_key) -> None:
    from updraft import envelope

    version_1 = b"updraft-seal-1\0fac1\0vo1"
    blob = envelope.SUITE.encrypt(b'{"identity":"x","token":"y"}', factory_key.public_key(), version_1)
    text = f"{key_id(factory_key.public_key())}:{base64.urlsafe_b64encode(blob).decode()}"
    with pytest.raises(SealError, match="does not verify"):
        open_sealed(text, keys_of(factory_key), FOR)


def test_an_unknown_key_id_is_refused_before_decrypting(factory_key) -> None:
    other = X25519PrivateKey.generate()
    sealed = seal(PAYLOAD, other.public_key(), FOR)
    with pytest.raises(SealError, match="does not hold"):
        open_sealed(sealed, keys_of(factory_key), FOR)


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_in_the_blob_is_refused(factory_key, position, bit) -> None:
    kid, _, body = seal(PAYLOAD, factory_key.public_key(), FOR).partition(":")
    blob = bytearray(base64.urlsafe_b64decode(body))
    blob[position % len(blob)] ^= 1 << bit
    tampered = f"{kid}:{base64.urlsafe_b64encode(bytes(blob)).decode()}"
    with pytest.raises(SealError, match="does not verify"):
        open_sealed(tampered, keys_of(factory_key), FOR)


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.text(max_size=300), st.binary(max_size=100).map(lambda b: b.hex() + ":" + b.decode("latin-1")))
)
def test_garbage_is_refused_with_a_seal_error_only(factory_key, text) -> None:
    with pytest.raises(SealError):
        open_sealed(text, keys_of(factory_key), FOR)


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
        open_sealed(text, keys_of(factory_key), FOR)


def test_a_payload_that_is_not_an_object_of_strings_is_refused(factory_key) -> None:
    from updraft import envelope

    for bad in (b"[1, 2]", b'{"token": 3}', b"\xff"):
        blob = envelope.SUITE.encrypt(bad, factory_key.public_key(), FOR.info())
        text = f"{key_id(factory_key.public_key())}:{base64.urlsafe_b64encode(blob).decode()}"
        with pytest.raises(SealError, match="not"):
            open_sealed(text, keys_of(factory_key), FOR)


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
    sealed_before = seal(PAYLOAD, old_public, FOR)
    ring = ring.rotate(now=1000)
    assert key_id(ring.current.public_key()) != key_id(old_public)
    assert open_sealed(sealed_before, ring.openers(now=1599), FOR) == PAYLOAD
    with pytest.raises(SealError, match="does not hold"):
        open_sealed(sealed_before, ring.openers(now=1600), FOR)
    sealed_after = seal(PAYLOAD, ring.current.public_key(), FOR)
    assert open_sealed(sealed_after, ring.openers(now=5000), FOR) == PAYLOAD


def test_rotation_drops_keys_past_their_grace() -> None:
    ring = Keyring(X25519PrivateKey.generate(), grace_seconds=100)
    ring = ring.rotate(now=0).rotate(now=50).rotate(now=200)
    assert len(ring.retired) == 1 and ring.retired[0].retired_at == 200
    assert len(ring.openers(now=250)) == 2
