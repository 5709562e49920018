"""Every cycle's catalogue measurements as InfluxDB points, in one request.

One point per `Measurement`: the catalogue's measurement name, its tags,
its fields (always floats, so a field never changes type between cycles,
which InfluxDB refuses), stamped with the snapshot's time in seconds.
A measurement's text fields (a health change's reason) are string fields,
always strings; event measurements (health changes) carry their own time.

Two wire protocols, one line-protocol body:

* ``api: v2`` (default) writes through `influxdb-client`: InfluxDB 2.x and
  3.x, InfluxDB 1.8+ (its v2 compatibility endpoint) and VictoriaMetrics,
  which stores field ``f`` of measurement ``m`` as the metric ``m_f``.
* ``api: v1`` POSTs to InfluxDB 1.x's ``/write`` (Debian still ships 1.6).

Where the settings come from: a key set in the configuration file wins;
a key the file leaves out is taken from ``UPDRAFT_INFLUXDB_URL``,
``_ORG``, ``_BUCKET`` or ``_TOKEN``. The file is what ``check-config``
shows and what an operator edits, so nothing in a daemon's environment
can silently redirect a setting written there; the environment is for
what should not sit in a file (the token) and for containers that
configure by environment. ``token_file`` beats the environment's token,
and ``check-config`` warns when the environment disagrees with the file.

Secrets (token, password) never reach a message or a log: URLs may not
carry credentials; errors are built from status and reason, with anything
the server echoed masked, and raised after the client's exception is gone
(no chained traceback holds its request); the client's HTTP logging stays
off, and while it writes a filter masks the secrets in whatever it and
urllib3 log (it logs an error body it cannot parse on the root logger).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from updraft import secretfiles
from updraft.config import MAX_TEXT_LENGTH, ConfigModel, NonBlankStr, TimeoutSeconds
from updraft.errors import ConfigError, MonitoringError
from updraft.filechecks import ReadHere
from updraft.monitoring.metrics import Measurement, measurements
from updraft.monitoring.plugin import WriterPlugin
from updraft.monitoring.snapshot import Snapshot

log = logging.getLogger(__name__)

ENVIRONMENT: Mapping[str, str] = MappingProxyType(
    {
        "url": "UPDRAFT_INFLUXDB_URL",
        "org": "UPDRAFT_INFLUXDB_ORG",
        "bucket": "UPDRAFT_INFLUXDB_BUCKET",
        "token": "UPDRAFT_INFLUXDB_TOKEN",
    }
)
"""Setting -> the environment variable that supplies it when the file does not."""

_SECTION = "monitoring.writers.influxdb"
_REASON_MAX = 200


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


def url_problem(text: str) -> str | None:
    """Why `text` is not a usable server URL, never quoting it (it may hold a password)."""
    if len(text) > MAX_TEXT_LENGTH:
        return f"too long: at most {MAX_TEXT_LENGTH} characters"
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL with a host"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "the port must be from 1 to 65535"
    if parts.username is not None or parts.password is not None:
        return "credentials do not belong in the URL (it appears in messages): use token or username/password"
    if parts.query or parts.fragment:
        return "expected a URL without ?query or #fragment"
    return None


def _check_url(value: str) -> str:
    problem = url_problem(value)
    if problem is not None:
        raise PydanticCustomError("influx_url", problem)
    return value.rstrip("/")


ServerUrl = Annotated[str, AfterValidator(_check_url)]


class InfluxSettings(ConfigModel):
    """``monitoring.writers.influxdb``; url, org, bucket and token may come from the environment."""

    api: Literal["v2", "v1"] = "v2"
    """v2: influxdb-client (InfluxDB 2.x/3.x, 1.8+, VictoriaMetrics); v1: InfluxDB 1.x ``/write``."""
    url: ServerUrl | None = None
    org: NonBlankStr | None = None
    """v2 only; VictoriaMetrics and InfluxDB 3 ignore it but the client requires one."""
    bucket: NonBlankStr | None = None
    token: SecretStr | None = None
    token_file: ReadHere | None = None
    """A file holding the token, read when the writer starts (keeps it out of the config)."""
    database: NonBlankStr | None = None
    """v1 only; defaults to bucket."""
    retention_policy: NonBlankStr | None = None
    """v1 only; the database's default policy if unset."""
    username: NonBlankStr | None = None
    """v1 only, with password: HTTP basic authentication."""
    password: SecretStr | None = None
    timeout_seconds: TimeoutSeconds = 10.0

    @model_validator(mode="after")
    def _consistent(self) -> InfluxSettings:
        problems = settings_problems(self)
        if problems:
            raise PydanticCustomError("influx_settings", "; ".join(problems))
        return self


