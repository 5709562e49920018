"""Read the report a pilot prints at exit (glidein_startup.sh; format in README.md).

The factory gets a finished pilot's stdout back and turns it into a
`PilotReport`. Anything may surround the report (condor's own output, a
site's wrapper banners), so only the lines between the two marker lines
count, and the markers must be whole lines: a report without its END line
was cut short and is not trusted (`None`). Inside, unknown keys are kept in
`extra` so a newer pilot does not break an older factory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REPORT_BEGIN = "=== UPDRAFT PILOT REPORT BEGIN ==="
REPORT_END = "=== UPDRAFT PILOT REPORT END ==="

STATUSES = frozenset({"ok", "failed"})
STEPS = ("args", "fetch", "verify", "validate", "install", "lifetime", "config", "condor", "blackhole")
"""The pilot's steps in the order it runs them; a failed report names one in `failed_step`."""
VALIDATION_KINDS = frozenset({"resources", "network", "config", "corruption", "unknown"})

_VALIDATION_KEY = re.compile(r"validation\.([0-9]+)")
_KNOWN_KEYS = frozenset(
    {
        "report_version",
        "status",
        "failed_step",
        "reason",
        "factory",
        "entry",
        "frontend",
        "group",
        "security_class",
        "job_id",
        "credential_id",
        "glidein_name",
        "host",
        "dry_run",
        "start_time",
        "end_time",
        "lifetime",
        "retire_time",
        "die_time",
        "retire_clamped",
        "condor_exit",
        "condor_source",
        "nodes",
        "cpus",
        "blackhole_jobs",
        "blackhole_window",
        "jobs_run",
        "busy_seconds",
        "busy_core_seconds",
        "goodput_core_seconds",
    }
)


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """One validation script's outcome, in the order the pilot ran them."""

    script: str
    """Its path under the pilot's files dir: "entry/<path>" for the factory's
    manifest, "frontend/<path>" for the frontend's (report_version 1: the
    manifest path alone)."""
    result: str
    """"OK", or the failure's kind (resources, network, config, corruption, unknown)."""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.result == "OK"


@dataclass(frozen=True, slots=True)
class PilotReport:
    """What one pilot said about its life. Numbers the pilot did not reach are None."""

    status: str
    """"ok" or "failed"."""
    failed_step: str
    """One of STEPS (args, fetch, verify, validate, install, lifetime, config,
    condor, blackhole); "" when ok."""
    reason: str
    factory: str
    entry: str
    frontend: str
    group: str
    job_id: str
    credential_id: str
    security_class: str = ""
    glidein_name: str = ""
    host: str = ""
    dry_run: bool = False
    start_time: int | None = None
    end_time: int | None = None
    lifetime: int | None = None
    retire_time: int | None = None
    die_time: int | None = None
    retire_clamped: bool = False
    condor_exit: int | None = None
    condor_source: str = ""
    """Where HTCondor came from: "condor-dir", "tarball", "path"; "" if not found or not reached."""
    nodes: int = 1
    """Nodes the pilot ran on (each its own startd)."""
    cpus: int = 0
    """CPUs each node's startd offered; 0 when the pilot did not get that far (or an older report)."""
    blackhole_jobs: int = 0
    """The black-hole limit (more job starts than this within `blackhole_window` s); 0 = off."""
    blackhole_window: int = 0
    jobs_run: int = 0
    busy_seconds: int = 0
    busy_core_seconds: int = 0
    """Sum over jobs of duration x RequestCpus (1 when absent)."""
    goodput_core_seconds: int = 0
    """The same, only for jobs that ended by themselves and were not vacated by the startd."""
    validations: tuple[ValidationResult, ...] = ()
    report_version: int | None = None
    extra: tuple[tuple[str, str], ...] = ()
    """Keys this parser does not know, in report order."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def parse_report(text: str) -> PilotReport | None:
    """The last complete report in `text`, or None if there is none or it is unusable."""
    body = _last_report_body(text.splitlines())
    if body is None:
        return None
    fields: dict[str, str] = {}
    validations: dict[int, ValidationResult] = {}
    extra: list[tuple[str, str]] = []
    for line in body:
        key, sep, value = line.partition("=")
        if not sep or not key:
            continue  # a stray line inside the report is noise, not a field
        if match := _VALIDATION_KEY.fullmatch(key):
            validations[int(match.group(1))] = _validation(value)
        elif key in _KNOWN_KEYS:
            fields[key] = value
        else:
            extra.append((key, value))
    status = fields.get("status", "")
    if status not in STATUSES:
        return None
    return PilotReport(
        status=status,
        failed_step=fields.get("failed_step", ""),
        reason=fields.get("reason", ""),
        factory=fields.get("factory", ""),
        entry=fields.get("entry", ""),
        frontend=fields.get("frontend", ""),
        group=fields.get("group", ""),
        job_id=fields.get("job_id", ""),
        credential_id=fields.get("credential_id", ""),
        security_class=fields.get("security_class", ""),
        glidein_name=fields.get("glidein_name", ""),
        host=fields.get("host", ""),
        dry_run=fields.get("dry_run") == "1",
        start_time=_int(fields.get("start_time")),
        end_time=_int(fields.get("end_time")),
        lifetime=_int(fields.get("lifetime")),
        retire_time=_int(fields.get("retire_time")),
        die_time=_int(fields.get("die_time")),
        retire_clamped=fields.get("retire_clamped") == "yes",
        condor_exit=_int(fields.get("condor_exit")),
        condor_source=fields.get("condor_source", ""),
        nodes=_int(fields.get("nodes")) or 1,
        cpus=_int(fields.get("cpus")) or 0,
        blackhole_jobs=_int(fields.get("blackhole_jobs")) or 0,
        blackhole_window=_int(fields.get("blackhole_window")) or 0,
        jobs_run=_int(fields.get("jobs_run")) or 0,
        busy_seconds=_int(fields.get("busy_seconds")) or 0,
        busy_core_seconds=_int(fields.get("busy_core_seconds")) or 0,
        goodput_core_seconds=_int(fields.get("goodput_core_seconds")) or 0,
        validations=tuple(validations[n] for n in sorted(validations)),
        report_version=_int(fields.get("report_version")),
        extra=tuple(extra),
    )


def closed_report_body(text: str) -> list[str] | None:
    """The lines of the last report in `text` that has both markers, or None: tells a report cut
    short from one whose fields are wrong."""
    return _last_report_body(text.splitlines())


def _last_report_body(lines: list[str]) -> list[str] | None:
    """Lines between the last BEGIN and the END after it; None without a closed pair."""
    body: list[str] | None = None
    current: list[str] | None = None
    for raw in lines:
        line = raw.rstrip("\r")
        if line == REPORT_BEGIN:
            current = []  # a new BEGIN abandons an unclosed report before it
        elif line == REPORT_END:
            if current is not None:
                body, current = current, None
        elif current is not None:
            current.append(line)
    return body


def _validation(value: str) -> ValidationResult:
    script, _, rest = value.partition(" ")
    result, _, message = rest.partition(" ")
    return ValidationResult(script=script, result=result or "unknown", message=message)


def _int(value: str | None) -> int | None:
    """A whole number of at most 18 digits (it fits 64 bits), else None: a 5,000-digit value must not
    reach int(), which refuses more than 4,300 digits with a ValueError."""
    if value is None or not re.fullmatch(r"-?[0-9]{1,18}", value):
        return None
    return int(value)
