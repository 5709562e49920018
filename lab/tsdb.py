"""Real time-series servers for the monitoring tests: VictoriaMetrics and InfluxDB 1.x.

Both come from the cached Debian root (`runtime.ensure_root` installs them)
and run directly on the host, on loopback ports the caller picks and with
their data in a folder the caller owns, so a test session never touches an
operator's servers. Each is waited for until it answers its health check;
one that does not is a `LabError` carrying the end of its log.

The query helpers are what the tests read back with: InfluxQL for InfluxDB
(what the Grafana dashboards run) and VictoriaMetrics' export and query
APIs (what a Prometheus-style user would see).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from updraft.errors import LabError

VICTORIA_METRICS = "usr/bin/victoria-metrics"
INFLUXD = "usr/bin/influxd"
LOG_TAIL_LINES = 20
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Server:
    """One running server: what to kill, where it answers, where it logs."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def running(self) -> bool:
        return self.process.poll() is None


@dataclass(frozen=True)
class TimeSeriesServers:
    victoria_metrics: Server
    influxdb: Server
    root: Path
    """The root their binaries come from, to start more (an InfluxDB with authentication)."""

    @property
    def vm_url(self) -> str:
        return self.victoria_metrics.url

    @property
    def influx_url(self) -> str:
        return self.influxdb.url


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel's pick, so parallel sessions do not collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


# --------------------------------------------------------------------------
# Starting and stopping
# --------------------------------------------------------------------------


def victoria_metrics_argv(binary: Path, port: int, data_dir: Path) -> list[str]:
    # No result cache: tests read right after writing and must see it all.
    return [
        str(binary),
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={data_dir}",
        "-loggerLevel=WARN",
        "-search.disableCache",
        "-retentionPeriod=1y",
    ]


def influxdb_config(http_port: int, rpc_port: int, data_dir: Path, auth_enabled: bool = False) -> str:
    """influxd's TOML: our ports (the RPC service would take 8088 otherwise), our folders, little logging."""
    return f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{data_dir / "meta"}"
  logging-enabled = false

[data]
  dir = "{data_dir / "data"}"
  wal-dir = "{data_dir / "wal"}"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  unix-socket-enabled = false
  auth-enabled = {"true" if auth_enabled else "false"}

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  log-enabled = false
"""


def _launch(name: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    if not Path(argv[0]).is_file():
        raise LabError(
            f"{name}: {argv[0]} is missing; rebuild the cached root (remove it, `ensure_root` "
            "installs victoria-metrics and influxdb)"
        )
    with open(log, "ab") as out:
        try:
            # Its own session: a Ctrl-C meant for pytest must not kill it
            # before the fixture's clean stop.
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as err:
            raise LabError(f"{name}: cannot run {argv[0]}: {err.strerror or err}") from None


def answers(url: str, timeout: float = 1.0) -> bool:
    """A 2xx from `url`: the server is up and its storage is open."""
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            status: int = response.status
            return 200 <= status < 300
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(server: Server, health_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not answers(server.url + health_path):
        if not server.running:
            raise LabError(
                f"{server.name} exited (status {server.process.returncode}) before answering "
                f"{health_path}; end of {server.log}:\n{log_tail(server.log)}"
            )
        if time.monotonic() > deadline:
            stop(server)
            raise LabError(
                f"{server.name} did not answer {server.url}{health_path} within {timeout:g} s; "
                f"end of {server.log}:\n{log_tail(server.log)}"
            )
        time.sleep(0.1)


def start_victoria_metrics(root: Path, port: int, folder: Path, timeout: float = 30.0) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "victoria-metrics.log"
    argv = victoria_metrics_argv(root / VICTORIA_METRICS, port, folder / "data")
    server = Server("victoria-metrics", _launch("victoria-metrics", argv, log), f"http://127.0.0.1:{port}", log)
    wait_healthy(server, "/health", timeout)
    return server


def start_influxdb(
    root: Path, port: int, rpc_port: int, folder: Path, timeout: float = 30.0, auth_enabled: bool = False
) -> Server:
    """With `auth_enabled`, the first user must be created (``CREATE USER ... WITH ALL PRIVILEGES``)
    before anything else is allowed; tests use that to get real 401s."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "influxdb.conf"
    config.write_text(influxdb_config(port, rpc_port, folder, auth_enabled))
    log = folder / "influxdb.log"
    argv = [str(root / INFLUXD), "run", "-config", str(config)]
    server = Server("influxdb", _launch("influxdb", argv, log), f"http://127.0.0.1:{port}", log)
    wait_healthy(server, "/ping", timeout)
    return server


def stop(server: Server, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: both flush and close their storage on TERM."""
    if not server.running:
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(grace)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@contextmanager
def running(root: Path, folder: Path, timeout: float = 30.0) -> Iterator[TimeSeriesServers]:
    """VictoriaMetrics and InfluxDB on free loopback ports, data under `folder`; stopped on exit."""
    with ExitStack() as stack:
        vm = start_victoria_metrics(root, free_port(), folder / "victoria-metrics", timeout)
        stack.callback(stop, vm)
        influx = start_influxdb(root, free_port(), free_port(), folder / "influxdb", timeout)
        stack.callback(stop, influx)
        yield TimeSeriesServers(vm, influx, root)


# --------------------------------------------------------------------------
# Reading back (what the tests check with)
# --------------------------------------------------------------------------


def _request(url: str, form: dict[str, str] | None = None, timeout: float = 10.0) -> bytes:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with _NO_PROXY.open(urllib.request.Request(url, data=data), timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as err:
        with err:
            detail = err.read().decode(errors="replace").strip()[:500]
        raise LabError(f"{url.split('?')[0]}: HTTP {err.code} {err.reason}: {detail}") from None
    except (urllib.error.URLError, OSError) as err:
        raise LabError(f"{url.split('?')[0]}: {err}") from None


def influxql(url: str, query: str, database: str | None = None) -> list[dict[str, Any]]:
    """The results of an InfluxQL query (one per statement); LabError if any statement failed.

    POST, because CREATE/DROP need it; times come back as epoch seconds.
    """
    form = {"q": query, "epoch": "s"}
    if database is not None:
        form["db"] = database
    answer = json.loads(_request(f"{url}/query", form))
    if "error" in answer:
        raise LabError(f"InfluxQL {query!r}: {answer['error']}")
    results: list[dict[str, Any]] = answer.get("results", [])
    for result in results:
        if "error" in result:
            raise LabError(f"InfluxQL {query!r}: {result['error']}")
    return results


def create_database(url: str, name: str) -> None:
    influxql(url, f'CREATE DATABASE "{name}"')


def vm_flush(url: str) -> None:
    """Make what was just written searchable (it sits in memory for up to a few seconds)."""
    _request(f"{url}/internal/force_flush")


def vm_export(url: str, match: str) -> list[dict[str, Any]]:
    """Every raw sample of the series `match` selects: [{"metric": {...}, "values": [...], "timestamps": [...]}]."""
    vm_flush(url)
    text = _request(f"{url}/api/v1/export", {"match[]": match}).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def vm_query(url: str, promql: str, at: float | None = None) -> dict[str, Any]:
    """An instant PromQL/MetricsQL query's ``data`` (resultType and result)."""
    vm_flush(url)
    form = {"query": promql}
    if at is not None:
        form["time"] = f"{at:.3f}"
    answer = json.loads(_request(f"{url}/api/v1/query", form))
    if answer.get("status") != "success":
        raise LabError(f"PromQL {promql!r}: {answer.get('error', answer)}")
    data: dict[str, Any] = answer["data"]
    return data
