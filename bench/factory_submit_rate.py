"""Pilots submitted per second through the factory's submit adapter, against the lab's factory schedd.

Needs a running lab (`.venv/bin/updraft lab up`). Run from the repository root:

    .venv/bin/python bench/factory_submit_rate.py [--pilots 1000] [--cluster-size 50]

The descriptions are the real ones the factory renders for the lab's site1
entry, submitted through `updraft.factory.act.submit_pilots` in clusters;
they are submitted on hold (and removed afterwards) so the benchmark
measures the schedd transaction path, not the CE.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from updraft.condor import Collector, use_client_config
from updraft.factory.act import submit_pilots
from updraft.factory.config import FactoryConfig
from updraft.factory.render import PilotSpec, render_submit
from updraft.lab.labconfig import factory_config, write_component_configs
from updraft.lab.topology import build_topology

MARK = "UpdraftBench =?= true"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, default=Path("/var/tmp/updraft-lab"))
    parser.add_argument("--pilots", type=int, default=1000)
    parser.add_argument("--cluster-size", type=int, default=50)
    args = parser.parse_args()
    lab = build_topology(args.lab)
    use_client_config(lab.client_config)
    write_component_configs(lab)
    config = FactoryConfig.model_validate(factory_config(lab))
    entry = config.entries["site1"]
    spec = PilotSpec("bench", "main", "default", "bench", config.pilot.executable, lab.work_dir / "bench")
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    spec.work_dir.chmod(0o1777)
    description = {**render_submit(config, "site1", entry, spec), "hold": "true", "+UpdraftBench": "true"}
    schedd = Collector(lab.wms.collector).schedd(lab.factory.schedd)
    started = time.perf_counter()
    result = submit_pilots(schedd, description, args.pilots, args.cluster_size)
    elapsed = time.perf_counter() - started
    schedd.remove(MARK, "benchmark done")
    if result.errors:
        print(f"errors: {result.errors}")
        return 1
    print(f"{'pilots':>7} {'cluster':>7} {'seconds':>8} {'pilots/s':>9}")
    print(f"{result.submitted:>7} {args.cluster_size:>7} {elapsed:>8.2f} {result.submitted / elapsed:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
