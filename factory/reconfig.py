"""`updraft factory reconfig`: see what a new configuration changes, then apply it safely.

The configuration a factory runs with is recorded in its work dir each time
it (re)loads, so the change is shown against what really runs. Removing an
entry that still has pilots needs --force: they stay in the queue, still
tracked by their bookkeeping attributes, but no longer managed.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from updraft.atomicwrite import write_atomically
from updraft.errors import UpdraftError
from updraft.factory.config import FactoryConfig
from updraft.factory.observe import observe
from updraft.factory.policy import advertised_entries
from updraft.factory.ports import connect
from updraft.factory.stage import stage_entries
from updraft.loop import pid_file, signal_running
from updraft.staging import StagingRelease, describe_releases


def pid_path(config: FactoryConfig) -> Path:
    """The running factory's pid: where `reconfig` finds whom to ask to reload."""
    return pid_file(config, "factory")


def applied_path(config: FactoryConfig) -> Path:
    return config.work_dir / "applied-config.json"


def _entries(config: FactoryConfig) -> dict[str, Any]:
    dumped = config.model_dump(mode="json")
    return {
        **{f"entry {k}": v for k, v in dumped["entries"].items()},
        **{f"set {k}": v for k, v in dumped.get("entry_sets", {}).items()},
    }


def record_applied(config: FactoryConfig) -> None:
    """Called by the service whenever it (re)loads: the reference for the next reconfig."""
    write_atomically(applied_path(config), json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class Changes:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    pilots_on_removed: dict[str, int] = field(default_factory=dict)

    def describe(self) -> list[str]:
        lines = [f"+ {name}" for name in self.added] + [f"~ {name}" for name in self.changed]
        lines += [
            f"- {name}"
            + (f" ({self.pilots_on_removed[name]} pilots in the queue)" if name in self.pilots_on_removed else "")
            for name in self.removed
        ]
        return lines or ["no entry changes"]


def diff_entries(
    before: dict[str, Any], after: dict[str, Any]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(added, removed, changed) between two entry mappings (pure)."""
    added = tuple(sorted(after.keys() - before.keys()))
    removed = tuple(sorted(before.keys() - after.keys()))
    changed = tuple(sorted(k for k in before.keys() & after.keys() if before[k] != after[k]))
    return added, removed, changed


def changes(config: FactoryConfig) -> Changes:
    try:
        applied = json.loads(applied_path(config).read_text())
    except FileNotFoundError:
        applied = {"entries": {}}
    except (OSError, ValueError) as err:
        raise UpdraftError(f"{applied_path(config)}: unreadable record of the applied configuration: {err}") from err
    before = {
        **{f"entry {k}": v for k, v in applied.get("entries", {}).items()},
        **{f"set {k}": v for k, v in applied.get("entry_sets", {}).items()},
    }
    added, removed, changed = diff_entries(before, _entries(config))
    return Changes(added, removed, changed, _pilots_on(config, removed))


def _pilots_on(config: FactoryConfig, removed: tuple[str, ...]) -> dict[str, int]:
    if not removed:
        return {}
    pilots = observe(config, connect(config), time.time(), with_history=False).pilots
    if pilots is None:
        raise UpdraftError("the pilot queue could not be read: cannot tell whether removed entries still have pilots")
    per_entry = Counter(p.entry for p in pilots)
    names = {name: name.split(" ", 1)[1] for name in removed}
    return {name: per_entry[entry] for name, entry in names.items() if per_entry[entry]}


def apply(config: FactoryConfig, diff: Changes, force: bool) -> str:
    if diff.pilots_on_removed and not force:
        busy = ", ".join(f"{name} ({count} pilots)" for name, count in diff.pilots_on_removed.items())
        raise UpdraftError(
            f"refusing to remove {busy}: they still have pilots; use --force to remove the entries anyway"
        )
    staged = staging_summary(stage_entries(config))
    record_applied(config)
    pid = signal_running(pid_path(config), signal.SIGHUP)
    if pid is None:
        return f"{staged}applied ({len(advertised_entries(config))} advertised entries); no factory running"
    return f"{staged}applied; the running factory (pid {pid}) is reloading"


def staging_summary(releases: Mapping[str, StagingRelease]) -> str:
    return "".join(f"{line}\n" for line in describe_releases(releases))
