"""Credentials end to end without a pool: frontend mints and seals, factory opens, checks, stores, prunes."""

from __future__ import annotations

import json
import stat
from itertools import cycle
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft import envelope, protocol
from updraft.factory.config import FactoryConfig
from updraft.factory.credentials import (
    CredentialStore,
    CredentialStoreError,
    credential_id,
    load_keyring,
    open_credential,
    public_key_attributes,
)
from updraft.factory.decide import refusal
from updraft.factory.model import Credential, EntryPolicy, FrontendAccess, Request
from updraft.frontend.config import FrontendConfig
from updraft.frontend.credentials import FactoryKey, TokenBook, parse_factory_key, seal_requests, tokens_due
from updraft.tokens import SCRAMBLE, read_claims

NOW = 1_800_000_000.0
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwaWxvdEBsYWIifQ.c2lnbmF0dXJl"


def factory_config(tmp_path: Path, **credentials) -> FactoryConfig:
    return FactoryConfig.model_validate(
        {
            "name": "fac1",
            "wms_collector": "127.0.0.1:9618",
            "schedd": "factory@lab",
            "work_dir": str(tmp_path / "factory"),
            "credentials": credentials,
        }
    )


def frontend_config(tmp_path: Path, **extra) -> FrontendConfig:
    key = tmp_path / "POOL"
    key.write_bytes(bytes(b ^ s for b, s in zip(b"vo pool signing key", cycle(SCRAMBLE))))
    return FrontendConfig.model_validate(
        {
            "name": "vo1",
            "vo_collector": "127.0.0.1:9618",
            "wms_collector": "127.0.0.1:9619",
            "identity": "frontend@lab",
            "pilot_tokens": {
                "signing_key_file": str(key),
                "trust_domain": "lab",
                "identity": "pilot@lab",
                "lifetime_seconds": 7200,
                "refresh_seconds": 1800,
            },
            "factories": {"fac1": {"identity": "factory@lab"}},
            "groups": {"main": {}},
            **extra,
        }
    )


REQUEST = envelope.Binding("fac1", "vo1", "main", "ce1")
"""What `request_ad` asks for by default: the request a credential is sealed for."""


def request_ad(entry: str = "ce1", frontend: str = "vo1", **extra) -> dict:
    return {
        "UpdraftSchema": 1,
        protocol.R_FRONTEND: frontend,
        protocol.R_GROUP: "main",
        protocol.R_FACTORY: "fac1",
        protocol.R_ENTRY: entry,
        protocol.R_IDLE: 3,
        protocol.R_MAX: 10,
        protocol.R_REMOVE: "idle",
        protocol.R_REMOVE_MAX: 0,
        protocol.IDENTITY: "frontend@lab",
        protocol.R_PILOT_COLLECTOR: "127.0.0.1:9618",
        **extra,
    }


def factory_key_of(ring: envelope.Keyring) -> FactoryKey:
    attrs = public_key_attributes(ring)
    return FactoryKey("fac1", attrs[protocol.F_KEY_ID], attrs[protocol.F_PUBLIC_KEY])


# ------------------------------------------------------------------ keyring


def test_the_keyring_is_made_once_private_and_kept(tmp_path: Path) -> None:
    config = factory_config(tmp_path)
    first = load_keyring(config, NOW)
    path = tmp_path / "factory" / "keyring" / "keyring.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = load_keyring(config, NOW + 60)
    assert envelope.key_id(again.current.public_key()) == envelope.key_id(first.current.public_key())


def test_a_due_key_rotates_and_the_old_one_opens_until_its_grace_ends(tmp_path: Path) -> None:
    config = factory_config(tmp_path, key_rotation_seconds=1000, key_grace_seconds=300)
    old = load_keyring(config, NOW)
    sealed = envelope.seal({"identity": "frontend@lab", "token": TOKEN}, old.current.public_key(), REQUEST)
    rotated = load_keyring(config, NOW + 1000)
    assert envelope.key_id(rotated.current.public_key()) != envelope.key_id(old.current.public_key())
    ad = protocol.read_request(request_ad(**{protocol.R_CREDENTIAL: sealed}))
    assert open_credential(ad, rotated.openers(NOW + 1299), "fac1")[0] is not None
    credential, problem = open_credential(ad, rotated.openers(NOW + 1300), "fac1")
    assert credential is None and "does not hold" in problem


