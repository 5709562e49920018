"""Hands each cycle's entry health changes to the configured notifiers, without ever holding up the cycle.

It is a monitoring writer (``write(snapshot)``) the reporter calls every
cycle. `write` only queues the snapshot's changes to announce in the outbox (a
small locked file write) and starts a delivery thread for each notifier
that is due; it never waits for one. Each delivery runs the notifier's
``send`` in a forked child that `updraft.deadline.call_in_child` kills at
the notifier's ``timeout_seconds``: a receiver that accepts a connection and
then trickles or says nothing cannot hold the child, the thread or the
cycle longer than that, whatever its socket timeouts do. A failure is
counted in the outbox and retried with back-off; a notifier whose delivery
is still under way is skipped until it ends.

What is visible: a log line per delivery (sent, or failed with the count in
a row and the next attempt), a warning each cycle a notifier has failures,
and each notifier's counts (`status`, and the outbox JSON itself).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from updraft.deadline import ChildFailed, DeadlineExceeded, call_in_child
from updraft.monitoring import outbox
from updraft.monitoring.notifiers import registry
from updraft.monitoring.notifiers.base import Change, Digest, Notifier, NotifierSettings, scrub
from updraft.monitoring.snapshot import FactorySnapshot, Snapshot

log = logging.getLogger(__name__)

NOTIFIERS = "notifiers"
"""The writer's name: the factory keeps changes for the notifiers while this writer fails."""


@dataclass(frozen=True)
class Configured:
    """One configured notifier: its name, its validated settings and the notifier built from them."""

    name: str
    settings: NotifierSettings
    notifier: Notifier


@dataclass(frozen=True)
class NotifierStatus:
    """A notifier's counts, for an operator or a status page."""

    pending: int
    failures: int
    """Failed deliveries in a row."""
    failed_total: int
    sent_total: int
    messages_total: int
    dropped: int
    next_attempt: float
    last_error: str


def build(notifiers: Mapping[str, Any]) -> tuple[Configured, ...]:
    """The configured notifiers (name -> validated settings), in configuration order."""
    return tuple(Configured(name, s, registry.plugin(s.type).create(s)) for name, s in notifiers.items())


def attempt(notifier: Notifier, digest: Digest, timeout: float) -> str | None:
    """Deliver `digest` in a child killed after `timeout` s; None when delivered, else why not (scrubbed)."""
    try:
        return call_in_child(lambda: _send_scrubbed(notifier, digest), timeout)
    except DeadlineExceeded:
        return f"no answer within {timeout:g} s; cut off"
    except ChildFailed as err:
        return scrub(str(err), ())


def _send_scrubbed(notifier: Notifier, digest: Digest) -> str | None:
    """In the child: send, and turn any failure into text without the notifier's secrets.

    The broad catch is the boundary to a plugin and the network: whatever
    fails must come back as text that cannot leak a password or a URL (an
    exception carried across as it is might hold either).
    """
    try:
        notifier.send(digest)
    except Exception as err:
        try:
            secrets = notifier.secrets()
        except Exception:  # the secret file itself is the problem: the error above says so
            secrets = ()
        return scrub(f"{type(err).__name__}: {err}", secrets)
    return None


