"""The soak's judgement of one sample and its verdict, without a lab (bench/soak.py runs them on one)."""

from __future__ import annotations

from collections import Counter

from bench.soak import ENTRY_LIMITS, Figures, judge


def test_a_sample_within_every_cap_is_no_breach_and_counts_as_binding() -> None:
    figures = Figures(published_max={"site1": 2, "site2": 4})
    judge(figures, "1 s", Counter(site1=2, site2=3), Counter(site1=1, site2=3))
    assert (figures.over_entry_limit, figures.over_published_max, figures.doubled) == ([], [], [])
    assert figures.samples_at_a_cap == 1
    assert figures.most_live == Counter(site1=2, site2=3)


def test_each_kind_of_breach_is_kept_with_the_entry_and_the_figures() -> None:
    figures = Figures(published_max={"site1": 5, "site2": 4})
    cap = ENTRY_LIMITS["site1"]["max_pilots"]
    judge(
        figures, "7 s", Counter(site1=cap + 1, site2=5, other=1), Counter(site2=ENTRY_LIMITS["site2"]["max_idle"] + 1)
    )
    assert figures.over_entry_limit == [
        f"7 s: site1 {cap + 1} live, max_pilots {cap}",
        "7 s: other 1 live, max_pilots 0",
    ]
    assert figures.over_published_max == [
        "7 s: site2 5 live, frontend allowed 4",
        "7 s: other 1 live, frontend allowed 0",
    ]
    assert figures.doubled == ["7 s: site2 4 idle, max_idle 3"]
    assert len(figures.failures()) == 4  # three breaches, and no final checks


def test_the_final_checks_fail_on_lost_accounting_or_unfinished_jobs() -> None:
    figures = Figures(jobs_queued=10, jobs_completed=10, pilots_left_queue=5, pilots_accounted=5)
    assert figures.failures() == []
    figures.pilots_accounted = 4
    figures.jobs_completed = 9
    assert figures.failures() == [
        "5 pilots left the queue, the factory's totals count 4",
        "9 of 10 jobs completed",
    ]