def test_an_unreadable_keyring_is_an_error_not_a_silent_new_key(tmp_path: Path) -> None:
    config = factory_config(tmp_path)
    load_keyring(config, NOW)
    path = tmp_path / "factory" / "keyring" / "keyring.json"
    path.write_text("{not json")
    with pytest.raises(CredentialStoreError, match=r"unreadable.*move it aside"):
        load_keyring(config, NOW)
    assert path.read_text() == "{not json"


# ------------------------------------------------------------------ frontend side


def test_the_frontend_mints_one_token_per_entry_and_refreshes_it_before_it_ends(tmp_path: Path) -> None:
    book = TokenBook(frontend_config(tmp_path).pilot_tokens)
    first = book.tokens(["ce1@fac1", "ce2@fac1"], NOW)
    assert first["ce1@fac1"] != first["ce2@fac1"]
    claims = read_claims(first["ce1@fac1"])
    assert (claims.identity, claims.issuer, claims.authz) == ("pilot@lab", "lab", ("ADVERTISE_STARTD",))
    assert book.tokens(["ce1@fac1", "ce2@fac1"], NOW + 5399) == first  # 1801 s left
    later = book.tokens(["ce1@fac1"], NOW + 5401)
    assert later["ce1@fac1"] != first["ce1@fac1"] and "ce2@fac1" not in later


@pytest.mark.parametrize("left, due", [(None, True), (1801, False), (1799, True)])
def test_tokens_due(tmp_path: Path, left: float | None, due: bool) -> None:
    book = TokenBook(frontend_config(tmp_path).pilot_tokens)
    if left is not None:
        book.tokens(["ce1@fac1"], NOW - 7200 + left)
    assert tokens_due(book.held, ["ce1@fac1"], NOW, 1800) == (["ce1@fac1"] if due else [])


def test_tokens_need_an_identity_and_a_refresh_below_the_lifetime(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="identity: required with pilot_tokens"):
        frontend_config(tmp_path, identity=None)
    with pytest.raises(ValueError, match=r"refresh_seconds .* must be below lifetime_seconds"):
        FrontendConfig.model_validate(
            {
                **frontend_config(tmp_path).model_dump(mode="json"),
                "pilot_tokens": {
                    "signing_key_file": "/k",
                    "trust_domain": "lab",
                    "identity": "p@lab",
                    "lifetime_seconds": 60,
                    "refresh_seconds": 60,
                },
            }
        )


@pytest.mark.parametrize(
    "ad, why",
    [
        ({protocol.E_FACTORY: "fac1", protocol.IDENTITY: "mallory@lab"}, "trusted only as 'factory@lab'"),
        ({protocol.E_FACTORY: "fac1", protocol.IDENTITY: "factory@lab"}, "advertises no credential key"),
        (
            {
                protocol.E_FACTORY: "fac1",
                protocol.IDENTITY: "factory@lab",
                protocol.F_PUBLIC_KEY: "AAAA",
                protocol.F_KEY_ID: "0" * 64,
            },
            "not 32 bytes",
        ),
        ({protocol.E_FACTORY: "other", protocol.IDENTITY: "factory@lab"}, None),
    ],
)
def test_a_factory_key_counts_only_from_the_trusted_factory_and_well_formed(ad: dict, why: str | None) -> None:
    key, problem = parse_factory_key(ad, {"fac1": "factory@lab"})
    assert key is None
    assert (problem is None) if why is None else (why in problem)


def test_sealed_requests_open_at_the_factory_to_the_token_and_the_frontend_identity(tmp_path: Path) -> None:
    config = frontend_config(tmp_path)
    ring = load_keyring(factory_config(tmp_path), NOW)
    ads, problems = seal_requests([request_ad()], {"ce1@fac1": TOKEN}, {"fac1": factory_key_of(ring)}, config)
    assert problems == [] and TOKEN not in json.dumps(ads)
    credential, problem = open_credential(protocol.read_request(ads[0]), ring.openers(NOW), "fac1")
    assert problem is None and credential == Credential(credential_id(TOKEN), "frontend@lab", TOKEN)


