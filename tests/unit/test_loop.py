"""The sleep between cycles: stop and reload wake it at once, and a stop wins."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from updraft.loop import CycleSignals, Wake, signal_running, write_pid


def test_a_quiet_cycle_sleeps_its_full_length() -> None:
    started = time.monotonic()
    assert CycleSignals().sleep(0.2) is Wake.NEXT_CYCLE
    assert time.monotonic() - started >= 0.2


def test_a_stop_from_another_thread_wakes_the_sleep_at_once() -> None:
    signals = CycleSignals()
    threading.Timer(0.05, signals.stop).start()
    started = time.monotonic()
    assert signals.sleep(30) is Wake.STOP
    assert time.monotonic() - started < 5


def test_a_reload_wakes_once_then_the_loop_sleeps_normally() -> None:
    signals = CycleSignals()
    signals.request_reload()
    assert signals.sleep(30) is Wake.RELOAD
    assert signals.sleep(0.05) is Wake.NEXT_CYCLE


def test_a_stop_outranks_a_reload_asked_for_at_the_same_time() -> None:
    signals = CycleSignals()
    signals.request_reload()
    signals.stop()
    started = time.monotonic()
    assert signals.sleep(30) is Wake.STOP
    assert signals.sleep(30) is Wake.STOP  # stopping is final, and never sleeps again
    assert time.monotonic() - started < 5


def test_a_recorded_service_is_found_and_signalled(tmp_path: Path) -> None:
    pid_file = tmp_path / "run" / "service.pid"
    write_pid(pid_file)
    assert signal_running(pid_file, 0) == os.getpid()  # signal 0: only checks it exists


@pytest.mark.parametrize("content", [None, "", "not-a-pid\n", "999999999\n"])
def test_no_service_is_signalled_without_a_live_pid(tmp_path: Path, content: str | None) -> None:
    pid_file = tmp_path / "service.pid"
    if content is not None:
        pid_file.write_text(content)
    assert signal_running(pid_file, 0) is None
