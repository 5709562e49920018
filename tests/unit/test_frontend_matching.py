"""Matching job shapes to factory entries: ClassAd truth, splits, pilot-equivalents, classes, index."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from updraft.frontend.config import FrontendConfig, Group
from updraft.frontend.matching import GroupMatch, index_tokens, job_attrs, match
from updraft.frontend.model import EntryAd, JobShape
from updraft.frontend.terms import compile_conjunction

SITE_EXPR = "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)"
MEMORY_EXPR = "MY.RequestMemory <= TARGET.GLIDEIN_MaxMemMBs"
SITE_INDEX = {"job_attr": "DESIRED_Sites", "entry_attr": "GLIDEIN_Site"}


def group(match_expr: str = "true", match_index: Mapping[str, str] | None = None) -> Group:
    raw: dict[str, Any] = {"match_expr": match_expr}
    if match_index:
        raw["match_index"] = dict(match_index)
    config = FrontendConfig.model_validate(
        {
            "name": "vo",
            "vo_collector": "127.0.0.1:29618",
            "wms_collector": "127.0.0.1:29619",
            "factories": {"f": {"identity": "u@lab"}},
            "groups": {"main": raw},
        }
    )
    return config.groups["main"]


def entry(name: str, site: str | None = None, cpus: int = 1, memory: int = 2000, **kw: Any) -> EntryAd:
    attrs: dict[str, Any] = {"GLIDEIN_MaxMemMBs": memory, "Bookkeeping": name}
    if site is not None:
        attrs["GLIDEIN_Site"] = site
    attrs.update(kw.pop("attrs", {}))
    return EntryAd(name=name, factory="f", attrs=attrs, cpus_per_pilot=cpus, **kw)


def shape(idle: int = 10, sites: str | None = None, cpus: int = 1, memory: int = 1000, **kw: Any) -> JobShape:
    attrs: dict[str, Any] = dict(kw.pop("attrs", {}))
    if sites is not None:
        attrs["DESIRED_Sites"] = sites
    schedd = kw.pop("schedd", "s1")
    return JobShape(group="main", schedd=schedd, attrs=attrs, idle=idle, cpus=cpus, memory_mb=memory, **kw)


@dataclass(frozen=True)
class Case:
    id: str
    shapes: tuple[JobShape, ...]
    entries: tuple[EntryAd, ...]
    expr: str = "true"
    index: Mapping[str, str] | None = None
    idle: Mapping[str, float] = field(default_factory=dict)
    """Expected idle jobs per entry key; entries not listed must have no demand."""
    pilots: Mapping[str, float] = field(default_factory=dict)
    unmatched: int = 0
    in_downtime: int = 0
    too_big: int = 0
    evaluations: int | None = None


CASES = [
    Case("single match", (shape(10),), (entry("e1"),), idle={"e1@f": 10}, pilots={"e1@f": 10}, evaluations=1),
    Case(
        "split across two",
        (shape(10, "A,B"),),
        (entry("a", "A"), entry("b", "B"), entry("c", "C")),
        expr=SITE_EXPR,
        idle={"a@f": 5, "b@f": 5},
        pilots={"a@f": 5, "b@f": 5},
    ),
    Case(
        "split across three, equal shares",
        (shape(9, "A,B,C"),),
        (entry("a", "A"), entry("b", "B"), entry("c", "C")),
        expr=SITE_EXPR,
        idle={"a@f": 3, "b@f": 3, "c@f": 3},
    ),
    Case(
        "4-core jobs on 8-core pilots = half a pilot each",
        (shape(10, cpus=4),),
        (entry("e", cpus=8),),
        idle={"e@f": 10},
        pilots={"e@f": 5},
    ),
    Case("1-core jobs on 8-core pilots", (shape(16),), (entry("e", cpus=8),), idle={"e@f": 16}, pilots={"e@f": 2}),
    Case("job too big for the entry", (shape(7, cpus=8),), (entry("e", cpus=4),), unmatched=7, too_big=7),
    Case(
        "too big for one entry, fits another",
        (shape(6, cpus=8),),
        (entry("small", cpus=4), entry("big", cpus=8)),
        idle={"big@f": 6},
        pilots={"big@f": 6},
    ),
    Case("undefined attribute is no match", (shape(5),), (entry("e"),), expr="TARGET.Missing == 1", unmatched=5),
    Case("error is no match", (shape(5),), (entry("e"),), expr="stringListMember(1, undefined, 2, 3)", unmatched=5),
    Case("a string is no match", (shape(5),), (entry("e"),), expr='"yes"', unmatched=5),
    Case("a number is no match", (shape(5),), (entry("e"),), expr="1", unmatched=5),
    Case("false is no match", (shape(5),), (entry("e"),), expr="false", unmatched=5),
    Case(
        "memory from the shape fills RequestMemory",
        (shape(4, memory=3000), shape(2, memory=1000)),
        (entry("small", memory=2000), entry("big", memory=4000)),
        expr=MEMORY_EXPR,
        idle={"small@f": 1, "big@f": 5},
    ),
    Case(
        "downtime entries matched but reported",
        (shape(8, "A"),),
        (entry("a", "A", in_downtime=True), entry("b", "B")),
        expr=SITE_EXPR,
        idle={"a@f": 8},
        in_downtime=8,
    ),
    Case(
        "live entries take all jobs when some are in downtime",
        (shape(8, "A,B"),),
        (entry("a", "A", in_downtime=True), entry("b", "B")),
        expr=SITE_EXPR,
        idle={"b@f": 8},
    ),
    Case(
        "index: only listed sites are evaluated, and the implied term is not",
        (shape(6, "A"),),
        (entry("a", "A"), entry("b", "B"), entry("c", "C")),
        expr=f"{SITE_EXPR} && {MEMORY_EXPR}",
        index=SITE_INDEX,
        idle={"a@f": 6},
        evaluations=1,
    ),
    Case(
        "without the index every entry is evaluated",
        (shape(6, "A"),),
        (entry("a", "A"), entry("b", "B"), entry("c", "C")),
        expr=SITE_EXPR,
        idle={"a@f": 6},
        evaluations=3,
    ),
    Case(
        "index: blanks around listed values",
        (shape(6, " A , C "),),
        (entry("a", "A"), entry("b", "B"), entry("c", "C")),
        expr=SITE_EXPR,
        index=SITE_INDEX,
        idle={"a@f": 3, "c@f": 3},
        evaluations=0,
    ),
    Case(
        "index not implied by the expression: every entry is compared",
        (shape(6, "A"),),
        (entry("a", "A"), entry("b", "B"), entry("c", "C")),
        expr=f'{SITE_EXPR} || TARGET.GLIDEIN_Site == "C"',
        index=SITE_INDEX,
        idle={"a@f": 3, "c@f": 3},
        evaluations=3,
    ),
    Case(
        "index: shape without the attribute sees every entry",
        (shape(6, memory=1000),),
        (entry("a", "A"), entry("b", "B", memory=500), entry("c", "C", memory=3000)),
        expr=MEMORY_EXPR,
        index=SITE_INDEX,
        idle={"a@f": 3, "c@f": 3},
        evaluations=3,
    ),
    Case(
        "index: a shape without the attribute is judged by the expression alone",
        (shape(4, "A"), shape(6)),
        (entry("a", "A"), entry("nosite")),
        expr=SITE_EXPR,
        index=SITE_INDEX,
        idle={"a@f": 4},
        unmatched=6,
    ),
    Case(
        "index: listed site nobody advertises",
        (shape(4, "Z"),),
        (entry("a", "A"),),
        expr=SITE_EXPR,
        index=SITE_INDEX,
        unmatched=4,
        evaluations=0,
    ),
    Case(
        "entry classes share one evaluation",
        (shape(8, "A"),),
        tuple(entry(f"a{i}", "A") for i in range(4)),
        expr=SITE_EXPR,
        idle={f"a{i}@f": 2 for i in range(4)},
        evaluations=1,
    ),
    Case(
        "cpus per pilot splits candidates, not evaluations",
        (shape(8, "A"),),
        (entry("a1", "A"), entry("a2", "A"), entry("a8", "A", cpus=8)),
        expr=SITE_EXPR,
        idle={"a1@f": 8 / 3, "a2@f": 8 / 3, "a8@f": 8 / 3},
        evaluations=1,
    ),
    Case(
        "shape classes share across schedds",
        (shape(3, "A", schedd="s1"), shape(5, "A", schedd="s2"), shape(1, "A,B", schedd="s3")),
        (entry("a", "A"), entry("b", "B")),
        expr=SITE_EXPR,
        idle={"a@f": 8.5, "b@f": 0.5},
        evaluations=4,
    ),
    Case(
        "attribute names are case-insensitive and still split classes",
        (shape(6, attrs={"desired_sites": "B"}),),
        (entry("a", "A"), entry("b", "B")),
        expr="stringListMember(target.glidein_site, my.DESIRED_SITES)",
        idle={"b@f": 6},
        evaluations=2,
    ),
    Case(
        "unqualified names resolve on the entry side too",
        (shape(6),),
        (entry("a", "A"), entry("b", "B")),
        expr='GLIDEIN_Site == "B"',
        idle={"b@f": 6},
        evaluations=2,
    ),
]


def run(case: Case) -> GroupMatch:
    return match(case.shapes, case.entries, "main", group(case.expr, case.index))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_match_table(case: Case) -> None:
    result = run(case)
    assert set(result.demands) == set(case.idle)
    for key, idle in case.idle.items():
        assert result.demands[key].idle_jobs == pytest.approx(idle)
    for key, pilots in case.pilots.items():
        assert result.demands[key].idle_pilots_needed == pytest.approx(pilots)
    assert (result.unmatched, result.in_downtime, result.too_big) == (case.unmatched, case.in_downtime, case.too_big)
    if case.evaluations is not None:
        assert result.evaluations == case.evaluations


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_idle_job_is_accounted_for_once(case: Case) -> None:
    """The split is exact: matched shares + unmatched add up to the queue."""
    result = run(case)
    spread = sum(d.idle_jobs for d in result.demands.values())
    assert spread + result.unmatched == pytest.approx(sum(s.idle for s in case.shapes))


def test_old_idle_and_running_are_split_and_converted() -> None:
    job = JobShape("main", "s1", {"DESIRED_Sites": "A,B"}, idle=10, old_idle=4, running=6, cpus=4, memory_mb=100)
    result = match([job], [entry("a", "A", cpus=8), entry("b", "B", cpus=4)], "main", group(SITE_EXPR))
    a, b = result.demands["a@f"], result.demands["b@f"]
    assert (a.old_idle_jobs, a.running_jobs, a.old_idle_pilots) == (2, 3, 1)
    assert (b.old_idle_jobs, b.running_jobs, b.old_idle_pilots) == (2, 3, 2)
    assert a.requirements == frozenset({(4, 100)}) and a.shapes == 1


def test_a_multi_node_pilot_counts_all_its_nodes_cores_but_a_job_must_fit_one_node() -> None:
    job = JobShape("main", "s1", {}, idle=16, cpus=4, memory_mb=100)
    big = JobShape("main", "s1", {"big": 1}, idle=1, cpus=16, memory_mb=100)
    result = match([job, big], [entry("hpc", cpus=8, nodes_per_pilot=4)], "main", group())
    # 16 jobs x 4 cores = 64 cores = 2 pilots of 4 nodes x 8 cores; the 16-core job fits no node.
    assert result.demands["hpc@f"].idle_pilots_needed == 2
    assert result.unmatched == 1


def test_requirements_only_from_shapes_with_idle_jobs() -> None:
    busy_only = JobShape("main", "s1", {"x": 1}, idle=0, running=5, cpus=8, memory_mb=9000)
    waiting = JobShape("main", "s1", {"x": 2}, idle=3, cpus=1, memory_mb=500)
    result = match([busy_only, waiting], [entry("e", cpus=8)], "main", group())
    assert result.demands["e@f"].requirements == frozenset({(1, 500)})
    assert result.demands["e@f"].shapes == 2


def test_eval_in_expression_disables_sharing() -> None:
    """eval() can read attributes no static scan sees, so equal-looking entries may differ."""
    entries = [entry("a", attrs={"Pick": "X"}), entry("b", attrs={"Pick": "Y"})]
    expr = 'eval(strcat("TARGET.", "Pick")) == "Y"'
    result = match([shape(4)], entries, "main", group(expr))
    assert set(result.demands) == {"b@f"}
    assert result.evaluations == 2


@pytest.mark.parametrize(
    ("expr", "my", "target"),
    [
        (SITE_EXPR, ("desired_sites",), ("desired_sites", "glidein_site")),
        # classad2 reports MY.B as plain B, so it counts for both sides (harmless: entries lack B)
        ("TARGET.A == MY.B", ("b",), ("a", "b")),
        ("Foo", ("foo",), ("foo",)),
        ("TARGET.Ad.Inner == 1", (), ("ad",)),
    ],
)
def test_rule_references(expr: str, my: tuple[str, ...], target: tuple[str, ...]) -> None:
    rule = compile_conjunction(expr)
    assert (rule.my_names, rule.target_names) == (my, target)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("A,B", ("A", "B")),
        (" A , ,B,A", ("A", "B")),
        ("A B\tC", ("A", "B", "C")),  # stringListMember also splits at whitespace
        ("", ()),
        (["A", "B"], None),  # not a string: stringListMember says nothing, so neither does the index
        (7, None),
        (None, None),
    ],
)
def test_index_tokens(value: Any, expected: tuple[str, ...] | None) -> None:
    assert index_tokens(value) == expected


def test_job_attrs_keep_what_the_schedd_projected() -> None:
    projected = JobShape("main", "s1", {"requestmemory": 5}, cpus=2, memory_mb=100)
    assert job_attrs(projected) == {"requestmemory": 5, "RequestCpus": 2}
