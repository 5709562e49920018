"""The InfluxDB writer's pure parts, its settings and secret hygiene; the dashboards and docs stay in sync.

Transport failures are tested against small local HTTP servers (one that
echoes the credentials back, as a hostile proxy might); the real
InfluxDB and VictoriaMetrics are in tests/integration/test_monitoring_tsdb.py.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import SecretStr

from updraft.config import load_layered
from updraft.errors import ConfigError, MonitoringError
from updraft.factory.config import FactoryConfig
from updraft.monitoring import docs, grafana, registry
from updraft.monitoring.config import validate_writers
from updraft.monitoring.metrics import (
    CATALOGUE,
    FACTORY_ENTRY,
    Kind,
    Measurement,
    measurements,
    spec_named,
)
from updraft.monitoring.snapshot import (
    CompletedRow,
    EntryStatus,
    FactorySnapshot,
    PilotRow,
)
from updraft.monitoring.writers import influxdb
from updraft.monitoring.writers.influxdb import (
    Connection,
    InfluxSettings,
    InfluxWriter,
    Point,
    body,
    line,
    point_of,
    points_of,
    resolve,
    server_reason,
    transport_reason,
)

REPO = Path(__file__).resolve().parents[2]
TOKEN = "tok-5d1e9b0a7c3f"
PASSWORD = "pw-0b8e27c4d9"
SNAPSHOT = FactorySnapshot(
    "fac",
    1_767_225_600.9,
    7,
    (EntryStatus("ce 1,a=b", False, 8, 1, 2, 0, 3, 0), EntryStatus("ce2@site", True, 4)),
    (PilotRow("ce 1,a=b", "vo", 1, 2, 0, 3, 0, 24, 5, 10, 2, 0, 0, ("entry.max_idle",)),),
    (CompletedRow("ce 1,a=b", "vo", 10, 7, 2, 1, 0, 1000, 20, 1, 4000, 3000, 2500, 500, {"validate": 2}),),
    timings={"observe": 0.25},
)


# --------------------------------------------------------------------------
# Points and line protocol
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        (Point("m", (("entry", "ce1"),), (("f", 1.0),), 100), "m,entry=ce1 f=1.0 100"),
        (Point("m", (("entry", "ce 1"),), (("f", 2.5),), 100), r"m,entry=ce\ 1 f=2.5 100"),
        (Point("m", (("entry", "a,b=c"),), (("f", 0.1),), 100), r"m,entry=a\,b\=c f=0.1 100"),
        (Point("m", (("entry", "x\ny"),), (("f", 1e20),), 1), r"m,entry=x\ny f=1e+20 1"),
        (Point("my m,x", (), (("f", -3.0),), 5), r"my\ m\,x f=-3.0 5"),
        (Point("m", (("a b", "v"),), (("f g", 1.0), ("h=i", 2.0)), 5), r"m,a\ b=v f\ g=1.0,h\=i=2.0 5"),
        (Point("m", (("a", "1"), ("b", "2")), (("f", 0.0),), 5), "m,a=1,b=2 f=0.0 5"),
    ],
)
def test_line_protocol_escapes_what_would_split_a_line(point: Point, expected: str) -> None:
    assert line(point) == expected


def _measurement(tags: tuple[tuple[str, str], ...], values: dict[str, float], at: float = 99.7) -> Measurement:
    return Measurement(FACTORY_ENTRY, tags, values, at)


@pytest.mark.parametrize(
    ("measurement", "expected"),
    [
        (
            _measurement((("factory", "f"), ("entry", "e")), {"running": 3.0, "held": 0.0}),
            Point("updraft_factory_entry", (("entry", "e"), ("factory", "f")), (("running", 3.0), ("held", 0.0)), 99),
        ),
        (
            _measurement((("factory", "f"), ("entry", "")), {"running": 1.0}),
            Point("updraft_factory_entry", (("factory", "f"),), (("running", 1.0),), 99),
        ),
        (
            _measurement((("factory", "f"),), {"running": float("nan"), "held": float("inf"), "idle": 2.0}),
            Point("updraft_factory_entry", (("factory", "f"),), (("idle", 2.0),), 99),
        ),
        (_measurement((("factory", "f"),), {"running": float("nan")}), None),
    ],
)
def test_point_of_a_measurement(measurement: Measurement, expected: Point | None) -> None:
    """Tags sorted, empty tag values left out, non-finite values dropped, time in whole seconds."""
    assert point_of(measurement) == expected


def test_one_point_per_measurement_with_its_name_tags_and_float_fields() -> None:
    found = measurements(SNAPSHOT)
    points = points_of(found)
    assert len(points) == len(found)
    for m, p in zip(found, points, strict=True):
        assert p.measurement == m.spec.name and dict(p.tags) == dict(m.tags)
        assert dict(p.fields) == dict(m.values) and all(isinstance(v, float) for _, v in p.fields)
        assert p.time == 1_767_225_600
    lines = body(points).split("\n")
    assert len(lines) == len(points)
    assert (
        r"updraft_factory_failures,entry=ce\ 1\,a\=b,factory=fac,frontend=vo,step=validate pilots=2.0 1767225600"
        in lines
    )


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"url": "ftp://h:1"}, "expected an http:// or https:// URL"),
        ({"url": "http://h:99999"}, "port must be from 1 to 65535"),
        ({"url": f"http://user:{PASSWORD}@h:8086"}, "credentials do not belong in the URL"),
        ({"url": "http://h:8086/?db=x"}, "without ?query"),
        ({"token": TOKEN, "token_file": "/etc/t"}, "token or token_file, not both"),
        ({"token_file": "relative/token"}, "absolute path"),
        ({"database": "db"}, "database: only for api v1"),
        ({"api": "v1", "org": "o"}, "org: only for api v2"),
        ({"api": "v1", "username": "u"}, "username and password go together"),
        ({"api": "v1", "username": "u", "password": PASSWORD, "token": TOKEN}, "token or with username/password"),
        ({"api": "v3"}, "'v2' or 'v1'"),
        ({"timeout_seconds": 0}, "greater than 0"),
        ({"bukket": "b"}, "unknown key"),
    ],
)
def test_settings_refused_by_the_writer_section(section: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        validate_writers({"influxdb": section})
    assert caught.value.args[0].startswith("influxdb")
    assert PASSWORD not in str(caught.value) and TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("api", "environ", "missing"),
    [
        ("v2", {}, ["url", "org", "bucket"]),
        ("v2", {"UPDRAFT_INFLUXDB_URL": "http://h:8086", "UPDRAFT_INFLUXDB_ORG": "o"}, ["bucket"]),
        ("v2", {"UPDRAFT_INFLUXDB_URL": " ", "UPDRAFT_INFLUXDB_ORG": "o", "UPDRAFT_INFLUXDB_BUCKET": "b"}, ["url"]),
        ("v1", {}, ["url", "database"]),
    ],
)
def test_missing_settings_are_named_with_where_to_set_them(
    api: Literal["v2", "v1"], environ: dict, missing: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(InfluxSettings(api=api), environ)
    text = str(caught.value)
    assert re.findall(r"(\w+) \(set ", text) == missing
    if "url" in missing:
        assert "monitoring.writers.influxdb.url or UPDRAFT_INFLUXDB_URL" in text


def test_the_file_wins_and_the_environment_fills_what_it_leaves_out() -> None:
    environ = {
        "UPDRAFT_INFLUXDB_URL": "http://env:8086",
        "UPDRAFT_INFLUXDB_ORG": "env-org",
        "UPDRAFT_INFLUXDB_BUCKET": "env-bucket",
        "UPDRAFT_INFLUXDB_TOKEN": "env-token",
    }
    found = resolve(InfluxSettings(url="http://file:8086/", bucket="file-bucket"), environ)
    assert (found.url, found.org, found.bucket) == ("http://file:8086", "env-org", "file-bucket")
    assert found.token is not None and found.token.get_secret_value() == "env-token"
    assert resolve(InfluxSettings(token=SecretStr("file-token")), environ).token.get_secret_value() == "file-token"
    notes = influxdb.environment_notes(InfluxSettings(url="http://file:8086", token=SecretStr(TOKEN)), environ)
    assert [n.split(" is set")[0] for n in notes] == [
        "monitoring.writers.influxdb.url",
        "monitoring.writers.influxdb.token",
    ]
    assert not any(TOKEN in n or "env-token" in n for n in notes)


def test_v1_takes_the_database_from_the_bucket_unless_set() -> None:
    environ = {"UPDRAFT_INFLUXDB_URL": "http://h:8086", "UPDRAFT_INFLUXDB_BUCKET": "from-env"}
    assert resolve(InfluxSettings(api="v1"), environ).bucket == "from-env"
    assert resolve(InfluxSettings(api="v1", bucket="b"), environ).bucket == "b"
    assert resolve(InfluxSettings(api="v1", bucket="b", database="d"), environ).bucket == "d"
    assert resolve(InfluxSettings(api="v1"), environ).org is None


def test_an_environment_url_with_credentials_is_refused_without_echoing_it() -> None:
    environ = {
        "UPDRAFT_INFLUXDB_URL": f"http://u:{PASSWORD}@h:8086",
        "UPDRAFT_INFLUXDB_ORG": "o",
        "UPDRAFT_INFLUXDB_BUCKET": "b",
    }
    with pytest.raises(ConfigError, match="UPDRAFT_INFLUXDB_URL: credentials do not belong") as caught:
        resolve(InfluxSettings(), environ)
    assert PASSWORD not in str(caught.value)


def test_token_from_file_beats_the_environment_and_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    settings = InfluxSettings(url="http://h:8086", org="o", bucket="b", token_file=path)
    found = resolve(settings, {"UPDRAFT_INFLUXDB_TOKEN": "env-token"})
    assert found.token is not None and found.token.get_secret_value() == TOKEN


@pytest.mark.parametrize(("content", "message"), [(None, "cannot read"), ("\n", "is empty")])
def test_an_unusable_token_file_is_a_config_error_naming_it(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    settings = InfluxSettings(url="http://h:8086", org="o", bucket="b", token_file=path)
    with pytest.raises(ConfigError, match=f"token_file: .*{message}"):
        resolve(settings, {})
    assert influxdb.check(settings, tmp_path)[0].startswith("monitoring.writers.influxdb.token_file")


def test_the_registry_finds_the_plugin_and_create_resolves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UPDRAFT_INFLUXDB_TOKEN", TOKEN)
    writers = validate_writers({"influxdb": {"url": "http://h:8086", "org": "o", "bucket": "b"}})
    (writer,) = registry.build(writers, tmp_path)
    assert writer.name == "influxdb" and isinstance(writer, InfluxWriter)
    assert writer.connection.token.get_secret_value() == TOKEN
    monkeypatch.delenv("UPDRAFT_INFLUXDB_TOKEN")
    with pytest.raises(ConfigError, match="missing org"):
        registry.build(validate_writers({"influxdb": {"url": "http://h:8086", "bucket": "b"}}), tmp_path)


# --------------------------------------------------------------------------
# Secret hygiene
# --------------------------------------------------------------------------


def test_settings_and_connection_never_show_secrets() -> None:
    settings = InfluxSettings(api="v1", url="http://h:8086", bucket="b", username="u", password=SecretStr(PASSWORD))
    connection = resolve(settings, {})
    v2 = InfluxSettings(url="http://h:8086", org="o", bucket="b", token=SecretStr(TOKEN))
    texts = [
        repr(settings),
        str(settings),
        json.dumps(settings.model_dump(mode="json")),
        repr(connection),
        repr(v2),
        str(v2),
        json.dumps(v2.model_dump(mode="json")),
        repr(resolve(v2, {})),
        repr(InfluxWriter(resolve(v2, {}))),
    ]
    assert not any(PASSWORD in t or TOKEN in t for t in texts)


def test_a_config_file_problem_does_not_print_the_token(tree) -> None:
    path = tree.factory(
        (
            "50-influx.yaml",
            f"""\
        monitoring:
          writers:
            influxdb:
              url: http://h:8086
              token: {TOKEN}
              token_file: /etc/updraft/influx.token
        """,
        )
    )
    with pytest.raises(ConfigError, match="token or token_file, not both") as caught:
        load_layered(path, FactoryConfig)
    assert TOKEN not in str(caught.value)


class _StatusServer(http.server.ThreadingHTTPServer):
    status = 200


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's `status` and echoes the credentials in the body."""

    server: _StatusServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        payload = f"denied for {self.headers.get('Authorization')}".encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture(params=[401, 404, 500])
