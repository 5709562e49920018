"""One small executor around the ``rrdtool`` program, and the pure helpers that build its arguments.

A cycle may create, update or graph hundreds of files; forking rrdtool for
each would cost more than the work. ``rrdtool -`` (pipe mode) reads one
command per line on stdin and answers each with ``OK ...`` or
``ERROR: ...``, so a whole cycle is one process. Everything that can be
pure (quoting, argument lists, parsing ``rrdtool info``) is, and is tested
with tables; `RrdTool` is the thin adapter that runs the process.

Pipe-mode quoting (rrdtool 1.7 ``CreateArgs``): arguments are separated
by spaces; ``'...'`` and ``"..."`` quote, may be concatenated (``'a'"'"'b'``
is ``a'b``) and have no backslash escapes; a line ends an argument. So any
argument can be passed except one holding a newline, carriage return or
NUL, which `pipe_line` refuses.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from updraft.errors import MonitoringError
from updraft.monitoring.metrics import Kind, Measurement, MeasurementSpec

# --------------------------------------------------------------------------
# Data sources and archives
# --------------------------------------------------------------------------

DS_TYPE: Mapping[Kind, str] = {Kind.GAUGE: "GAUGE", Kind.COUNTER: "DERIVE"}
"""Counters are DERIVE with a minimum of 0: a counter reset (a restarted
factory) gives one unknown point instead of COUNTER's wrap-around spike."""

XFF = 0.5
"""A consolidated point is known if at least half of its primary points are."""

DAY = 86400


@dataclass(frozen=True)
class Archive:
    """One resolution: `steps` primary points per row, kept for about `keep_seconds`."""

    steps: int
    keep_seconds: int


ARCHIVES = (
    Archive(1, 2 * DAY),
    Archive(6, 14 * DAY),
    Archive(24, 62 * DAY),
    Archive(288, 400 * DAY),
)
"""With the default 300 s step: 5 min for 2 days, 30 min for 2 weeks, 2 h for 2 months, a day for 400 days.
The periods are kept whatever the step; only the number of rows changes."""

CONSOLIDATIONS = ("AVERAGE", "MAX")


def rows_for(archive: Archive, step: int) -> int:
    """Rows of `step`-second primary points that cover the archive's period (at least one)."""
    return max(1, math.ceil(archive.keep_seconds / (archive.steps * step)))


def data_source_args(spec: MeasurementSpec, step: int) -> list[str]:
    """One DS per field; a missed cycle is tolerated (heartbeat two steps), values never below 0."""
    return [f"DS:{f.name}:{DS_TYPE[f.kind]}:{2 * step}:0:U" for f in spec.fields]


def archive_args(step: int) -> list[str]:
    return [f"RRA:{cf}:{XFF}:{a.steps}:{rows_for(a, step)}" for a in ARCHIVES for cf in CONSOLIDATIONS]


def create_args(path: Path, spec: MeasurementSpec, step: int, start: int) -> list[str]:
    """`--no-overwrite`: a file that appeared meanwhile is an error, never replaced (its history would go)."""
    return [
        "create",
        str(path),
        "--start",
        str(int(start)),
        "--step",
        str(step),
        "--no-overwrite",
        *data_source_args(spec, step),
        *archive_args(step),
    ]


def update_value(kind: Kind, value: float) -> str:
    """rrdtool takes DERIVE values only as plain integers; anything not finite is unknown."""
    if not math.isfinite(value):
        return "U"
    if kind is Kind.COUNTER:
        return str(round(value))
    return repr(float(value))


def update_args(path: Path, measurement: Measurement) -> list[str]:
    """Named with --template, so the values land in their data sources whatever the file's order.

    --skip-past-updates: a snapshot no newer than the file's last update
    (two cycles in one second, a clock step back) is skipped, not an error.
    """
    spec = measurement.spec
    values = ":".join(update_value(f.kind, measurement.values[f.name]) for f in spec.fields)
    return [
        "update",
        str(path),
        "--skip-past-updates",
        "--template",
        ":".join(spec.field_names),
        f"{int(measurement.time)}:{values}",
    ]


def info_args(path: Path) -> list[str]:
    return ["info", str(path)]


# --------------------------------------------------------------------------
# Schema: what a file holds, and how it differs from the catalogue
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Schema:
    step: int
    data_sources: Mapping[str, str]
    """DS name -> type (GAUGE, DERIVE, COUNTER, ...)."""


_INFO_STEP = re.compile(r"step = (\d+)")
_INFO_DS_TYPE = re.compile(r'ds\[([^\]]+)\]\.type = "([A-Z_]+)"')


def parse_info(text: str) -> Schema:
    """The step and data sources from ``rrdtool info`` output; MonitoringError if it has no step."""
    step = None
    data_sources: dict[str, str] = {}
    for line in text.splitlines():
        if match := _INFO_STEP.fullmatch(line):
            step = int(match[1])
        elif match := _INFO_DS_TYPE.fullmatch(line):
            data_sources[match[1]] = match[2]
    if step is None:
        raise MonitoringError("rrdtool info printed no step: not an RRD file?")
    return Schema(step, data_sources)


