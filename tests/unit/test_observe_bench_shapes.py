"""The observe benchmark's workload, without a lab (bench/frontend_observe_lab.py queues it on one)."""

from __future__ import annotations

import classad2

from bench.frontend_observe_lab import MAX_SHAPES, SITES, description, shape


def test_the_default_thousand_shapes_are_distinct_in_what_the_lab_frontend_groups_on() -> None:
    ads = [description(index) for index in range(1_000)]
    keys = {(ad["request_cpus"], ad["request_memory"], ad["+DESIRED_Sites"]) for ad in ads}
    assert MAX_SHAPES >= 1_000
    assert len(keys) == 1_000


def test_every_shape_asks_for_lab_sites_and_is_marked_as_the_benchmarks() -> None:
    for index in (0, 1, 39, 40, MAX_SHAPES - 1):
        ad = description(index)
        sites = classad2.ExprTree(ad["+DESIRED_Sites"]).eval()
        assert isinstance(sites, str)
        assert set(sites.split(",")) <= set(SITES)
        assert sites.split(",")[0]
        assert ad["+UpdraftObserveBench"] == "true"
        assert (int(ad["request_cpus"]), int(ad["request_memory"]), sites) == shape(index)