def test_without_a_factory_key_requests_go_unsealed_and_the_problem_says_why(tmp_path: Path) -> None:
    ads, problems = seal_requests([request_ad()], {"ce1@fac1": TOKEN}, {}, frontend_config(tmp_path))
    assert protocol.R_CREDENTIAL not in ads[0]
    assert problems == ["factory fac1 advertises no credential key: its requests carry no pilot token"]


# ------------------------------------------------------------------ the factory's checks


POLICY = {"ce1": EntryPolicy("ce1", frontends={"vo1": FrontendAccess("frontend@lab", frozenset({"default"}), True)})}


def screened(ad: dict, ring: envelope.Keyring, now: float = NOW) -> str | None:
    published = protocol.read_request(ad)
    request = Request.from_published(published).with_credential(*open_credential(published, ring.openers(now), "fac1"))
    return refusal(request, POLICY, now)


@pytest.fixture
def ring(tmp_path: Path) -> envelope.Keyring:
    return load_keyring(factory_config(tmp_path), NOW)


def sealed_for(
    ring: envelope.Keyring,
    identity: str = "frontend@lab",
    frontend: str = "vo1",
    factory: str = "fac1",
    group: str = "main",
    entry: str = "ce1",
) -> str:
    binding = envelope.Binding(factory, frontend, group, entry)
    return envelope.seal({"identity": identity, "token": TOKEN}, ring.current.public_key(), binding)


def test_a_request_with_a_good_credential_is_accepted(ring) -> None:
    assert screened(request_ad(**{protocol.R_CREDENTIAL: sealed_for(ring)}), ring) is None


@pytest.mark.parametrize(
    "case, expected",
    [
        ("none", "no sealed credential"),
        ("other identity sealed", "identity sealed in the credential, 'mallory@lab', is not the authenticated"),
        ("replayed from another frontend", "does not verify for frontend 'vo1'"),
        ("replayed from another entry", "does not verify for frontend 'vo1', group 'main', entry 'ce1'"),
        ("replayed from another group", "does not verify for frontend 'vo1', group 'main', entry 'ce1'"),
        ("sealed for another factory", "does not verify"),
        ("unknown key", "which this factory does not hold"),
        ("flipped bit", "does not verify"),
    ],
)
def test_bad_credentials_are_refused_with_their_reason(ring, case: str, expected: str) -> None:
    sealed = {
        "none": None,
        "other identity sealed": sealed_for(ring, identity="mallory@lab"),
        "replayed from another frontend": sealed_for(ring, frontend="vo2"),
        "sealed for another factory": sealed_for(ring, factory="fac2"),
        "replayed from another entry": sealed_for(ring, entry="ce2"),
        "replayed from another group": sealed_for(ring, group="other"),
        "unknown key": envelope.seal(
            {"identity": "frontend@lab", "token": TOKEN}, X25519PrivateKey.generate().public_key(), REQUEST
        ),
        "flipped bit": _flip(sealed_for(ring)),
    }[case]
    ad = request_ad(**({} if sealed is None else {protocol.R_CREDENTIAL: sealed}))
    reason = screened(ad, ring)
    assert reason is not None and expected in reason
    assert TOKEN not in reason


def _flip(sealed: str) -> str:
    kid, _, body = sealed.partition(":")
    middle = len(body) // 2
    return f"{kid}:{body[:middle]}{'A' if body[middle] != 'A' else 'B'}{body[middle + 1 :]}"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
def test_any_changed_character_of_the_blob_is_refused(position: int, replacement: str) -> None:
    ring = envelope.Keyring(X25519PrivateKey.generate(), created_at=NOW)
    sealed = sealed_for(ring)
    kid, _, body = sealed.partition(":")
    index = position % len(body)
    if body[index] == replacement:
        return
    tampered = f"{kid}:{body[:index]}{replacement}{body[index + 1 :]}"
    reason = screened(request_ad(**{protocol.R_CREDENTIAL: tampered}), ring)
    assert reason is not None and reason.startswith("credential refused")


# ------------------------------------------------------------------ the store