def echoing_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    server = _StatusServer(("127.0.0.1", 0), _Handler)
    server.status = request.param
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", request.param
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a hung backend."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _settings(api: Literal["v2", "v1"], url: str, **extra: Any) -> InfluxSettings:
    base: dict[str, Any] = {"org": "o"} if api == "v2" else {}
    return InfluxSettings(api=api, url=url, bucket="b", timeout_seconds=0.2, **base, **extra)


def _failure(settings: InfluxSettings, caplog: pytest.LogCaptureFixture) -> MonitoringError:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(MonitoringError) as caught:
        InfluxWriter(resolve(settings, {})).write(SNAPSHOT)
    return caught.value


def _assert_no_secret(err: MonitoringError, caplog: pytest.LogCaptureFixture, secret: str) -> None:
    assert err.__context__ is None and err.__cause__ is None
    texts = [str(err), repr(err), caplog.text, *(r.getMessage() for r in caplog.records)]
    assert not [t for t in texts if secret in t]


@pytest.mark.parametrize("api", ["v2", "v1"])
def test_an_http_error_names_status_and_reason_but_not_the_token(
    api: Literal["v2", "v1"], echoing_server: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    url, status = echoing_server
    err = _failure(_settings(api, url, token=SecretStr(TOKEN)), caplog)
    assert str(err).startswith(f"influxdb {api} write to {url} failed: HTTP {status} ")
    assert "denied for Token ***" in str(err)
    _assert_no_secret(err, caplog, TOKEN)


def test_v1_basic_authentication_never_shows_the_password(
    echoing_server: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = echoing_server
    err = _failure(_settings("v1", url, username="u", password=SecretStr(PASSWORD)), caplog)
    assert "denied for Basic ***" in str(err)
    _assert_no_secret(err, caplog, PASSWORD)
    _assert_no_secret(err, caplog, base64.b64encode(f"u:{PASSWORD}".encode()).decode())


@pytest.mark.parametrize("api", ["v2", "v1"])
def test_a_server_that_never_answers_is_a_timeout(
    api: Literal["v2", "v1"], silent_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    err = _failure(_settings(api, silent_server, token=SecretStr(TOKEN)), caplog)
    assert str(err).endswith("failed: no answer within 0.2 s")
    _assert_no_secret(err, caplog, TOKEN)


def test_the_client_masks_the_authorization_header_when_it_logs_headers(caplog: pytest.LogCaptureFixture) -> None:
    """influxdb-client logs request headers at DEBUG when its debug mode is on; the writer keeps it off,
    and this guards the library's own masking should anyone turn it on."""
    from influxdb_client.rest import _BaseRESTClient

    caplog.set_level(logging.DEBUG, logger="influxdb_client.client.http")
    _BaseRESTClient.log_headers({"Authorization": f"Token {TOKEN}", "Accept": "application/json"}, ">>>")
    assert "Authorization: ***" in caplog.text and TOKEN not in caplog.text


def test_the_redacting_filter_masks_secrets_logged_meanwhile_and_is_removed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with influxdb.redacting((TOKEN,)):
        logging.getLogger().debug("body: %s", f"echo {TOKEN}")
    logging.getLogger().debug("after: %s", TOKEN)
    assert caplog.messages == ["body: echo ***", f"after: {TOKEN}"]


@pytest.mark.parametrize(
    ("status", "reason", "payload", "expected"),
    [
        (
            401,
            "Unauthorized",
            b'{"code":"unauthorized","message":"unauthorized access"}',
            "HTTP 401 Unauthorized: unauthorized access",
        ),
        (404, "Not Found", b'{"error":"database not found: \\"x\\""}', 'HTTP 404 Not Found: database not found: "x"'),
        (500, "Internal Server Error", b"", "HTTP 500 Internal Server Error"),
        (400, "Bad Request", b"line 1\n  line 2 " + b"x" * 400, "HTTP 400 Bad Request: line 1 line 2 " + "x" * 186),
    ],
)
def test_server_reason(status: int, reason: str, payload: bytes, expected: str) -> None:
    assert server_reason(status, reason, payload) == expected


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (TimeoutError("timed out"), "no answer within 2 s"),
        (
            OSError("<urllib3 conn>: Failed to establish a new connection: [Errno 111] Connection refused"),
            "cannot connect: Connection refused",
        ),
        (OSError("<urlopen error [Errno -2] Name or service not known>"), "cannot connect: Name or service not known"),
        (ValueError("odd"), "ValueError: odd"),
    ],
)
def test_transport_reason(err: BaseException, expected: str) -> None:
    assert transport_reason(err, 2.0) == expected


def test_scrub_masks_every_secret() -> None:
    assert influxdb.scrub(f"a {TOKEN} b {PASSWORD}", (TOKEN, PASSWORD, "")) == "a *** b ***"


def test_v1_request_url_and_headers() -> None:
    connection = Connection(
        "v1", "http://h:8086/influx", "my db", 10.0, retention_policy="week", username="u", password=SecretStr("p")
    )
    assert influxdb.v1_write_url(connection) == "http://h:8086/influx/write?db=my+db&precision=s&rp=week"
    assert influxdb.v1_headers(connection)["Authorization"] == "Basic dTpw"
    token_only = Connection("v1", "http://h:8086", "db", 10.0, token=SecretStr("u:p"))
    assert influxdb.v1_headers(token_only)["Authorization"] == "Token u:p"


# --------------------------------------------------------------------------
# Grafana dashboards
# --------------------------------------------------------------------------

DASHBOARD_DIR = REPO / "etc" / "grafana" / "dashboards"
_IDENTIFIER = re.compile(r'(AS\s+)?"((?:[^"\\]|\\.)*)"')
_FROM = re.compile(r'FROM "([^"]+)"')
_VARIABLE = re.compile(r"\$(\w+)")
_MACROS = {"timeFilter", "__interval", "__interval_ms"}


def shipped_queries() -> list[tuple[str, str, str, set[str]]]:
    """(dashboard, panel or variable, query, variables defined) for every query shipped."""
    found = []
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        found += [
            (path.name, f"variable {v['name']}", v["query"], variables)
            for v in dashboard["templating"]["list"]
            if v["type"] == "query"
        ]
        found += [
            (path.name, panel["title"], target["query"], variables)
            for panel in dashboard["panels"]
            for target in panel.get("targets", [])
        ]
    return found


def test_shipped_dashboards_are_what_the_generator_produces() -> None:
    shipped = {p.name: p.read_text() for p in DASHBOARD_DIR.glob("*.json")}
    assert shipped == grafana.rendered(), "run: python -m updraft.monitoring.grafana etc/grafana/dashboards"


def test_the_dashboards_as_data_have_no_problems() -> None:
    assert [p for d in grafana.DASHBOARDS for p in grafana.problems(d)] == []


def test_every_name_a_shipped_query_uses_is_in_the_catalogue() -> None:
    queries = shipped_queries()
    assert len(queries) > 30
    for dashboard, title, query, variables in queries:
        (measurement,) = set(_FROM.findall(query))
        spec = spec_named(measurement)
        allowed = {spec.name, *spec.field_names, *(text.name for text in spec.texts), *spec.tags}
        named = {name for alias, name in _IDENTIFIER.findall(query) if not alias}
        assert named <= allowed, f"{dashboard} / {title}: {sorted(named - allowed)} not in {spec.name}"
        unknown = set(_VARIABLE.findall(query)) - variables - _MACROS
        assert not unknown, f"{dashboard} / {title}: undefined variables {unknown}"


def test_every_counter_a_shipped_query_reads_is_graphed_as_a_non_negative_derivative() -> None:
    for dashboard, title, query, _ in shipped_queries():
        spec = spec_named(_FROM.findall(query)[0])
        for field in spec.fields:
            if field.kind is Kind.COUNTER and f'last("{field.name}")' in query:
                assert f'non_negative_derivative(last("{field.name}")' in query, f"{dashboard} / {title}"
        read = set(re.findall(r'\((?:last|mean|sum|max)\("(\w+)"\)', query))
        assert all(spec.field(name).kind is Kind.GAUGE or "derivative" in query for name in read)


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        (grafana.Query("updraft_factory", ("runing",), ("factory",)), "has no field runing"),
        (grafana.Query("updraft_factory_completed", ("ok",), ("factory",)), "counter: graph it as a rate"),
        (grafana.Query("updraft_factory", ("running",), ("factory",), rate="1h"), "a rate of a gauge means nothing"),
        (grafana.Query("updraft_factory", ("running",), ("factory",), ("entry",)), "has no tag entry"),
        (grafana.Query("updraft_factory_entry", ("running",), ("factory", "entry")), "filter entry has no template"),
        (grafana.Query("updraft_pilots", ("running",), ()), "no measurement updraft_pilots"),
    ],
)
def test_problems_catches_what_would_make_a_panel_empty_or_wrong(query: grafana.Query, problem: str) -> None:
    dashboard = grafana.Dashboard(
        "t",
        "T",
        "",
        (grafana.Variable("factory", "F", "updraft_factory"),),
        (grafana.Row("r", (grafana.Panel("p", (query,)),)),),
    )
    assert any(problem in p for p in grafana.problems(dashboard)), grafana.problems(dashboard)


