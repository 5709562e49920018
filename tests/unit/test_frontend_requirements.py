"""Matching on what a pilot will really offer: jobs' own Requirements, pilot_start, merged shapes, the index.

Table tests name the cases operators met; property tests (hypothesis) check
the promises matching makes for any input: a shape whose Requirements are
false on an entry's prospective slot never gets demand there; merging
identical shapes of several schedds never changes a plan; an index the
expression does not imply is never used, and one it implies never changes
a plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import classad2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from updraft.condor import Expression
from updraft.frontend.config import Group
from updraft.frontend.matching import GroupMatch, group_rules, match, merge_shapes, plan_index
from updraft.frontend.model import EntryAd, JobShape, PilotSlot, SlotKind, SlotState, shape_key
from updraft.frontend.prospective import prospective_slot, prospective_slots
from updraft.frontend.terms import compile_conjunction, split_conjuncts
from updraft.frontend.whynot import entry_verdict

SITE = "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)"
INDEX = {"job_attr": "DESIRED_Sites", "entry_attr": "GLIDEIN_Site"}
DEFAULT_REQUIREMENTS = (
    '(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk)'
    " && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)"
)
SHARED_FS = (
    '(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk)'
    " && (TARGET.Memory >= RequestMemory) && (TARGET.FileSystemDomain == MY.FileSystemDomain)"
)


def group(**fields: Any) -> Group:
    return Group.model_validate({"match_expr": SITE, "match_index": INDEX, **fields})


def entry(name: str, site: str, memory: int | None = 2048, cpus: int = 2, **slot: Any) -> EntryAd:
    attrs: dict[str, Any] = {"GLIDEIN_Site": site, "UpdraftSlot_Cpus": cpus, "UpdraftSlot_FileSystemDomain": name}
    if memory is not None:
        attrs["UpdraftSlot_Memory"] = memory
    attrs.update({f"UpdraftSlot_{key}": value for key, value in slot.items()})
    return EntryAd(name=name, factory="f", attrs=attrs, cpus_per_pilot=cpus)


def job(
    idle: int, sites: str, memory: int = 1000, requirements: str | None = DEFAULT_REQUIREMENTS, **attrs: Any
) -> JobShape:
    schedd = attrs.pop("schedd", "s1")
    values: dict[str, Any] = {"DESIRED_Sites": sites, "RequestMemory": memory, "RequestCpus": 1, **attrs}
    if requirements is not None:
        values["Requirements"] = Expression(requirements)
    values.setdefault("RequestDisk", 1000)
    values.setdefault("FileSystemDomain", "submit.example")
    return JobShape("main", schedd, values, idle=idle, cpus=1, memory_mb=memory)


def demand(result: GroupMatch) -> dict[str, float]:
    return {key: d.idle_jobs for key, d in result.demands.items()}


ENTRIES = (entry("a", "A"), entry("b", "B", memory=8192))


@pytest.mark.parametrize(
    ("case", "shape", "expected", "unrunnable"),
    [
        ("fits both", job(4, "A,B"), {"a@f": 2, "b@f": 2}, 0),
        ("4 TB fits no pilot: no demand at all", job(3, "A,B", memory=4_000_000), {}, 3),
        ("8 GB only fits the bigger entry's pilots", job(4, "A,B", memory=6000), {"b@f": 4}, 0),
        ("the submit host's filesystem: no grid pilot has it", job(20, "A,B", requirements=SHARED_FS), {}, 20),
        (
            "an attribute no entry describes is unknown, never a refusal",
            job(2, "A", requirements="TARGET.HAS_CVMFS =?= true && TARGET.Memory >= RequestMemory"),
            {"a@f": 2},
            0,
        ),
        (
            "no Requirements projected: match_expr alone",
            job(2, "A", memory=4_000_000, requirements=None),
            {"a@f": 2},
            0,
        ),
        ("literal false never runs", job(2, "A", requirements="false"), {}, 2),
        (
            "a top-level || is judged whole",
            job(2, "A", memory=4_000_000, requirements="TARGET.Memory >= RequestMemory || TARGET.Cpus > 1"),
            {"a@f": 2},
            0,
        ),
    ],
)
def test_a_job_gets_pilots_only_where_its_own_requirements_can_hold(
    case: str, shape: JobShape, expected: Mapping[str, float], unrunnable: int
) -> None:
    result = match([shape], ENTRIES, "main", group())
    assert demand(result) == pytest.approx(expected), case
    assert result.unrunnable == unrunnable
    assert result.unmatched == (shape.idle if not expected else 0)


def test_the_group_can_go_back_to_match_expr_alone() -> None:
    result = match([job(3, "A,B", memory=4_000_000)], ENTRIES, "main", group(match_job_requirements=False))
    assert demand(result) == pytest.approx({"a@f": 1.5, "b@f": 1.5})


def test_pilot_start_is_judged_with_the_slot_as_my_and_the_job_as_target() -> None:
    start = 'TARGET.Owner == "alice" && MY.Memory >= TARGET.RequestMemory'
    alice, bob = job(2, "A", Owner="alice"), job(3, "A", Owner="bob")
    result = match([alice, bob], ENTRIES, "main", group(pilot_start=start))
    assert demand(result) == pytest.approx({"a@f": 2})
    assert result.unrunnable == 3


def test_a_live_slot_beats_the_entry_description() -> None:
    """The site's nodes advertise 1 GB although the factory says 2 GB: the live slot decides."""
    live = PilotSlot(
        entry="a",
        factory="f",
        group="main",
        state=SlotState.RUNNING,
        cpus=0,
        memory_mb=0,
        pilot="p1",
        kind=SlotKind.PARTITIONABLE,
        total_cpus=2,
        machine=(("Memory", 0), ("TotalSlotMemory", 1024), ("Cpus", 0), ("TotalSlotCpus", 2), ("Arch", "X86_64")),
    )
    slots = prospective_slots(ENTRIES, [live])
    assert slots["a@f"]["Memory"] == 1024 and slots["a@f"]["Cpus"] == 2 and slots["a@f"]["Arch"] == "X86_64"
    result = match([job(4, "A", memory=1500)], ENTRIES, "main", group(), slots=slots)
    assert demand(result) == {}
    assert prospective_slot(ENTRIES[0]) == {"Cpus": 2, "FileSystemDomain": "a", "Memory": 2048}


