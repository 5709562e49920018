"""Completed-pilot statistics: what finished pilots said, counted once, kept as running totals.

When a pilot job leaves the factory schedd's queue, HTCondor has brought its
stdout back to ``<work_dir>/entries/<entry>/<frontend>/pilot.<cluster>.<proc>.out``
(the job ad's ``Out``), and the pilot printed its report at the end of it
(glidein/README.md). Once per cycle the factory:

1. **observes** (`read_completed`): one history query for its own pilots that
   entered their final state since the checkpoint, then the report from the
   tail of each new pilot's output file;
2. **decides**, purely: which pilots are new (`advance`), their statistics
   per (entry, frontend) (`summarize`), and the running totals (`merge`);
3. **acts**: `CompletedTotals.save` (with the checkpoint), then `save_checkpoint`; and now and then
   `prune_pilot_logs`;
4. **reports** the totals: cumulative counters are what RRD (DERIVE with a
   minimum of 0, which also survives a reset) and InfluxDB's derivative()
   want, and a monitoring writer that missed cycles loses nothing.

**Counting once.** The history is searched by ``EnteredCurrentStatus`` from
``since - slack``. The slack is there because a pilot reaches the history
only when it *leaves* the queue, which for a removed grid pilot can be long
after it entered its final state (the grid manager still cleans up at the
CE). Every pilot counted is remembered with its ``EnteredCurrentStatus``
until that falls out of the window, so the same pilot in two overlapping
answers is counted once, while the remembered set only ever holds about
one window of pilots. A pilot that reaches the history more than `slack`
after entering its final state is missed, never counted twice.

**Saving once.** The totals file also holds the checkpoint it was saved
with, in the same atomic write, and that copy is the checkpoint of record
(`checkpoint_of_record`). A crash at any moment, even between writing the
totals and the separate checkpoint file, then neither loses a pilot nor
counts one twice; the soak kills the factory hundreds of times to check it.
The separate file is what a fresh work folder starts from (a tool may seed
it) and what an operator reads.

**Files come from the pilots' side.** The pilot log folder may be writable by
the pilots' owner, so an output file is opened without following a symlink,
never blocks on a FIFO, and is read only at its end (`max_output_bytes`).
A file that is missing, unreadable or holds no usable report becomes the
pilot's `report_problem`, never an exception.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

from updraft import pilot_ad
from updraft.adnumbers import is_int
from updraft.atomicwrite import PUBLIC_MODE, write_atomically
from updraft.condor import Ad
from updraft.glidein.report import REPORT_BEGIN, STEPS, VALIDATION_KINDS, PilotReport, closed_report_body, parse_report
from updraft.pilot_ad import JobStatus

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(entry, frontend): what completed-pilot statistics are kept per."""

SLACK_SECONDS = 3600
"""How late after entering its final state a pilot may still reach the history and be counted.
Every cycle's history answer holds about this much time's worth of pilots."""
DEFAULT_LOOKBACK_SECONDS = 3600
"""With no usable checkpoint: count pilots that finished this long ago or later."""
DEFAULT_MAX_ADS = 10_000
"""Most history ads per cycle: a bound on one query, far above what one cycle normally brings."""
DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024
"""The report is the last thing a pilot prints, and a few KiB long; condor's chatter before it is not read."""

# Why a completed pilot has no report (CompletedPilot.report_problem).
NOT_READ = "output not read"
NO_OUTPUT = "no output file"
OUTPUT_UNREADABLE = "output unreadable"
NO_REPORT = "no report in output"
REPORT_CUT = "report cut short or invalid"
BAD_STATUS = "report field status invalid"
"""A complete report whose status is neither ok nor failed."""
OUTPUT_TOO_LARGE = "output too large"
OTHER_PILOT = "report of another pilot"

HISTORY_PROJECTION = pilot_ad.HISTORY_PROJECTION

_PILOT_LOG = re.compile(r"pilot\..*\.(?:out|err)")
"""The glob pilot.*.out / pilot.*.err (factory/render.py names them pilot.<cluster>.<proc>.<out|err>)."""


