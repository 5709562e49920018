"""`lab down` must stop only its own lab's processes, even beside another lab."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from updraft.lab.runtime import ChrootRuntime, HostRuntime


@pytest.fixture
def process_of_lab_a():
    env = {**os.environ, "CONDOR_CONFIG": "/var/tmp/lab-a/daemons/vo/condor_config"}
    proc = subprocess.Popen(["sleep", "30"], env=env)
    environ = Path(f"/proc/{proc.pid}/environ")
    deadline = time.monotonic() + 5
    while b"CONDOR_CONFIG=" not in environ.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)  # the child may still be between fork and exec
    yield proc.pid
    proc.kill()
    proc.wait()


def test_a_process_belongs_to_the_lab_whose_folder_holds_its_config(process_of_lab_a: int) -> None:
    runtime = HostRuntime()
    assert runtime.owns_process(process_of_lab_a, Path("/var/tmp/lab-a"))
    assert not runtime.owns_process(process_of_lab_a, Path("/var/tmp/lab"))
    assert not runtime.owns_process(process_of_lab_a, Path("/var/tmp/lab-b"))


def test_a_chroot_lab_owns_nothing_outside_its_root(process_of_lab_a: int) -> None:
    assert not ChrootRuntime(Path("/var/cache/some-other-root")).owns_process(process_of_lab_a, Path("/var/tmp/lab-a"))


def test_a_vanished_process_belongs_to_no_lab() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not HostRuntime().owns_process(proc.pid, Path("/var/tmp/lab-a"))


def test_files_of_an_old_roots_condor_user_are_adopted_and_roots_stay_roots(tmp_path) -> None:
    """A rebuilt HTCondor root may give condor another uid: its old logs must become writable again."""
    import os

    from updraft.lab.control import _adopt_stale_files

    log = tmp_path / "log"
    (log / "spool" / "sub").mkdir(parents=True)
    stale, own, roots = log / "MasterLog", log / "spool" / "sub" / "job.ad", log / "ProcLog"
    for path in (stale, own, roots):
        path.write_text("x")
    os.chown(stale, 100, 101)
    os.chown(log / "spool", 100, 101)
    os.chown(own, 102, 103)
    _adopt_stale_files(log, 102, 103)
    assert (stale.stat().st_uid, stale.stat().st_gid) == (102, 103)
    assert (log / "spool").stat().st_uid == 102
    assert own.stat().st_uid == 102 and roots.stat().st_uid == 0
