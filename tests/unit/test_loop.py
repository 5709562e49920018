"""The sleep between cycles: stop and reload wake it at once, and a stop wins."""

from __future__ import annotations

import threading
import time

from updraft.loop import CycleSignals, Wake


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