# --------------------------------------------------------------------------
# What one completed pilot was
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompletedPilot:
    """A pilot that left the factory schedd's queue, with its report when there is a usable one."""

    job_id: str
    """"cluster.proc"."""
    entry: str
    member: str
    """The member CE of an entry set it went to (UpdraftMember); the entry itself otherwise."""
    frontend: str
    group: str
    removed: bool
    """JobStatus 3 (removed) rather than 4 (completed)."""
    finished_at: int
    """CompletionDate, or EnteredCurrentStatus when there is none (a removed job has none)."""
    entered_status_at: int
    """EnteredCurrentStatus: what the history query and the checkpoint measure by."""
    wall_seconds: int = 0
    """RemoteWallClockTime, as the schedd saw it; kept for inspection, not summed (see `pilot_stats`)."""
    output: str = ""
    """The stdout file (the job's Out, made absolute with its Iwd); "" when the ad names none."""
    report: PilotReport | None = None
    report_problem: str = NOT_READ
    """"" when `report` was read; otherwise why there is none (NO_OUTPUT, NO_REPORT, ...)."""
    submitted: int = 0
    """QDate, when it was submitted (0: the ad had none): tells the probes of a probing entry from older pilots."""

    @property
    def key(self) -> Key:
        return self.entry, self.frontend


class HistorySource(Protocol):
    """What `read_completed` needs of a schedd (updraft.condor.Schedd is one)."""

    def history(self, constraint: str, projection: Iterable[str] = (), limit: int = -1) -> list[Ad]: ...


def history_constraint(factory_name: str, since: int) -> str:
    """This factory's pilots that entered their final state at or after `since`."""
    return pilot_ad.history_constraint(factory_name, since)


def parse_history_ad(ad: Ad) -> CompletedPilot | None:
    """A completed pilot from its history ad, report not read yet; None for an ad that is not one of ours."""
    read = pilot_ad.read_pilot_ad(ad)
    if not read.has_job_id or read.entry is None or read.frontend is None:
        return None
    if read.status not in pilot_ad.FINAL_STATUSES:
        return None
    entered = _whole_seconds(read.entered_status)
    completion = _whole_seconds(read.completion_date)
    return CompletedPilot(
        job_id=read.job_id,
        entry=read.entry,
        member=read.member or read.entry,
        frontend=read.frontend,
        group=read.group,
        removed=read.status is JobStatus.REMOVED,
        finished_at=completion if completion > 0 else entered,
        entered_status_at=entered,
        wall_seconds=max(0, _whole_seconds(read.wall_seconds)),
        output=read.output,
        submitted=_whole_seconds(read.submitted),
    )


def _whole_seconds(seconds: float | None) -> int:
    """Cut toward zero, as the schedd's own integer times are; 0 when the ad had none."""
    return int(seconds) if seconds is not None else 0


# --------------------------------------------------------------------------
# Reading a pilot's report from its output
# --------------------------------------------------------------------------


def report_from_tail(text: str, cut: bool) -> tuple[PilotReport | None, str]:
    """The report in the end of an output file and "", or None and why not.

    `cut` says the text is only the file's end: a missing report then may
    have begun before it, which is a different fix (a larger limit, a
    quieter site wrapper) from a pilot that never printed one.
    """
    report = parse_report(text)
    if report is not None:
        return report, ""
    if closed_report_body(text) is not None:
        return None, BAD_STATUS
    if any(line.rstrip("\r") == REPORT_BEGIN for line in text.splitlines()):
        return None, REPORT_CUT
    return None, OUTPUT_TOO_LARGE if cut else NO_REPORT


def _from_line_start(window: bytes) -> bytes:
    """`window` is one byte before the tail, then the tail: the tail from its first whole line."""
    if window[:1] == b"\n":
        return window[1:]
    newline = window.find(b"\n")
    return window[newline + 1 :] if newline >= 0 else b""


