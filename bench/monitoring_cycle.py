"""What monitoring costs per factory cycle: building the snapshot, and each file writer.

Run from the repository root (rrdtool must be installed; `make test` does it):

    .venv/bin/python bench/monitoring_cycle.py [entries]

The cycle comes from ``bench/factory_synthetic.py`` (default 1,000 entries,
100 pilots per entry, 2 requests per entry), decided once. Timed, each once
on one core: the pure parts (`factory_snapshot`, `metrics.measurements`),
then each writer on an empty folder (the first cycle: RRD files created)
and again a step later (a normal cycle: RRD files updated, graphs redrawn).
Writers run directly, not behind the reporter, so the figures are theirs.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TypeVar

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.factory_synthetic import NOW, Scenario, make_cycle
from updraft.factory.completed import CompletedStats, Key
from updraft.factory.config import FactoryConfig
from updraft.factory.decide import decide
from updraft.factory.model import Pilot
from updraft.factory.snapshot import CycleFacts, factory_snapshot
from updraft.monitoring import metrics
from updraft.monitoring.config import validate_writers
from updraft.monitoring.registry import build

STEPS = ("validate", "fetch", "condor", "blackhole")


def pin_to_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def config_for(entry_names: list[str]) -> FactoryConfig:
    entries = {
        name: {
            "grid_type": "condor",
            "resource": f"ce.{name}.example.org ce.{name}.example.org:9619",
            "attributes": {"GLIDEIN_CPUS": 8},
        }
        for name in entry_names
    }
    return FactoryConfig.model_validate(
        {"name": "bench", "wms_collector": "127.0.0.1:1", "schedd": "s@x", "entries": entries}
    )


def completed_totals(pilots: Iterable[Pilot], rng: random.Random) -> dict[Key, CompletedStats]:
    keys = sorted({(p.entry, p.frontend) for p in pilots})
    totals: dict[Key, CompletedStats] = {}
    for key in keys:
        failed = {step: rng.randint(0, 5) for step in rng.sample(STEPS, 2)}
        ok = rng.randint(50, 500)
        totals[key] = CompletedStats(
            pilots=ok + sum(failed.values()),
            ok=ok,
            failed=sum(failed.values()),
            failed_by_step=failed,
            lifetime_seconds=ok * 20_000,
            jobs_run=ok * 7,
            core_seconds=ok * 160_000,
            busy_core_seconds=ok * 140_000,
            goodput_core_seconds=ok * 130_000,
            waste_core_seconds=ok * 20_000,
        )
    return totals


T = TypeVar("T")


def timed(label: str, action: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = action()
    print(f"  {label:<42} {time.perf_counter() - started:8.2f} s")
    return result


def main() -> None:
    entries = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    pin_to_one_core()
    scenario = Scenario(entries=entries, pilots=100 * entries, requests=2 * entries)
    requests, pilots, policies = make_cycle(scenario)
    plan = decide(requests, pilots, policies, NOW)
    config = config_for(sorted(policies))
    facts = CycleFacts(NOW, 1, tuple(pilots), plan, frozenset(), completed_totals(pilots, random.Random(2)))
    print(f"factory cycle: {entries} entries, {len(pilots)} pilots, {len(requests)} requests (one core)")
    snapshot = timed("factory_snapshot", lambda: factory_snapshot(config, facts))
    found = timed("metrics.measurements", lambda: metrics.measurements(snapshot))
    print(
        f"  -> {len(snapshot.pilots)} (entry, frontend) rows, {len(found)} measurements (= RRD files, InfluxDB points)"
    )
    writers = validate_writers({"json": {}, "xml": {}, "rrd": {"step_seconds": 300}, "status_pages": {}})
    with tempfile.TemporaryDirectory() as folder:
        built = build(writers, Path(folder))
        for label, moment in (("first cycle", snapshot), ("next cycle", replace(snapshot, time=NOW + 300))):
            print(label)
            for writer in built:
                timed(f"writer {writer.name}", partial(writer.write, moment))
        pngs = sum(1 for _ in Path(folder).rglob("*.png"))
        rrds = sum(1 for _ in Path(folder).rglob("*.rrd"))
        print(f"  -> {rrds} RRD files, {pngs} graphs")


if __name__ == "__main__":
    main()
