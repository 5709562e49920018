"""Which monitoring writers exist: our own, listed here, and third parties'
through the `updraft.monitoring.writers` entry point group.

A writer factory takes the monitoring directory and returns a `Writer`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path

from updraft.errors import ConfigError
from updraft.monitoring.report import Writer
from updraft.monitoring.writers.json_status import JsonStatusWriter

ENTRY_POINT_GROUP = "updraft.monitoring.writers"
BUILTIN: dict[str, Callable[[Path], Writer]] = {"json": JsonStatusWriter}


def available() -> dict[str, Callable[[Path], Writer]]:
    """Built-in writers, then entry-point ones (a third party cannot shadow a built-in)."""
    found = {ep.name: ep.load for ep in entry_points(group=ENTRY_POINT_GROUP)}
    plugins = {name: _lazy(load) for name, load in found.items() if name not in BUILTIN}
    return {**plugins, **BUILTIN}


def _lazy(load: Callable[[], Callable[[Path], Writer]]) -> Callable[[Path], Writer]:
    return lambda directory: load()(directory)


def build(names: Iterable[str], directory: Path) -> tuple[Writer, ...]:
    writers = available()
    unknown = [n for n in names if n not in writers]
    if unknown:
        raise ConfigError(f"monitoring.writers: unknown writer(s) {', '.join(unknown)} (available: {', '.join(sorted(writers))})")
    return tuple(writers[n](directory) for n in names)
