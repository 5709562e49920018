"""Every HTCondor call is bounded in time, fails as our own error, and a daemon that missed its
deadline is not waited for twice in one cycle."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import htcondor2
import pytest

from updraft.condor import CallBudget, Collector, _call
from updraft.deadline import ChildFailed, DeadlineExceeded, call_in_child
from updraft.errors import CallFailed, CondorError


@pytest.fixture
def silent_daemon() -> Iterator[str]:
    """host:port of a listener that accepts every connection and never answers (a stopped daemon)."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_call_that_does_not_answer_in_time_fails_with_the_deadline_named() -> None:
    started = time.monotonic()
    with pytest.raises(CondorError, match=r"query of schedd s@x: no answer within 0\.2 s"):
        _call("query of schedd s@x", "schedd s@x", CallBudget(0.2), lambda: time.sleep(30))
    assert time.monotonic() - started < 2


def test_a_binding_call_that_holds_the_gil_is_still_cut_at_its_deadline(silent_daemon: str) -> None:
    """The reason for the child process: a thread could not interrupt this call."""
    started = time.monotonic()
    with pytest.raises(CondorError, match=r"no answer within 1 s"):
        Collector(silent_daemon, timeout=1).query(htcondor2.AdType.Startd, "true", ["Name"])
    assert time.monotonic() - started < 3


def test_a_daemon_that_missed_its_deadline_is_not_asked_again_in_the_same_cycle(silent_daemon: str) -> None:
    budget = CallBudget(1)
    collector = Collector(silent_daemon, budget=budget)
    with pytest.raises(CondorError) as first:
        collector.query(htcondor2.AdType.Any)
    started = time.monotonic()
    with pytest.raises(CondorError) as again:
        collector.advertise([{"MyType": "X", "Name": "y"}])
    assert time.monotonic() - started < 0.5, "the second call fails at once"
    assert str(again.value) == str(first.value), "the cycle's problems repeat one reason, not a new one"
    assert list(budget.unreachable) == [f"collector {silent_daemon}"]
    fresh = Collector(silent_daemon, budget=CallBudget(1))
    with pytest.raises(CondorError, match="no answer within 1 s"):  # the next cycle asks again
        fresh.query(htcondor2.AdType.Any)


def test_a_refused_connection_is_an_error_but_not_a_missed_deadline() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        address = f"127.0.0.1:{placeholder.getsockname()[1]}"
    budget = CallBudget(5)
    with pytest.raises(CondorError):
        Collector(address, budget=budget).query(htcondor2.AdType.Any)
    assert budget.unreachable == {}


def test_htcondor_errors_become_ours_with_what_was_attempted() -> None:
    def refuse() -> None:
        raise htcondor2.HTCondorException("Failed to connect")

    with pytest.raises(CondorError, match="locating schedd: Failed to connect"):
        _call("locating schedd", "collector c", CallBudget(5), refuse)


def test_other_exceptions_are_bugs_and_pass_through() -> None:
    def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        _call("anything", "collector c", CallBudget(5), broken)


def test_a_result_comes_back_unchanged_across_the_process_boundary() -> None:
    assert _call("sum", "collector c", CallBudget(5), lambda: sum([1, 2, 3])) == 6
    big = call_in_child(lambda: ["x" * 100] * 50_000, 10)
    assert len(big) == 50_000 and big[-1] == "x" * 100


def test_a_child_that_dies_without_an_answer_is_reported() -> None:
    import os
    import signal

    with pytest.raises(ChildFailed):
        call_in_child(lambda: os.kill(os.getpid(), signal.SIGKILL), 5)


def test_deadline_exceeded_kills_the_child() -> None:
    import os

    pid_file = f"/tmp/updraft-test-child-{os.getpid()}"

    def sleep_forever() -> None:
        with open(pid_file, "w") as out:
            out.write(str(os.getpid()))
        time.sleep(60)

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        call_in_child(sleep_forever, 0.5)
    assert time.monotonic() - started < 5, "the child was waited for, not killed"
    child = int(Path(pid_file).read_text())
    os.unlink(pid_file)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_quick_call_beside_a_hung_one_is_not_held_up_by_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parallel calls: each child must hold only its own pipe, or a reader waits for a stranger's exit.

    Creating a pipe is made slow, so another thread's fork would land between a pipe's creation
    and the parent closing its write end if anything allowed it to.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    real_pipe = os.pipe

    def slow_pipe() -> tuple[int, int]:
        ends = real_pipe()
        time.sleep(0.05)
        return ends

    monkeypatch.setattr(os, "pipe", slow_pipe)

    def quick() -> float:
        started = time.monotonic()
        for _ in range(5):
            call_in_child(lambda: 1, 5)
        return time.monotonic() - started

    with ThreadPoolExecutor(max_workers=4) as pool:
        hung = [pool.submit(call_in_child, lambda: time.sleep(60), 3) for _ in range(2)]
        took = [pool.submit(quick) for _ in range(2)]
        assert max(f.result() for f in took) < 2.5, "a quick call waited for a hung call's child"
        for future in hung:
            with pytest.raises(DeadlineExceeded):
                future.result()


