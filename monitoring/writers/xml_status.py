"""XML status files per factory, entry, frontend and group, with an XSD schema.

Some sites feed status into tools that speak XML and validate what they
read (the GlideinWMS habit); for them every document carries the
namespace ``urn:updraft:monitoring:status:1`` and ``schemaVersion="1"``
and validates against ``schema/updraft-status.xsd`` (see
docs/monitoring-xml.md). Pure functions build ElementTree elements from a
snapshot; `XmlStatusWriter` only writes them and removes files of entries
and groups that are no longer in the snapshot.
"""

from __future__ import annotations

import copy
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path, PurePath

from updraft.config import ConfigModel, Name
from updraft.errors import MonitoringError
from updraft.monitoring.files import path_part, write_atomically
from updraft.monitoring.plugin import WriterPlugin
from updraft.monitoring.snapshot import (
    COMPLETED_COUNTERS,
    FRONTEND_SUMS,
    PILOT_STATES,
    RESTART_FIGURES,
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
    component_of,
)

NAMESPACE = "urn:updraft:monitoring:status:1"
SCHEMA_VERSION = "1"
SCHEMA_FILE = "updraft-status.xsd"

STATE_COUNTS = (*PILOT_STATES, "idle")
ACTIVITY = ("cores_running", "requested_idle", "requested_max", "submitted", "removed", "released")
"""What frontends asked for and the factory did, per (entry, frontend)."""
PILOT_COUNTS = (*STATE_COUNTS, *ACTIVITY)
ENTRY_TOTALS = PILOT_COUNTS
FACTORY_TOTALS = (*PILOT_COUNTS, "entries_in_downtime")
FRONTEND_TOTALS = (*FRONTEND_SUMS, "jobs_matched", "jobs_unmatched", "jobs_downtime")
FRACTIONAL = frozenset({"jobs_idle", "jobs_old_idle", "jobs_running", "jobs_refused", "jobs_matched"})
"""Frontend counts that are not whole: a job matching n entries counts 1/n on each."""

DECIMALS = 3
"""Milliseconds for times and durations, thousandths of a job for fractional counts."""

_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class XmlSettings(ConfigModel):
    """Where under the monitoring directory the XML files go."""

    subdir: Name = "xml"
    """One folder name (no ``/``), so the files stay under ``monitoring.dir``."""


def schema_path() -> Path:
    """The XSD every written document validates against, shipped as package data."""
    return Path(str(resources.files("updraft.monitoring").joinpath("schema", SCHEMA_FILE)))


# --------------------------------------------------------------------------
# Values as XML text
# --------------------------------------------------------------------------


def xml_text(value: str) -> str:
    """Names and problems come from other parties' ads and daemons' messages; a control
    character there would make the whole file unreadable, so it becomes U+FFFD."""
    return _NOT_XML_CHAR.sub("\ufffd", value)


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise MonitoringError(f"xml: {what} is {value}, not a number a status file can hold")
    return value


def as_integer(value: float, what: str = "a count") -> str:
    """Counts that sum whole numbers (the snapshots' totals are floats) shown as integers."""
    return str(round(_finite(value, what)))


def as_decimal(value: float, what: str = "a number") -> str:
    """At most `DECIMALS` places, trailing zeros dropped, never exponent notation (xs:decimal has none)."""
    return f"{round(_finite(value, what), DECIMALS) or 0.0:.{DECIMALS}f}".rstrip("0").rstrip(".")


def _millis(epoch: float) -> int:
    return round(_finite(epoch, "the cycle time") * 1000)


def epoch_seconds(epoch: float) -> str:
    """Rounded to the millisecond exactly as `iso_time` is, so both forms name one instant."""
    return as_decimal(_millis(epoch) / 1000)


