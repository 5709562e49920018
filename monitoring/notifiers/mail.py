"""The ``email`` notifier: one digest mail per interval, over SMTP with STARTTLS and login.

The changes an interval gathers go out as one plain-text mail (the subject
says how many), never one mail per change: an incident that bans fifty
entries is one mail. Username and password are read from their files at
each delivery, so a rotated password needs no restart, and neither ever
sits in the configuration or its dumps.
"""

from __future__ import annotations

import email.utils
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from updraft.config import DurationSeconds, FrozenList, NonBlankStr
from updraft.filechecks import ReadHere
from updraft.monitoring.notifiers.base import (
    Digest,
    NotifierPlugin,
    NotifierSettings,
    Security,
    read_secret,
    utc,
    who,
)

Port = Annotated[int, Field(ge=1, le=65535)]


class EmailSettings(NotifierSettings):
    """``type: email``: where the SMTP server is, how to log in, who the mail is from and to."""

    host: NonBlankStr
    port: Port = 587
    security: Security = "starttls"
    """starttls (submission, port 587), ssl (implicit TLS, port 465), or none (a local relay, no login)."""
    ca_file: ReadHere | None = None
    """CA certificates to verify the server with; the system's when unset."""
    username_file: ReadHere | None = None
    password_file: ReadHere | None = None
    sender: NonBlankStr = Field(alias="from")
    to: FrozenList[NonBlankStr] = Field(min_length=1)
    interval_seconds: DurationSeconds = 600
    """A digest at most every 10 minutes by default: mail is read by people, not dashboards."""

    @model_validator(mode="after")
    def _login_needs_tls(self) -> EmailSettings:
        if (self.username_file is None) != (self.password_file is None):
            raise ValueError("username_file and password_file go together: set both or neither")
        if self.password_file is not None and self.security == "none":
            raise ValueError("a login needs security: starttls or ssl (the password would cross the network in clear)")
        return self

    def secret_files(self) -> Mapping[str, Path]:
        logins = (("username_file", self.username_file), ("password_file", self.password_file))
        return {key: path for key, path in logins if path is not None}


@dataclass(frozen=True)
class EmailNotifier:
    settings: EmailSettings

    def secrets(self) -> tuple[str, ...]:
        return tuple(read_secret(path, key) for key, path in self.settings.secret_files().items())

    def send(self, digest: Digest) -> None:
        message = compose(digest, self.settings.sender, self.settings.to)
        s = self.settings
        context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        smtp_class = smtplib.SMTP_SSL if s.security == "ssl" else smtplib.SMTP
        extra: dict[str, Any] = {"context": context} if s.security == "ssl" else {}
        with smtp_class(s.host, s.port, timeout=s.timeout_seconds, **extra) as smtp:
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.username_file is not None and s.password_file is not None:
                user = read_secret(s.username_file, "username_file")
                smtp.login(user, read_secret(s.password_file, "password_file"))
            smtp.send_message(message)


def compose(digest: Digest, sender: str, to: tuple[str, ...]) -> EmailMessage:
    """The digest as one plain-text mail."""
    message = EmailMessage()
    message["Subject"] = f"[updraft] {digest.title}"
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = email.utils.formatdate(usegmt=True)
    message["Message-ID"] = email.utils.make_msgid(domain="updraft.invalid")
    message.set_content(body(digest))
    return message


def body(digest: Digest) -> str:
    """Each change (when, entry, old -> new, why, by whom), then the entries' state now."""
    lines = [f"Factory {digest.factory}: {len(digest.changes)} change(s) of entry health, oldest first.", ""]
    for change in digest.changes:
        lines.append(f"{utc(change.at)}  {change.entry}  {change.old} -> {change.new}")
        lines.append(f"    reason: {change.reason or '(none given)'}")
        lines.append(f"    by: {who(change)}")
        lines.append("")
    if digest.dropped:
        lines += [digest.dropped_note, ""]
    if digest.now:
        lines.append("Entries now:")
        for entry in dict.fromkeys(c.entry for c in digest.changes):
            row = digest.now.get(entry)
            if row is None:
                continue
            review = f", next review {utc(row.next_review)}" if row.next_review is not None else ""
            override = f", set by {row.override_by}" if row.override_by else ""
            lines.append(f"    {entry}: {row.state} since {utc(row.since)}{review}{override}")
        lines.append("")
    lines.append("-- updraft factory notifier")
    return "\n".join(lines) + "\n"


PLUGIN = NotifierPlugin("email", EmailSettings, EmailNotifier)