@dataclass
class Notifications:
    """The notifiers of one service, as a monitoring writer."""

    notifiers: tuple[Configured, ...]
    directory: Path
    name: str = NOTIFIERS
    clock: Callable[[], float] = time.time
    """The wall clock. The outbox's times (queued, lease, back-off, sent) are read from it when they
    happen, never taken from the snapshot: a cycle's time is its start, often long before its report,
    and a lease measured from it could be over before the delivery even starts."""
    _threads: dict[str, threading.Thread] = field(default_factory=dict)

    def write(self, snapshot: Snapshot) -> None:
        """Queue the snapshot's changes to announce and start the deliveries that are due; never waits for them."""
        if not isinstance(snapshot, FactorySnapshot):
            return  # only a factory's cycles change entry health
        path = outbox.outbox_path(self.directory, snapshot.factory)
        changes = [Change.of(snapshot.factory, row) for row in snapshot.announce]
        context = {row.entry: row for row in snapshot.health}
        starts: list[tuple[Configured, Digest]] = []
        with outbox.opened(path) as box:
            now = self.clock()  # after the lock: a wait for it must not shorten the lease taken below
            box.states = {c.name: box.states.get(c.name, outbox.NotifierState()) for c in self.notifiers}
            for configured in self.notifiers:
                state = outbox.queue(box.states[configured.name], changes, now, configured.settings.max_pending)
                state, digest = self._maybe_claim(configured, state, snapshot.factory, context, now)
                box.states[configured.name] = state
                if digest is not None:
                    starts.append((configured, digest))
            box.save()
        for configured, digest in starts:
            self._start(configured, digest, path)

    def _maybe_claim(
        self, configured: Configured, state: outbox.NotifierState, factory: str, context: Mapping[str, Any], now: float
    ) -> tuple[outbox.NotifierState, Digest | None]:
        running = self._threads.get(configured.name)
        if running is not None and running.is_alive():
            return state, None
        verdict = outbox.due(state, configured.settings, now)
        if state.failures:
            log.warning(
                "notifier %s: %d change(s) waiting, %d failed deliveries in a row (last: %s); %s",
                configured.name,
                len(state.pending),
                state.failures,
                state.last_error,
                verdict.why,
            )
        if not verdict.now:
            return state, None
        state, batch = outbox.claim(state, configured.settings, now)
        named = {c.entry for c in batch}
        return state, Digest(factory, batch, state.dropped, {e: r for e, r in context.items() if e in named})

    def _start(self, configured: Configured, digest: Digest, path: Path) -> None:
        thread = threading.Thread(
            target=self._deliver, args=(configured, digest, path), name=f"notifier-{configured.name}", daemon=True
        )
        self._threads[configured.name] = thread
        thread.start()

    def _deliver(self, configured: Configured, digest: Digest, path: Path) -> None:
        """Send one digest and record the outcome. Runs in its own thread; its time is bounded by the child's."""
        error = attempt(configured.notifier, digest, configured.settings.timeout_seconds)
        now = self.clock()  # the back-off runs from the failure, the sent record from the success
        try:
            state = self._record(configured, digest, path, error, now)
        except OSError as err:  # the lease runs out and the changes stay queued: sent again, never lost
            why = "the digest may be sent again"
            log.error("notifier %s: outcome not recorded in %s (%s); %s", configured.name, path, err, why)
            return
        if error is None:
            log.info("notifier %s: sent %d change(s) in one message", configured.name, len(digest.changes))
        else:
            log.error(
                "notifier %s: delivery failed (%d in a row, %d change(s) waiting), next attempt in %.0f s: %s",
                configured.name,
                state.failures,
                len(state.pending),
                state.next_attempt - now,
                error,
            )

    def _record(
        self, configured: Configured, digest: Digest, path: Path, error: str | None, now: float
    ) -> outbox.NotifierState:
        """The outbox after this delivery: the digest's changes sent, or one more failure."""
        with outbox.opened(path) as box:
            state = box.states.get(configured.name, outbox.NotifierState())
            if error is None:
                state = outbox.delivered(state, digest.changes, digest.dropped, now)
            else:
                state = outbox.failed(state, error, configured.settings, now)
            box.states[configured.name] = state
            box.save()
        return state

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the deliveries under way; True if none is left (tests, shutdown)."""
        for thread in list(self._threads.values()):
            thread.join(timeout)
        return not any(t.is_alive() for t in self._threads.values())

    def status(self, factory: str) -> dict[str, NotifierStatus]:
        """Each configured notifier's counts, as the outbox has them."""
        with outbox.opened(outbox.outbox_path(self.directory, factory)) as box:
            states = box.states
        return {c.name: _status(states.get(c.name, outbox.NotifierState())) for c in self.notifiers}


def _status(state: outbox.NotifierState) -> NotifierStatus:
    return NotifierStatus(
        len(state.pending),
        state.failures,
        state.failed_total,
        state.sent_total,
        state.messages_total,
        state.dropped,
        state.next_attempt,
        state.last_error,
    )
