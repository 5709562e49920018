"""What the Slack and Mattermost notifiers share: the webhook URL, read from a file, and one JSON POST.

An incoming webhook's URL is its only credential: whoever has it can post.
It is therefore kept in a file (``url_file``), read at each delivery, and
never part of a message, a log line or an error: HTTP errors are described
by status and a short part of the body, and `secrets()` lets the caller
scrub even that.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from updraft.errors import MonitoringError
from updraft.filechecks import ReadHere
from updraft.monitoring.notifiers.base import NotifierSettings, read_secret

MAX_BODY_SHOWN = 200
"""Characters of a refusing receiver's answer kept in the error (scrubbed of the URL)."""


class WebhookSettings(NotifierSettings):
    """What every webhook notifier's settings have: the file holding the incoming webhook's URL."""

    url_file: ReadHere

    def secret_files(self) -> Mapping[str, Path]:
        return {"url_file": self.url_file}


def webhook_url(path: Path) -> str:
    """The URL in `path`; MonitoringError naming the file (never its content) if it is not http(s)."""
    url = read_secret(path, "url_file")
    if not url.startswith(("https://", "http://")) or any(ch.isspace() for ch in url):
        raise MonitoringError(f"url_file: {path} does not hold one http(s) URL")
    return url


def url_secrets(path: Path) -> tuple[str, ...]:
    """The URL and its path and query apart: a receiver's error page may echo just its path."""
    url = webhook_url(path)
    parts = urllib.parse.urlsplit(url)
    return tuple(p for p in (url, parts.path, parts.query) if len(p) > 1)


def post_json(url: str, payload: dict[str, Any], timeout: float) -> None:
    """POST `payload` as JSON; MonitoringError unless the receiver answers 2xx."""
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
    except urllib.error.HTTPError as err:
        shown = err.read(MAX_BODY_SHOWN).decode("utf-8", "replace")
        raise MonitoringError(f"the webhook answered HTTP {err.code} {err.reason}: {shown}") from None
    except urllib.error.URLError as err:
        raise MonitoringError(f"the webhook could not be reached: {err.reason}") from None


def escape_markup(text: str) -> str:
    """Text safe in Slack's markup: no links or mentions (``<!channel>``) smuggled in by an entry name or reason."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
