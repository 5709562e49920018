"""The InfluxDB writer and the Grafana dashboards against real servers: VictoriaMetrics and InfluxDB 1.6.

Several cycles of a factory and a frontend are written by the writer, as a
daemon would, and read back with the servers' own query languages: every
number must come back with its labels. Then every query of every shipped
dashboard runs against InfluxDB with Grafana's macros filled in, and must
find data: a panel that would stay empty fails here, by its title.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from updraft.errors import LabError, MonitoringError
from updraft.lab import tsdb as tsdb_lab
from updraft.lab.tsdb import TimeSeriesServers
from updraft.monitoring.metrics import Measurement, measurements
from updraft.monitoring.snapshot import (
    CompletedRow,
    EntryStatus,
    FactorySnapshot,
    FrontendSnapshot,
    GroupEntryRow,
    HealthRow,
    PilotRow,
    RestartRow,
    Snapshot,
    TransitionRow,
)
from updraft.monitoring.writers.influxdb import InfluxSettings, InfluxWriter, resolve

pytestmark = pytest.mark.backends

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "etc" / "grafana" / "dashboards"
TOKEN = "tok-3f9a1c77e5b24d0c"
PASSWORD = "pw-81c6e0d2a4f3"
CYCLES = 6
CYCLE_SECONDS = 60
ENTRIES = ("ce1@site1", "ce 2,x=y", "ce3@site3")
"""The second one has a space, a comma and an equals sign: line protocol must escape them."""
FRONTENDS = ("vo-a", "vo-b")
GROUPS = ("main", "gpu")
START = int(time.time()) // 60 * 60 - CYCLES * CYCLE_SECONDS
"""Recent, so InfluxDB's retention and VictoriaMetrics' lookback accept the points."""
CYCLE_TIMES = tuple(START + CYCLE_SECONDS * i for i in range(CYCLES))


# --------------------------------------------------------------------------
# Realistic cycles
# --------------------------------------------------------------------------


def completed(entry: str, frontend: str, cycle: int, weight: int) -> CompletedRow:
    """Running totals that grow every cycle, failures by step included."""
    n = cycle + 1
    ok, failed, no_report = 5 * n * weight, n * weight, n
    pilots = ok + failed + no_report
    return CompletedRow(
        entry,
        frontend,
        pilots=pilots,
        ok=ok,
        failed=failed,
        no_report=no_report,
        removed=n,
        lifetime_seconds=3600 * pilots,
        jobs_run=3 * ok,
        pilots_without_jobs=n,
        core_seconds=8 * 3600 * pilots,
        busy_core_seconds=6 * 3600 * pilots,
        goodput_core_seconds=5 * 3600 * pilots,
        waste_core_seconds=3600 * pilots,
        failed_by_step={"validate": n * weight, "stage": 2 * n},
    )


OPERATOR = "op one"
"""An operator whose name has a space: a tag value that line protocol must escape."""
HEALTH_PLAN = {
    1: ((2, "degraded", "held pilots: 6 of 10 in 1h"), (4, "banned", 'validation "failed": 9 of 10')),
    2: ((3, "banned", "site down for maintenance"),),
}
"""Entry index -> (cycle, new state, reason) of each change; an entry not here stays active.
Entry 2's change is an operator's override, the others the policy's."""


def health_at(e: int, cycle: int) -> tuple[str, str, float]:
    """(state, reason, since) of entry `e` at `cycle`, from `HEALTH_PLAN`."""
    state, reason, since = "active", "", float(CYCLE_TIMES[0])
    for at_cycle, new, why in HEALTH_PLAN.get(e, ()):
        if at_cycle <= cycle:
            state, reason, since = new, why, CYCLE_TIMES[at_cycle] + 0.2
    return state, reason, since


