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
VALIDATION_KINDS = frozenset({"resources", "network", "config", "corruption", "unknown"})

_VALIDATION_KEY = re.compile(r"validation\.([0-9]+)")
_KNOWN_KEYS = frozenset({
    "report_version", "status", "failed_step", "reason",
    "factory", "entry", "frontend", "group", "security_class", "job_id", "credential_id",
    "glidein_name", "host", "dry_run",
    "start_time", "end_time", "lifetime", "retire_time", "die_time", "retire_clamped",
    "condor_exit", "jobs_run", "busy_seconds",
})


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """One validation script's outcome, in the order the pilot ran them."""

    script: str
    """Its path in the manifest."""
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
    """args, fetch, verify, validate, lifetime, config or condor; "" when ok."""
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
    jobs_run: int = 0
    busy_seconds: int = 0
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
        jobs_run=_int(fields.get("jobs_run")) or 0,
        busy_seconds=_int(fields.get("busy_seconds")) or 0,
        validations=tuple(validations[n] for n in sorted(validations)),
        report_version=_int(fields.get("report_version")),
        extra=tuple(extra),
    )


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
    if value is None or not re.fullmatch(r"-?[0-9]+", value):
        return None
    return int(value)
