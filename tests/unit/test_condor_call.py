"""Every HTCondor call is bounded in time and fails as our own error."""

from __future__ import annotations

import threading
import time

import htcondor2
import pytest

from updraft.condor import _call
from updraft.errors import CondorError


def test_a_call_that_does_not_answer_in_time_fails_with_the_deadline_named() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(CondorError, match=r"query of schedd s@x: no answer within 0\.2 s"):
        _call("query of schedd s@x", release.wait, 30, timeout=0.2)
    assert time.monotonic() - started < 2
    release.set()


def test_htcondor_errors_become_ours_with_what_was_attempted() -> None:
    def refuse() -> None:
        raise htcondor2.HTCondorException("Failed to connect")

    with pytest.raises(CondorError, match="locating schedd: Failed to connect"):
        _call("locating schedd", refuse)


def test_other_exceptions_are_bugs_and_pass_through() -> None:
    def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        _call("anything", broken)


def test_a_result_comes_back_unchanged() -> None:
    assert _call("sum", sum, [1, 2, 3]) == 6
