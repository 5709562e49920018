"""The idle-feedback memory in the frontend's work_dir, so a restart (or the next `frontend once`) does not forget.

Forgetting is not unsafe, only wasteful: a restarted frontend would count
refused shapes as demand again and ask for pilots for them for another
`idle_feedback.cycles` (and `min_seconds`) before it learns again, and
`frontend once` run from cron would never learn at all. So the memory is
written after every cycle that changed it, atomically, and an unreadable
or malformed file is logged and read as an empty memory (never a failed
cycle). `plan` and `explain` read it and never write it: they are not cycles.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from updraft.atomicwrite import write_atomically
from updraft.frontend.config import FrontendConfig
from updraft.frontend.model import FeedbackMemory, RefusalStreak

log = logging.getLogger(__name__)

FILE_NAME = "idle-feedback.json"
VERSION = 1


def memory_path(config: FrontendConfig) -> Path:
    return config.work_dir / FILE_NAME


def _streak(raw: Any) -> RefusalStreak:
    """One streak from its JSON object; ValueError, naming what is wrong, when it is not one."""
    if not isinstance(raw, dict):
        raise ValueError(f"a streak must be an object, not {type(raw).__name__}")
    try:
        streak = RefusalStreak(
            group=str(raw["group"]),
            entry=str(raw["entry"]),
            shape=str(raw["shape"]),
            cycles=int(raw["cycles"]),
            since=float(raw["since"]),
            last=float(raw["last"]),
            excluded_since=None if raw.get("excluded_since") is None else float(raw["excluded_since"]),
        )
    except KeyError as err:
        raise ValueError(f"a streak lacks {err}") from err
    except TypeError as err:
        raise ValueError(f"a streak has a value of the wrong type: {err}") from err
    return streak


def parse_memory(text: str) -> FeedbackMemory:
    """The memory a file holds; ValueError when it is not one this version wrote."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("streaks"), list):
        raise ValueError(f"expected an object with version {VERSION} and a list of streaks")
    return FeedbackMemory(tuple(sorted((_streak(raw) for raw in data["streaks"]), key=lambda s: s.pair)))


def render_memory(memory: FeedbackMemory) -> str:
    streaks = [
        {
            "group": s.group,
            "entry": s.entry,
            "shape": s.shape,
            "cycles": s.cycles,
            "since": s.since,
            "last": s.last,
            "excluded_since": s.excluded_since,
        }
        for s in memory.streaks
    ]
    return json.dumps({"version": VERSION, "streaks": streaks}, indent=1) + "\n"


def load_memory(config: FrontendConfig) -> FeedbackMemory:
    """What earlier cycles learnt; empty when nothing was written yet, or (logged) when the file is unreadable."""
    path = memory_path(config)
    try:
        return parse_memory(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return FeedbackMemory()
    except (OSError, UnicodeDecodeError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        log.warning("idle feedback starts afresh: %s is unreadable: %s", path, err)
        return FeedbackMemory()


def save_memory(config: FrontendConfig, memory: FeedbackMemory, before: FeedbackMemory | None) -> None:
    """Writes the memory when it differs from `before` (what was read or last written); a failure is logged:
    the running frontend keeps the memory in hand, only a restart would forget."""
    if memory == before:
        return
    path = memory_path(config)
    try:
        write_atomically(path, render_memory(memory), sync=False)
    except OSError as err:
        log.error("idle feedback not saved to %s (a restart will forget it): %s", path, err)