@st.composite
def live_slots(draw: st.DrawFn) -> PilotSlot:
    """A slot of entry a or b: any kind, with or without machine attributes (these say which slot it is)."""
    cpus, memory = draw(st.integers(1, 4)), draw(st.sampled_from((512, 1024, 4096)))
    pilot = draw(st.sampled_from("pqr"))
    kind = draw(st.sampled_from(SlotKind))
    machine = (("Cpus", cpus), ("Memory", memory), ("Name", pilot), ("Kind", kind.name))
    return PilotSlot(
        entry=draw(st.sampled_from("ab")),
        factory="f",
        group="main",
        state=SlotState.RUNNING,
        cpus=cpus,
        memory_mb=memory,
        pilot=pilot,
        kind=kind,
        machine=machine if draw(st.booleans()) else (),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(live_slots(), max_size=12))
def test_decide_and_explain_choose_the_same_live_slot(slots: list[PilotSlot]) -> None:
    """Decide reads every entry's slot in one pass, explain one entry's: both pick the largest whole slot
    with machine attributes (dynamic slots are parts of others), else the entry's description."""
    every = prospective_slots(ENTRIES, slots)
    for entry_ in ENTRIES:
        own = [slot for slot in slots if slot.entry == entry_.name]
        assert every[entry_.key] == prospective_slot(entry_, own)
        whole = [s for s in own if s.kind is not SlotKind.DYNAMIC and s.machine]
        if whole:
            largest = max(whole, key=lambda s: (s.cores, s.memory_mb, s.pilot))
            assert every[entry_.key]["Name"] == largest.pilot
            assert every[entry_.key]["Memory"] == largest.memory_mb
        else:
            assert every[entry_.key] == prospective_slot(entry_)


def test_explain_names_the_false_term_with_its_values() -> None:
    memory = entry_verdict(job(3, "A", memory=4_000_000), ENTRIES[0], group())
    assert memory.reason == (
        "the job's Requirements on the entry's pilots: TARGET.Memory >= RequestMemory: 2048 >= 4000000 is false"
    )
    shared = entry_verdict(job(3, "A", requirements=SHARED_FS), ENTRIES[0], group())
    assert shared.reason == (
        "the job's Requirements on the entry's pilots: "
        "TARGET.FileSystemDomain == MY.FileSystemDomain: 'a' vs 'submit.example'"
    )
    assert entry_verdict(job(3, "A"), ENTRIES[0], group()).usable


def test_identical_shapes_of_twenty_schedds_are_matched_once() -> None:
    shapes = [job(5, "A,B", schedd=f"s{i}") for i in range(20)]
    merged = merge_shapes(shapes)
    assert len(merged) == 1 and merged[0].idle == 100
    assert merged[0].schedd == ", ".join(sorted(f"s{i}" for i in range(20)))
    result = match(shapes, ENTRIES, "main", group())
    assert result.shapes == 1 and demand(result) == pytest.approx({"a@f": 50, "b@f": 50})


@pytest.mark.parametrize(
    ("expr", "used"),
    [
        (SITE, True),
        (f"({SITE}) && TARGET.GLIDEIN_CPUS >= 1", True),
        ("TARGET.X =?= 1 && stringListIMember(TARGET.GLIDEIN_Site, DESIRED_Sites)", True),
        (f"{SITE} || TARGET.Opportunistic", False),
        ('stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites, ",")', False),
        ("stringListMember(TARGET.GLIDEIN_ResourceName, MY.DESIRED_Sites)", False),
        (f"{SITE} ? true : false", False),
    ],
)
def test_the_index_is_used_only_where_the_expression_implies_it(expr: str, used: bool) -> None:
    index, problem = plan_index(compile_conjunction(expr), group().match_index)
    assert (index is not None) is used
    assert (problem is None) is used


