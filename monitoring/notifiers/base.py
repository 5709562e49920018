"""What a notifier is: a settings model and a `send(digest)`, plus what every notifier shares.

A notifier is handed a `Digest`: the changes of entry health not yet
announced to it, oldest first, and the entries' current state for context.
`send` either delivers the whole digest as one message or raises; it runs in
a child process that is killed at the notifier's deadline, so it may block
(an SMTP conversation, an HTTP request) without any care for time.

Secrets (passwords, webhook URLs) are read from their files inside `send`,
never kept in the configuration, and `secrets()` names them so that any
error text is scrubbed of them before it leaves the child process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field

from updraft import secretfiles, timefmt
from updraft.config import ConfigModel, DurationSeconds, TimeoutSeconds
from updraft.errors import MonitoringError
from updraft.monitoring.snapshot import HealthRow, TransitionRow
from updraft.redact import MASK, redact

MAX_REASON_CHARS = 500
"""A reason longer than this is cut: it is shown in a mail line or a chat message, and kept in the outbox."""


@dataclass(frozen=True)
class Change:
    """One entry health change as a notifier announces it (a `TransitionRow` and its factory)."""

    key: str
    factory: str
    entry: str
    old: str
    new: str
    reason: str
    at: float
    by: str

    @classmethod
    def of(cls, factory: str, row: TransitionRow) -> Change:
        reason = row.reason if len(row.reason) <= MAX_REASON_CHARS else row.reason[: MAX_REASON_CHARS - 1] + "…"
        return cls(row.key, factory, row.entry, row.old, row.new, reason, row.at, row.by)


@dataclass(frozen=True)
class Digest:
    """What one message announces: changes oldest first, how many were dropped before them, and context."""

    factory: str
    changes: tuple[Change, ...]
    dropped: int = 0
    """Older changes dropped from a full outbox (a receiver down for long); counted, not shown."""
    now: Mapping[str, HealthRow] | None = None
    """The current health of the entries named in `changes`, when the cycle's snapshot had it."""

    @property
    def title(self) -> str:
        """One line: the factory and what changed (the mail subject, the chat headline)."""
        if len(self.changes) == 1:
            c = self.changes[0]
            return f"{self.factory}: entry {c.entry} {c.old} -> {c.new}"
        return f"{self.factory}: {len(self.changes)} entry health changes"

    @property
    def dropped_note(self) -> str:
        if not self.dropped:
            return ""
        return (
            f"{self.dropped} older change(s) were dropped while this notifier could not deliver "
            f"(the factory's monitoring keeps every transition)."
        )


class Notifier(Protocol):
    """Delivers digests to one receiver."""

    def send(self, digest: Digest) -> None:
        """Deliver `digest` as one message, or raise. Runs in a child process under a deadline."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """The secret values `send` uses (read from their files), to scrub from any error text."""
        ...


MaxPending = Annotated[int, Field(ge=1, le=100_000)]
MaxPerMessage = Annotated[int, Field(ge=1, le=1000)]


class NotifierSettings(ConfigModel):
    """Settings every notifier has: when it sends, how long it may take, how it retries, how much it queues."""

    type: str
    """The notifier plugin: email, slack, mattermost, or a third party's."""
    interval_seconds: DurationSeconds = 0
    """Changes are gathered for this long (counted from the oldest waiting one, and from the
    last message sent) into one message. 0: a message every cycle that has changes."""
    timeout_seconds: TimeoutSeconds = 30.0
    """The whole delivery of one message (connect, TLS, login, send) is cut off after this long."""
    retry_seconds: TimeoutSeconds = 60.0
    """Wait after a failed delivery; doubled after each further failure in a row ..."""
    max_retry_seconds: TimeoutSeconds = 3600.0
    """... up to this."""
    max_pending: MaxPending = 1000
    """Changes kept waiting for this notifier; beyond this the oldest are dropped (and counted)."""
    max_per_message: MaxPerMessage = 200
    """Changes in one message, oldest first; the rest go in the next one."""

    def secret_files(self) -> Mapping[str, Path]:
        """The files the notifier reads its secrets from, by config key: what ``check-config`` shows of
        its secrets (the paths, never the content). A notifier with secrets in files says which."""
        return {}


@dataclass(frozen=True)
class NotifierPlugin:
    """A notifier type: its settings model and how to build the notifier from validated settings."""

    kind: str
    """The ``type`` that selects it in a notifier's section."""
    settings: type[NotifierSettings]
    create: Callable[[Any], Notifier]


def read_secret(path: Path, key: str) -> str:
    """The stripped text of the secret file `path` (named by config `key`); MonitoringError if unusable.

    The message names the key and the file, never the content.
    """
    try:
        return secretfiles.read_secret(path)
    except ValueError as err:
        raise MonitoringError(f"{key}: {err}") from None


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` without any of `secrets` and without the shapes `updraft.redact` knows."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return redact(text)


def utc(seconds: float) -> str:
    """A time as notifications show it: ``2026-12-06 09:10:00 UTC``."""
    return timefmt.utc(seconds)


def who(change: Change) -> str:
    return "the health policy" if change.by == "policy" else f"operator {change.by}"


Security = Literal["starttls", "ssl", "none"]
