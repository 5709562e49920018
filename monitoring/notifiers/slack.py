"""The ``slack`` notifier: a digest as one Slack message through an incoming webhook.

Slack's payload is ``text`` (shown in notifications and where blocks are
not) plus Block Kit ``blocks``: a header, one section per change, and a
context line for anything dropped. Slack takes at most 50 blocks in one
message, hence the lower cap on changes per message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from updraft.monitoring.notifiers.base import Change, Digest, NotifierPlugin, utc, who
from updraft.monitoring.notifiers.webhook import WebhookSettings, escape_markup, post_json, url_secrets, webhook_url

MAX_SECTIONS = 45
"""Changes per message: Slack allows 50 blocks, and the header and a context line take two."""


class SlackSettings(WebhookSettings):
    """``type: slack``: the file holding the incoming webhook's URL (`WebhookSettings`)."""

    max_per_message: int = Field(default=40, ge=1, le=MAX_SECTIONS)


@dataclass(frozen=True)
class SlackNotifier:
    settings: SlackSettings

    def secrets(self) -> tuple[str, ...]:
        return url_secrets(self.settings.url_file)

    def send(self, digest: Digest) -> None:
        post_json(webhook_url(self.settings.url_file), payload(digest), self.settings.timeout_seconds)


def payload(digest: Digest) -> dict[str, Any]:
    """Slack's JSON for the digest."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": digest.title[:150]}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": _section(c)}} for c in digest.changes]
    if digest.dropped:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": digest.dropped_note}]})
    return {"text": digest.title, "blocks": blocks}


def _section(change: Change) -> str:
    return (
        f"*{escape_markup(change.entry)}*: {change.old} → *{change.new}*\n"
        f"{escape_markup(change.reason or '(no reason given)')}\n"
        f"_{utc(change.at)}, by {escape_markup(who(change))}_"
    )


PLUGIN = NotifierPlugin("slack", SlackSettings, SlackNotifier)
