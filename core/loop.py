"""What every Updraft service loop shares: the loop itself, signals, the sleep between cycles, its pid file.

SIGTERM and SIGINT ask the loop to stop after the current cycle; SIGHUP
asks it to reload its configuration. Both wake the sleep at once, so an
operator never waits a whole cycle for either. A service only says what one
cycle, a reload and a shutdown are (`Service`); `run_service` does the rest
the same way for the factory and the frontend.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from updraft.service_config import ServiceConfig

log = logging.getLogger(__name__)


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


def pid_file(config: ServiceConfig, service: str) -> Path:
    """The running service's pid file, in its work folder: where `reconfig` finds whom to ask to reload."""
    return config.work_dir / f"{service}.pid"


C = TypeVar("C", bound="ServiceConfig")


class ConfiguredService(Generic[C]):
    """What both services read from their config alone: their pid file and how long a cycle sleeps."""

    kind: ClassVar[str]
    """"factory" or "frontend": names the pid file."""
    config: C

    @property
    def pid_path(self) -> Path:
        return pid_file(self.config, self.kind)

    @property
    def cycle_seconds(self) -> float:
        return self.config.cycle_seconds


class Service(Protocol):
    """What `run_service` needs of a service."""

    @property
    def pid_path(self) -> Path: ...

    @property
    def cycle_seconds(self) -> float: ...

    def cycle(self, number: int, now: float) -> str:
        """Run one cycle; a one-line summary for the log."""
        ...

    def reload(self) -> None:
        """Re-read the configuration, keeping the running one if the new one is bad."""
        ...

    def shutdown(self) -> None:
        """Withdraw what the service published, before the process ends."""
        ...


def run_service(
    service: Service, signals: CycleSignals, max_cycles: int | None = None, clock: Callable[[], float] = time.time
) -> int:
    """Cycle until stopped (or `max_cycles`), sleeping `cycle_seconds` between; the number of cycles run.

    The pid file exists while the loop runs, and the service shuts down
    however the loop ends, an exception included.
    """
    write_pid(service.pid_path)
    number = 0
    try:
        while max_cycles is None or number < max_cycles:
            number += 1
            log.info("cycle %d: %s", number, service.cycle(number, clock()))
            wake = signals.sleep(service.cycle_seconds)
            if wake is Wake.STOP:
                break
            if wake is Wake.RELOAD:
                service.reload()
    finally:
        service.shutdown()
        service.pid_path.unlink(missing_ok=True)
    return number
