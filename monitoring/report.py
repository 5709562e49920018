"""Hand snapshots to every configured writer, each isolated from the others.

A monitoring backend that is down, slow or buggy must never stop or change
provisioning (GlideinWMS once over-submitted after a crash in its
monitoring). Each writer therefore runs in its own thread behind its own
error boundary: an exception is logged and counted; a writer still busy at
the deadline is left to finish in the background, counted as failed, and
skipped in later cycles until it is done. The cycle goes on either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from updraft.monitoring.plugin import Writer
from updraft.monitoring.snapshot import Snapshot

log = logging.getLogger(__name__)


class _Run:
    """One writer writing one snapshot, in a daemon thread so a hung backend cannot block exit."""

    def __init__(self, writer: Writer, snapshot: Snapshot) -> None:
        self.error: str | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._write, args=(writer, snapshot),
                                       name=f"monitoring-{writer.name}", daemon=True)
        self.thread.start()

    def _write(self, writer: Writer, snapshot: Snapshot) -> None:
        try:
            writer.write(snapshot)
        # The boundary between provisioning and plugins, ours or third
        # parties': whatever a writer raises is reported, never propagated.
        except Exception as err:  # noqa: BLE001
            self.error = f"{type(err).__name__}: {err}"
        finally:
            self.done.set()


@dataclass
class Reporter:
    """Calls each writer once per cycle and keeps count of the ones that failed."""

    writers: tuple[Writer, ...]
    deadline_seconds: float = 30.0
    failures: Counter[str] = field(default_factory=Counter)
    _running: dict[str, _Run] = field(default_factory=dict)

    def report(self, snapshot: Snapshot) -> dict[str, str]:
        """Returns {writer name: why} for the writers that failed or were skipped this time."""
        failed: dict[str, str] = {}
        started: dict[str, _Run] = {}
        for writer in self.writers:
            previous = self._running.get(writer.name)
            if previous is not None and not previous.done.is_set():
                failed[writer.name] = "still writing an earlier snapshot; this one skipped"
                continue
            started[writer.name] = self._running[writer.name] = _Run(writer, snapshot)
        deadline = time.monotonic() + self.deadline_seconds
        for name, run in started.items():
            if not run.done.wait(max(0.0, deadline - time.monotonic())):
                failed[name] = f"still writing after {self.deadline_seconds:g} s; left to finish in the background"
            elif run.error is not None:
                failed[name] = run.error
        for name, why in failed.items():
            self.failures[name] += 1
            log.error("monitoring writer %s failed (%d times so far): %s", name, self.failures[name], why)
        return failed


def names(writers: tuple[Writer, ...]) -> list[str]:
    return [w.name for w in writers]
