"""The ``mattermost`` notifier: a digest as one Mattermost post through an incoming webhook.

Mattermost renders Markdown, tables included, so a digest is a heading and
a table (when, entry, change, reason, by) in ``text``; ``channel``,
``username`` and ``icon_url`` override the webhook's defaults when set (the
server must allow it). A post holds at most 16383 characters, which the
per-message cap and the cut reasons keep below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from updraft.config import NonBlankStr
from updraft.monitoring.notifiers.base import Change, Digest, NotifierPlugin, utc, who
from updraft.monitoring.notifiers.webhook import WebhookSettings, post_json, url_secrets, webhook_url


class MattermostSettings(WebhookSettings):
    """``type: mattermost``: the file holding the incoming webhook's URL (`WebhookSettings`), and optional
    overrides."""

    channel: NonBlankStr | None = None
    username: NonBlankStr | None = None
    icon_url: NonBlankStr | None = None
    max_per_message: int = Field(default=25, ge=1, le=25)
    """25 rows of at most ~600 characters stay under Mattermost's post limit."""


@dataclass(frozen=True)
class MattermostNotifier:
    settings: MattermostSettings

    def secrets(self) -> tuple[str, ...]:
        return url_secrets(self.settings.url_file)

    def send(self, digest: Digest) -> None:
        post_json(webhook_url(self.settings.url_file), payload(digest, self.settings), self.settings.timeout_seconds)


def payload(digest: Digest, settings: MattermostSettings) -> dict[str, Any]:
    """Mattermost's JSON for the digest."""
    lines = [
        f"#### {_quiet(digest.title)}",
        "",
        "| When | Entry | Change | Reason | By |",
        "| --- | --- | --- | --- | --- |",
        *(_row(c) for c in digest.changes),
    ]
    if digest.dropped:
        lines += ["", f"_{digest.dropped_note}_"]
    body: dict[str, Any] = {"text": "\n".join(lines)}
    for key in ("channel", "username", "icon_url"):
        value = getattr(settings, key)
        if value is not None:
            body[key] = value
    return body


def _quiet(text: str) -> str:
    """No mention in an entry name or a reason wakes a channel: ``@all`` becomes ``@`` + zero-width space + ``all``."""
    return text.replace("@", "@\u200b")


def _cell(text: str) -> str:
    return _quiet(text).replace("|", "\\|").replace("\n", " ")


def _row(change: Change) -> str:
    cells = (utc(change.at), change.entry, f"{change.old} → **{change.new}**", change.reason, who(change))
    return "| " + " | ".join(_cell(c) if i != 2 else c for i, c in enumerate(cells)) + " |"


PLUGIN = NotifierPlugin("mattermost", MattermostSettings, MattermostNotifier)