def health_rows(entries: tuple[str, ...], cycle: int) -> tuple[tuple[HealthRow, ...], tuple[TransitionRow, ...]]:
    """Each entry's health this cycle and the changes the cycle made."""
    rows, changes = [], []
    for e, entry in enumerate(entries):
        state, reason, since = health_at(e, cycle)
        by = OPERATOR if e == 2 and state != "active" else None
        cap = 5 if state == "degraded" else None
        rows.append(HealthRow(entry, state, reason, since, since + 600, cap, by, since + 7200 if by else None))
        if since == CYCLE_TIMES[cycle] + 0.2:
            old = health_at(e, cycle - 1)[0]
            at = CYCLE_TIMES[cycle] + 0.2
            key = f"{entry}|{at:.3f}|{old}>{state}"
            changes.append(TransitionRow(entry, old, state, reason, at, by or "policy", key))
    return tuple(rows), tuple(changes)


def factory_cycle(name: str, cycle: int, entries: tuple[str, ...]) -> FactorySnapshot:
    statuses, rows, done = [], [], []
    for e, entry in enumerate(entries):
        statuses.append(
            EntryStatus(
                entry,
                in_downtime=(e == 2 and cycle >= 3),
                cores_per_pilot=8,
                waiting=cycle + e,
                pending=2,
                staging=e,
                running=10 + 2 * cycle + e,
                held=e % 2,
            )
        )
        for f, frontend in enumerate(FRONTENDS):
            rows.append(
                PilotRow(
                    entry,
                    frontend,
                    waiting=cycle,
                    pending=1,
                    staging=f,
                    running=5 + cycle + f,
                    held=0,
                    cores_running=8 * (5 + cycle + f),
                    requested_idle=4 + f,
                    requested_max=50,
                    submitted=cycle % 3 + 1,
                    removed=cycle % 2,
                    released=f,
                    limits_hit=("entry.max_idle",) if cycle % 2 else (),
                )
            )
            done.append(completed(entry, frontend, cycle, e + f + 1))
    health, transitions = health_rows(entries, cycle)
    return FactorySnapshot(
        name,
        float(CYCLE_TIMES[cycle]) + 0.4,
        cycle,
        tuple(statuses),
        tuple(rows),
        tuple(done),
        rejected_requests=cycle % 2,
        problems=("schedd x: slow",) * (cycle % 2),
        timings={"observe": 0.5 + 0.1 * cycle, "decide": 0.02, "act": 1.5, "account": 0.3},
        health=health,
        transitions=transitions,
    )


def frontend_cycle(name: str, cycle: int) -> FrontendSnapshot:
    rows = []
    for g, group in enumerate(GROUPS):
        for e, entry in enumerate(ENTRIES):
            rows.append(
                GroupEntryRow(
                    group,
                    entry,
                    jobs_idle=10.5 + cycle + e,
                    jobs_old_idle=1.0 * g,
                    jobs_running=20.0 + 3 * cycle,
                    slots_total=12 + e,
                    slots_idle=2,
                    slots_running=10 + e,
                    slots_failed=g,
                    slots_cores=8 * (12 + e),
                    requested_idle=4 + e,
                    requested_max=40,
                    remove="none",
                    bound_by=("group.max_idle_per_entry", "entry.max_pilots.curb")[: 1 + cycle % 2],
                    in_downtime=(e == 2 and cycle >= 3),
                )
            )
    restarts = tuple(
        RestartRow(
            group,
            entry,
            restarted_jobs=1 + e,
            restarts=2 + e + cycle,
            restarts_last_hour=e % 2,
            badput_seconds=60.0 * (1 + cycle),
            badput_core_seconds=120.0 * (1 + cycle),
        )
        for group in GROUPS
        for e, entry in enumerate(ENTRIES)
    )
    return FrontendSnapshot(
        name,
        float(CYCLE_TIMES[cycle]) + 0.7,
        cycle,
        tuple(rows),
        restarts=restarts,
        unmatched_jobs={"gpu": 3 + cycle},
        downtime_jobs={"main": cycle},
        problems=("collector x: timeout",) * (cycle % 2),
        timings={"observe": 0.8, "decide": 0.05 + 0.01 * cycle, "publish": 0.2},
    )


def all_cycles() -> list[Snapshot]:
    snapshots: list[Snapshot] = []
    for cycle in range(CYCLES):
        snapshots.append(factory_cycle("fac-main", cycle, ENTRIES))
        snapshots.append(factory_cycle("fac-other", cycle, ENTRIES[:1]))
        snapshots.extend(frontend_cycle(name, cycle) for name in FRONTENDS)
    return snapshots


