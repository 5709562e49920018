"""Round-robin databases: one RRD file per measurement and set of tag values.

The layout is ``<monitoring dir>/<subdir>/<measurement>/<tag 1>/.../<tag N>.rrd``
with every tag value through `path_part`, so other parties' names cannot
leave the folder; `rrd_file` is the one place that says so (the status
pages find their graphs' data with it). Each cycle creates the missing
files and updates all of them through a single ``rrdtool -`` process.

A file whose step or data sources differ from the catalogue (written by an
older Updraft, or with another ``step_seconds``) is never recreated:
that would throw its history away. The writer leaves it untouched, writes
every other file, then raises `MonitoringError` naming it; ``check`` tells
``reconfig`` the same before the daemons are restarted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from updraft.config import ConfigModel, IntervalSeconds, Name, NonBlankStr, TimeoutSeconds
from updraft.errors import MonitoringError
from updraft.monitoring import rrdtool
from updraft.monitoring.files import path_part
from updraft.monitoring.metrics import Measurement, MeasurementSpec, measurements, spec_named
from updraft.monitoring.plugin import WriterPlugin
from updraft.monitoring.rrdtool import RrdTool, Schema
from updraft.monitoring.snapshot import Snapshot

MOVE_ASIDE = "the rrd writer leaves it alone; move it aside (e.g. add .old to its name) to start a new file"


class RrdSettings(ConfigModel):
    """How the RRD files are laid out and how rrdtool is run."""

    step_seconds: IntervalSeconds = 300
    """Seconds between primary data points: the component's cycle time. Changing it makes
    existing files mismatched (reported, never recreated)."""
    binary: NonBlankStr = "rrdtool"
    timeout_seconds: TimeoutSeconds = 60.0
    """For one cycle's whole rrdtool run."""
    subdir: Name = "rrd"
    """One folder name under ``monitoring.dir``; status_pages' ``rrd_subdir`` must name the same."""


# --------------------------------------------------------------------------
# Paths (pure)
# --------------------------------------------------------------------------


def rrd_file(root: Path, spec: MeasurementSpec, tag_values: Sequence[str]) -> Path:
    """Where the RRD file of one measurement and tag values lives under `root` (``<dir>/<subdir>``)."""
    if len(tag_values) != len(spec.tags):
        raise ValueError(f"{spec.name} has tags {spec.tags}, got {len(tag_values)} values")
    *folders, last = (path_part(v) for v in tag_values)
    return root.joinpath(spec.name, *folders, f"{last}.rrd")


def _folder_spec(root: Path, path: Path) -> MeasurementSpec | None:
    """The measurement named by the file's first folder under `root`, if the catalogue has it."""
    parts = path.relative_to(root).parts
    if len(parts) < 2:
        return None
    try:
        return spec_named(parts[0])
    except KeyError:
        return None


def measurement_of(root: Path, path: Path) -> MeasurementSpec | None:
    """The catalogue measurement an existing file under `root` belongs to, or None if it is not
    where `rrd_file` puts that measurement's files (unknown folder, wrong depth)."""
    spec = _folder_spec(root, path)
    if spec is None or len(path.relative_to(root).parts) != len(spec.tags) + 1:
        return None
    return spec


def unknown_file_problem(root: Path, path: Path) -> str:
    spec = _folder_spec(root, path)
    if spec is not None:
        return (
            f"{path}: not where the rrd writer keeps {spec.name} files "
            f"({len(spec.tags)} levels: {', '.join(spec.tags)}); it is never written"
        )
    return f"{path}: not a measurement of the catalogue; it is never written"


def mismatch_problem(path: Path, differences: Iterable[str]) -> str:
    return f"{path}: {'; '.join(differences)}: {MOVE_ASIDE}"


# --------------------------------------------------------------------------
# Planning a cycle (pure)
# --------------------------------------------------------------------------


def stored_measurements(snapshot: Snapshot) -> list[Measurement]:
    """The cycle's measurements an RRD file can hold: not events (a health change), which happen at their
    own times and would each need a file of their own (InfluxDB keeps them); the entries' health states,
    one value per cycle, are stored (``updraft_factory_health``, its own new files)."""
    return [m for m in measurements(snapshot) if not m.spec.event]


@dataclass(frozen=True)
class Plan:
    commands: tuple[tuple[str, ...], ...]
    """create (for new files) and update commands, in order."""
    created: tuple[Path, ...]


def plan_cycle(rows: Iterable[tuple[Path, Measurement]], existing: set[Path], skip: set[Path], step: int) -> Plan:
    """Create what is missing, update everything that may be written."""
    commands: list[tuple[str, ...]] = []
    created: list[Path] = []
    for path, row in rows:
        if path in skip:
            continue
        if path not in existing:
            commands.append(tuple(rrdtool.create_args(path, row.spec, step, int(row.time) - step)))
            created.append(path)
        commands.append(tuple(rrdtool.update_args(path, row)))
    return Plan(tuple(commands), tuple(created))


