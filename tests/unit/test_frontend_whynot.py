"""Why idle jobs get no pilots: each entry's first failed test, and agreement with matching."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft.frontend.config import FrontendConfig
from updraft.frontend.matching import match
from updraft.frontend.whynot import conjuncts, describe, entry_verdict, refused_shapes

from .test_frontend_matching import MEMORY_EXPR, SITE_EXPR, SITE_INDEX, entry, shape

LAB_EXPR = f"{SITE_EXPR} && {MEMORY_EXPR}"


def config(match_expr: str = LAB_EXPR, index=SITE_INDEX) -> FrontendConfig:
    raw: dict[str, object] = {"match_expr": match_expr}
    if index:
        raw["match_index"] = dict(index)
    return FrontendConfig.model_validate(
        {
            "name": "vo",
            "vo_collector": "127.0.0.1:29618",
            "wms_collector": "127.0.0.1:29619",
            "factories": {"f": {"identity": "u@lab"}},
            "groups": {"main": raw},
        }
    )


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("a && b", ("a", "b")),
        ("(a && b) || c", ("(a && b) || c",)),
        ('stringListMember("x&&y", z) && q', ('stringListMember("x&&y", z)', "q")),
        ("f(a && b, c) && d && e", ("f(a && b, c)", "d", "e")),
        ("'it''s' && x", ("'it''s'", "x")),
        ("true", ("true",)),
    ],
)
def test_conjuncts_split_only_at_top_level_outside_strings(text, terms) -> None:
    assert conjuncts(text) == terms


@pytest.mark.parametrize(
    ("the_shape", "the_entry", "reason"),
    [
        (
            shape(sites="Site2"),
            entry("e1", site="Site1"),
            "the job's DESIRED_Sites lists Site2; the entry's GLIDEIN_Site is 'Site1'",
        ),
        (
            shape(sites="Site1", cpus=4),
            entry("e1", site="Site1", cpus=2),
            "the job asks 4 cpus; the entry's pilots have 2 per node",
        ),
        (
            shape(sites="Site1", memory=4000),
            entry("e1", site="Site1", memory=2000),
            f"match_expr term `{MEMORY_EXPR}` is false",
        ),
        (
            shape(sites="Site1"),
            entry("e1", site="Site1", attrs={"GLIDEIN_MaxMemMBs": None}),
            f"match_expr term `{MEMORY_EXPR}` is undefined",
        ),
        (shape(sites="Site1"), entry("e1", site="Site1", in_downtime=True), "matches, but the entry is in downtime"),
        (shape(sites="Site1"), entry("e1", site="Site1"), "usable"),
    ],
)
def test_each_entry_names_the_first_test_it_fails(the_shape, the_entry, reason) -> None:
    verdict = entry_verdict(the_shape, the_entry, config().groups["main"])
    assert verdict.reason == reason
    assert verdict.usable == (reason == "usable")


def test_a_site_list_that_skips_the_index_still_gets_the_expression_reason() -> None:
    """Without a match index the site test is only in match_expr; the term is named."""
    verdict = entry_verdict(shape(sites="Site2"), entry("e1", site="Site1"), config(index=None).groups["main"])
    assert verdict.reason == f"match_expr term `{SITE_EXPR}` is false"


def test_refused_shapes_lists_only_idle_shapes_no_live_entry_takes() -> None:
    shapes = [
        shape(idle=5, sites="Site1"),
        shape(idle=4, sites="Site1", cpus=4),
        shape(idle=0, sites="Nowhere"),
        shape(idle=2, sites="Site3"),
    ]
    entries = [
        entry("e2", site="Site2", cpus=2),
        entry("e1", site="Site1", cpus=2),
        entry("e3", site="Site3", in_downtime=True),
    ]
    refused = refused_shapes(shapes, entries, config())
    assert [(v.shape.idle, v.only_downtime) for v in refused] == [(4, False), (2, True)]
    assert [v.entry for v in refused[0].verdicts] == ["e1@f", "e2@f", "e3@f"]
    text = describe(refused[0])
    assert text.splitlines()[0] == "group main: 4 idle job(s) on s1 match no entry"
    assert "RequestCpus = 4" in text
    assert "e1@f: the job asks 4 cpus; the entry's pilots have 2 per node" in text
    assert "match only entries in downtime" in describe(refused[1])


def test_no_entries_at_all_says_so() -> None:
    refused = refused_shapes([shape(idle=3, sites="Site1")], [], config())
    assert "no entry is advertised to this frontend" in describe(refused[0])


SITES = st.sampled_from(["Site1", "Site2", "Site3"])


@settings(max_examples=150, deadline=None)
@given(
    shapes=st.lists(
        st.builds(
            lambda idle, sites, cpus, memory: shape(idle=idle, sites=",".join(sites), cpus=cpus, memory=memory),
            st.integers(1, 5),
            st.lists(SITES, max_size=2),
            st.integers(1, 4),
            st.sampled_from([500, 1500, 3000]),
        ),
        min_size=1,
        max_size=6,
    ),
    entries=st.lists(
        st.builds(
            lambda n, site, cpus, memory, down: entry(f"e{n}", site=site, cpus=cpus, memory=memory, in_downtime=down),
            st.integers(0, 9),
            SITES,
            st.integers(1, 4),
            st.sampled_from([1000, 2000, 4000]),
            st.booleans(),
        ),
        max_size=5,
        unique_by=lambda e: e.name,
    ),
    with_index=st.booleans(),
)
def test_refused_jobs_are_exactly_what_matching_leaves_unplaced_or_in_downtime(shapes, entries, with_index) -> None:
    """Two implementations of the same tests: they must agree on every job."""
    cfg = config(index=SITE_INDEX if with_index else None)
    result = match(shapes, entries, "main", cfg.groups["main"])
    refused = refused_shapes(shapes, entries, cfg)
    assert sum(v.shape.idle for v in refused if not v.only_downtime) == result.unmatched
    assert sum(v.shape.idle for v in refused if v.only_downtime) == result.in_downtime