def written(snapshots: list[Snapshot]) -> list[Measurement]:
    return [m for snapshot in snapshots for m in measurements(snapshot)]


def write_all(writer: InfluxWriter, snapshots: list[Snapshot]) -> None:
    for snapshot in snapshots:
        writer.write(snapshot)


# --------------------------------------------------------------------------
# (a) VictoriaMetrics through the v2 API
# --------------------------------------------------------------------------


def vm_expected(found: list[Measurement]) -> dict[tuple[str, frozenset[tuple[str, str]]], dict[int, float]]:
    """metric ``<measurement>_<field>`` with its labels -> {timestamp ms: value}."""
    expected: dict[tuple[str, frozenset[tuple[str, str]]], dict[int, float]] = defaultdict(dict)
    for m in found:
        for field, value in m.values.items():
            if math.isfinite(value):  # an unknown value (an uncapped entry's cap) is no point
                expected[(f"{m.name}_{field}", frozenset(m.tags))][int(m.time) * 1000] = value
        for text in m.texts:
            # VictoriaMetrics has no strings: it parses a string field as a number, 0 when it is none.
            expected[(f"{m.name}_{text}", frozenset(m.tags))][int(m.time) * 1000] = 0.0
    return expected


def vm_found(rows: list[dict[str, Any]]) -> dict[tuple[str, frozenset[tuple[str, str]]], dict[int, float]]:
    found: dict[tuple[str, frozenset[tuple[str, str]]], dict[int, float]] = defaultdict(dict)
    for row in rows:
        labels = dict(row["metric"])
        name = labels.pop("__name__")
        found[(name, frozenset(labels.items()))].update(zip(row["timestamps"], row["values"], strict=True))
    return found


@pytest.fixture(scope="module")
def vm_loaded(tsdb: TimeSeriesServers) -> list[Measurement]:
    snapshots = all_cycles()
    writer = InfluxWriter(
        resolve(InfluxSettings(url=tsdb.vm_url, org="grid", bucket="updraft", token=SecretStr(TOKEN)), {})
    )
    write_all(writer, snapshots)
    return written(snapshots)


def test_v2_writer_points_read_back_from_victoria_metrics_with_values_and_labels(
    tsdb: TimeSeriesServers, vm_loaded: list[Measurement]
) -> None:
    found = vm_found(tsdb_lab.vm_export(tsdb.vm_url, '{__name__=~"updraft_.*"}'))
    expected = vm_expected(vm_loaded)
    assert set(found) == set(expected)
    for series, samples in expected.items():
        # VictoriaMetrics keeps about 12 significant digits: 0.060000000000000005 comes back as 0.06.
        assert found[series] == pytest.approx(samples, rel=1e-9), series


def test_v2_writer_escaped_tags_and_counters_as_victoria_metrics_sees_them(
    tsdb: TimeSeriesServers, vm_loaded: list[Measurement]
) -> None:
    rows = tsdb_lab.vm_export(tsdb.vm_url, 'updraft_factory_failures_pilots{factory="fac-main",entry="ce 2,x=y"}')
    by_series = {(r["metric"]["frontend"], r["metric"]["step"]): r["values"] for r in rows}
    assert set(by_series) == {(f, s) for f in FRONTENDS for s in ("stage", "validate")}
    assert by_series[("vo-b", "validate")] == [float(3 * n) for n in range(1, CYCLES + 1)]
    assert set(rows[0]["metric"]) == {"__name__", "factory", "entry", "frontend", "step"}

    last = CYCLE_TIMES[-1] + 1
    data = tsdb_lab.vm_query(tsdb.vm_url, 'sum(updraft_factory_entry_running{factory="fac-main"})', at=last)
    expected = sum(10 + 2 * (CYCLES - 1) + e for e in range(len(ENTRIES)))
    assert [float(r["value"][1]) for r in data["result"]] == [expected]