def created_files(replies: Iterable[rrdtool.Reply]) -> list[Path]:
    """Files this run made, hence of the catalogue's schema (not one that appeared meanwhile)."""
    return [Path(reply.args[1]) for reply in replies if reply.args[0] == "create" and reply.ok]


def command_failures(replies: Iterable[rrdtool.Reply]) -> list[str]:
    return [f"rrdtool {reply.args[0]} {reply.args[1]}: {reply.error}" for reply in replies if not reply.ok]


# --------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------

FileId = tuple[int, int, int]


def _file_id(path: Path) -> FileId | None:
    """Which file is at `path` now: device, inode and size (an RRD's size changes only if its layout does)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size


@dataclass
class RrdWriter:
    """Keeps the RRD files of one component's measurements.

    Files are checked against the catalogue with ``rrdtool info`` when first
    seen; `_verified` remembers which files passed (by inode and size), so
    the steady state is one rrdtool process per cycle and a file swapped in
    by hand is checked again.
    """

    settings: RrdSettings
    directory: Path
    name: str = "rrd"
    _verified: dict[Path, FileId] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.directory / self.settings.subdir

    @property
    def tool(self) -> RrdTool:
        return RrdTool(self.settings.binary, self.settings.timeout_seconds)

    def write(self, snapshot: Snapshot) -> None:
        rows = [(rrd_file(self.root, m.spec, m.tag_values), m) for m in stored_measurements(snapshot)]
        existing = {path for path, _ in rows if path.exists()}
        mismatched = self._mismatched(rows, existing)
        plan = plan_cycle(rows, existing, set(mismatched), self.settings.step_seconds)
        for path in plan.created:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise MonitoringError(f"rrd: cannot make the folder of {path}: {err.strerror}") from err
        replies = self.tool.batch(plan.commands)
        for path in created_files(replies):
            if (found := _file_id(path)) is not None:
                self._verified[path] = found
        failures = command_failures(replies)
        problems = [mismatch_problem(path, diffs) for path, diffs in mismatched.items()]
        if problems or failures:
            raise MonitoringError("rrd: " + " | ".join([*problems, *failures]))

    def _mismatched(self, rows: list[tuple[Path, Measurement]], existing: set[Path]) -> dict[Path, list[str]]:
        """Existing files not yet verified whose schema differs (or that rrdtool cannot read)."""
        specs = {path: row.spec for path, row in rows if path in existing}
        ids = {path: _file_id(path) for path in specs}
        unverified = [path for path in specs if ids[path] is None or self._verified.get(path) != ids[path]]
        replies = self.tool.batch([rrdtool.info_args(path) for path in unverified])
        mismatched: dict[Path, list[str]] = {}
        for path, reply in zip(unverified, replies, strict=True):
            differences = _differences(reply, rrdtool.expected_schema(specs[path], self.settings.step_seconds))
            if differences:
                mismatched[path] = differences
            elif (found := ids[path]) is not None:
                self._verified[path] = found
        return mismatched


def _differences(reply: rrdtool.Reply, expected: Schema) -> list[str]:
    if not reply.ok:
        return [f"rrdtool cannot read it ({reply.error})"]
    try:
        found = rrdtool.parse_info(reply.output)
    except MonitoringError as err:
        return [str(err)]
    return rrdtool.schema_differences(expected, found)


def create(settings: RrdSettings, directory: Path) -> RrdWriter:
    return RrdWriter(settings, directory)


# --------------------------------------------------------------------------
# reconfig
# --------------------------------------------------------------------------


def existing_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.rrd") if p.is_file()) if root.is_dir() else []


def check(settings: RrdSettings, directory: Path) -> list[str]:
    """One line per file under the RRD folder that the writer would refuse to write, and why."""
    root = directory / settings.subdir
    files = existing_files(root)
    if not files:
        return []
    problems: list[str] = []
    known: dict[Path, MeasurementSpec] = {}
    for path in files:
        spec = measurement_of(root, path)
        if spec is None:
            problems.append(unknown_file_problem(root, path))
        else:
            known[path] = spec
    try:
        replies = RrdTool(settings.binary, settings.timeout_seconds).batch([rrdtool.info_args(path) for path in known])
    except MonitoringError as err:
        return [*problems, f"cannot check {len(known)} RRD files under {root}: {err}"]
    for (path, spec), reply in zip(known.items(), replies, strict=True):
        differences = _differences(reply, rrdtool.expected_schema(spec, settings.step_seconds))
        if differences:
            problems.append(mismatch_problem(path, differences))
    return sorted(problems)


PLUGIN = WriterPlugin("rrd", RrdSettings, create, check=check)
