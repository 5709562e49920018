"""Notifiers against real receivers the tests start: an SMTP server (STARTTLS, AUTH LOGIN/PLAIN)
that stores what it receives, and HTTP servers that record webhook posts.

Time is the snapshots' (the cycle's `now`), so digests and back-off are
driven by the test; the deadlines are real seconds.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from updraft.factory.health_model import HealthState, Transition
from updraft.factory.snapshot import transition_row
from updraft.monitoring import outbox, registry
from updraft.monitoring.config import MonitoringConfig
from updraft.monitoring.notifiers.base import Change, utc
from updraft.monitoring.notify import Notifications
from updraft.monitoring.report import Reporter
from updraft.monitoring.snapshot import FactorySnapshot, FrontendSnapshot, HealthRow, TransitionRow
from updraft.redact import MASK

from ..receivers import SmtpInbox, Trickler, WebhookServer, self_signed, smtp_server

T0 = 1_800_000_000.0
USER = "updraft-notify"
PASSWORD = "pw-Zq8-never-anywhere-else"
HOOK_ID = "x3kq9vbn7mfe8tdsy1crw5hgpa"  # 26 characters, like a Mattermost hook id


def change(entry: str, old: HealthState, new: HealthState, at: float, reason: str, by: str = "policy") -> TransitionRow:
    return transition_row(Transition(entry, old, new, reason, at, by))


A, D, B, P = HealthState.ACTIVE, HealthState.DEGRADED, HealthState.BANNED, HealthState.PROBING


def state_of(t: TransitionRow) -> HealthRow:
    return HealthRow(t.entry, t.new, t.reason, t.at, next_review=t.at + 1800)


def snapshot(now: float, *transitions: TransitionRow, health: tuple[HealthRow, ...] = ()) -> FactorySnapshot:
    """A factory cycle at `now`: its transitions, and health rows for the entries they name (or `health`)."""
    health = health or tuple(state_of(t) for t in transitions)
    return FactorySnapshot("lab-factory", now, 1, health=health, transitions=transitions, announce=transitions)


@dataclass
class Clock:
    """The notifiers' wall clock in these tests: it reads what the test set, `cycle` sets each snapshot's time."""

    now: float = T0

    def __call__(self) -> float:
        return self.now


def reporter_for(directory: Path, notifiers: dict[str, Any]) -> tuple[Reporter, Notifications]:
    """The reporter a factory builds from its monitoring section, and its notifier writer on a `Clock`."""
    config = MonitoringConfig.model_validate({"dir": str(directory), "writers": [], "notifiers": notifiers})
    reporter = registry.reporter(config)
    found = [w for w in reporter.writers if isinstance(w, Notifications)]
    assert len(found) == 1
    found[0].clock = Clock()
    return reporter, found[0]


def cycle(reporter: Reporter, notifications: Notifications, snap: FactorySnapshot) -> float:
    """Report one cycle at the snapshot's time, let its deliveries end; returns the seconds the cycle was held."""
    assert isinstance(notifications.clock, Clock)
    notifications.clock.now = snap.time
    started = time.monotonic()
    assert reporter.report(snap) == {}
    held = time.monotonic() - started
    assert notifications.wait(30)
    return held