def _output_tail(path: Path, max_bytes: int) -> tuple[str, bool] | None:
    """The last `max_bytes` of a regular file, from a line start, and whether its start was cut.

    None if it is not a regular file. O_NOFOLLOW and O_NONBLOCK because the
    folder may be writable by the pilots' owner: a symlink planted there
    must not redirect the read, nor a FIFO hang the factory.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size <= max_bytes:
            return stream.read(max_bytes).decode("utf-8", errors="replace"), False
        stream.seek(info.st_size - max_bytes - 1)
        window = stream.read(max_bytes + 1)
    return _from_line_start(window).decode("utf-8", errors="replace"), True


_REPORT_BOUNDS: Mapping[str, tuple[int, int]] = {
    "start_time": (0, 10**11),
    "end_time": (0, 10**11),
    "retire_time": (0, 10**11),
    "die_time": (0, 10**11),
    "lifetime": (0, 10**10),
    "condor_exit": (-(2**31), 2**31),
    "nodes": (0, 10_000),
    "cpus": (0, 10_000),
    "blackhole_jobs": (0, 10**9),
    "blackhole_window": (0, 10**10),
    "jobs_run": (0, 10**9),
    "busy_seconds": (0, 10**15),
    "busy_core_seconds": (0, 10**15),
    "goodput_core_seconds": (0, 10**15),
}
"""What a real pilot can report: cores x lifetime stays far inside 64 bits for monitoring."""
MAX_REPORT_TEXT = 4096
MAX_REPORT_EXTRA = 100


def report_field_problem(report: PilotReport) -> str | None:
    """Why a parsed report cannot be counted, naming the field, or None.

    The reason is one of a fixed set (one per field), since it becomes a
    monitoring label (`no_report_by_problem`): a hostile pilot output must
    not mint labels."""
    for name, (low, high) in _REPORT_BOUNDS.items():
        value = getattr(report, name)
        if value is not None and not low <= value <= high:
            return f"report field {name} out of range"
    if report.failed_step and report.failed_step not in STEPS:
        return "report field failed_step unknown"
    if any(not v.ok and v.result not in VALIDATION_KINDS for v in report.validations):
        return "report field validation unknown"
    if report_lifetime(report) > _REPORT_BOUNDS["lifetime"][1]:
        return "report field lifetime out of range"
    texts = (getattr(report, f.name) for f in fields(report) if isinstance(getattr(report, f.name), str))
    if any(len(text) > MAX_REPORT_TEXT for text in texts) or len(report.extra) > MAX_REPORT_EXTRA:
        return "report text too long"
    return None


def read_report(path: str, max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> tuple[PilotReport | None, str]:
    """The report at the end of a pilot's output file and "", or None and the problem; never raises."""
    if not path:
        return None, NO_OUTPUT
    try:
        tail = _output_tail(Path(path), max(1, max_bytes))
    except FileNotFoundError:
        return None, NO_OUTPUT
    except OSError as err:  # permissions, a symlink (ELOOP), a folder, a vanished mount
        log.warning("pilot output %s unreadable: %s", path, err)
        return None, OUTPUT_UNREADABLE
    if tail is None:
        log.warning("pilot output %s is not a regular file; not read", path)
        return None, OUTPUT_UNREADABLE
    report, problem = report_from_tail(*tail)
    wrong = report_field_problem(report) if report is not None else None
    return (None, wrong) if wrong else (report, problem)


def attach_report(pilot: CompletedPilot, report: PilotReport | None, problem: str) -> CompletedPilot:
    """The pilot with its report, unless the report names another job.

    The file's path is made from the job id, so a report naming another job
    is a file that ended up in the wrong place (copied by hand, or a site
    wrapper that mixed outputs): its numbers are not this pilot's.
    """
    if report is not None and report.job_id and report.job_id != pilot.job_id:
        return replace(pilot, report=None, report_problem=OTHER_PILOT)
    return replace(pilot, report=report, report_problem=problem)


