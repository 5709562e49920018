"""How long a cycle lasts against a collector that accepts connections and never answers, and what
running every HTCondor call in a killable child costs.

    .venv/bin/python bench/silent_daemon.py [--timeout 3]

Prints, for the factory's and the frontend's `once` pointed at a silent
listener (as a stopped or wedged collector looks from outside): the wall
time and the exit status. Then the overhead of `updraft.deadline.call_in_child`
per call, for an empty call and for a result of 10,000 ads, against calling
in process. No HTCondor daemon is needed.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from updraft.deadline import call_in_child

UPDRAFT = str(Path(sys.executable).parent / "updraft")


def silent_listener() -> tuple[socket.socket, str]:
    server = socket.create_server(("127.0.0.1", 0), backlog=128)
    held: list[socket.socket] = []

    def accept_forever() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # the listener was closed: the bench is done
                return

    threading.Thread(target=accept_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.getsockname()[1]}"


def configs(folder: Path, address: str, timeout: float) -> dict[str, Path]:
    common = f"wms_collector: {address}\nquery_timeout_seconds: {timeout}\n"
    files = {
        "factory": f"name: bench-factory\nschedd: factory@lab\nwork_dir: {folder}/factory\n{common}"
        "pilot: {executable: /bin/true}\n"
        f"entries: {{site1: {{grid_type: condor, resource: 'ce@site1 {address}'}}}}\n",
        "frontend": f"name: bench-vo\nvo_collector: {address}\nwork_dir: {folder}/frontend\n{common}"
        "factories: {f: {identity: factory@lab}}\n"
        "groups: {main: {job_constraint: 'true', match_expr: 'true'}}\n",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(text)
    return paths


def once(component: str, config: Path) -> tuple[float, int]:
    started = time.monotonic()
    done = subprocess.run([UPDRAFT, component, "once", "-c", str(config)], capture_output=True, text=True, timeout=300)
    return time.monotonic() - started, done.returncode


def per_call(fn: object, rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        call_in_child(fn, 10)  # type: ignore[arg-type]
    return (time.perf_counter() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=3.0, help="query_timeout_seconds (default 3)")
    args = parser.parse_args()
    server, address = silent_listener()
    with tempfile.TemporaryDirectory() as folder:
        paths = configs(Path(folder), address, args.timeout)
        for component, path in paths.items():
            took, status = once(component, path)
            print(
                f"{component:<8} once against a silent collector, query_timeout_seconds {args.timeout:g}: "
                f"{took:5.2f} s, exit {status}"
            )
    server.close()
    ads = [
        {"ClusterId": n, "ProcId": 0, "JobStatus": 1, "UpdraftEntry": "site1", "UpdraftFrontend": "vo"}
        for n in range(10_000)
    ]
    empty = per_call(lambda: None, 300)
    large = per_call(lambda: ads, 30)
    started = time.perf_counter()
    for _ in range(300):
        (lambda: None)()
    in_process = (time.perf_counter() - started) / 300
    print(
        f"call in a child: {empty * 1e3:.2f} ms per empty call (in process: {in_process * 1e6:.2f} µs), "
        f"{large * 1e3:.1f} ms for a result of 10,000 ads"
    )


if __name__ == "__main__":
    main()