def write_secret(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------
# Receivers
# --------------------------------------------------------------------------


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


@pytest.fixture(params=["LOGIN", "PLAIN"])
def smtp(request: pytest.FixtureRequest, tls: tuple[Path, Path]) -> Iterator[tuple[SmtpInbox, int, str]]:
    """An SMTP server offering only one login mechanism (the parameter)."""
    inbox = SmtpInbox(USER, PASSWORD)
    other = "PLAIN" if request.param == "LOGIN" else "LOGIN"
    controller = smtp_server(inbox, *tls, exclude=[other])
    yield inbox, controller.port, request.param
    controller.stop()


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.stop()


def email_section(tmp_path: Path, port: int, ca: Path, **extra: Any) -> dict[str, Any]:
    return {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "ca_file": str(ca),
        "username_file": str(write_secret(tmp_path, "smtp.user", USER)),
        "password_file": str(write_secret(tmp_path, "smtp.password", PASSWORD)),
        "from": "updraft@factory.test",
        "to": ["ops@site.test", "oncall@site.test"],
        "timeout_seconds": 10.0,
        **extra,
    }


def hook_section(tmp_path: Path, kind: str, port: int, **extra: Any) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/hooks/{HOOK_ID}"
    return {"type": kind, "url_file": str(write_secret(tmp_path, f"{kind}.url", url)), "timeout_seconds": 10.0, **extra}


def mails(inbox: SmtpInbox) -> list[EmailMessage]:
    return [email.message_from_bytes(m.content, policy=email.policy.default) for m in inbox.mails]


# --------------------------------------------------------------------------
# Email
# --------------------------------------------------------------------------


def test_email_gathers_an_intervals_changes_into_one_mail_over_starttls_with_login(
    tmp_path: Path, smtp: tuple[SmtpInbox, int, str], tls: tuple[Path, Path]
) -> None:
    inbox, port, mechanism = smtp
    reporter, notes = reporter_for(
        tmp_path / "mon", {"ops-mail": email_section(tmp_path, port, tls[0], interval_seconds=600)}
    )
    first = change("site1", A, D, T0 - 5, "6 of 10 pilots failed validation (step cvmfs) in 1 h")
    second = change("site2", A, D, T0 - 3, "held pilots: 8 of 10 (hold code 13)")
    third = change("site1", D, B, T0 + 295, "10 of 10 pilots failed validation in 1 h")

    cycle(reporter, notes, snapshot(T0, first, second))
    cycle(reporter, notes, snapshot(T0 + 300, third))
    assert inbox.mails == []  # still gathering: 600 s from the oldest change
    assert notes.status("lab-factory")["ops-mail"].pending == 3
    cycle(reporter, notes, snapshot(T0 + 600, health=(state_of(third), state_of(second))))

    assert len(inbox.mails) == 1
    received = inbox.mails[0]
    assert received.login == USER.encode() and received.tls and inbox.mechanisms == [mechanism]
    assert received.rcpt_tos == ["ops@site.test", "oncall@site.test"]
    mail = mails(inbox)[0]
    assert mail["Subject"] == "[updraft] lab-factory: 3 entry health changes"
    assert mail["From"] == "updraft@factory.test"
    text = mail.get_content()
    lines = [f"{utc(c.at)}  {c.entry}  {c.old} -> {c.new}" for c in (first, second, third)]
    positions = [text.index(line) for line in lines]
    assert positions == sorted(positions)  # oldest first
    for c in (first, second, third):
        assert f"reason: {c.reason}" in text
    assert "by: the health policy" in text
    assert f"site1: banned since {utc(third.at)}, next review {utc(third.at + 1800)}" in text
    assert f"site2: degraded since {utc(second.at)}, next review" in text
    status = notes.status("lab-factory")["ops-mail"]
    assert (status.pending, status.sent_total, status.messages_total, status.failures) == (0, 3, 1, 0)
    cycle(reporter, notes, snapshot(T0 + 1300))
    assert len(inbox.mails) == 1


def test_email_with_a_wrong_password_fails_counted_and_never_shows_the_password(
    tmp_path: Path, smtp: tuple[SmtpInbox, int, str], tls: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    inbox, port, _ = smtp
    section = email_section(tmp_path, port, tls[0], interval_seconds=0)
    wrong = "wrong-" + PASSWORD
    write_secret(tmp_path, "smtp.password", wrong)
    reporter, notes = reporter_for(tmp_path / "mon", {"ops-mail": section})
    caplog.set_level(logging.DEBUG)

    cycle(reporter, notes, snapshot(T0, change("site1", A, D, T0, "validation failures")))

    assert inbox.mails == []
    status = notes.status("lab-factory")["ops-mail"]
    assert (status.failures, status.pending) == (1, 1)
    assert "SMTPAuthenticationError" in status.last_error
    assert "delivery failed (1 in a row" in caplog.text
    everything = caplog.text + status.last_error + outbox.outbox_path(tmp_path / "mon", "lab-factory").read_text()
    assert wrong not in everything and PASSWORD not in everything


# --------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------


def test_slack_gets_one_message_with_a_section_per_change(tmp_path: Path, webhook: WebhookServer) -> None:
    reporter, notes = reporter_for(tmp_path / "mon", {"chat": hook_section(tmp_path, "slack", webhook.port)})
    changes = (
        change("site1", A, D, T0 - 10, "held pilots <script> & more"),
        change("site2", B, P, T0 - 5, "probation after 1 h", by="alice"),
    )

    cycle(reporter, notes, snapshot(T0, *changes))

    assert len(webhook.posts) == 1
    post = webhook.posts[0]
    assert post.path == f"/hooks/{HOOK_ID}" and post.content_type.startswith("application/json")
    assert post.body["text"] == "lab-factory: 2 entry health changes"
    blocks = post.body["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "lab-factory: 2 entry health changes"},
    }
    sections = [b["text"]["text"] for b in blocks[1:]]
    assert sections == [
        f"*site1*: active → *degraded*\nheld pilots &lt;script&gt; &amp; more\n_{utc(T0 - 10)}, by the health policy_",
        f"*site2*: banned → *probing*\nprobation after 1 h\n_{utc(T0 - 5)}, by operator alice_",
    ]


def test_mattermost_gets_a_table_with_its_channel_and_name(tmp_path: Path, webhook: WebhookServer) -> None:
    section = hook_section(tmp_path, "mattermost", webhook.port, channel="grid-ops", username="updraft")
    reporter, notes = reporter_for(tmp_path / "mon", {"mm": section})

    cycle(reporter, notes, snapshot(T0, change("site1", D, B, T0 - 1, "10 of 10 failed | validation")))

    assert len(webhook.posts) == 1
    body = webhook.posts[0].body
    assert body["channel"] == "grid-ops" and body["username"] == "updraft" and "icon_url" not in body
    lines = body["text"].splitlines()
    assert lines[0] == "#### lab-factory: entry site1 degraded -> banned"
    assert lines[2] == "| When | Entry | Change | Reason | By |"
    assert lines[4] == (
        f"| {utc(T0 - 1)} | site1 | degraded → **banned** | 10 of 10 failed \\| validation | the health policy |"
    )


def test_after_a_restart_nothing_is_sent_twice(tmp_path: Path, webhook: WebhookServer) -> None:
    notifiers = {
        "chat": hook_section(tmp_path, "slack", webhook.port),
        "mm": hook_section(tmp_path, "mattermost", webhook.port),
    }
    first = snapshot(T0, change("site1", A, D, T0 - 5, "x"), change("site2", A, D, T0 - 4, "y"))
    reporter, notes = reporter_for(tmp_path / "mon", notifiers)
    cycle(reporter, notes, first)
    assert len(webhook.posts) == 2  # one per notifier, each with both changes

    # A restart: new objects, the same monitoring dir; the last cycle's transitions come again.
    reporter, notes = reporter_for(tmp_path / "mon", notifiers)
    cycle(reporter, notes, first)
    assert len(webhook.posts) == 2
    newer = change("site1", D, B, T0 + 55, "z")
    cycle(reporter, notes, snapshot(T0 + 60, change("site2", A, D, T0 - 4, "y"), newer))
    assert len(webhook.posts) == 4
    slack, mattermost = sorted(webhook.posts[2:], key=lambda p: "blocks" not in p.body)
    assert [b["text"]["text"] for b in slack.body["blocks"][1:]] == [
        f"*site1*: degraded → *banned*\nz\n_{utc(T0 + 55)}, by the health policy_"
    ]
    assert "| site1 |" in mattermost.body["text"] and "site2" not in mattermost.body["text"]


# --------------------------------------------------------------------------
# Failures, deadlines, back-off
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["email", "slack"])
def test_a_receiver_that_never_finishes_is_cut_off_at_the_deadline_and_retried_later(
    tmp_path: Path, kind: str, webhook: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    if kind == "email":
        hang = Trickler(b"220-mail.test ESMTP\r\n", b"220-still thinking\r\n")
        section = {
            "type": "email",
            "host": "127.0.0.1",
            "port": hang.port,
            "security": "none",
            "from": "u@f.test",
            "to": ["o@s.test"],
            "interval_seconds": 0,
        }
    else:
        hang = Trickler(b"HTTP/1.1 200 OK\r\n", b"X-Wait: 1\r\n")
        section = hook_section(tmp_path, "slack", hang.port)
    section |= {"timeout_seconds": 2.0, "retry_seconds": 30.0}
    reporter, notes = reporter_for(tmp_path / "mon", {"n": section})
    caplog.set_level(logging.INFO)
    try:
        started = time.monotonic()
        held = cycle(reporter, notes, snapshot(T0, change("site1", A, D, T0 - 1, "held")))
        took = time.monotonic() - started
    finally:
        hang.stop()
    assert held < 1.0  # the cycle never waits for a delivery
    assert 2.0 <= took < 6.0  # cut off at the 2 s deadline, though bytes kept coming
    assert hang.connections == 1
    status = notes.status("lab-factory")["n"]
    assert (status.failures, status.pending) == (1, 1)
    assert status.last_error == "no answer within 2 s; cut off"
    assert status.next_attempt == T0 + 30

    cycle(reporter, notes, snapshot(T0 + 10, change("site2", A, D, T0 + 9, "held too")))
    assert hang.connections == 1  # backing off: no attempt before T0 + 30
    assert "1 failed deliveries in a row" in caplog.text

    if kind == "slack":  # the receiver is back (a new URL: the file is read at each delivery)
        hook_section(tmp_path, "slack", webhook.port)
        cycle(reporter, notes, snapshot(T0 + 31))
        assert len(webhook.posts) == 1
        assert webhook.posts[0].body["text"] == "lab-factory: 2 entry health changes"
        assert notes.status("lab-factory")["n"].failures == 0


def test_a_hanging_notifier_does_not_delay_the_others(tmp_path: Path, webhook: WebhookServer) -> None:
    hang = Trickler(b"220-mail.test ESMTP\r\n", b"220-still thinking\r\n")
    mail = {"type": "email", "host": "127.0.0.1", "port": hang.port, "security": "none", "from": "u@f.test"}
    mail |= {"to": ["o@s.test"], "interval_seconds": 0, "timeout_seconds": 3.0}
    reporter, notes = reporter_for(
        tmp_path / "mon", {"mail": mail, "chat": hook_section(tmp_path, "slack", webhook.port)}
    )
    try:
        started = time.monotonic()
        assert reporter.report(snapshot(T0, change("site1", A, D, T0, "x"))) == {}
        while not webhook.posts and time.monotonic() - started < 10:
            time.sleep(0.05)
        posted_after = time.monotonic() - started
        assert not notes.wait(0)  # the mail is still waiting on its receiver
        assert notes.wait(30)
    finally:
        hang.stop()
    assert len(webhook.posts) == 1 and posted_after < 2.0
    status = notes.status("lab-factory")
    assert (status["chat"].sent_total, status["mail"].failures, status["mail"].pending) == (1, 1, 1)


def test_webhook_urls_are_masked_by_the_log_net_too() -> None:
    from updraft.redact import redact

    slack = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx"
    mattermost = f"https://chat.example.org/hooks/{HOOK_ID}"
    assert redact(f"posting to {slack} failed") == f"posting to https://hooks.slack.com/{MASK} failed"
    assert redact(f"posting to {mattermost}: 404") == f"posting to https://chat.example.org/hooks/{MASK}: 404"


def test_back_off_doubles_up_to_its_cap(tmp_path: Path) -> None:
    webhook = WebhookServer(status=503, answer=b"maintenance")
    try:
        section = hook_section(tmp_path, "slack", webhook.port, retry_seconds=10.0, max_retry_seconds=35.0)
        reporter, notes = reporter_for(tmp_path / "mon", {"chat": section})
        now, waits = T0, []
        first = change("site1", A, D, T0 - 1, "x")
        for _ in range(4):
            cycle(reporter, notes, snapshot(now, first))
            status = notes.status("lab-factory")["chat"]
            waits.append(status.next_attempt - now)
            now = status.next_attempt
    finally:
        webhook.stop()
    assert waits == [10.0, 20.0, 35.0, 35.0]
    assert len(webhook.posts) == 4
    assert status.failures == 4 and status.pending == 1
    assert status.last_error == "MonitoringError: the webhook answered HTTP 503 Service Unavailable: maintenance"


def test_a_long_outage_keeps_the_newest_changes_sends_oldest_first_and_says_what_was_dropped(
    tmp_path: Path,
) -> None:
    webhook = WebhookServer(status=500)
    try:
        section = hook_section(
            tmp_path, "mattermost", webhook.port, max_pending=3, max_per_message=2, retry_seconds=1.0
        )
        reporter, notes = reporter_for(tmp_path / "mon", {"mm": section})
        for i in range(5):
            cycle(reporter, notes, snapshot(T0 + 10 * i, change(f"e{i}", A, D, T0 + 10 * i - 1, f"r{i}")))
        status = notes.status("lab-factory")["mm"]
        assert (status.pending, status.dropped, status.failures) == (3, 2, 5)
        webhook.status = 200
        cycle(reporter, notes, snapshot(T0 + 100))
        cycle(reporter, notes, snapshot(T0 + 110))
    finally:
        webhook.stop()
    first, second = (p.body["text"] for p in webhook.posts[5:])
    assert [e for e in ("e2", "e3", "e4") if f"| {e} |" in first] == ["e2", "e3"]
    assert "2 older change(s) were dropped" in first
    assert "| e4 |" in second and "dropped" not in second
    status = notes.status("lab-factory")["mm"]
    assert (status.pending, status.dropped, status.sent_total, status.messages_total) == (0, 0, 3, 2)


def test_the_outbox_stays_bounded_and_is_replaced_whole(tmp_path: Path, webhook: WebhookServer) -> None:
    reporter, notes = reporter_for(tmp_path / "mon", {"chat": hook_section(tmp_path, "slack", webhook.port)})
    rows = tuple(change(f"e{i}", A, D, T0 + i, "r") for i in range(40))
    cycle(reporter, notes, snapshot(T0 + 100, *rows))
    box = outbox.outbox_path(tmp_path / "mon", "lab-factory")
    data = json.loads(box.read_text())
    assert len(data["notifiers"]["chat"]["sent"]) == 40 and data["notifiers"]["chat"]["pending"] == []
    assert not [p for p in box.parent.iterdir() if p.name.endswith(".tmp")]
    state = outbox.NotifierState(sent=tuple((f"k{i}", T0) for i in range(outbox.SENT_MEMORY)))
    after = outbox.delivered(state, (Change.of("f", rows[0]),), 0, T0)
    assert len(after.sent) == outbox.SENT_MEMORY and after.sent[-1][0] == rows[0].key and after.sent[0][0] == "k1"


# --------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------


def test_a_webhook_url_appears_nowhere_even_when_the_receiver_echoes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    webhook = WebhookServer(status=404)
    webhook.answer = b"no hook at POST /hooks/" + HOOK_ID.encode()
    caplog.set_level(logging.DEBUG)
    try:
        section = hook_section(tmp_path, "slack", webhook.port)
        config = MonitoringConfig.model_validate({"dir": str(tmp_path / "mon"), "notifiers": {"chat": section}})
        reporter, notes = reporter_for(tmp_path / "mon", {"chat": section})
        snap = snapshot(T0, change("site1", A, D, T0 - 1, "x"))
        cycle(reporter, notes, snap)
    finally:
        webhook.stop()
    status = notes.status("lab-factory")["chat"]
    assert status.failures == 1 and MASK in status.last_error
    places = {
        "logs": caplog.text,
        "error": status.last_error,
        "outbox": outbox.outbox_path(tmp_path / "mon", "lab-factory").read_text(),
        "config dump": config.model_dump_json(),
        "snapshot": json.dumps(snap.as_dict()),
    }
    assert {where: HOOK_ID in text for where, text in places.items()} == dict.fromkeys(places, False)
    assert str(tmp_path / "slack.url") in places["config dump"]  # the file is named, its content is not


# --------------------------------------------------------------------------
# Configuration and edges
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"host": "h"}, "mail.type: required key is missing (available: email, slack, mattermost)"),
        ({"type": "emial"}, "mail.type: unknown notifier type 'emial'"),
        ({"type": "email", "host": "h", "from": "a@b", "to": ["c@d"], "port": 0}, "mail.port: Input should be greater"),
        ({"type": "email", "host": "h", "to": ["c@d"]}, "mail.from: required key is missing"),
        ({"type": "slack", "url_file": "/x", "max_per_message": 46}, "mail.max_per_message: Input should be less"),
        ({"type": "slack", "url_file": "/x", "urlfile": "/x"}, "mail.urlfile: unknown key"),
        (
            {
                "type": "email",
                "host": "h",
                "from": "a",
                "to": ["b"],
                "security": "none",
                "username_file": "/u",
                "password_file": "/p",
            },
            "a login needs security: starttls or ssl",
        ),
    ],
)
def test_a_bad_notifier_section_is_named_with_its_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="notifiers") as caught:
        MonitoringConfig.model_validate({"notifiers": {"mail": section}})
    assert message in str(caught.value)