def test_a_call_that_cannot_fork_fails_as_ours_and_leaks_no_descriptor(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    def no_more_processes() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "fork", no_more_processes)
    with pytest.raises(CondorError, match="could not be started"):
        _call("query of collector c", "collector c", CallBudget(5), lambda: 1)
    monkeypatch.undo()
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_ctrl_c_reaching_the_child_ends_its_call_as_a_failure() -> None:
    """The child does not inherit the parent's handlers: SIGINT ends it, the parent reports the call failed."""
    import os
    import signal

    with pytest.raises(ChildFailed, match="killed by SIGINT"):
        call_in_child(lambda: os.kill(os.getpid(), signal.SIGINT), 5)


def test_a_slow_history_leaves_the_queue_reachable(silent_daemon: str) -> None:
    """The history is read from files and may be slow on its own: it must not stop the cycle's submissions."""
    import classad2

    from updraft.condor import Schedd

    location = repr(
        classad2.ClassAd(
            {
                "MyAddress": f"<{silent_daemon}>",
                "Name": "s@x",
                "MyType": "Scheduler",
                "CondorVersion": "$CondorVersion: 23.9.6 2024-08-08 $",
            }
        )
    )
    budget = CallBudget(1)
    schedd = Schedd("s@x", location, budget=budget)
    with pytest.raises(CondorError, match="history of schedd s@x: no answer"):
        schedd.history("true", ["ClusterId"])
    assert budget.missed("schedd s@x") is None
    assert budget.missed("schedd s@x history") is not None


def test_an_interrupted_wait_kills_the_child_instead_of_waiting_for_it() -> None:
    """Ctrl-C during a call to a hung daemon must not leave the caller waiting for the child."""
    import os
    import signal

    pid_file = f"/tmp/updraft-test-child-{os.getpid()}-interrupted"

    def sleep_forever() -> None:
        Path(pid_file).write_text(str(os.getpid()))
        time.sleep(60)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            call_in_child(sleep_forever, 30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 5
    child = int(Path(pid_file).read_text())
    os.unlink(pid_file)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def _gone(pid: int) -> bool:
    """No such process, or only its zombie is left (a killed orphan waits for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_call_in_flight_dies_with_the_process_that_made_it(tmp_path: Path) -> None:
    """SIGKILL of a service must not leave its submission running alone, to land after a restart read the queue."""
    import subprocess
    import sys

    pid_file = tmp_path / "child.pid"
    script = (
        "import os, time\n"
        "from pathlib import Path\n"
        "from updraft.deadline import call_in_child\n"
        "def hang():\n"
        f"    Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        "call_in_child(hang, 120)\n"
    )
    caller = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and caller.poll() is None, "the call never started"
            time.sleep(0.05)
    finally:
        caller.kill()
        caller.wait()
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child), "the call went on after the process that made it was killed"


def test_a_grouped_value_that_reads_the_slot_stays_an_expression() -> None:
    """Requirements read TARGET: evaluated in the grouped job ad they would say false for every job."""
    import classad2

    from updraft.condor import Expression, _grouped_value

    ad = classad2.ClassAd(
        "[Requirements = TARGET.IS_GLIDEIN =?= true && (TARGET.Memory >= RequestMemory);"
        ' RequestMemory = 512; RequestDisk = DiskUsage; DESIRED_Sites = "A"; RequestCpus = 1 + 1]'
    )
    requirements = _grouped_value(ad, "Requirements")
    assert isinstance(requirements, Expression) and "TARGET.Memory >= RequestMemory" in requirements.text
    assert _grouped_value(ad, "RequestDisk") == Expression("DiskUsage")
    assert (_grouped_value(ad, "RequestMemory"), _grouped_value(ad, "DESIRED_Sites")) == (512, "A")
    assert _grouped_value(ad, "RequestCpus") == 2


def test_a_call_whose_process_died_without_an_answer_is_a_call_failure() -> None:
    """Not the daemon's answer: a submission that ends so is no refusal of the entry (`updraft.factory.act`)."""
    import os

    with pytest.raises(CallFailed, match=r"submit to schedd s@x: .*without a result"):
        _call("submit to schedd s@x", "schedd s@x", CallBudget(5), lambda: os._exit(3))


def test_a_daemons_own_error_is_not_a_call_failure() -> None:
    def refuse() -> None:
        raise RuntimeError("SUBMIT_REQUIREMENT not met")

    with pytest.raises(CondorError, match="SUBMIT_REQUIREMENT") as raised:
        _call("submit to schedd s@x", "schedd s@x", CallBudget(5), refuse)
    assert not isinstance(raised.value, CallFailed)