def test_tokens_are_stored_private_and_pruned_when_no_pilot_needs_them(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "store")
    kept = store.save("vo1", Credential(credential_id(TOKEN), "frontend@lab", TOKEN))
    gone = store.save("vo1", Credential(credential_id(TOKEN + "x"), "frontend@lab", TOKEN + "x"))
    assert kept.read_text() == TOKEN + "\n"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    assert store.prune({("vo1", credential_id(TOKEN))}) == [gone]
    assert kept.exists() and not gone.exists()


@pytest.mark.parametrize(
    "frontend, cid", [("../etc", "0" * 32), ("vo1", "../../x"), ("vo1/x", "0" * 32), ("vo1", "0" * 31)]
)
def test_a_store_path_is_never_built_from_a_bad_name(tmp_path: Path, frontend: str, cid: str) -> None:
    with pytest.raises(CredentialStoreError, match="refusing a credential path"):
        CredentialStore(tmp_path).path(frontend, cid)


def test_with_an_owner_the_store_root_stays_ours_and_only_the_frontend_folders_are_theirs(tmp_path: Path) -> None:
    import os

    me = (os.getuid(), os.getgid())
    store = CredentialStore(tmp_path / "store", owner=me)
    path = store.save("vo1", Credential(credential_id(TOKEN), "frontend@lab", TOKEN))
    assert stat.S_IMODE((tmp_path / "store").stat().st_mode) == 0o711
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_prune_never_follows_a_symlink_out_of_the_store(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / ("0" * 32 + ".token")
    victim.write_text("not ours")
    store = CredentialStore(tmp_path / "store")
    store.save("vo1", Credential(credential_id(TOKEN), "frontend@lab", TOKEN))
    (tmp_path / "store" / "evil").symlink_to(outside)
    (tmp_path / "store" / "vo1" / ("1" * 32 + ".token")).symlink_to(victim)
    deleted = store.prune(set())
    assert victim.read_text() == "not ours"
    assert tmp_path / "store" / "vo1" / ("1" * 32 + ".token") in deleted


def test_plan_and_status_read_the_keyring_but_never_make_or_rotate_it(tmp_path: Path) -> None:
    config = factory_config(tmp_path, key_rotation_seconds=100, key_grace_seconds=50)
    assert load_keyring(config, NOW, read_only=True) is None
    assert not (tmp_path / "factory" / "keyring").exists()
    ring = load_keyring(config, NOW)
    later = load_keyring(config, NOW + 1000, read_only=True)
    assert envelope.key_id(later.current.public_key()) == envelope.key_id(ring.current.public_key())


def test_a_retired_key_past_its_grace_leaves_the_disk(tmp_path: Path) -> None:
    config = factory_config(tmp_path, key_rotation_seconds=100, key_grace_seconds=50)
    load_keyring(config, NOW)
    load_keyring(config, NOW + 100)  # rotated: one retired key
    path = tmp_path / "factory" / "keyring" / "keyring.json"
    assert len(json.loads(path.read_text())["retired"]) == 1
    load_keyring(config, NOW + 151)
    assert json.loads(path.read_text())["retired"] == []


def test_the_frontends_credential_for_one_entry_copied_into_its_request_for_another_is_refused(tmp_path: Path) -> None:
    """Both requests come from the same frontend, with the same identity: only the binding tells them apart."""
    config = frontend_config(tmp_path)
    ring = load_keyring(factory_config(tmp_path), NOW)
    ads, _ = seal_requests(
        [request_ad("ce1"), request_ad("ce2")],
        {"ce1@fac1": TOKEN, "ce2@fac1": TOKEN + "2"},
        {"fac1": factory_key_of(ring)},
        config,
    )
    for ad in ads:
        assert open_credential(protocol.read_request(ad), ring.openers(NOW), "fac1")[1] is None
    replayed = {**ads[1], protocol.R_CREDENTIAL: ads[0][protocol.R_CREDENTIAL]}
    credential, problem = open_credential(protocol.read_request(replayed), ring.openers(NOW), "fac1")
    assert credential is None and "entry 'ce2'" in problem and TOKEN not in problem
    other_group = {**ads[0], protocol.R_GROUP: "other"}
    credential, problem = open_credential(protocol.read_request(other_group), ring.openers(NOW), "fac1")
    assert credential is None and "group 'other'" in problem
