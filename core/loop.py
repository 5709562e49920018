"""What every Updraft service loop shares: signals, the sleep between cycles, its pid file.

SIGTERM and SIGINT ask the loop to stop after the current cycle; SIGHUP
asks it to reload its configuration. Both wake the sleep at once, so an
operator never waits a whole cycle for either.
"""

from __future__ import annotations

import os
import signal
import threading
from enum import Enum
from pathlib import Path


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


def write_pid(path: Path) -> None:
    """Record the running service, so `reconfig` can find it and ask it to reload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")


def signal_running(path: Path, signum: int) -> int | None:
    """Send `signum` to the service whose pid `path` records; its pid, or None when none runs."""
    try:
        pid = int(path.read_text().split()[0])
        os.kill(pid, signum)
    except (OSError, ValueError, IndexError):
        return None
    return pid
