"""How long the factory's decide takes, and how much memory, at the scale of a big factory.

Run from the repository root:

    .venv/bin/python bench/factory_decide.py

Inputs come from ``bench/factory_synthetic.py`` (1,000 entries, 100,000
pilots, 2,000 requests by default) and are built before timing; decide is
pure, so no I/O is timed. The process is pinned to one core where the OS
allows it. Time is the best of 3 decide calls (perf_counter); ``tracemalloc``
adds the peak of Python allocations during one more call. Exits 1 if the
target (<= 1 s) is missed.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.factory_synthetic import NOW, Scenario, make_cycle
from updraft.factory.decide import decide
from updraft.factory.model import FactoryPlan, Release, Remove, Submit

SCENARIO = Scenario()
TARGET_SECONDS = 1.0
REPEATS = 3


def pin_to_one_core() -> str:
    """One core, as the target says; platforms without affinity just run as they are."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core}"


def summary(plan: FactoryPlan) -> Counter[str]:
    """What the plan does, counted by kind (removals also by reason)."""
    counts: Counter[str] = Counter(decisions=len(plan.decisions), rejected=len(plan.rejected))
    for action in plan.actions:
        if isinstance(action, Submit):
            counts["submitted"] += action.count
            counts["clusters"] += len(action.clusters)
        elif isinstance(action, Remove):
            counts["removed"] += len(action.job_ids)
            counts[f"removed: {action.reason}"] += len(action.job_ids)
        elif isinstance(action, Release):
            counts["released"] += len(action.job_ids)
    return counts


def main() -> int:
    pinned = pin_to_one_core()
    requests, pilots, policies = make_cycle(SCENARIO)
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        plan = decide(requests, pilots, policies, NOW)
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    decide(requests, pilots, policies, NOW)
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(f"factory decide, {pinned}, best of {REPEATS}")
    print(f"{'entries':>7} {'pilots':>8} {'requests':>8} {'best s':>7} {'worst s':>7} {'py MB':>6}")
    print(
        f"{len(policies):>7,} {len(pilots):>8,} {len(requests):>8,} {min(times):>7.3f} {max(times):>7.3f} "
        f"{traced:>6.1f}"
    )
    for name, value in sorted(summary(plan).items()):
        print(f"  {name:<24} {value:>7,}")
    met = min(times) <= TARGET_SECONDS
    print(f"target (<= {TARGET_SECONDS:g} s):", "met" if met else "MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
