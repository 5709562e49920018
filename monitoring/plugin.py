"""What a monitoring writer plugin is: a name, a settings model, and how to build the writer.

A writer implements one method, ``write(snapshot)``. Its plugin object
tells the configuration loader how to validate the writer's own section
(``monitoring.writers.<name>``), so a misspelt option is caught by
``check-config`` and not at the first cycle. Third parties publish a
`WriterPlugin` under the ``updraft.monitoring.writers`` entry point group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from updraft.config import ConfigModel
from updraft.monitoring.snapshot import Snapshot


class Writer(Protocol):
    """A monitoring backend: one method, taking the cycle's snapshot."""

    @property
    def name(self) -> str: ...  # read-only: a frozen dataclass or a plain attribute both fit

    def write(self, snapshot: Snapshot) -> None: ...


class NoSettings(ConfigModel):
    """For writers with nothing to configure: any key is a mistake."""


@dataclass(frozen=True)
class WriterPlugin:
    name: str
    settings: type[ConfigModel]
    create: Callable[[Any, Path], Writer]
    """(validated settings, the monitoring directory) -> the writer."""
    requires: tuple[str, ...] = ()
    """Writers that must be configured too, and before this one (status pages read the RRD files)."""
    check: Callable[[Any, Path], list[str]] | None = None
    """Problems with what is already on disk (an RRD file of an older schema), for `reconfig`."""
    agrees: Callable[[Any, Mapping[str, Any]], list[str]] | None = None
    """Problems between these settings and the other writers' (validated) settings."""