def test_v2_entry_health_state_codes_per_cycle_as_victoria_metrics_sees_them(
    tsdb: TimeSeriesServers, vm_loaded: list[Measurement]
) -> None:
    rows = tsdb_lab.vm_export(tsdb.vm_url, 'updraft_factory_health_state{factory="fac-main"}')
    by_entry = {r["metric"]["entry"]: r["values"] for r in rows}
    # 0 active, 1 degraded, 3 banned: the codes docs/metrics.md documents.
    assert by_entry == {
        "ce1@site1": [0.0] * CYCLES,
        "ce 2,x=y": [0.0, 0.0, 1.0, 1.0, 3.0, 3.0],
        "ce3@site3": [0.0, 0.0, 0.0, 3.0, 3.0, 3.0],
    }
    overridden = tsdb_lab.vm_export(tsdb.vm_url, 'updraft_factory_health_overridden{entry="ce3@site3"}')
    assert [r["values"] for r in overridden if r["metric"]["factory"] == "fac-main"] == [[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]]
    changes = tsdb_lab.vm_export(tsdb.vm_url, 'updraft_factory_health_changes_new_state{factory="fac-main"}')
    assert sorted((r["metric"]["entry"], r["metric"]["by"], r["values"][0]) for r in changes) == [
        ("ce 2,x=y", "policy", 1.0),
        ("ce 2,x=y", "policy", 3.0),
        ("ce3@site3", OPERATOR, 3.0),
    ]


# --------------------------------------------------------------------------
# (b) InfluxDB 1.6 through the v1 API
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def influx_loaded(tsdb: TimeSeriesServers) -> tuple[str, list[Measurement]]:
    """A database written by the v1 writer, cycle after cycle; (database, what was written)."""
    database = "updraft"
    tsdb_lab.create_database(tsdb.influx_url, database)
    snapshots = all_cycles()
    write_all(InfluxWriter(resolve(InfluxSettings(api="v1", url=tsdb.influx_url, database=database), {})), snapshots)
    return database, written(snapshots)


def influx_expected(found: list[Measurement]) -> dict[tuple[str, tuple[tuple[str, str], ...]], dict[int, dict]]:
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], dict[int, dict]] = defaultdict(dict)
    for m in found:
        values = {k: v for k, v in m.values.items() if math.isfinite(v)}
        expected[(m.name, tuple(sorted(m.tags)))][int(m.time)] = {**values, **m.texts}
    return expected


def influx_found(url: str, database: str, names: set[str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], dict]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], dict[int, dict]] = defaultdict(dict)
    for name in names:
        (result,) = tsdb_lab.influxql(url, f'SELECT * FROM "{name}" GROUP BY *', database)
        for series in result["series"]:
            key = (series["name"], tuple(sorted(series["tags"].items())))
            for row in series["values"]:
                point = dict(zip(series["columns"], row, strict=True))
                at = point.pop("time")
                found[key][at] = {k: v if isinstance(v, str) else float(v) for k, v in point.items() if v is not None}
    return found


def test_v1_writer_points_read_back_from_influxdb_with_influxql(
    tsdb: TimeSeriesServers, influx_loaded: tuple[str, list[Measurement]]
) -> None:
    database, loaded = influx_loaded
    names = {m.name for m in loaded}
    (result,) = tsdb_lab.influxql(tsdb.influx_url, "SHOW MEASUREMENTS", database)
    assert {row[0] for row in result["series"][0]["values"]} == names
    assert influx_found(tsdb.influx_url, database, names) == influx_expected(loaded)


def test_v1_writer_tag_values_with_spaces_commas_and_equals_come_back_whole(
    tsdb: TimeSeriesServers, influx_loaded: tuple[str, list[Measurement]]
) -> None:
    database, _ = influx_loaded
    (result,) = tsdb_lab.influxql(
        tsdb.influx_url, 'SHOW TAG VALUES FROM "updraft_frontend_match" WITH KEY = "entry"', database
    )
    assert sorted(row[1] for row in result["series"][0]["values"]) == sorted(ENTRIES)


