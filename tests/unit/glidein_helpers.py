"""Shared by the unit tests that run the real glidein: a local web server and a dry run.

A staging area is only proven by a pilot fetching it over HTTP, so these
tests serve a folder on 127.0.0.1 and run glidein_startup.sh --dry-run
(no condor is started) with the words the factory would write.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from updraft.glidein.assemble import shipped_script
from updraft.glidein.report import PilotReport, parse_report

GLIDEIN_SOURCE = Path(__file__).resolve().parents[2] / "glidein"
PILOT_SCRIPT = shipped_script(GLIDEIN_SOURCE)
"""The script a pilot gets, assembled from this checkout's parts (written beside them when stale)."""
IDENTITY = {
    "UPDRAFT_FACTORY": "fac",
    "UPDRAFT_ENTRY": "site1",
    "UPDRAFT_FRONTEND": "vo",
    "UPDRAFT_GROUP": "main",
    "UPDRAFT_JOB_ID": "42.0",
}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(directory: Path) -> Iterator[str]:
    """An HTTP server for `directory` while the block runs; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def dry_run_pilot(cwd: Path, arguments: Sequence[str], environment: Mapping[str, object]) -> PilotReport:
    """The glidein run under dash with `arguments` and --dry-run; its report (asserted present)."""
    done = subprocess.run(
        [shutil.which("dash") or "/bin/sh", str(PILOT_SCRIPT), *arguments, "--dry-run"],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(cwd),
            **IDENTITY,
            **{name: str(value) for name, value in environment.items()},
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = parse_report(done.stdout)
    assert report is not None, done.stdout + done.stderr
    assert report.ok, (report, done.stderr)
    return report
