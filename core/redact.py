"""Secrets never reach a log: known secret shapes are masked in every record the root handlers write.

The code is careful not to log secrets in the first place; this is the net
under it. An HTCondor error echoing a token, an exception carrying a PEM
block, a URL with a password: each is masked before it is formatted out.
"""

from __future__ import annotations

import logging
import re

MASK = "[redacted]"
SECRET_SHAPES = (
    # A JWT (IDTOKENS, SciTokens): three base64url segments, the first one a JSON header ("eyJ").
    re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}"),
    # A PEM block, private or not, whole or cut off at the end of the message.
    re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL),
    # Credentials in a URL: scheme://user:password@host.
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),
    # Incoming webhooks, whose URL is their only credential: Slack's path after hooks.slack.com/,
    # and Mattermost's 26-character hook id after /hooks/.
    re.compile(r"(?<=hooks\.slack\.com/)[A-Za-z0-9/_-]+"),
    re.compile(r"(?<=/hooks/)[A-Za-z0-9]{20,}"),
)


def redact(text: str) -> str:
    """`text` with every known secret shape replaced by the mask."""
    for shape in SECRET_SHAPES:
        text = shape.sub(MASK, text)
    return text


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks: arguments, exceptions and tracebacks are covered alike."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def install(handler_owner: logging.Logger | None = None) -> None:
    """Put the masking formatter on every handler of the root logger (or `handler_owner`)."""
    logger = handler_owner or logging.getLogger()
    for handler in logger.handlers:
        fmt = handler.formatter._fmt if handler.formatter is not None else None
        handler.setFormatter(RedactingFormatter(fmt))