def read_completed(
    schedd: HistorySource,
    factory_name: str,
    checkpoint: Checkpoint,
    *,
    max_ads: int = DEFAULT_MAX_ADS,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    slack_seconds: int = SLACK_SECONDS,
) -> tuple[list[CompletedPilot], Checkpoint]:
    """Pilots that left the queue since `checkpoint` and were not counted yet, with reports; and the next checkpoint.

    One history query; output files are read only for the new pilots. A
    CondorError from the query propagates: the caller logs it and keeps the
    old checkpoint, so the next cycle asks again. `max_ads` -1 means no limit.
    """
    constraint = history_constraint(factory_name, checkpoint.since - slack_seconds)
    ads = schedd.history(constraint, HISTORY_PROJECTION, max_ads)
    if 0 < max_ads <= len(ads):
        log.warning(
            "the history answer reached max_ads=%d: pilots that left the queue before the %d newest "
            "in the window are not counted this cycle",
            max_ads,
            max_ads,
        )
    rows = [pilot for pilot in map(parse_history_ad, ads) if pilot is not None]
    new, next_checkpoint = advance(checkpoint, rows, slack_seconds=slack_seconds)
    return [attach_report(pilot, *read_report(pilot.output, max_output_bytes)) for pilot in new], next_checkpoint


# --------------------------------------------------------------------------
# Counting each pilot once
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """Where the history has been read up to, and the pilots already counted near it.

    `seen` maps each job id counted with EnteredCurrentStatus at or after
    ``since - slack`` to that time. The time is kept (not only the id) so a
    job is forgotten exactly when no later query can return it again,
    whatever a query's answer happened to contain (a truncated answer, a
    rotated history file).
    """

    since: int
    """The latest EnteredCurrentStatus seen so far (or the fresh start)."""
    seen: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def fresh(cls, now: float, lookback_seconds: int = DEFAULT_LOOKBACK_SECONDS) -> Checkpoint:
        """No memory: count what finished in the last `lookback_seconds`."""
        return cls(since=int(now) - lookback_seconds)


def advance(
    checkpoint: Checkpoint, rows: Iterable[CompletedPilot], *, slack_seconds: int = SLACK_SECONDS
) -> tuple[list[CompletedPilot], Checkpoint]:
    """The rows not counted before (in answer order, each once) and the checkpoint after them.

    Rows older than the window (``since - slack``) are dropped: the
    checkpoint may have forgotten them after counting them, so counting
    them again could count twice. The next checkpoint keeps only the ids
    that a query from its own window can still return.
    """
    window_start = checkpoint.since - slack_seconds
    in_window = [row for row in rows if row.entered_status_at >= window_start]
    seen = dict(checkpoint.seen)
    new: list[CompletedPilot] = []
    for row in in_window:
        if row.job_id not in seen:
            seen[row.job_id] = row.entered_status_at
            new.append(row)
    since = max([checkpoint.since, *(row.entered_status_at for row in in_window)])
    horizon = since - slack_seconds
    kept = {job_id: at for job_id, at in seen.items() if at >= horizon}
    return new, Checkpoint(since=since, seen=kept)


def checkpoint_from_json(data: object) -> Checkpoint:
    """The checkpoint a file held; ValueError if it is not one."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    since, seen = data.get("since"), data.get("seen")
    if not is_int(since):
        raise ValueError("'since' is not a whole number")
    if not isinstance(seen, dict) or not all(isinstance(k, str) and is_int(v) for k, v in seen.items()):
        raise ValueError("'seen' is not an object of job id -> whole number")
    return Checkpoint(since=since, seen=dict(seen))


def checkpoint_to_json(checkpoint: Checkpoint) -> dict[str, Any]:
    return {"since": checkpoint.since, "seen": dict(sorted(checkpoint.seen.items()))}


def load_checkpoint(path: Path, now: float, lookback_seconds: int = DEFAULT_LOOKBACK_SECONDS) -> Checkpoint:
    """The saved checkpoint; a missing or damaged file starts afresh, `lookback_seconds` back.

    A damaged checkpoint must not stop the factory from provisioning: at
    worst the pilots of one window are counted again, and the warning says so.
    """
    try:
        return checkpoint_from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        log.info("no completed-pilot checkpoint at %s: counting pilots of the last %d s", path, lookback_seconds)
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        log.warning(
            "completed-pilot checkpoint %s unusable (%s): counting pilots of the last %d s again, "
            "some may be counted twice",
            path,
            err,
            lookback_seconds,
        )
    return Checkpoint.fresh(now, lookback_seconds)


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Atomically; an OSError (full disk, no permission) propagates to the caller."""
    _write_json_atomic(path, checkpoint_to_json(checkpoint), indent=None)