def iso_time(epoch: float) -> str:
    """UTC with milliseconds and a ``Z``: xs:dateTime, and what people read."""
    seconds, rest = divmod(_millis(epoch), 1000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_boolean(value: bool) -> str:
    return "true" if value else "false"


def _count_or_amount(key: str, value: float) -> str:
    return as_decimal(value, key) if key in FRACTIONAL else as_integer(value, key)


# --------------------------------------------------------------------------
# Elements (pure)
# --------------------------------------------------------------------------


def _tag(local: str) -> str:
    return f"{{{NAMESPACE}}}{local}"


def _element(local: str, attributes: Mapping[str, str] | None = None) -> ET.Element:
    return ET.Element(_tag(local), dict(attributes or {}))


def _child(parent: ET.Element, local: str, attributes: Mapping[str, str] | None = None) -> ET.Element:
    element = _element(local, attributes)
    parent.append(element)
    return element


def _named(name: str) -> dict[str, str]:
    return {"name": xml_text(name)}


def _root(kind: str, identity: Mapping[str, str], cycle: int, epoch: float) -> ET.Element:
    """Every document starts alike, so a reader can tell which cycle wrote it."""
    return _element(
        kind,
        {
            "schemaVersion": SCHEMA_VERSION,
            **{key: xml_text(value) for key, value in identity.items()},
            "cycle": as_integer(cycle, "the cycle number"),
            "time": iso_time(epoch),
            "epoch": epoch_seconds(epoch),
        },
    )


def _counts(source: object, keys: Iterable[str]) -> dict[str, str]:
    return {key: as_integer(getattr(source, key), key) for key in keys}


def _totals(totals: Mapping[str, float], keys: Iterable[str]) -> dict[str, str]:
    return {key: _count_or_amount(key, totals[key]) for key in keys}


def _problems(parent: ET.Element, problems: Iterable[str]) -> None:
    container = _child(parent, "problems")
    for problem in problems:
        _child(container, "problem").text = xml_text(problem)


def _timings(parent: ET.Element, timings: Mapping[str, float]) -> None:
    container = _child(parent, "timings")
    for phase, seconds in timings.items():
        _child(container, "phase", {**_named(phase), "seconds": as_decimal(seconds, f"timing {phase}")})


def _names(parent: ET.Element, local: str, names: Iterable[str]) -> None:
    for name in names:
        _child(parent, local, _named(name))


def factory_element(snapshot: FactorySnapshot) -> ET.Element:
    """The factory as a whole: what a dashboard's front page shows."""
    root = _root("factory", {"name": snapshot.factory}, snapshot.cycle, snapshot.time)
    _child(root, "totals", _totals(snapshot.totals(), FACTORY_TOTALS))
    entries = _child(root, "entries")
    for entry in snapshot.entries:
        _child(entries, "entry", _entry_summary(entry))
    _child(root, "rejected_requests", {"count": as_integer(snapshot.rejected_requests, "rejected_requests")})
    _problems(root, snapshot.problems)
    _timings(root, snapshot.timings)
    health = _child(root, "health")
    for row in snapshot.health:
        _child(health, "entry", health_attributes(row))
    _transitions(root, snapshot.transitions)
    return root


def health_attributes(row: HealthRow) -> dict[str, str]:
    """An entry's health as the row holds it, nothing more: the override's author and end, never its
    own reason or when it was set (the state's reason is already the override's when it rules)."""
    attributes = {
        **_named(row.entry),
        "state": xml_text(row.state),
        "reason": xml_text(row.reason),
        "since": iso_time(row.since),
    }
    if row.next_review is not None:
        attributes["next_review"] = iso_time(row.next_review)
    if row.cap is not None:
        attributes["cap"] = as_integer(row.cap, "cap")
    if row.override_by is not None:
        attributes["override_by"] = xml_text(row.override_by)
    if row.override_until is not None:
        attributes["override_until"] = iso_time(row.override_until)
    return attributes


def _transitions(parent: ET.Element, rows: Iterable[TransitionRow]) -> None:
    """This cycle's changes of health state, in the order they happened."""
    container = _child(parent, "transitions")
    for row in rows:
        _child(
            container,
            "transition",
            {
                "entry": xml_text(row.entry),
                "old": xml_text(row.old),
                "new": xml_text(row.new),
                "at": iso_time(row.at),
                "by": xml_text(row.by),
                "reason": xml_text(row.reason),
            },
        )


def _entry_summary(entry: EntryStatus) -> dict[str, str]:
    return {
        **_named(entry.entry),
        "in_downtime": as_boolean(entry.in_downtime),
        "cores_per_pilot": as_integer(entry.cores_per_pilot, "cores_per_pilot"),
        **_counts(entry, STATE_COUNTS),
    }


def entry_totals(entry: EntryStatus, rows: tuple[PilotRow, ...]) -> dict[str, float]:
    """Pilots by state of the whole entry, and what every frontend asked and the factory did on it."""
    totals = {key: float(getattr(entry, key)) for key in STATE_COUNTS}
    totals.update({key: float(sum(getattr(row, key) for row in rows)) for key in ACTIVITY})
    return totals


def entry_element(snapshot: FactorySnapshot, entry: EntryStatus) -> ET.Element:
    """One entry with its pilots and completed-pilot totals per frontend."""
    root = _root("entry", {"factory": snapshot.factory, "name": entry.entry}, snapshot.cycle, snapshot.time)
    root.set("in_downtime", as_boolean(entry.in_downtime))
    root.set("cores_per_pilot", as_integer(entry.cores_per_pilot, "cores_per_pilot"))
    rows = snapshot.rows_of(entry.entry)
    _child(root, "totals", _totals(entry_totals(entry, rows), ENTRY_TOTALS))
    pilots = _child(root, "pilots")
    for row in rows:
        _names(
            _child(pilots, "frontend", {**_named(row.frontend), **_counts(row, PILOT_COUNTS)}), "limit", row.limits_hit
        )
    completed = _child(root, "completed")
    for done in snapshot.completed_of(entry.entry):
        _completed(completed, done)
    health = next((row for row in snapshot.health if row.entry == entry.entry), None)
    if health is not None:
        _child(root, "health", {key: value for key, value in health_attributes(health).items() if key != "name"})
    _transitions(root, (row for row in snapshot.transitions if row.entry == entry.entry))
    return root


def _completed(parent: ET.Element, row: CompletedRow) -> None:
    frontend = _child(parent, "frontend", {**_named(row.frontend), **_counts(row, COMPLETED_COUNTERS)})
    for step, count in sorted(row.failed_by_step.items()):
        _child(frontend, "failed_step", {**_named(step), "count": as_integer(count, f"failed step {step}")})


def frontend_element(snapshot: FrontendSnapshot) -> ET.Element:
    """The frontend as a whole and each group in one line."""
    root = _root("frontend", {"name": snapshot.frontend}, snapshot.cycle, snapshot.time)
    _child(root, "totals", _totals(snapshot.totals(), FRONTEND_TOTALS))
    groups = _child(root, "groups")
    for group in snapshot.groups:
        _child(
            groups,
            "group",
            {
                **_named(group),
                "entries": as_integer(len(snapshot.rows_of(group)), "entries"),
                **_totals(snapshot.group_totals(group), FRONTEND_TOTALS),
            },
        )
    _problems(root, snapshot.problems)
    _timings(root, snapshot.timings)
    _child(root, "restarts", _restart_figures(snapshot.restart_totals()))
    return root


def group_element(snapshot: FrontendSnapshot, group: str) -> ET.Element:
    """One group: per entry what it saw, what it asked for, and what bound the request."""
    root = _root("group", {"frontend": snapshot.frontend, "name": group}, snapshot.cycle, snapshot.time)
    _child(root, "totals", _totals(snapshot.group_totals(group), FRONTEND_TOTALS))
    entries = _child(root, "entries")
    for row in snapshot.rows_of(group):
        entry = _child(entries, "entry", _group_entry(row))
        _names(entry, "limit", row.limits_hit)
        _names(entry, "curb", row.curbs_hit)
    if group not in snapshot.restarts_unknown:
        restarts = _child(root, "restarts", _restart_figures(snapshot.restart_totals(group)))
        for restart in snapshot.restarts_of(group):
            _child(restarts, "entry", {**_named(restart.entry), **_restart_figures(_figures_of(restart))})
    return root


def _figures_of(row: RestartRow) -> dict[str, float]:
    return {key: float(getattr(row, key)) for key in RESTART_FIGURES}


def _restart_figures(figures: Mapping[str, float]) -> dict[str, str]:
    """Counts whole, badput to the millisecond (`Seconds` in the schema)."""
    return {
        key: as_decimal(figures[key], key) if key.startswith("badput") else as_integer(figures[key], key)
        for key in RESTART_FIGURES
    }


def _group_entry(row: GroupEntryRow) -> dict[str, str]:
    return {
        **_named(row.entry),
        "in_downtime": as_boolean(row.in_downtime),
        **{key: _count_or_amount(key, getattr(row, key)) for key in FRONTEND_SUMS},
        "remove": xml_text(row.remove),
    }


# --------------------------------------------------------------------------
# Documents: which element goes to which file (pure)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Documents:
    """One snapshot's files, relative to the XML folder.

    `details` (entry or group files, all in `folder`) come before `summary`
    in writing order, so a reader following the summary finds each detail
    already of this cycle or newer.
    """

    summary: tuple[PurePath, ET.Element]
    folder: PurePath
    details: tuple[tuple[PurePath, ET.Element], ...]
    detail_prefix: str
    """File names in `folder` this writer owns: ``entry-`` or ``group-``, then the name, then ``.xml``."""


def summary_file(component: str, name: str) -> PurePath:
    """Where a component's summary document goes, below the writer's folder (`factory-<name>.xml`)."""
    return PurePath(f"{component}-{path_part(name)}.xml")


def documents(snapshot: Snapshot) -> Documents:
    component, name = component_of(snapshot)
    summary_path = summary_file(component, name)
    folder = PurePath(summary_path.stem)
    if isinstance(snapshot, FactorySnapshot):
        summary = factory_element(snapshot)
        details = tuple(
            (folder / f"entry-{path_part(e.entry)}.xml", entry_element(snapshot, e)) for e in snapshot.entries
        )
        prefix = "entry-"
    else:
        summary = frontend_element(snapshot)
        details = tuple((folder / f"group-{path_part(g)}.xml", group_element(snapshot, g)) for g in snapshot.groups)
        prefix = "group-"
    return Documents((summary_path, summary), folder, details, prefix)


def to_text(root: ET.Element) -> str:
    """Indented, with the status namespace as the default one, ASCII only.

    Non-ASCII becomes character references, so the text reads the same
    whatever encoding the file is written in. The namespace is set on a copy
    rather than with `ET.register_namespace`, which changes every caller's
    ElementTree.
    """
    plain = copy.deepcopy(root)
    for element in plain.iter():
        element.tag = element.tag.removeprefix(f"{{{NAMESPACE}}}")
    plain.attrib = {"xmlns": NAMESPACE, **plain.attrib}
    ET.indent(plain)
    data: bytes = ET.tostring(plain, encoding="us-ascii", xml_declaration=True)
    return data.decode("ascii") + "\n"


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def stale_files(folder: Path, prefix: str, keep: Iterable[str]) -> list[Path]:
    """Detail files in `folder` of entries or groups no longer in the snapshot.

    Only ``<prefix>*.xml`` files directly in the component's own folder:
    anything else there (an operator's notes, another writer's temporary
    file, which starts with a dot) is left alone.
    """
    wanted = set(keep)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{prefix}*.xml") if p.name not in wanted and p.is_file())


@dataclass(frozen=True)
class XmlStatusWriter:
    directory: Path
    """The XML folder itself: ``<monitoring.dir>/<subdir>``."""
    name: str = "xml"

    def write(self, snapshot: Snapshot) -> None:
        found = documents(snapshot)
        for relative, element in (*found.details, found.summary):
            self._write(relative, element)
        folder = self.directory / found.folder
        for path in stale_files(folder, found.detail_prefix, (p.name for p, _ in found.details)):
            try:
                path.unlink(missing_ok=True)
            except OSError as err:
                raise MonitoringError(f"xml: cannot remove stale {path}: {err}") from err

    def _write(self, relative: PurePath, element: ET.Element) -> None:
        target = self.directory / relative
        try:
            write_atomically(target, to_text(element))
        except OSError as err:
            raise MonitoringError(f"xml: cannot write {target}: {err}") from err


def create(settings: XmlSettings, directory: Path) -> XmlStatusWriter:
    return XmlStatusWriter(directory / settings.subdir)


PLUGIN = WriterPlugin("xml", XmlSettings, create)