def settings_problems(settings: InfluxSettings) -> list[str]:
    """Combinations of keys that cannot mean anything; the model refuses them at load time."""
    problems = []
    if settings.token is not None and settings.token_file is not None:
        problems.append("set token or token_file, not both")
    if settings.api == "v2":
        v1_only = [
            key
            for key in ("database", "retention_policy", "username", "password")
            if getattr(settings, key) is not None
        ]
        if v1_only:
            problems.append(f"{', '.join(v1_only)}: only for api v1 (v2 uses bucket and token)")
    elif settings.org is not None:
        problems.append("org: only for api v2")
    if (settings.username is None) != (settings.password is None):
        problems.append("username and password go together")
    if settings.username is not None and (settings.token is not None or settings.token_file is not None):
        problems.append("authenticate with a token or with username/password, not both")
    return problems


@dataclass(frozen=True)
class Connection:
    """Where and how to write, with the file and the environment resolved."""

    api: str
    url: str
    bucket: str
    """v2: the bucket; v1: the database."""
    timeout_seconds: float
    org: str | None = None
    retention_policy: str | None = None
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None

    @property
    def basic_credentials(self) -> str | None:
        """``user:password`` in base64, as the Authorization header carries it (as secret as the password)."""
        if self.username is None or self.password is None:
            return None
        return base64.b64encode(f"{self.username}:{self.password.get_secret_value()}".encode()).decode()

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never appear in a message, to scrub text a server sent back."""
        plain = tuple(s.get_secret_value() for s in (self.token, self.password) if s is not None)
        return (*plain, self.basic_credentials) if self.basic_credentials else plain


def _from_environment(environ: Mapping[str, str], key: str) -> str | None:
    value = environ.get(ENVIRONMENT[key], "").strip()
    return value or None


_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "url": f"set {_SECTION}.url or {ENVIRONMENT['url']}",
        "org": f"set {_SECTION}.org or {ENVIRONMENT['org']}",
        "bucket": f"set {_SECTION}.bucket or {ENVIRONMENT['bucket']}",
        "database": f"set {_SECTION}.database or .bucket, or {ENVIRONMENT['bucket']}",
    }
)


def read_token_file(path: Path) -> SecretStr:
    """The token in `path`, stripped; ConfigError naming the file, never its content."""
    try:
        return SecretStr(secretfiles.read_secret(path))
    except ValueError as err:
        raise ConfigError(f"{_SECTION}.token_file: {err}") from None


def _token(settings: InfluxSettings, environ: Mapping[str, str]) -> SecretStr | None:
    if settings.token is not None:
        return settings.token
    if settings.token_file is not None:
        return read_token_file(settings.token_file)
    if settings.username is not None:
        return None
    from_env = _from_environment(environ, "token")
    return SecretStr(from_env) if from_env else None


def resolve(settings: InfluxSettings, environ: Mapping[str, str]) -> Connection:
    """The connection the writer uses; ConfigError naming every setting still missing."""
    url = settings.url or _from_environment(environ, "url")
    if settings.url is None and url is not None and (problem := url_problem(url)) is not None:
        raise ConfigError(f"{_SECTION}: {ENVIRONMENT['url']}: {problem}")
    bucket = settings.bucket or _from_environment(environ, "bucket")
    org = None
    if settings.api == "v1":
        bucket = settings.database or bucket
        required = {"url": url, "database": bucket}
    else:
        org = settings.org or _from_environment(environ, "org")
        required = {"url": url, "org": org, "bucket": bucket}
    if url is None or bucket is None or (settings.api == "v2" and org is None):
        missing = [key for key, value in required.items() if value is None]
        raise ConfigError(f"{_SECTION}: missing " + ", ".join(f"{key} ({_HINTS[key]})" for key in missing))
    return Connection(
        settings.api,
        url.rstrip("/"),
        bucket,
        settings.timeout_seconds,
        org=org,
        retention_policy=settings.retention_policy,
        token=_token(settings, environ),
        username=settings.username,
        password=settings.password,
    )


def environment_notes(settings: InfluxSettings, environ: Mapping[str, str]) -> list[str]:
    """Environment variables that the file overrides: an operator who set one expects it to count."""
    notes = []
    for key, variable in ENVIRONMENT.items():
        in_file = getattr(settings, key)
        from_env = _from_environment(environ, key)
        if in_file is None or from_env is None:
            continue
        file_value = in_file.get_secret_value() if isinstance(in_file, SecretStr) else in_file
        if key == "url":
            file_value, from_env = file_value.rstrip("/"), from_env.rstrip("/")
        if file_value != from_env:
            notes.append(f"{_SECTION}.{key} is set in the file and differs from {variable}; the file's value is used")
    return notes


# --------------------------------------------------------------------------
# Points and line protocol (pure)
# --------------------------------------------------------------------------

# The escapes of influxdb-client's own Point, so a point reads back the
# same whichever API wrote it.
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
TEXT_LIMIT = 1000
"""Characters of a string field kept: a reason is a sentence, and a point should stay small."""


@dataclass(frozen=True)
class Point:
    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, float | str], ...]
    """Numbers, then the measurement's text fields."""
    time: int
    """Seconds since the epoch."""