@pytest.mark.parametrize(
    ("measurement", "filters", "by", "multi", "pinned"),
    [
        ("updraft_factory", ("factory",), (), frozenset(), True),
        ("updraft_factory_entry", ("factory",), ("entry",), frozenset(), True),
        ("updraft_factory_completed", ("factory",), (), frozenset(), False),
        ("updraft_factory_pilots", ("factory", "entry", "frontend"), (), frozenset({"frontend"}), False),
        ("updraft_factory_pilots", ("factory", "entry", "frontend"), ("frontend",), frozenset({"frontend"}), True),
    ],
)
def test_queries_sum_per_series_results_unless_each_series_is_pinned(
    measurement: str, filters: tuple, by: tuple, multi: frozenset, pinned: bool
) -> None:
    spec = spec_named(measurement)
    assert grafana.pins_each_series(spec, filters, by, multi) is pinned
    query = grafana.render_query(
        grafana.Query(
            measurement, (spec.fields[0].name,), filters, by, rate="1h" if spec.fields[0].kind is Kind.COUNTER else None
        ),
        multi,
    )
    assert query.count("SELECT") == (1 if pinned else 2)


def test_render_query_for_a_counter_summed_over_entries() -> None:
    query = grafana.render_query(
        grafana.Query("updraft_factory_failures", ("pilots",), ("factory",), ("step",), rate="1h")
    )
    assert query == (
        'SELECT sum("pilots") AS "pilots" FROM (SELECT non_negative_derivative(last("pilots"), 1h) AS "pilots" '
        'FROM "updraft_factory_failures" WHERE "factory" =~ /^$factory$/ AND $timeFilter '
        'GROUP BY time($__interval), "factory", "entry", "frontend", "step" fill(none)) '
        'WHERE $timeFilter GROUP BY time($__interval), "step" fill(none)'
    )


