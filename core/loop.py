"""What every Updraft service loop shares: signals, and the sleep between cycles.

SIGTERM and SIGINT ask the loop to stop after the current cycle; SIGHUP
asks it to reload its configuration. Both wake the sleep at once, so an
operator never waits a whole cycle for either.
"""

from __future__ import annotations

import signal
import threading
from enum import Enum


class Wake(str, Enum):
    NEXT_CYCLE = "next cycle"
    RELOAD = "reload"
    STOP = "stop"


class CycleSignals:
    """The stop and reload requests of one service, and the sleep they interrupt."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def request_reload(self) -> None:
        self._reload.set()
        self._wake.set()

    def sleep(self, seconds: float) -> Wake:
        """Wait up to a cycle; a stop outranks a reload asked for at the same time."""
        if not self._stop.is_set():  # once stopping, never sleep again
            self._wake.wait(seconds)
        self._wake.clear()
        if self._stop.is_set():
            return Wake.STOP
        if self._reload.is_set():
            self._reload.clear()
            return Wake.RELOAD
        return Wake.NEXT_CYCLE
