"""A JSON status file per component, rewritten atomically every cycle.

The simplest useful writer: `cat` or `jq` shows what the last cycle saw
and asked for, with no backend to run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from updraft.monitoring.snapshot import FrontendSnapshot


@dataclass(frozen=True)
class JsonStatusWriter:
    directory: Path
    name: str = "json"

    def path_for(self, snapshot: FrontendSnapshot) -> Path:
        return self.directory / f"frontend-{snapshot.frontend}.json"

    def write(self, snapshot: FrontendSnapshot) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path_for(snapshot)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(snapshot.as_dict(), indent=2, sort_keys=True) + "\n")
        tmp.replace(target)