def test_variables_come_from_show_tag_values_narrowed_by_earlier_ones() -> None:
    variables = {v.name: grafana.render_variable_query(v) for v in grafana.ENTRY_DETAIL.variables}
    assert variables["entry"] == (
        'SHOW TAG VALUES FROM "updraft_factory_entry" WITH KEY = "entry" WHERE "factory" =~ /^$factory$/'
    )
    assert {v["name"] for d in grafana.DASHBOARDS for v in grafana.dashboard_json(d)["templating"]["list"]} == {
        "datasource",
        "factory",
        "entry",
        "frontend",
        "group",
    }


def test_the_dashboards_use_the_provisioned_datasource() -> None:
    datasources = yaml.safe_load((REPO / "etc/grafana/provisioning/datasources/updraft.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["uid"] == grafana.DATASOURCE_UID and source["name"] == grafana.DATASOURCE_NAME
    assert source["type"] == "influxdb" and source["jsonData"]["version"] == "InfluxQL"
    assert source["url"] == "$UPDRAFT_INFLUXDB_URL"
    assert "$UPDRAFT_INFLUXDB_TOKEN" in source["secureJsonData"]["httpHeaderValue1"]
    providers = yaml.safe_load((REPO / "etc/grafana/provisioning/dashboards/updraft.yaml").read_text())
    assert providers["providers"][0]["type"] == "file"
    assert Path(providers["providers"][0]["options"]["path"]).is_absolute()


def test_main_writes_the_dashboards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert grafana.main([str(tmp_path)]) == 0
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == grafana.rendered()
    assert grafana.main([]) == 2


# --------------------------------------------------------------------------
# docs/metrics.md
# --------------------------------------------------------------------------


def test_metrics_docs_are_in_sync_with_the_catalogue() -> None:
    shipped = (REPO / "docs" / "metrics.md").read_text()
    assert shipped == docs.metrics_markdown(), "run: python -m updraft.monitoring.docs docs/metrics.md"


def test_metrics_docs_list_every_measurement_tag_and_field() -> None:
    text = docs.metrics_markdown()
    for spec in CATALOGUE:
        section = text.split(f"### `{spec.name}`\n", 1)[1].split("\n### ", 1)[0]
        assert f"Tags: {', '.join(f'`{t}`' for t in spec.tags)}" in section
        for field in spec.fields:
            assert f"| `{field.name}` | {field.kind.value} | {field.unit} |" in section
