"""Hand snapshots to every configured writer, each isolated from the others.

A monitoring backend that is down, slow or buggy must never stop or change
provisioning (GlideinWMS once over-submitted after a crash in its
monitoring), so each writer runs behind its own error boundary: a failure
is logged and counted, and the cycle goes on.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from updraft.monitoring.snapshot import FrontendSnapshot

log = logging.getLogger(__name__)


class Writer(Protocol):
    """A monitoring plugin: one method, taking the cycle's snapshot."""

    name: str

    def write(self, snapshot: FrontendSnapshot) -> None: ...


@dataclass
class Reporter:
    """Calls each writer once per cycle and keeps count of the ones that failed."""

    writers: tuple[Writer, ...]
    failures: Counter[str] = field(default_factory=Counter)

    def report(self, snapshot: FrontendSnapshot) -> dict[str, str]:
        """Returns {writer name: error} for the writers that failed this time."""
        failed = {}
        for writer in self.writers:
            try:
                writer.write(snapshot)
            # The boundary between provisioning and plugins, ours or third
            # parties': whatever a writer raises is reported, never propagated.
            except Exception as err:  # noqa: BLE001
                self.failures[writer.name] += 1
                failed[writer.name] = f"{type(err).__name__}: {err}"
                log.error("monitoring writer %s failed (%d times so far): %s", writer.name,
                          self.failures[writer.name], failed[writer.name])
        return failed


def names(writers: Iterable[Writer]) -> list[str]:
    return [w.name for w in writers]