def test_the_shipped_example_notifiers_validate() -> None:
    """etc/factory.yaml carries the notifier examples commented out (their secret files do not exist
    on a fresh install); uncommented, they must be a valid section."""
    import yaml

    text = (Path(__file__).parents[2] / "etc" / "factory.yaml").read_text()
    start = text.index("#   notifiers:")
    block = []
    for line in text[start:].splitlines():
        if not line.startswith("#   "):
            break
        block.append(line[4:])
    section = yaml.safe_load("\n".join(block))["notifiers"]
    config = MonitoringConfig.model_validate({"notifiers": section})
    assert [s.type for s in config.notifiers.values()] == ["email", "slack", "mattermost"]


def test_an_unreadable_secret_file_is_named_by_check_config_and_at_delivery(tmp_path: Path) -> None:
    from updraft.filechecks import file_problems

    missing = tmp_path / "nowhere.webhook"
    section = {"type": "mattermost", "url_file": str(missing), "retry_seconds": 5.0}
    config = MonitoringConfig.model_validate({"notifiers": {"mm": section}})
    assert [(p.key, p.reason, p.fatal) for p in file_problems(config)] == [
        (("notifiers", "mm", "url_file"), "no such file", True)
    ]
    reporter, notes = reporter_for(tmp_path / "mon", {"mm": section})
    cycle(reporter, notes, snapshot(T0, change("site1", A, D, T0, "x")))
    status = notes.status("lab-factory")["mm"]
    assert status.last_error == f"MonitoringError: url_file: cannot read {missing}: No such file or directory"
    assert status.next_attempt == T0 + 5


def test_a_damaged_outbox_is_kept_aside_and_a_new_one_started(
    tmp_path: Path, webhook: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    box = outbox.outbox_path(tmp_path / "mon", "lab-factory")
    box.parent.mkdir()
    box.write_text("{half a file")
    reporter, notes = reporter_for(tmp_path / "mon", {"chat": hook_section(tmp_path, "slack", webhook.port)})
    cycle(reporter, notes, snapshot(T0, change("site1", A, D, T0, "x")))
    assert len(webhook.posts) == 1
    assert box.with_name(box.name + ".damaged").read_text() == "{half a file"
    assert "is damaged" in caplog.text and notes.status("lab-factory")["chat"].sent_total == 1


def test_a_frontend_snapshot_is_left_alone(tmp_path: Path, webhook: WebhookServer) -> None:
    reporter, notes = reporter_for(tmp_path / "mon", {"chat": hook_section(tmp_path, "slack", webhook.port)})
    assert reporter.report(FrontendSnapshot("vo", T0, 1)) == {}
    assert notes.wait(5) and webhook.posts == [] and not (tmp_path / "mon").exists()