def expected_schema(spec: MeasurementSpec, step: int) -> Schema:
    return Schema(step, {f.name: DS_TYPE[f.kind] for f in spec.fields})


def schema_differences(expected: Schema, found: Schema) -> list[str]:
    """What an operator must know to decide about an old file, empty if it can be written."""
    differences = []
    if found.step != expected.step:
        differences.append(f"step is {found.step} s, the writer's is {expected.step} s")
    missing = [name for name in expected.data_sources if name not in found.data_sources]
    if missing:
        differences.append(f"data sources missing: {', '.join(missing)}")
    unexpected = [name for name in found.data_sources if name not in expected.data_sources]
    if unexpected:
        differences.append(f"unexpected data sources: {', '.join(unexpected)}")
    retyped = [
        f"{name} is {found.data_sources[name]}, expected {kind}"
        for name, kind in expected.data_sources.items()
        if name in found.data_sources and found.data_sources[name] != kind
    ]
    if retyped:
        differences.append(f"data sources of another type: {', '.join(retyped)}")
    return differences


# --------------------------------------------------------------------------
# Pipe mode
# --------------------------------------------------------------------------

_UNSAFE = re.compile(r"[\n\r\0]")
_PLAIN = re.compile(r"[A-Za-z0-9_.,:=#@%+/-]+")


def quote_arg(arg: str) -> str:
    """`arg` as one pipe-mode argument: single-quoted, with each ``'`` run double-quoted."""
    if _UNSAFE.search(arg):
        raise MonitoringError(f"rrdtool: cannot pass {arg!r} in pipe mode (it holds a line break or NUL)")
    if _PLAIN.fullmatch(arg):
        return arg
    parts = re.findall(r"'+|[^']+", arg)
    return "".join(f'"{p}"' if p.startswith("'") else f"'{p}'" for p in parts) or "''"


def pipe_line(args: Sequence[str]) -> str:
    return " ".join(quote_arg(a) for a in args)


@dataclass(frozen=True)
class Reply:
    """rrdtool's answer to one pipe-mode command."""

    args: tuple[str, ...]
    output: str
    """What the command printed before its status line (``info``, ``fetch``, graph sizes)."""
    error: str | None = None
    """The text after ``ERROR:``, or None if the command succeeded."""

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_replies(commands: Sequence[Sequence[str]], stdout: str) -> list[Reply]:
    """Split pipe-mode output into one reply per command, in order; fewer if rrdtool stopped early."""
    replies: list[Reply] = []
    pending: list[str] = []
    for line in stdout.splitlines():
        if len(replies) == len(commands):
            break
        if line == "OK" or line.startswith("OK ") or line.startswith("ERROR:"):
            error = line.removeprefix("ERROR:").strip() if line.startswith("ERROR:") else None
            replies.append(Reply(tuple(commands[len(replies)]), "\n".join(pending), error))
            pending = []
        else:
            pending.append(line)
    return replies


NOT_FOUND = "rrdtool not found: apt-get install rrdtool"


@dataclass(frozen=True)
class RrdTool:
    """Runs rrdtool commands: a batch through one ``rrdtool -`` process, within `timeout_seconds`."""

    binary: str = "rrdtool"
    timeout_seconds: float = 60.0

    def batch(self, commands: Sequence[Sequence[str]]) -> list[Reply]:
        """Every command's reply; a failing command does not stop the ones after it.

        MonitoringError if rrdtool is missing, too slow, or stops before
        answering every command.
        """
        if not commands:
            return []
        stdin = "".join(pipe_line(c) + "\n" for c in commands)
        done = self._run([self.binary, "-"], stdin, f"{len(commands)} commands")
        replies = parse_replies(commands, done.stdout)
        if len(replies) < len(commands):
            raise MonitoringError(
                f"rrdtool stopped after {len(replies)} of {len(commands)} commands "
                f"(exit status {done.returncode}): {done.stderr.strip()[-500:] or 'no message'}"
            )
        return replies

    def run(self, args: Sequence[str]) -> str:
        """One command in its own process (for a single ``info`` or ``fetch``); its output."""
        done = self._run([self.binary, *args], None, " ".join(args[:1]))
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip().removeprefix("ERROR:").strip()
            raise MonitoringError(f"rrdtool {' '.join(args)}: {message}")
        return done.stdout

    def _run(self, argv: list[str], stdin: str | None, what: str) -> subprocess.CompletedProcess[str]:
        # LC_ALL=C: numbers in `info` and `fetch` output, and in update arguments, use a decimal point.
        env = {**os.environ, "LC_ALL": "C"}
        try:
            return subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout_seconds,
                env=env,
                check=False,
            )
        except FileNotFoundError:
            raise MonitoringError(f"{NOT_FOUND} (no {self.binary!r} on PATH)") from None
        except subprocess.TimeoutExpired:
            raise MonitoringError(f"rrdtool did not finish {what} in {self.timeout_seconds:g} s") from None
        except PermissionError as err:
            raise MonitoringError(f"rrdtool: cannot run {self.binary!r}: {err.strerror}") from None
