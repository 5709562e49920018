"""The CI share of the crash-consistency soak (bench/soak.py): five SIGKILLs of each service.

The same code as the full soak (200 factory kills, 100 frontend kills),
run on the session's lab with a smaller count (five each, to keep the
suite within its time; the full soak is the benchmark) and the frontend
killed within two of its cycles of each restart rather than five (the
kills still land anywhere in its cycle: they only come sooner), asserting the same
invariants: no sample above an entry's max_pilots or the frontend's
published maximum, no pilot submitted twice, every pilot known to the
factory and counted once in its totals, every queued job completed.
"""

from __future__ import annotations

import time

from bench.soak import SoakOptions, run_soak
from updraft.lab.topology import Topology


def test_five_kills_of_each_service_break_no_invariant(lab: Topology) -> None:
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(f"{time.strftime('%H:%M:%S')} {line}")

    options = SoakOptions(
        factory_kills=5,
        frontend_kills=5,
        seed=15,
        batch_every_seconds=60,
        longest_job_seconds=5,
        drain_timeout=300,
        frontend_pause_cycles=2.0,
    )
    figures = run_soak(lab, options, echo)
    report = "\n".join([*lines, *figures.lines()])
    print(report)
    assert figures.factory_kills == 5 and figures.frontend_kills == 5, report
    assert figures.samples >= 10, report
    assert figures.samples_at_a_cap > 0, f"no cap ever bound, so the limits were not put to the test\n{report}"
    assert figures.pilots_submitted, f"no pilot was submitted\n{report}"
    assert figures.failures() == [], report