def test_split_respects_precedence_and_literals() -> None:
    assert split_conjuncts('a && (b || c) && d == "x && y"') == ("a", "(b || c)", 'd == "x && y"')
    assert split_conjuncts("a && b || c") == ("a && b || c",)
    assert split_conjuncts("a =?= b && c =!= d") == ("a =?= b", "c =!= d")


# ---------------------------------------------------------------- properties

SITES = ("A", "B", "C", "D")
sites = st.lists(st.sampled_from(SITES), min_size=0, max_size=3, unique=True).map(",".join)
memories = st.sampled_from((512, 1024, 2048, 4096, 4_000_000))
requirements = st.sampled_from(
    (
        None,
        "TARGET.Memory >= RequestMemory",
        DEFAULT_REQUIREMENTS,
        SHARED_FS,
        "TARGET.Memory >= RequestMemory || TARGET.Cpus >= 4",
        "TARGET.Nothing =?= undefined && TARGET.Cpus >= 2",
    )
)


@st.composite
def shapes(draw: st.DrawFn) -> JobShape:
    return job(
        draw(st.integers(0, 40)),
        draw(sites),
        memory=draw(memories),
        requirements=draw(requirements),
        schedd=draw(st.sampled_from(("s1", "s2", "s3"))),
    )


@st.composite
def entry_lists(draw: st.DrawFn) -> list[EntryAd]:
    count = draw(st.integers(1, 6))
    return [
        entry(
            f"e{i}",
            draw(st.sampled_from(SITES)),
            memory=draw(st.sampled_from((None, 1024, 2048, 8192))),
            cpus=draw(st.sampled_from((1, 2, 4))),
            Arch="X86_64",
            OpSys="LINUX",
            HasFileTransfer=True,
            Disk=10**8,
        )
        for i in range(count)
    ]


def _requirements_hold(shape: JobShape, slot: Mapping[str, Any]) -> bool | None:
    """What the negotiator would say on this slot, when every attribute is known: None when not."""
    text = shape.attrs.get("Requirements")
    if text is None:
        return True
    job_ad = classad2.ClassAd({k: v for k, v in shape.attrs.items() if k != "Requirements"})
    value = classad2.ExprTree(text.text).eval(job_ad, classad2.ClassAd(dict(slot)))
    return value is True


@settings(max_examples=150, deadline=None)
@given(st.lists(shapes(), max_size=8), entry_lists())
def test_a_shape_whose_requirements_are_false_on_the_prospective_slot_never_gets_demand(
    shapes_: list[JobShape], entries: list[EntryAd]
) -> None:
    slots = prospective_slots(entries, ())
    result = match(shapes_, entries, "main", group())
    for key, found in result.demands.items():
        slot = slots[key]
        complete = all(name in slot for name in ("Memory", "Cpus", "Arch", "OpSys", "HasFileTransfer", "Disk"))
        placed = result.placed.get(key, frozenset())
        for shape in merge_shapes(shapes_):
            if complete and shape.idle and _requirements_hold(shape, slot) is False:
                assert shape_key(shape) not in placed, (key, shape)
        assert found.idle_jobs >= 0


@settings(max_examples=150, deadline=None)
@given(st.lists(shapes(), max_size=10), entry_lists())
def test_merged_shapes_give_the_plan_per_schedd_shapes_give(shapes_: list[JobShape], entries: list[EntryAd]) -> None:
    """Matching each schedd's shapes alone and adding up gives what matching them merged gives."""
    merged = match(shapes_, entries, "main", group())
    by_schedd: dict[str, list[JobShape]] = {}
    for shape in shapes_:
        by_schedd.setdefault(shape.schedd, []).append(shape)
    summed: dict[str, float] = {}
    unmatched = 0
    for mine in by_schedd.values():
        alone = match(mine, entries, "main", group())
        unmatched += alone.unmatched
        for key, found in alone.demands.items():
            summed[key] = summed.get(key, 0.0) + found.idle_jobs
    assert merged.unmatched == unmatched
    assert {k: v for k, v in demand(merged).items() if v} == pytest.approx({k: v for k, v in summed.items() if v})


@settings(max_examples=150, deadline=None)
@given(
    st.lists(shapes(), max_size=8),
    entry_lists(),
    st.sampled_from(
        (
            SITE,
            f"{SITE} && TARGET.GLIDEIN_CPUS =?= undefined",
            f'{SITE} || TARGET.GLIDEIN_Site == "C"',
            'TARGET.GLIDEIN_Site == "A" || stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)',
            "true",
        )
    ),
)
def test_the_index_never_changes_a_plan(shapes_: list[JobShape], entries: list[EntryAd], expr: str) -> None:
    """With the index configured or not, the plan is the same: implied, it only skips entries the
    expression refuses; not implied, it is not used."""
    with_index = match(shapes_, entries, "main", group(match_expr=expr))
    without = match(shapes_, entries, "main", Group.model_validate({"match_expr": expr}))
    assert demand(with_index) == pytest.approx(demand(without))
    assert (with_index.unmatched, with_index.unrunnable) == (without.unmatched, without.unrunnable)
    rules = group_rules(group(match_expr=expr))
    assert (rules.index is not None) == (expr.startswith(SITE) and "||" not in expr)