def field_text(value: str) -> str:
    """A string field's value on one line: control characters (a newline would end the point) become a
    space, and it is cut at `TEXT_LIMIT` characters."""
    return _CONTROL.sub(" ", value)[:TEXT_LIMIT]


def point_of(measurement: Measurement) -> Point | None:
    """The measurement as a point; None if no value is a finite number (line protocol has no NaN).

    Tags with an empty value are left out: InfluxDB cannot store one, and
    a missing tag is how it reads as empty.
    """
    numbers = tuple((name, float(value)) for name, value in measurement.values.items() if math.isfinite(value))
    if not numbers:
        return None
    texts = tuple((name, field_text(value)) for name, value in measurement.texts.items())
    tags = tuple(sorted((tag, value) for tag, value in measurement.tags if value != ""))
    return Point(measurement.name, tags, (*numbers, *texts), int(measurement.time))


def points_of(found: Iterable[Measurement]) -> list[Point]:
    return [point for point in map(point_of, found) if point is not None]


def line(point: Point) -> str:
    """One line of InfluxDB line protocol, at second precision."""
    head = point.measurement.translate(_ESCAPE_MEASUREMENT)
    tags = "".join(f",{k.translate(_ESCAPE_KEY)}={v.translate(_ESCAPE_KEY)}" for k, v in point.tags)
    fields = ",".join(f"{k.translate(_ESCAPE_KEY)}={_field_value(v)}" for k, v in point.fields)
    return f"{head}{tags} {fields} {point.time}"


def _field_value(value: float | str) -> str:
    """A float as Python spells it (``2.0``: a float to InfluxDB), a string quoted with ``\\`` and ``"`` escaped."""
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPE_STRING) + '"'
    return repr(value)


def body(points: Iterable[Point]) -> str:
    """The whole cycle as one request body."""
    return "\n".join(line(point) for point in points)


# --------------------------------------------------------------------------
# Talking to the server
# --------------------------------------------------------------------------

_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]>]+)")

_CLIENT_LOGGERS = (
    "",
    "influxdb_client.client.http",
    "influxdb_client.client.exceptions",
    "influxdb_client.client.write_api",
    "urllib3.connectionpool",
    "urllib3.connection",
)
"""Where influxdb-client and urllib3 log while writing; "" is the root logger, which
`InfluxDBError` uses for the body of a response it cannot parse."""


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret in it masked: servers may echo what they were sent."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def server_reason(status: int, reason: str, payload: bytes | str | None) -> str:
    """``HTTP 401 Unauthorized: unauthorized access``: status, reason, and the server's own words, short."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else (payload or "")
    detail = text.strip()
    try:
        decoded = json.loads(detail) if detail else None
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        detail = str(decoded.get("message") or decoded.get("error") or detail)
    detail = " ".join(detail.split())[:_REASON_MAX]
    head = f"HTTP {status} {reason}".strip()
    return f"{head}: {detail}" if detail else head


def transport_reason(err: BaseException, timeout_seconds: float) -> str:
    """A connection-level failure in a few words: refused, timed out, name unknown."""
    text = str(err)
    if isinstance(err, TimeoutError) or "timed out" in text.lower():
        return f"no answer within {timeout_seconds:g} s"
    found = _ERRNO_TEXT.search(text)
    if found:
        return f"cannot connect: {found.group(1).strip()}"
    reason = getattr(err, "reason", None)
    if isinstance(reason, OSError) and reason.strerror:
        return f"cannot connect: {reason.strerror}"
    return f"{type(err).__name__}: {' '.join(text.split())[:_REASON_MAX]}"


class _Redact(logging.Filter):
    """Masks secrets in records as they are logged: a server may echo what it was sent."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            record.msg, record.args = scrub(message, self.secrets), None
        if record.exc_info:
            trace = logging.Formatter().formatException(record.exc_info)
            if any(secret in trace for secret in self.secrets):
                record.exc_info, record.exc_text = None, scrub(trace, self.secrets)
        return True