def _write_json_atomic(path: Path, data: object, indent: int | None = 2) -> None:
    """A reader sees the old file or the new one, never half of one; 0644: monitoring may read it as
    another user, and counts are not secrets."""
    text = json.dumps(data, indent=indent, sort_keys=True) + "\n"
    write_atomically(path, text, PUBLIC_MODE)


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletedStats:
    """Counts and sums over completed pilots; adding two gives the stats of both sets.

    Every field is a count or a sum, so stats add up across cycles, entries
    and frontends without losing anything; ratios are properties computed
    from them. `pilots` = `ok` + `failed` + `no_report`; `removed` counts
    pilots the schedd removed, with or without a report. The time and core
    sums come from reports only (see `pilot_stats`).
    """

    pilots: int = 0
    ok: int = 0
    failed: int = 0
    no_report: int = 0
    removed: int = 0
    failed_by_step: Mapping[str, int] = field(default_factory=dict)
    validation_failures_by_kind: Mapping[str, int] = field(default_factory=dict)
    no_report_by_problem: Mapping[str, int] = field(default_factory=dict)
    lifetime_seconds: int = 0
    jobs_run: int = 0
    pilots_without_jobs: int = 0
    """Reported pilots (ok or failed) that ran no job."""
    core_seconds: int = 0
    """Cores (cpus x nodes) x lifetime: what the pilots held."""
    busy_core_seconds: int = 0
    goodput_core_seconds: int = 0
    waste_core_seconds: int = 0
    """Per pilot max(0, core_seconds - busy_core_seconds), summed: held but never busy."""

    @property
    def reported(self) -> int:
        """Pilots with a report: the denominator of every per-pilot ratio."""
        return self.ok + self.failed

    @property
    def jobs_per_pilot(self) -> float:
        return self.jobs_run / self.reported if self.reported else 0.0

    @property
    def mean_lifetime_seconds(self) -> float:
        return self.lifetime_seconds / self.reported if self.reported else 0.0

    @property
    def goodput_fraction(self) -> float:
        """Goodput over everything held, summed before dividing so big pilots weigh more; 0 when nothing was held."""
        return self.goodput_core_seconds / self.core_seconds if self.core_seconds else 0.0

    def __add__(self, other: CompletedStats) -> CompletedStats:
        if not isinstance(other, CompletedStats):
            return NotImplemented
        return CompletedStats(
            **{f.name: _add_field(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)}
        )

    def as_dict(self) -> dict[str, Any]:
        """The stored fields as plain JSON values (the derived ratios are not stored)."""
        return {f.name: _plain_field(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object) -> CompletedStats:
        """Stats from `as_dict` output; missing fields are 0 and unknown ones ignored, so files
        written by an older or newer factory still load. ValueError for anything else."""
        if not isinstance(data, dict):
            raise ValueError("stats are not a JSON object")
        empty = cls()
        values: dict[str, Any] = {}
        for name in (f.name for f in fields(cls) if f.name in data):
            value = data[name]
            if isinstance(getattr(empty, name), Mapping):
                if not isinstance(value, dict) or not all(isinstance(k, str) and is_int(v) for k, v in value.items()):
                    raise ValueError(f"{name}: {value!r} is not an object of counts")
                values[name] = dict(value)
            elif is_int(value):
                values[name] = value
            else:
                raise ValueError(f"{name}: {value!r} is not a whole number")
        return cls(**values)


def _plain_field(value: Any) -> Any:
    return dict(sorted(value.items())) if isinstance(value, Mapping) else value


def _add_field(a: Any, b: Any) -> Any:
    """One field of two stats added: counters add, counts by name add name by name."""
    return _add_counts(a, b) if isinstance(a, Mapping) else a + b


def _add_counts(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    total = dict(a)
    for key, count in b.items():
        total[key] = total.get(key, 0) + count
    return dict(sorted(total.items()))


def _report_number(report: PilotReport, name: str, default: int) -> int:
    """A number from the report's newer fields (cpus, nodes, busy_core_seconds, goodput_core_seconds).

    The typed field when this PilotReport has it; with a parser that does
    not know it yet, the raw value it kept in `extra`; else `default`.
    """
    value = getattr(report, name, None)
    if value is None:
        raw = dict(report.extra).get(name, "")
        value = int(raw) if re.fullmatch(r"-?[0-9]+", raw) else default
    return int(value)


def report_cores(report: PilotReport) -> int:
    """cpus x nodes; a value below 1 is a broken report, read as 1 rather than as a pilot that held nothing."""
    return max(1, _report_number(report, "cpus", 1)) * max(1, _report_number(report, "nodes", 1))


def report_lifetime(report: PilotReport) -> int:
    """Seconds the pilot lived: its `lifetime`, else end - start, else 0; never negative."""
    if report.lifetime is not None:
        return max(0, report.lifetime)
    if report.start_time is not None and report.end_time is not None:
        return max(0, report.end_time - report.start_time)
    return 0


def pilot_stats(pilot: CompletedPilot) -> CompletedStats:
    """One pilot's contribution.

    A pilot without a report counts in `pilots`, `no_report` (by problem) and
    `removed` only. Its `wall_seconds` is not used for lifetime, cores or
    waste: without the report its cores, busy time and even whether it ever
    started are unknown (a removed grid pilot's RemoteWallClockTime may be
    queue time at the CE, or 0), and a guess mixed into sums cannot be
    taken out again. A high `no_report` is the signal to look instead.
    """
    removed = int(pilot.removed)
    report = pilot.report
    if report is None:
        return CompletedStats(
            pilots=1, no_report=1, removed=removed, no_report_by_problem={pilot.report_problem or NO_REPORT: 1}
        )
    lifetime = report_lifetime(report)
    held = report_cores(report) * lifetime
    busy = max(0, _report_number(report, "busy_core_seconds", 0))
    jobs = max(0, report.jobs_run)
    return CompletedStats(
        pilots=1,
        ok=int(report.ok),
        failed=int(not report.ok),
        removed=removed,
        failed_by_step={} if report.ok else {report.failed_step or "unknown": 1},
        validation_failures_by_kind=dict(sorted(Counter(v.result for v in report.validations if not v.ok).items())),
        lifetime_seconds=lifetime,
        jobs_run=jobs,
        pilots_without_jobs=int(jobs == 0),
        core_seconds=held,
        busy_core_seconds=busy,
        goodput_core_seconds=max(0, _report_number(report, "goodput_core_seconds", 0)),
        waste_core_seconds=max(0, held - busy),
    )


def summarize(pilots: Iterable[CompletedPilot]) -> dict[Key, CompletedStats]:
    """Stats per (entry, frontend), in sorted key order."""
    stats: dict[Key, CompletedStats] = {}
    for pilot in pilots:
        stats[pilot.key] = stats.get(pilot.key, CompletedStats()) + pilot_stats(pilot)
    return dict(sorted(stats.items()))


def totals(stats: Mapping[Key, CompletedStats] | Iterable[CompletedStats]) -> CompletedStats:
    """Everything added up: the factory as a whole."""
    values = stats.values() if isinstance(stats, Mapping) else stats
    return sum(values, CompletedStats())


# --------------------------------------------------------------------------
# Running totals
# --------------------------------------------------------------------------


def merge(previous: Mapping[Key, CompletedStats], new: Mapping[Key, CompletedStats]) -> dict[Key, CompletedStats]:
    """The running totals after one more cycle: counts add, keys from either side are kept."""
    merged = dict(previous)
    for key, stats in new.items():
        merged[key] = merged.get(key, CompletedStats()) + stats
    return dict(sorted(merged.items()))


def key_to_json(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


def key_from_json(text: str) -> Key:
    """Split at the first "/": entry names are config names, which cannot hold one."""
    entry, sep, frontend = text.partition("/")
    if not sep or not entry:
        raise ValueError(f"{text!r} is not 'entry/frontend'")
    return entry, frontend


TOTALS_VERSION = 1


@dataclass(frozen=True)
class CompletedTotals:
    """The running totals file: stats per (entry, frontend), added up over every cycle.

    Counters only ever grow, except when the file is lost or damaged: then
    they restart from 0, which monitoring sees as a counter reset.
    """

    path: Path

    def load(self) -> dict[Key, CompletedStats]:
        """The stored totals; {} when there is no file yet or it is damaged (with a warning)."""
        try:
            return totals_from_json(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.warning("completed-pilot totals %s unusable (%s): counters restart from 0", self.path, err)
            return {}

    def save(self, stats: Mapping[Key, CompletedStats], checkpoint: Checkpoint | None = None) -> None:
        """Atomically, with the checkpoint these totals count up to; an OSError propagates to the caller."""
        _write_json_atomic(self.path, totals_to_json(stats, checkpoint))

    def saved_checkpoint(self) -> Checkpoint | None:
        """The checkpoint the totals were saved with; None without a file, or with one that holds none."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            log.warning("completed-pilot totals %s unusable (%s): its checkpoint is not used", self.path, err)
            return None
        if not isinstance(data, dict) or "checkpoint" not in data:
            return None
        try:
            return checkpoint_from_json(data["checkpoint"])
        except ValueError as err:
            log.warning("completed-pilot totals %s hold an unusable checkpoint (%s)", self.path, err)
            return None


def checkpoint_of_record(totals: CompletedTotals, path: Path, now: float) -> Checkpoint:
    """How far the history has been counted: the totals' own copy, else the checkpoint file.

    The totals' copy was written in the same atomic write as the counts, so
    it is never ahead of or behind them, whenever the factory was killed."""
    return totals.saved_checkpoint() or load_checkpoint(path, now)


def totals_to_json(stats: Mapping[Key, CompletedStats], checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": TOTALS_VERSION,
        "totals": {key_to_json(key): value.as_dict() for key, value in sorted(stats.items())},
    }
    if checkpoint is not None:
        data["checkpoint"] = checkpoint_to_json(checkpoint)
    return data


def totals_from_json(data: object) -> dict[Key, CompletedStats]:
    """The totals a file held; ValueError if it is not such a file."""
    if not isinstance(data, dict) or not isinstance(data.get("totals"), dict):
        raise ValueError("no 'totals' object")
    if data.get("version") != TOTALS_VERSION:
        raise ValueError(f"unknown version {data.get('version')!r}")
    return {key_from_json(key): CompletedStats.from_dict(value) for key, value in data["totals"].items()}


# --------------------------------------------------------------------------
# Old pilot logs
# --------------------------------------------------------------------------


def prune_pilot_logs(root: Path, older_than_seconds: float, now: float) -> int:
    """Delete pilot.*.out and pilot.*.err files under `root` last modified before ``now - older_than_seconds``.

    Returns how many were deleted. Symlinks are neither followed nor
    deleted, so nothing outside `root` is touched. Keep `older_than_seconds`
    well above `SLACK_SECONDS` so no output is deleted before its report is read.
    """
    cutoff = now - older_than_seconds
    deleted = 0
    for folder, _subfolders, names in os.walk(root, onerror=_walk_problem, followlinks=False):
        for name in names:
            path = Path(folder, name)
            if _PILOT_LOG.fullmatch(name) and _is_old_regular_file(path, cutoff):
                deleted += _delete(path)
    return deleted


def _walk_problem(err: OSError) -> None:
    """A folder that cannot be listed is skipped, said once; a missing root just has nothing to prune."""
    if not isinstance(err, FileNotFoundError):
        log.warning("pilot logs under %s not pruned: %s", err.filename, err)


def _is_old_regular_file(path: Path, cutoff: float) -> bool:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False  # gone meanwhile
    except OSError as err:
        log.warning("pilot log %s not checked: %s", path, err)
        return False
    return stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff


def _delete(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    except OSError as err:
        log.warning("pilot log %s not deleted: %s", path, err)
        return 0
    return 1
