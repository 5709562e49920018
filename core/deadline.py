"""Run one blocking call in a child process that is killed when its deadline passes.

HTCondor's Python bindings hold the GIL while they wait on a socket, so a
daemon that accepts a connection and never answers (a stopped collector, a
wedged schedd) cannot be timed out from a thread: the whole process waits
for HTCondor's own timeout, 60 s by default. A forked child can always be
killed. The child inherits everything it needs (the bindings' configuration,
the arguments) by the fork itself, so only the result crosses the pipe, as a
pickle of plain Python values.

Forking per call also makes parallel reads truly parallel: the parent's
threads only wait on pipes, which releases the GIL.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import selectors
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")
_CHUNK = 1 << 16
_PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal a child gets when the thread that forked it ends."""
_FORKING = threading.Lock()
"""Held from a pipe's creation until the parent has closed its write end.

A child forked by another thread in that window would inherit the write
end, and the reader would see no end of file until that other child
exited too: a healthy call would wait out a hung one's deadline. (Seen in
the lab: calls to a live collector timed out beside calls to a frozen one.)
"""


class DeadlineExceeded(Exception):
    """The call had no result when its deadline passed; the child was killed."""


class ChildFailed(Exception):
    """The child died without sending a result (a crash in native code, or killed from outside)."""


def call_in_child(fn: Callable[[], T], timeout: float) -> T:
    """`fn()` run in a forked child, its result or its exception; DeadlineExceeded after `timeout` s.

    An exception raised by `fn` is re-raised here as it was (it must pickle;
    one that does not becomes ChildFailed with its text).
    """
    read_end, pid = _fork(fn)
    try:
        payload = _read_until(read_end, time.monotonic() + timeout)
    except BaseException:  # the deadline, or the caller interrupted (Ctrl-C): the answer is no longer wanted,
        os.kill(pid, signal.SIGKILL)  # and waiting for a hung child below would hang the caller too
        raise
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    return cast(T, _unpack(payload, status))


def _fork(fn: Callable[[], object]) -> tuple[int, int]:
    """(the pipe's read end, the child's pid); ChildFailed when no child can be made (fds, processes, memory)."""
    parent = os.getpid()
    with _FORKING:
        try:
            read_end, write_end = os.pipe()
        except OSError as err:
            raise ChildFailed(f"no pipe for the call's process: {err}") from err
        try:
            pid = os.fork()
        except OSError as err:
            os.close(read_end)
            os.close(write_end)
            raise ChildFailed(f"the call's process could not be started: {err}") from err
        if pid == 0:  # the child: never returns into the caller's code
            os.close(read_end)
            _die_with(parent)
            _run_and_exit(fn, write_end)
        os.close(write_end)
    return read_end, pid


def _die_with(parent: int) -> None:
    """Have the kernel SIGKILL this child when its caller dies (Linux; elsewhere nothing changes).

    A service killed with SIGKILL must not leave a call running on its own: a
    submission finishing after the restarted service has read the queue would
    put pilots there that no decision counted, and a call to a frozen daemon
    would wait for it forever. The caller's thread waits for the child until
    it ends, so the signal comes only with the caller's death. A parent gone
    before the request was made is seen by the parent pid having changed.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # no C library to ask, or one without prctl (not Linux)
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(70)


def _run_and_exit(fn: Callable[[], object], write_end: int) -> None:
    """Run `fn`, send ('ok', result) or ('raised', exception), and leave without running any cleanup.

    The broad catch is the point: whatever `fn` raises must travel to the
    parent, which raises it again; nothing is swallowed.
    """
    status = 0
    try:
        # The parent's handlers would only set flags in this copy of it: a Ctrl-C or a stop
        # should end the call, which the parent then reports as failed.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            outcome: tuple[str, object] = ("ok", fn())
        except BaseException as err:
            outcome = ("raised", err)
        try:
            data = pickle.dumps(outcome)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            data = pickle.dumps(("unpicklable", f"{type(outcome[1]).__name__}: {outcome[1]} ({err})"))
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view) :]
    except BaseException:
        status = 70
    finally:
        os._exit(status)


def _read_until(fd: int, deadline: float) -> bytes:
    """Everything the child writes, until it closes the pipe; DeadlineExceeded if that is after `deadline`."""
    chunks: list[bytes] = []
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise DeadlineExceeded
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _unpack(payload: bytes, status: int) -> Any:
    if not payload:
        raise ChildFailed(f"the call's process ended without a result ({_how_it_ended(status)})")
    try:
        kind, value = pickle.loads(payload)
    except (pickle.UnpicklingError, EOFError, ValueError) as err:  # cut short: killed while writing
        raise ChildFailed(f"the call's result was cut short ({_how_it_ended(status)}): {err}") from None
    if kind == "ok":
        return value
    if kind == "raised":
        raise value
    raise ChildFailed(str(value))


def _how_it_ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
