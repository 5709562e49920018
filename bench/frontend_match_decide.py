"""How long the frontend's match + decide takes, and how much memory, at VO scale.

Run from the repository root:

    .venv/bin/python bench/frontend_match_decide.py

Each case runs in its own child process, so that process's peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) belongs to that case alone;
it includes the interpreter, HTCondor's libraries and the synthetic inputs,
so it is an upper bound on what decide itself needs. ``tracemalloc`` adds the
peak of Python allocations during one decide call (ClassAds live in C++ and
are not in that number). Time is the best of 3 decide calls after the inputs
are built (perf_counter); matching runs inside decide.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synthetic import NOW, Scenario, make_config, make_observation
from updraft.frontend.decide import decide
from updraft.frontend.matching import match

CASES = {
    "a": Scenario(jobs=100_000, shapes=1_000, entries=1_000),
    "b": Scenario(jobs=1_000_000, shapes=5_000, entries=5_000),
    "c": Scenario(jobs=1_000_000, shapes=1_000, entries=1_000),
    "d": Scenario(jobs=1_000_000, shapes=5_000, entries=5_000, schedds=20, everywhere=True),
}
"""d: the same 5,000 shapes queued in each of 20 schedds (100,000 shape records)."""
UNINDEXED = ("a", "d")
"""Cases also run without the match index, for comparison (no target)."""
TARGET_SECONDS = {"a": 0.07, "b": 3.0, "d": 1.0}
TARGET_RSS_MB = {"b": 1024, "d": 300}
TARGET_RATIO_C_A = 1.5
REPEATS = 3


@dataclass(frozen=True)
class Result:
    case: str
    index: bool
    seconds: float
    rss_mb: float
    traced_mb: float
    evaluations: int
    decisions: int
    requested: int


def measure(case: str, index: bool = True) -> Result:
    """Time decide on one case, in this process (the parent runs each case in a child)."""
    observation, config = make_observation(CASES[case]), make_config(index)
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        plan = decide(observation, config, NOW)
        best = min(best, time.perf_counter() - started)
    tracemalloc.start()
    decide(observation, config, NOW)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    matched = match(observation.shapes, observation.entries, "main", config.groups["main"])
    return Result(
        case=case,
        index=index,
        seconds=best,
        rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        traced_mb=traced / 2**20,
        evaluations=matched.evaluations,
        decisions=len(plan.decisions),
        requested=sum(d.idle for d in plan.decisions),
    )


def run_child(case: str, index: bool = True) -> Result:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", case, "index" if index else "none"]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return Result(**json.loads(out.stdout))


def report(results: dict[str, Result], unindexed: dict[str, Result]) -> bool:
    """Print the table and say whether every target holds."""
    print(
        f"{'case':<10} {'jobs':>9} {'shapes':>6} {'schedds':>7} {'entries':>7} {'time s':>7} {'RSS MB':>7} "
        f"{'py MB':>6} {'evals':>7} {'decisions':>9} {'idle req':>8}"
    )
    rows = [(case, r) for case, r in results.items()] + [(f"{case} no-idx", r) for case, r in unindexed.items()]
    for label, r in rows:
        s = CASES[r.case]
        print(
            f"{label:<10} {s.jobs:>9,} {s.shapes:>6,} {s.schedds:>7} {s.entries:>7,} {r.seconds:>7.3f} "
            f"{r.rss_mb:>7.0f} {r.traced_mb:>6.1f} {r.evaluations:>7,} {r.decisions:>9,} {r.requested:>8,}"
        )
    ratio = results["c"].seconds / results["a"].seconds
    print(f"ratio c/a (10x jobs, same shapes and entries): {ratio:.2f}")
    checks = [results[c].seconds <= t for c, t in TARGET_SECONDS.items()]
    checks += [results[c].rss_mb <= m for c, m in TARGET_RSS_MB.items()]
    checks.append(ratio <= TARGET_RATIO_C_A)
    print(
        "targets (a <= 0.07 s; b <= 3 s and <= 1 GB; d <= 1 s and <= 300 MB; c/a <= 1.5):",
        "met" if all(checks) else "MISSED",
    )
    return all(checks)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        print(json.dumps(measure(argv[1], argv[2:3] != ["none"]).__dict__))
        return 0
    skip_unindexed = "--indexed-only" in argv
    results = {case: run_child(case) for case in CASES}
    unindexed = {} if skip_unindexed else {case: run_child(case, index=False) for case in UNINDEXED}
    return 0 if report(results, unindexed) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