def test_v1_health_changes_are_points_at_their_own_time_with_tags_and_the_reason(
    tsdb: TimeSeriesServers, influx_loaded: tuple[str, list[Measurement]]
) -> None:
    database, _ = influx_loaded
    (result,) = tsdb_lab.influxql(
        tsdb.influx_url,
        'SELECT "entry", "old", "new", "by", "reason", "changes" FROM "updraft_factory_health_changes" '
        "WHERE \"factory\" = 'fac-main' ORDER BY time DESC",
        database,
    )
    (series,) = result["series"]
    assert series["columns"] == ["time", "entry", "old", "new", "by", "reason", "changes"]
    assert series["values"] == [
        [CYCLE_TIMES[4], "ce 2,x=y", "degraded", "banned", "policy", 'validation "failed": 9 of 10', 1],
        [CYCLE_TIMES[3], "ce3@site3", "active", "banned", OPERATOR, "site down for maintenance", 1],
        [CYCLE_TIMES[2], "ce 2,x=y", "active", "degraded", "policy", "held pilots: 6 of 10 in 1h", 1],
    ]


# --------------------------------------------------------------------------
# (c) every query of every shipped dashboard, against data the writer wrote
# --------------------------------------------------------------------------

_GRAFANA_REGEX_SPECIALS = re.compile(r"[\\^$*+?.()|{}\[\]/]")
_UNRESOLVED = re.compile(r"\$(?!/)(\{?\w+)|\[\[\w+\]\]")