@contextmanager
def redacting(secrets: tuple[str, ...], names: Iterable[str] = _CLIENT_LOGGERS) -> Iterator[None]:
    """Secrets masked in whatever the named loggers log meanwhile (a filter on a logger
    sees only its own records, so each logger the client uses is named)."""
    if not secrets:
        yield
        return
    redact = _Redact(secrets)
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(redact)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redact)


def _post_v2(connection: Connection, text: str) -> str | None:
    """Write through influxdb-client; why it failed, or None."""
    # Imported here: a component without InfluxDB never loads the client.
    from influxdb_client import InfluxDBClient, WritePrecision
    from influxdb_client.client.exceptions import InfluxDBError
    from influxdb_client.client.write_api import SYNCHRONOUS
    from influxdb_client.rest import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    token = connection.token.get_secret_value() if connection.token is not None else None
    try:
        # debug=False also sets the client's loggers to WARNING: its HTTP
        # log would otherwise carry every request (the body) at DEBUG.
        with (
            redacting(connection.secrets),
            # token and org may be None (a 1.x server without auth): the client takes None at run time
            # and sends no Authorization header, although its annotations say str.
            InfluxDBClient(
                url=connection.url,
                token=token,  # type: ignore[arg-type]
                org=connection.org,  # type: ignore[arg-type]
                debug=False,
                timeout=int(connection.timeout_seconds * 1000),
            ) as client,
            client.write_api(write_options=SYNCHRONOUS) as write_api,
        ):
            write_api.write(bucket=connection.bucket, org=connection.org, record=text, write_precision=WritePrecision.S)
    except ApiException as err:
        return server_reason(err.status or 0, err.reason or "", err.body)
    except InfluxDBError as err:
        response: Any = err.response  # None when no HTTP answer came back, whatever its annotation says
        if response is not None:
            return server_reason(response.status, response.reason or "", response.data)
        return f"InfluxDBError: {err.message}"
    except (Urllib3Error, OSError) as err:
        return transport_reason(err, connection.timeout_seconds)
    return None


def v1_write_url(connection: Connection) -> str:
    query = {"db": connection.bucket, "precision": "s"}
    if connection.retention_policy is not None:
        query["rp"] = connection.retention_policy
    return f"{connection.url}/write?{urllib.parse.urlencode(query)}"


def v1_headers(connection: Connection) -> dict[str, str]:
    """Basic authentication for username/password; a token as InfluxDB 1.8+ takes it."""
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if connection.basic_credentials is not None:
        headers["Authorization"] = "Basic " + connection.basic_credentials
    elif connection.token is not None:
        headers["Authorization"] = "Token " + connection.token.get_secret_value()
    return headers


def _post_v1(connection: Connection, text: str) -> str | None:
    """POST to InfluxDB 1.x ``/write``; why it failed, or None."""
    request = urllib.request.Request(
        v1_write_url(connection), data=text.encode(), method="POST", headers=v1_headers(connection)
    )
    # No proxy from the environment: the v2 client ignores it too, and
    # both APIs must reach the same server the same way.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=connection.timeout_seconds) as response:
            response.read()
    except urllib.error.HTTPError as err:
        with err:
            return server_reason(err.code, str(err.reason or ""), err.read())
    except (urllib.error.URLError, HTTPException, OSError) as err:
        return transport_reason(err, connection.timeout_seconds)
    return None


@dataclass(frozen=True)
class InfluxWriter:
    connection: Connection
    name: str = "influxdb"

    def write(self, snapshot: Snapshot) -> None:
        points = points_of(measurements(snapshot))
        if not points:
            return
        failure = self._post(body(points))
        if failure is not None:
            # Raised here, outside any except block, so no client exception
            # (headers and all) rides along as its __context__.
            raise MonitoringError(
                f"influxdb {self.connection.api} write to {self.connection.url} "
                f"failed: {scrub(failure, self.connection.secrets)}"
            )
        log.debug("influxdb: wrote %d points to %s", len(points), self.connection.url)

    def _post(self, text: str) -> str | None:
        post = _post_v2 if self.connection.api == "v2" else _post_v1
        return post(self.connection, text)


def create(settings: InfluxSettings, directory: Path) -> InfluxWriter:
    return InfluxWriter(resolve(settings, os.environ))


def check(settings: InfluxSettings, directory: Path) -> list[str]:
    """What `check-config` should say: settings still missing, or an environment the file overrides."""
    try:
        resolve(settings, os.environ)
    except ConfigError as err:
        return [str(err)]
    return environment_notes(settings, os.environ)


PLUGIN = WriterPlugin("influxdb", InfluxSettings, create, check=check)
