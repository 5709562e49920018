"""Hand snapshots to every configured writer, each isolated from the others.

A monitoring backend that is down, slow or buggy must never stop or change
provisioning (GlideinWMS once over-submitted after a crash in its
monitoring). Each writer therefore runs in a thread behind its own error
boundary: an exception is logged and counted; a writer still busy at the
deadline is left to finish in the background, counted as failed, and
skipped in later cycles until it is done. The cycle goes on either way.

A writer that needs another's output (status pages graph the RRD files)
runs right after it in the same thread, so it sees this cycle's data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from updraft.monitoring.plugin import Writer
from updraft.monitoring.snapshot import Snapshot

log = logging.getLogger(__name__)


class _Run:
    """A chain of writers writing one snapshot, one after the other, in a daemon
    thread so a hung backend cannot block the process from exiting."""

    def __init__(self, chain: tuple[Writer, ...], snapshot: Snapshot) -> None:
        self.names = tuple(w.name for w in chain)
        self.errors: dict[str, str] = {}
        self.finished: set[str] = set()
        self.done = threading.Event()
        self.thread = threading.Thread(
            target=self._write, args=(chain, snapshot), name=f"monitoring-{'+'.join(self.names)}", daemon=True
        )
        self.thread.start()

    def _write(self, chain: tuple[Writer, ...], snapshot: Snapshot) -> None:
        try:
            for writer in chain:
                try:
                    writer.write(snapshot)
                # The boundary between provisioning and plugins, ours or third
                # parties': whatever a writer raises is reported, never propagated.
                except Exception as err:
                    self.errors[writer.name] = f"{type(err).__name__}: {err}"
                self.finished.add(writer.name)
        finally:
            self.done.set()


def chains(writers: tuple[Writer, ...], requires: Mapping[str, tuple[str, ...]]) -> list[tuple[Writer, ...]]:
    """Writers grouped so that each one runs after the writers it requires, in config order."""
    groups: list[list[Writer]] = []
    where: dict[str, int] = {}
    for writer in writers:
        needed = [where[r] for r in requires.get(writer.name, ()) if r in where]
        if needed:
            index = needed[0]
            groups[index].append(writer)
        else:
            index = len(groups)
            groups.append([writer])
        where[writer.name] = index
    return [tuple(g) for g in groups]


@dataclass
class Reporter:
    """Calls each writer once per cycle and keeps count of the ones that failed."""

    writers: tuple[Writer, ...]
    deadline_seconds: float = 30.0
    requires: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Writer name -> the writers it must run after."""
    failures: Counter[str] = field(default_factory=Counter)
    _running: dict[tuple[str, ...], _Run] = field(default_factory=dict)

    def report(self, snapshot: Snapshot) -> dict[str, str]:
        """Returns {writer name: why} for the writers that failed or were skipped this time."""
        failed: dict[str, str] = {}
        started: list[_Run] = []
        for chain in chains(self.writers, self.requires):
            key = tuple(w.name for w in chain)
            previous = self._running.get(key)
            if previous is not None and not previous.done.is_set():
                failed.update((name, "still writing an earlier snapshot; this one skipped") for name in key)
                continue
            self._running[key] = run = _Run(chain, snapshot)
            started.append(run)
        deadline = time.monotonic() + self.deadline_seconds
        for run in started:
            run.done.wait(max(0.0, deadline - time.monotonic()))
            for name in run.names:
                if name in run.errors:
                    failed[name] = run.errors[name]
                elif name not in run.finished:
                    failed[name] = f"still writing after {self.deadline_seconds:g} s; left to finish in the background"
        for name, why in failed.items():
            self.failures[name] += 1
            log.error("monitoring writer %s failed (%d times so far): %s", name, self.failures[name], why)
        return failed
