"""Cloud pilots' tokens: only a narrow, short-lived one goes into user data, and it is kept like a token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from updraft.factory.config import FactoryConfig
from updraft.factory.credentials import CredentialStore, credential_id
from updraft.factory.decide import refusal
from updraft.factory.gridtypes.cloud import ec2_secret_user_data, gce_secret_user_data
from updraft.factory.model import Credential, EntryPolicy, FrontendAccess, Request
from updraft.factory.render import PilotSpec, render_submit
from updraft.factory.stage import stage_entries
from updraft.protocol import PilotParams
from updraft.tokens import SigningKey, mint, read_claims

NOW = 1_800_000_000.0
KEY = SigningKey("POOL", b"k" * 32)
DAY = 86400


def policy(user_data_token_seconds: int | None) -> dict[str, EntryPolicy]:
    access = FrontendAccess("frontend@lab", frozenset({"default"}), True)
    return {"vm": EntryPolicy("vm", frontends={"vo1": access}, user_data_token_seconds=user_data_token_seconds)}


def request_with(credential: Credential) -> Request:
    return Request(
        entry="vm",
        frontend="vo1",
        group="main",
        security_class="default",
        identity="frontend@lab",
        idle=1,
        max_pilots=10,
        remove="none",
        remove_max=0,
        pilot=PilotParams(collector="127.0.0.1:9618"),
        credential=credential,
    )


def credential(token: str) -> Credential:
    """As `open_credential` makes it from a sealed request."""
    claims = read_claims(token) if token.count(".") == 2 else None
    expires, authz = (claims.expires_at, claims.authz) if claims else (None, ())
    return Credential(credential_id(token), "frontend@lab", token, expires, authz)


@pytest.mark.parametrize(
    ("authz", "lifetime", "limit", "why"),
    [
        (("ADVERTISE_STARTD",), DAY, 2 * DAY, None),
        (("ADVERTISE_STARTD",), 3 * DAY, 2 * DAY, "valid 259200 s more; entry 'vm' puts tokens into user data only"),
        (("ADVERTISE_STARTD", "READ"), DAY, 2 * DAY, "allows ADVERTISE_STARTD, READ; a token in user data may"),
        (("ADVERTISE_STARTD",), 3 * DAY, None, None),  # not a cloud entry: the token travels encrypted, as before
    ],
)
def test_a_token_goes_into_user_data_only_if_narrow_and_short(
    authz: tuple[str, ...], lifetime: int, limit: int | None, why: str | None
) -> None:
    token = mint(KEY, "pilot@lab", "lab", lifetime, NOW, authz=authz)
    reason = refusal(request_with(credential(token)), policy(limit), NOW)
    assert (reason is None) if why is None else (why in str(reason))


def test_a_token_that_never_expires_or_is_no_jwt_is_refused_for_user_data() -> None:
    assert "allows nothing" in str(refusal(request_with(credential("opaque-token")), policy(DAY), NOW))
    never = credential("x")
    never = Credential(never.credential_id, never.identity, never.token, None, ("ADVERTISE_STARTD",))
    assert "never expires" in str(refusal(request_with(never), policy(DAY), NOW))


def test_the_user_data_file_is_kept_like_the_token_and_pruned_with_it(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "store")
    token = mint(KEY, "pilot@lab", "lab", DAY, NOW)
    held = credential(token)
    path = store.save_user_data("vo1", held, ec2_secret_user_data(token))
    assert path.read_text() == f"&UPDRAFT_PILOT_TOKEN_VALUE={token}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.prune({("vo1", held.credential_id)}) == []
    assert store.prune(set()) == [path] and not path.exists()


def test_gce_carries_the_token_as_a_metadata_line() -> None:
    assert gce_secret_user_data("tok.en") == "updraft-pilot-token=tok.en\n"


def test_the_claims_the_decision_needs_come_from_the_token() -> None:
    token = mint(KEY, "pilot@lab", "lab", 3600, NOW)
    opened = credential(token)
    assert opened.expires_at == int(NOW) + 3600 and opened.authz == ("ADVERTISE_STARTD",)


def test_a_cloud_entrys_release_lists_the_glidein(tmp_path: Path) -> None:
    glidein = tmp_path / "glidein_startup.sh"
    glidein.write_text("#!/bin/sh\n")
    keys = {"image": "ami-1", "instance_type": "t3.medium", "access_key_file": "/a", "secret_key_file": "/s"}
    config = FactoryConfig.model_validate(
        {
            "name": "fac1",
            "wms_collector": "127.0.0.1:9618",
            "schedd": "factory@lab",
            "work_dir": str(tmp_path / "work"),
            "pilot": {"executable": str(glidein)},
            "staging": {"dir": str(tmp_path / "www"), "url": "http://127.0.0.1:1/stage"},
            "entries": {
                "vm": {"grid_type": "ec2", "resource": "https://ec2.example/", "cloud": keys},
                "ce": {"grid_type": "condor", "resource": "ce@site ce.site:9619"},
            },
        }
    )
    releases = stage_entries(config)
    listed = {name: (r.directory / "manifest").read_text() for name, r in releases.items()}
    assert "  glidein_startup.sh  file" in listed["vm"]
    assert "glidein_startup.sh" not in listed["ce"]


def test_the_commented_ec2_example_in_etc_loads_and_renders_when_uncommented(tmp_path: Path) -> None:
    example = (Path(__file__).resolve().parents[2] / "etc" / "factory.d" / "10-example-sites.yaml").read_text()
    block = example[example.index("  # aws-east:") :].split("\n\n", 1)[0]
    entries = yaml.safe_load("\n".join(line[4:] for line in block.splitlines()))
    config = FactoryConfig.model_validate(
        {
            "name": "fac1",
            "wms_collector": "127.0.0.1:9618",
            "schedd": "s",
            "work_dir": str(tmp_path),
            "entries": entries,
        }
    )
    entry = config.entries["aws-east"]
    pilot = PilotSpec(
        frontend="vo1",
        group="main",
        security_class="default",
        credential_id="vo1.main",
        executable=Path("/usr/libexec/updraft/glidein_startup.sh"),
        work_dir=tmp_path,
        vm_manifest=("http://stage.example/manifest", "ab" * 32),
    )
    description = render_submit(config, "aws-east", entry, pilot)
    assert (description["ec2_ami_id"], description["ec2_security_groups"]) == ("ami-0abc1234", "pilots")
    assert description["ec2_tag_names"] == "UpdraftFactory,UpdraftEntry,UpdraftPilot,Project"
