"""updraft.userdata: the user-data format cloud pilots boot from."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from updraft import userdata
from updraft.errors import UpdraftError
from updraft.userdata import UserDataError

SHA = "0123456789abcdef" * 4
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwaWxvdEBsYWIifQ.c2lnbmF0dXJl"

names = st.from_regex(userdata.NAME_RULE, fullmatch=True).filter(lambda n: len(n) < 30)
values = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=40)
pair_lists = st.lists(st.tuples(names, values), max_size=8)


def public(**overrides: object) -> str:
    args: dict = {
        "environment": [("UPDRAFT_FACTORY", "f1"), ("GLIDEIN_Site", "Site A&B")],
        "manifest_url": "http://web.example/staging/entry/0123/manifest",
        "manifest_sha256": SHA,
        "arguments": ["--collector", "vo.example:9618", "--max-walltime", "3600"],
    }
    args.update(overrides)
    return userdata.public_part(**args)


@given(pair_lists)
def test_encode_then_parse_gives_the_pairs_back(pairs: list[tuple[str, str]]) -> None:
    text = userdata.encode([(userdata.USER_DATA, "1"), *pairs])
    assert userdata.parse(text) == [(userdata.USER_DATA, "1"), *pairs]
    assert text.isascii() and "\n" not in text and "," not in text and " " not in text


@given(pair_lists, values.filter(bool))
def test_public_and_secret_parts_join_into_one_plan(env: list[tuple[str, str]], token: str) -> None:
    env = [(n, v) for n, v in env if n not in userdata.RESERVED and n != userdata.PILOT_TOKEN_FILE]
    args = ["--work-dir", "a b", ""]
    text = public(environment=env, arguments=args) + userdata.secret_part(token)
    plan = userdata.boot_plan(userdata.parse(text))
    assert plan.environment == tuple(env)
    assert plan.arguments == tuple(args)
    assert plan.token == token
    assert (plan.manifest_url, plan.manifest_sha256, plan.glidein) == (
        "http://web.example/staging/entry/0123/manifest",
        SHA,
        "glidein_startup.sh",
    )


def test_public_part_starts_with_the_marker_and_holds_no_token() -> None:
    text = public()
    assert text.startswith("UPDRAFT_USER_DATA=1&UPDRAFT_FACTORY=f1&GLIDEIN_Site=Site%20A%26B&")
    assert userdata.PILOT_TOKEN_VALUE not in text
    assert userdata.boot_plan(userdata.parse(text)).token is None


def test_secret_part_is_appended_directly() -> None:
    # The EC2 GAHP sends ec2_user_data then the file's contents, no separator.
    assert userdata.secret_part(TOKEN) == f"&UPDRAFT_PILOT_TOKEN_VALUE={TOKEN}"


def test_gce_items_join_into_the_same_text() -> None:
    text = public()
    assert userdata.gce_metadata(text) == f"updraft-user-data={text}"
    assert userdata.gce_token_line(TOKEN) == f"updraft-pilot-token={TOKEN}\n"
    assert userdata.gce_join(text, TOKEN) == text + userdata.secret_part(TOKEN)
    assert userdata.gce_join(text, None) == text


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("1BAD", "x")], "pair 1: name '1BAD' does not match"),
        ([("A-B", "x")], "pair 1: name 'A-B' does not match"),
        ([("", "x")], "pair 1: name '' does not match"),
        ([("OK", "x"), ("N", "a\0b")], "pair 2 (N): the value holds a NUL"),
    ],
)
def test_encode_refuses_what_cannot_be_carried(pairs: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(UserDataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        userdata.encode(pairs)


def test_public_part_refuses_reserved_environment_names() -> None:
    for name in (*userdata.RESERVED, userdata.PILOT_TOKEN_FILE):
        with pytest.raises(UserDataError, match=f"environment variable 1 \\({name}\\) is a name the VM bootstrap"):
            public(environment=[(name, "x")])
    with pytest.raises(UserDataError, match="64 lowercase hex"):
        public(manifest_sha256="ABC")


def test_token_errors_never_show_the_token() -> None:
    with pytest.raises(UserDataError, match="empty"):
        userdata.secret_part("")
    with pytest.raises(UserDataError) as err:
        userdata.gce_token_line(TOKEN + "\nsecond")
    assert TOKEN not in str(err.value)


MARK = "UPDRAFT_USER_DATA=1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the user data is empty"),
        ("\n\n", "the user data is empty"),
        ("HELLO=1", "the first pair must be UPDRAFT_USER_DATA=1"),
        ("UPDRAFT_USER_DATA=2", "the first pair must be UPDRAFT_USER_DATA=1"),
        ("#!/bin/sh\necho a=b", "pair 1: name '#!/bin/sh?echo a' does not match"),
        (f"{MARK}&A=1&&B=2", "pair 3 is empty"),
        (f"{MARK}&A=1&", "pair 3 is empty"),
        (f"&{MARK}", "pair 1 is empty"),
        (f"{MARK}&A", "pair 2 has no '='"),
        (f"{MARK}&9A=1", "pair 2: name '9A' does not match"),
        (f"{MARK}&{'X-' * 30}=1", "pair 2: name 'X-X-X-X-X-X-X-X-X-X-X-X-X-X-X-X-X-X-X-X-...' does not match"),
        (f"{MARK}&A=a b", "pair 2 (A): the value is not percent-encoded"),
        (f"{MARK}&A=a+b", "pair 2 (A): the value is not percent-encoded"),
        (f"{MARK}&A=a=b", "pair 2 (A): the value is not percent-encoded"),
        (f"{MARK}&A=%4", "pair 2 (A): the value is not percent-encoded"),
        (f"{MARK}&A=%G0", "pair 2 (A): the value is not percent-encoded"),
        (f"{MARK}&A=%00", "pair 2 (A): the value holds an encoded NUL"),
        (f"{MARK}&A=%C3", "pair 2 (A): the decoded value is not UTF-8"),
        (f"{MARK}&A=%ED%A0%80", "pair 2 (A): the decoded value is not UTF-8"),
        (f"{MARK}&A=é", "non-ASCII character"),
        (f"{MARK}&A=1\n&B=2", "pair 2 (A): the value is not percent-encoded"),
    ],
)
def test_parse_refuses_malformed_user_data(text: str, message: str) -> None:
    with pytest.raises(UserDataError) as err:
        userdata.parse(text)
    assert message in str(err.value)
    assert isinstance(err.value, UpdraftError)


def test_parse_accepts_trailing_newlines_and_lowercase_hex() -> None:
    assert userdata.parse(f"{MARK}&A=%c3%a9\n\n") == [("UPDRAFT_USER_DATA", "1"), ("A", "é")]


def test_parse_errors_never_show_a_token() -> None:
    # A token that lost its name, or whose value is broken, is named by position only.
    secret = "eyJzZWNyZXQiOiJ5ZXMifQ"
    for text in (f"{MARK}&{secret}", f"{MARK}&UPDRAFT_PILOT_TOKEN_VALUE={secret}+", f"{MARK}&T={secret}%zz"):
        with pytest.raises(UserDataError) as err:
            userdata.parse(text)
        assert secret not in str(err.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("&UPDRAFT_VM_MANIFEST_URL=x", "UPDRAFT_VM_MANIFEST_URL appears 2 times"),
        ("&UPDRAFT_PILOT_TOKEN_VALUE=a&UPDRAFT_PILOT_TOKEN_VALUE=b", "UPDRAFT_PILOT_TOKEN_VALUE appears 2 times"),
    ],
)
def test_boot_plan_refuses_repeated_instructions(extra: str, message: str) -> None:
    with pytest.raises(UserDataError, match=message):
        userdata.boot_plan(userdata.parse(public() + extra))


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([], "UPDRAFT_VM_MANIFEST_URL is missing"),
        ([("UPDRAFT_VM_MANIFEST_URL", "u"), ("UPDRAFT_VM_GLIDEIN", "g")], "UPDRAFT_VM_MANIFEST_SHA256 is missing"),
        (
            [("UPDRAFT_VM_MANIFEST_URL", "u"), ("UPDRAFT_VM_MANIFEST_SHA256", "AB"), ("UPDRAFT_VM_GLIDEIN", "g")],
            "64 lowercase hex",
        ),
        (
            [("UPDRAFT_VM_MANIFEST_URL", "u"), ("UPDRAFT_VM_MANIFEST_SHA256", SHA), ("UPDRAFT_VM_GLIDEIN", "../g")],
            "plain file name",
        ),
        (
            [("UPDRAFT_VM_MANIFEST_URL", "u"), ("UPDRAFT_VM_MANIFEST_SHA256", SHA), ("UPDRAFT_VM_GLIDEIN", ".g")],
            "plain file name",
        ),
    ],
)
def test_boot_plan_needs_its_instructions(pairs: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(UserDataError, match=message):
        userdata.boot_plan([(userdata.USER_DATA, "1"), *pairs])


def test_boot_plan_repr_hides_the_token() -> None:
    plan = userdata.boot_plan(userdata.parse(public() + userdata.secret_part(TOKEN)))
    assert TOKEN not in repr(plan) and "<hidden>" in repr(plan)