def grafana_regex(values: list[str]) -> str:
    """How Grafana writes a variable's value(s) into an InfluxQL ``/^$var$/``: escaped, several as (a|b)."""
    escaped = [_GRAFANA_REGEX_SPECIALS.sub(lambda m: "\\" + m.group(0), v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def substitute(query: str, variables: dict[str, str], interval: str, time_range: tuple[int, int]) -> str:
    """Grafana's macros and the chosen variable values, as its InfluxQL datasource renders them."""
    start, end = time_range
    macros = {
        "timeFilter": f"time >= {start * 1000}ms and time <= {end * 1000}ms",
        "__interval_ms": str(_seconds(interval) * 1000),
        "__interval": interval,
        "__from": str(start * 1000),
        "__to": str(end * 1000),
        **variables,
    }
    for name in sorted(macros, key=len, reverse=True):
        query = query.replace("${" + name + "}", macros[name]).replace("$" + name, macros[name])
    leftover = [m.group(0) for m in _UNRESOLVED.finditer(query)]
    assert not leftover, f"unresolved Grafana variables {leftover} in {query}"
    return query


def _seconds(interval: str) -> int:
    number, unit = int(interval[:-1]), interval[-1]
    return number * {"s": 1, "m": 60, "h": 3600}[unit]


def has_data(results: list[dict[str, Any]]) -> bool:
    """At least one series with at least one non-null value besides its time."""
    for result in results:
        for series in result.get("series", []):
            columns = series["columns"]
            for row in series["values"]:
                if any(v is not None for c, v in zip(columns, row, strict=True) if c != "time"):
                    return True
    return False


def shipped_dashboards() -> list[dict[str, Any]]:
    paths = sorted(DASHBOARD_DIR.glob("*.json"))
    assert len(paths) >= 3, f"dashboards missing in {DASHBOARD_DIR}"
    return [json.loads(p.read_text()) for p in paths]


def choose_variables(dashboard: dict[str, Any], url: str, database: str) -> tuple[dict[str, str], list[str]]:
    """Run the template variables in order, as Grafana does: each one's query sees the earlier
    ones' values; single-value ones take the first value (sorted), multi-value ones All."""
    chosen: dict[str, str] = {}
    failures = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = substitute(variable["query"], chosen, "1m", (START, START))
        values = sorted(
            {
                row[1]
                for r in tsdb_lab.influxql(url, query, database)
                for s in r.get("series", [])
                for row in s["values"]
            }
        )
        if not values:
            failures.append(f"{dashboard['title']}: variable ${variable['name']} has no values: {query}")
            continue
        chosen[variable["name"]] = grafana_regex(values if variable.get("includeAll") else values[:1])
    return chosen, failures


@pytest.mark.parametrize("interval", ["10s", "1m", "5m"])
def test_every_dashboard_query_finds_data_the_writer_wrote(
    tsdb: TimeSeriesServers, influx_loaded: tuple[str, list[Measurement]], interval: str
) -> None:
    database, _ = influx_loaded
    time_range = (START - 60, CYCLE_TIMES[-1] + 60)
    failures: list[str] = []
    panels_run = 0
    for dashboard in shipped_dashboards():
        chosen, problems = choose_variables(dashboard, tsdb.influx_url, database)
        failures += problems
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                query = substitute(target["query"], chosen, interval, time_range)
                try:
                    results = tsdb_lab.influxql(tsdb.influx_url, query, database)
                except LabError as err:
                    failures.append(f"{dashboard['title']} / {panel['title']}: {err}")
                    continue
                panels_run += 1
                if not has_data(results):
                    failures.append(f"{dashboard['title']} / {panel['title']}: no data: {query}")
    assert not failures, "\n".join(failures)
    assert panels_run >= 30


# --------------------------------------------------------------------------
# (d) servers that are down or refuse: MonitoringError, never a secret
# --------------------------------------------------------------------------


def assert_clean(err: MonitoringError, caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    texts = [
        str(err),
        repr(err),
        str(err.__context__),
        str(err.__cause__),
        caplog.text,
        *(repr(r.args) for r in caplog.records),
    ]
    for secret in secrets:
        assert not any(secret in text for text in texts), f"{secret!r} leaked"
    assert err.__context__ is None and err.__cause__ is None


def failing_write(settings: InfluxSettings, caplog: pytest.LogCaptureFixture) -> MonitoringError:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(MonitoringError) as caught:
        InfluxWriter(resolve(settings, {})).write(all_cycles()[0])
    return caught.value


def test_a_server_that_is_down_is_a_monitoring_error_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{tsdb_lab.free_port()}"
    for api in ("v2", "v1"):
        extra: dict[str, Any] = {"org": "grid"} if api == "v2" else {}
        err = failing_write(InfluxSettings(api=api, url=url, bucket="updraft", token=SecretStr(TOKEN), **extra), caplog)
        assert f"write to {url} failed: cannot connect: Connection refused" in str(err)
        assert_clean(err, caplog, TOKEN)


def test_v2_to_an_influxdb_without_the_v2_api_is_a_404_without_the_token(
    tsdb: TimeSeriesServers, caplog: pytest.LogCaptureFixture
) -> None:
    err = failing_write(
        InfluxSettings(url=tsdb.influx_url, org="grid", bucket="updraft", token=SecretStr(TOKEN)), caplog
    )
    assert "HTTP 404" in str(err) and tsdb.influx_url in str(err)
    assert_clean(err, caplog, TOKEN)


def test_v1_to_a_missing_database_is_a_404_naming_it(tsdb: TimeSeriesServers, caplog: pytest.LogCaptureFixture) -> None:
    err = failing_write(
        InfluxSettings(
            api="v1", url=tsdb.influx_url, database="nosuchdb", username="writer", password=SecretStr(PASSWORD)
        ),
        caplog,
    )
    assert "HTTP 404 Not Found: database not found" in str(err) and "nosuchdb" in str(err)
    assert_clean(err, caplog, PASSWORD)


@pytest.fixture
def influx_with_auth(tsdb: TimeSeriesServers, tmp_path: Path) -> Iterator[str]:
    """A second InfluxDB 1.x with authentication on and one admin user."""
    server = tsdb_lab.start_influxdb(
        tsdb.root, tsdb_lab.free_port(), tsdb_lab.free_port(), tmp_path / "influx-auth", auth_enabled=True
    )
    try:
        tsdb_lab.influxql(server.url, "CREATE USER admin WITH PASSWORD 'right-one' WITH ALL PRIVILEGES")
        yield server.url
    finally:
        tsdb_lab.stop(server)


def test_wrong_credentials_are_a_401_without_the_password(
    influx_with_auth: str, caplog: pytest.LogCaptureFixture
) -> None:
    err = failing_write(
        InfluxSettings(
            api="v1", url=influx_with_auth, database="updraft", username="admin", password=SecretStr(PASSWORD)
        ),
        caplog,
    )
    assert "HTTP 401 Unauthorized" in str(err)
    assert_clean(err, caplog, PASSWORD)
    err = failing_write(
        InfluxSettings(api="v1", url=influx_with_auth, database="updraft", token=SecretStr(f"admin:{PASSWORD}")), caplog
    )
    assert "HTTP 401" in str(err)
    assert_clean(err, caplog, PASSWORD)
