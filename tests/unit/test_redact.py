"""The logging net: known secret shapes never leave a log record, whatever logged them."""

from __future__ import annotations

import io
import logging

import pytest
from click.testing import CliRunner

from updraft import redact
from updraft.cli import main

JWT = "eyJhbGciOiJIUzI1NiIsImtpZCI6IlBPT0wifQ.eyJzdWIiOiJwaWxvdEBsYWIifQ.kX3c9bQ1vZ8yZr2dGQ5w0cGx1c2NhbmFyeQ"
PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VuBCIEIGZha2VrZXlmYWtla2V5ZmFrZWtleWZha2VrZXk=\n"
    "-----END PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    "text, secret",
    [
        (f"token {JWT} refused by collector", JWT),
        (f"key:\n{PEM}\nend", "MC4CAQAwBQYDK2VuBCIE"),
        (f"cut off {PEM[:60]}", "MC4CAQAw"),
        ("writing to https://grafana:s3cr3t-pw@influx.example.org:8086/write", "s3cr3t-pw"),
    ],
)
def test_secret_shapes_are_masked_and_the_rest_kept(text: str, secret: str) -> None:
    masked = redact.redact(text)
    assert secret not in masked and redact.MASK in masked
    assert masked[:4] == text[:4]  # the message around the secret is kept


def test_ordinary_text_is_left_alone() -> None:
    text = "submitted 3 pilots to site1@lab-factory (credential 767e1a6e07d56328cb2e59806555c7a6)"
    assert redact.redact(text) == text


def test_a_logged_secret_is_masked_in_messages_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("updraft.test.redact")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        redact.install(logger)
        logger.warning("token %s", JWT)
        try:
            raise ValueError(f"bad key {PEM}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert JWT not in out and "MC4CAQAw" not in out
    assert out.count(redact.MASK) >= 2 and "ValueError: bad key" in out


def test_the_command_line_masks_a_secret_in_an_error(tmp_path) -> None:
    config = tmp_path / "frontend.yaml"
    config.write_text(f"name: [{JWT}\n")
    result = CliRunner().invoke(main, ["frontend", "check-config", "-c", str(config)])
    assert result.exit_code == 1
    assert JWT not in result.output and "error" in result.output
