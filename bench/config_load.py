"""How long loading a large factory configuration takes, and how much memory it needs.

    .venv/bin/python bench/config_load.py [--sizes 1 10] [--bomb-levels 7]

Writes a main file and one drop-in of about 1 MB and 10 MB (entries shaped
like the shipped ``etc/factory.d/10-example-sites.yaml``, each also present
in a second drop-in that changes one limit, so the merge and its conflict
warnings do real work), and a YAML alias bomb (ten references per level,
``--bomb-levels`` levels: 10^levels items once expanded, 7 levels is about
600 bytes). Each case runs in a child process of its own, so its peak
memory (``resource.getrusage``'s ``ru_maxrss``) is its own; the child's
address space is capped at 4 GiB so a bomb that gets through fails instead
of taking the machine down. Prints one line per case: seconds, peak memory
and how the load ended.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ADDRESS_SPACE = 4 << 30

FACTORY_MAIN = """\
name: bench-factory
wms_collector: 127.0.0.1:29619
schedd: factory@lab
work_dir: /var/lib/updraft/factory
entries: {}
"""


def entry(index: int) -> str:
    """One entry as an operator writes it in a drop-in (about 220 bytes)."""
    return f"""\
  site{index:06d}:
    enabled: true
    grid_type: condor
    resource: "ce@site{index}.example.org 10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}:9619"
    attributes:
      GLIDEIN_Site: Site{index}
      GLIDEIN_CPUS: {1 + index % 8}
      GLIDEIN_Supported_VOs: lab-vo
    limits:
      max_pilots: 100
      max_idle: 20
      max_held: 10
"""


def write_large(folder: Path, megabytes: float) -> tuple[Path, int]:
    """A main file, a drop-in of about `megabytes` MB, and one overriding every entry's max_idle."""
    main = folder / "factory.yaml"
    main.write_text(FACTORY_MAIN)
    drop = folder / "factory.d"
    drop.mkdir()
    chunks = ["entries:\n"]
    size, count = len(chunks[0]), 0
    while size < megabytes * 1_000_000:
        chunks.append(entry(count))
        size += len(chunks[-1])
        count += 1
    (drop / "10-sites.yaml").write_text("".join(chunks))
    overrides = "".join(f"  site{i:06d}: {{limits: {{max_idle: 30}}}}\n" for i in range(count))
    (drop / "20-limits.yaml").write_text("entries:\n" + overrides)
    return main, count


def write_bomb(folder: Path, levels: int) -> Path:
    """The billion-laughs shape: each level a list of ten aliases of the level below."""
    names = [chr(ord("a") + i) for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [" + ", ".join(["lol"] * 10) + "]"]
    for below, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{below}"] * 10) + "]")
    main = folder / "factory.yaml"
    main.write_text(FACTORY_MAIN + "bomb:\n  " + "\n  ".join(lines) + "\n")
    return main


def run_case(kind: str, amount: float) -> dict[str, object]:
    """In this (child) process: write the case, load it, and measure."""
    from updraft.errors import ConfigError
    from updraft.factory.config import load_factory_config

    resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_SPACE, _ADDRESS_SPACE))
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        if kind == "bomb":
            main, detail = write_bomb(folder, int(amount)), f"{int(amount)} levels"
        else:
            main, count = write_large(folder, amount)
            detail = f"{amount:g} MB drop-in, {count} entries"
        size = sum(p.stat().st_size for p in folder.rglob("*.yaml"))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        try:
            loaded = load_factory_config(main, on_warning=lambda _: None)
            outcome = f"loaded {len(loaded.config.entries)} entries, {len(loaded.warnings)} warnings"
        except ConfigError as err:
            outcome = "refused: " + str(err).splitlines()[0][:120]
        except MemoryError:
            outcome = "MemoryError (over the 4 GiB cap)"
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "case": f"{kind} ({detail}, {size} bytes)",
        "seconds": round(seconds, 2),
        "peak_mib": round(peak / 1024, 1),
        "grew_mib": round((peak - before) / 1024, 1),
        "outcome": outcome,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="*", default=[1.0, 10.0], help="drop-in sizes in MB")
    parser.add_argument("--bomb-levels", type=int, default=7)
    parser.add_argument("--case", nargs=2, metavar=("KIND", "AMOUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], float(args.case[1]))))
        return
    cases = [("large", size) for size in args.sizes] + [("bomb", float(args.bomb_levels))]
    for kind, amount in cases:
        done = subprocess.run(
            [sys.executable, "-m", "bench.config_load", "--case", kind, str(amount)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(f"{kind} {amount:g}: the child failed ({done.returncode}): {done.stderr.strip()[-300:]}")
            continue
        row = json.loads(done.stdout)
        print(
            f"{row['case']}: {row['seconds']} s, peak {row['peak_mib']} MiB "
            f"(+{row['grew_mib']} MiB while loading): {row['outcome']}"
        )


if __name__ == "__main__":
    main()
