"""A JSON status file per component, rewritten atomically every cycle.

The simplest useful writer: `cat` or `jq` shows what the last cycle saw
and asked for, with no backend to run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from updraft.monitoring.files import path_part, write_atomically
from updraft.monitoring.plugin import NoSettings, WriterPlugin
from updraft.monitoring.snapshot import Snapshot, component_of


@dataclass(frozen=True)
class JsonStatusWriter:
    directory: Path
    name: str = "json"

    def path_for(self, snapshot: Snapshot) -> Path:
        component, name = component_of(snapshot)
        return self.directory / f"{component}-{path_part(name)}.json"

    def write(self, snapshot: Snapshot) -> None:
        text = json.dumps(snapshot.as_dict(), indent=2, sort_keys=True) + "\n"
        write_atomically(self.path_for(snapshot), text)


PLUGIN = WriterPlugin("json", NoSettings, lambda settings, directory: JsonStatusWriter(directory))
