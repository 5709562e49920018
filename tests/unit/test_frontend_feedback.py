"""Feedback from idle pilots: the streak arithmetic as tables, evidence, shape keys and the memory's file."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import xmlschema

from updraft.frontend import feedback
from updraft.frontend.config import FrontendConfig, IdleFeedback
from updraft.frontend.decide import decide
from updraft.frontend.explain import explain
from updraft.frontend.feedback_file import load_memory, memory_path, parse_memory, render_memory, save_memory
from updraft.frontend.matching import match
from updraft.frontend.model import (
    Decision,
    FeedbackMemory,
    JobShape,
    Observation,
    Plan,
    RefusalStreak,
    SlotState,
    SourceProblem,
    shape_key,
)
from updraft.frontend.report import snapshot_of
from updraft.monitoring import metrics
from updraft.monitoring.writers import xml_status
from updraft.protocol import RemoveMode

from .test_frontend_decide import config, entry, jobs, slots, the

T0 = 1_000_000.0
PAIR = ("e1@f", "main|x='a'")


# --------------------------------------------------------------------------
# shape_key
# --------------------------------------------------------------------------


def test_shape_key_ignores_the_schedd_and_attribute_order_and_case() -> None:
    one = JobShape("main", "schedd1", {"RequestCpus": 1, "Owner": "alice"}, idle=3)
    other = JobShape("main", "schedd2", {"owner": "alice", "requestcpus": 1}, idle=7)
    assert shape_key(one) == shape_key(other)


@pytest.mark.parametrize(
    ("attrs", "group"),
    [
        pytest.param({"RequestCpus": 2, "Owner": "alice"}, "main", id="another value"),
        pytest.param({"RequestCpus": "1", "Owner": "alice"}, "main", id="a string, not a number"),
        pytest.param({"RequestCpus": 1.0, "Owner": "alice"}, "main", id="a real, not an integer"),
        pytest.param({"RequestCpus": 1}, "main", id="an attribute fewer"),
        pytest.param({"RequestCpus": 1, "Owner": "alice"}, "other", id="another group"),
    ],
)
def test_shape_key_tells_shapes_apart(attrs: dict[str, object], group: str) -> None:
    base = JobShape("main", "s", {"RequestCpus": 1, "Owner": "alice"})
    assert shape_key(JobShape(group, "s", attrs)) != shape_key(base)


# --------------------------------------------------------------------------
# Streaks over cycles
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeline:
    id: str
    settings: IdleFeedback
    cycles: Sequence[tuple[float, bool]]
    """(seconds after T0, evidence for PAIR in that cycle)."""
    excluded: Sequence[bool]
    """Per cycle: was PAIR excluded from that cycle's matching (decided from the cycles before)."""
    remembered: bool
    """Is PAIR still in the memory after the last cycle."""


def run(timeline: Timeline) -> tuple[list[bool], FeedbackMemory]:
    memory = FeedbackMemory()
    excluded: list[bool] = []
    for offset, seen in timeline.cycles:
        now = T0 + offset
        old = feedback.by_group(memory).get("main", {})
        excluded.append(PAIR[0] in feedback.exclusions(old, timeline.settings, now))
        evidence = {PAIR} if seen else set()
        memory = feedback.bounded(feedback.advance(old, "main", timeline.settings, evidence, now))
    return excluded, memory


QUICK = IdleFeedback(cycles=3, min_seconds=0, hold_seconds=600)
EVERY_MINUTE = [(60.0 * n, True) for n in range(8)]

TIMELINES = [
    Timeline(
        "three cycles of evidence exclude from the fourth",
        QUICK,
        EVERY_MINUTE[:5],
        [False, False, False, True, True],
        True,
    ),
    Timeline(
        "a cycle without evidence breaks the streak",
        QUICK,
        [(0, True), (60, True), (120, False), (180, True), (240, True), (300, True)],
        [False, False, False, False, False, False],
        True,
    ),
    Timeline(
        "a broken streak is forgotten",
        QUICK,
        [(0, True), (60, False)],
        [False, False],
        False,
    ),
    Timeline(
        "min_seconds: three quick cycles are not enough",
        IdleFeedback(cycles=3, min_seconds=300, hold_seconds=600),
        EVERY_MINUTE,
        [False, False, False, False, False, False, True, True],
        True,
    ),
    Timeline(
        "the hold lasts hold_seconds after the last evidence, then the pair is tried again",
        QUICK,
        [(0, True), (60, True), (120, True), (180, False), (720, False), (721, False)],
        [False, False, False, True, True, False],
        False,
    ),
    Timeline(
        "evidence while excluded keeps the pair excluded",
        QUICK,
        [(0, True), (60, True), (120, True), (700, True), (1300, False), (1301, False)],
        [False, False, False, True, True, False],
        False,
    ),
    Timeline(
        "after the hold the streak starts afresh",
        QUICK,
        [(0, True), (60, True), (120, True), (800, True), (860, True), (920, True)],
        [False, False, False, False, False, False],
        True,
    ),
    Timeline(
        "disabled: never excluded, nothing remembered",
        IdleFeedback(enabled=False, cycles=1, min_seconds=0),
        EVERY_MINUTE,
        [False] * 8,
        False,
    ),
    Timeline(
        "one cycle suffices with cycles: 1",
        IdleFeedback(cycles=1, min_seconds=0, hold_seconds=0),
        [(0, True), (60, False), (61, False)],
        [False, False, False],
        False,
    ),
]


@pytest.mark.parametrize("timeline", TIMELINES, ids=lambda t: t.id)
def test_streaks(timeline: Timeline) -> None:
    excluded, memory = run(timeline)
    assert excluded == list(timeline.excluded)
    assert any((s.entry, s.shape) == PAIR for s in memory.streaks) == timeline.remembered


def test_a_streak_counts_cycles_and_its_span() -> None:
    _, memory = run(Timeline("", QUICK, EVERY_MINUTE[:4], [], True))
    [streak] = memory.streaks
    assert (streak.cycles, streak.since, streak.last, streak.excluded_since) == (4, T0, T0 + 180, T0 + 120)


def test_a_blind_cycle_neither_extends_nor_breaks_a_streak() -> None:
    streak = RefusalStreak("main", *PAIR, cycles=2, since=T0, last=T0 + 60)
    [kept] = feedback.carried({PAIR: streak}, QUICK, T0 + 120)
    assert kept == streak


def test_a_blind_cycle_still_ends_a_hold_that_is_over() -> None:
    held = RefusalStreak("main", *PAIR, cycles=3, since=T0, last=T0 + 120, excluded_since=T0 + 120)
    assert feedback.carried({PAIR: held}, QUICK, T0 + 700) == [held]
    assert feedback.carried({PAIR: held}, QUICK, T0 + 721) == []


def test_the_memory_is_bounded_keeping_exclusions_then_the_longest_streaks() -> None:
    size = feedback.MAX_STREAKS
    short = [RefusalStreak("main", f"e{n}@f", "s", cycles=1, since=T0, last=T0) for n in range(size)]
    long = RefusalStreak("main", "long@f", "s", cycles=5, since=T0, last=T0)
    excluded = RefusalStreak("main", "x@f", "s", cycles=1, since=T0, last=T0, excluded_since=T0)
    memory = feedback.bounded([*short, long, excluded])
    assert len(memory.streaks) == size
    entries = {s.entry for s in memory.streaks}
    assert {"long@f", "x@f"} <= entries
    assert [s.pair for s in memory.streaks] == sorted(s.pair for s in memory.streaks)


# --------------------------------------------------------------------------
# Evidence
# --------------------------------------------------------------------------


def test_evidence_needs_idle_jobs_placed_and_a_usable_idle_slot() -> None:
    small = JobShape("main", "s1", {"n": 1}, idle=2, cpus=1)
    big = JobShape("main", "s1", {"n": 2}, idle=2, cpus=8)
    idle = {shape_key(small): (small, 2), shape_key(big): (big, 2)}
    placed = {"e1@f": frozenset({shape_key(small), shape_key(big)}), "e2@f": frozenset({shape_key(small)})}
    excluded = {"e3@f": frozenset({shape_key(small)})}

    usable = {"e1@f": ((4, 8000),), "e2@f": (), "e3@f": ((1, 8000), (4, 100))}

    found = feedback.evidence(placed, excluded, idle, usable)
    assert found == {("e1@f", shape_key(small)), ("e3@f", shape_key(small))}


def test_idle_jobs_of_one_shape_are_summed_over_schedds() -> None:
    """What evidence reads (`GroupMatch.keyed`): one shape per key, its idle jobs of every schedd, no busy shape."""
    shapes = [jobs(2, n=1), replace(jobs(3, n=1), schedd="s2"), jobs(0, running=4, n=2)]
    found = match(shapes, (entry(),), "main", config().groups["main"])
    [(key, (_, idle))] = found.keyed.items()
    assert (key, idle) == (shape_key(shapes[0]), 5)


def test_the_note_says_how_many_jobs_since_when_and_when_they_are_tried_again() -> None:
    going_on = feedback.Exclusion("e1@f", frozenset({"a"}), cycles=4, since=T0, last=T0 + 180)
    text = feedback.note(going_on, 7.0, 1, QUICK, T0 + 180)
    expected = "7 idle jobs of 1 shape not counted: the entry's idle pilots have refused them for 4 cycles since"
    assert text == f"{expected} 1970-01-12T13:46:40Z"
    held = feedback.note(going_on, 7.0, 2, QUICK, T0 + 240)
    assert "7 idle jobs of 2 shapes not counted" in held
    assert "to 1970-01-12T13:49:40Z; tried again after 1970-01-12T13:59:40Z" in held


# --------------------------------------------------------------------------
# The memory's file
# --------------------------------------------------------------------------


def test_the_memory_survives_its_file(tmp_path: Path) -> None:
    memory = FeedbackMemory(
        (
            RefusalStreak("main", "e1@f", "main|a=1", cycles=3, since=T0, last=T0 + 120, excluded_since=T0 + 120),
            RefusalStreak("main", "e2@f", "main|a=2", cycles=1, since=T0 + 60, last=T0 + 60),
        )
    )
    assert parse_memory(render_memory(memory)) == memory


def frontend(tmp_path: Path) -> FrontendConfig:
    return FrontendConfig.model_validate(
        {
            "name": "vo",
            "vo_collector": "127.0.0.1:29618",
            "wms_collector": "127.0.0.1:29619",
            "factories": {"f": {"identity": "u@lab"}},
            "groups": {"main": {}},
            "work_dir": str(tmp_path / "work"),
        }
    )


def test_saved_memory_is_loaded_and_unchanged_memory_not_rewritten(tmp_path: Path) -> None:
    config = frontend(tmp_path)
    assert load_memory(config) == FeedbackMemory(), "no file yet: nothing learnt"
    memory = FeedbackMemory((RefusalStreak("main", "e1@f", "k", cycles=1, since=T0, last=T0),))
    save_memory(config, memory, FeedbackMemory())
    assert load_memory(config) == memory
    memory_path(config).write_text("changed behind our back")
    save_memory(config, memory, memory)
    assert memory_path(config).read_text() == "changed behind our back", "unchanged memory is not written"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{not json", id="not JSON"),
        pytest.param('{"version": 99, "streaks": []}', id="another version"),
        pytest.param('{"version": 1, "streaks": [{"group": "main"}]}', id="a streak without its fields"),
        pytest.param('{"version": 1, "streaks": [3]}', id="a streak that is not an object"),
    ],
)
def test_a_bad_file_is_logged_and_read_as_nothing_learnt(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = frontend(tmp_path)
    memory_path(config).parent.mkdir(parents=True)
    memory_path(config).write_text(text)
    with caplog.at_level(logging.WARNING):
        assert load_memory(config) == FeedbackMemory()
    assert str(memory_path(config)) in caplog.text


def test_a_memory_that_cannot_be_written_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = frontend(tmp_path)
    (tmp_path / "work").write_text("a file where the work_dir should be")
    memory = FeedbackMemory((RefusalStreak("main", "e1@f", "k", cycles=1, since=T0, last=T0),))
    with caplog.at_level(logging.ERROR):
        save_memory(config, memory, FeedbackMemory())
    assert "idle feedback not saved" in caplog.text


# --------------------------------------------------------------------------
# In decide: cycles carried through Observation.feedback and Plan.feedback
# --------------------------------------------------------------------------

FEEDBACK_GROUP = {"idle_feedback": {"cycles": 2, "min_seconds": 60, "hold_seconds": 600}}


def cycle_of(
    memory: FeedbackMemory, now: float, idle_pilot: bool = True, entries: Sequence[str] = ("e1",), **group: object
) -> Plan:
    """One decide() with 5 idle jobs of one shape and, on e1, an idle pilot slot they fit (or none)."""
    observation = Observation(
        shapes=(jobs(5),),
        entries=tuple(entry(name) for name in entries),
        slots=slots(1, SlotState.IDLE) if idle_pilot else (),
        feedback=memory,
    )
    return decide(observation, config({"main": {**FEEDBACK_GROUP, **group}}), now)


def refusal_notes(decision: Decision) -> list[str]:
    return [note for note in decision.notes if "not counted" in note]


def test_refused_demand_leaves_the_entry_after_the_streak_and_comes_back_after_the_hold() -> None:
    first = cycle_of(FeedbackMemory(), T0)
    second = cycle_of(first.feedback, T0 + 60)
    third = cycle_of(second.feedback, T0 + 120)
    for plan in (first, second):
        assert the(plan).inputs.idle_jobs == 5 and refusal_notes(the(plan)) == [], "a streak is not yet a refusal"
    refused = the(third)
    assert refused.inputs.idle_jobs == 0 and refused.inputs.refused_idle_jobs == 5
    assert refused.idle == 0 and refused.remove is RemoveMode.IDLE, "the refusing idle pilot is removed"
    assert refusal_notes(refused) == [
        "5 idle jobs of 1 shape not counted: the entry's idle pilots have refused them for 3 cycles since "
        "1970-01-12T13:46:40Z"
    ]
    assert third.unmatched["main"] == 5, "no other entry takes them: they are unmatched"

    gone = cycle_of(third.feedback, T0 + 180, idle_pilot=False)  # the idle pilot was removed
    assert the(gone).inputs.idle_jobs == 0 and the(gone).idle == 0, "held: no pilot asked for at once"
    assert "tried again after 1970-01-12T13:58:40Z" in refusal_notes(the(gone))[0]

    back = cycle_of(gone.feedback, T0 + 120 + 601, idle_pilot=False)
    assert the(back).inputs.idle_jobs == 5 and the(back).idle == 5, "after the hold the entry is tried again"
    assert refusal_notes(the(back)) == [] and back.feedback == FeedbackMemory()


def test_refused_jobs_go_to_the_group_s_other_entries() -> None:
    memory = FeedbackMemory()
    for offset in (0, 60, 120):
        plan = cycle_of(memory, T0 + offset, entries=("e1", "e2"))
        memory = plan.feedback
    assert the(plan, "e1@f").inputs.idle_jobs == 0 and the(plan, "e1@f").inputs.refused_idle_jobs == 5
    assert the(plan, "e2@f").inputs.idle_jobs == 5, "the whole shape now counts on the entry that may run it"
    assert the(plan, "e2@f").inputs.refused_idle_jobs == 0


def test_a_pilot_too_small_for_the_jobs_is_no_evidence() -> None:
    memory = FeedbackMemory()
    for offset in (0, 60, 120):
        observation = Observation(
            shapes=(jobs(5, memory=4000),), entries=(entry(),), slots=slots(1, SlotState.IDLE), feedback=memory
        )
        plan = decide(observation, config({"main": FEEDBACK_GROUP}), T0 + offset)
        memory = plan.feedback
    assert plan.feedback == FeedbackMemory() and the(plan).inputs.idle_jobs == 5


def test_disabled_feedback_keeps_counting_the_jobs() -> None:
    memory = FeedbackMemory()
    for offset in (0, 60, 120, 180):
        plan = cycle_of(memory, T0 + offset, idle_feedback={"enabled": False})
        memory = plan.feedback
    assert the(plan).inputs.idle_jobs == 5 and plan.feedback == FeedbackMemory()


def test_a_cycle_that_cannot_see_the_group_s_jobs_keeps_the_streak() -> None:
    first = cycle_of(FeedbackMemory(), T0)
    blind = Observation(
        shapes=(),
        entries=(entry(),),
        slots=slots(1, SlotState.IDLE),
        problems=(SourceProblem("schedd s1", "timed out", frozenset({"main"}), unreadable=True),),
        feedback=first.feedback,
    )
    kept = decide(blind, config({"main": FEEDBACK_GROUP}), T0 + 60)
    assert kept.feedback == first.feedback, "unseen jobs are no evidence either way"


def test_explain_shows_why_refused_jobs_are_not_counted() -> None:
    memory = FeedbackMemory()
    for offset in (0, 60, 120):
        plan = cycle_of(memory, T0 + offset, entries=("e1", "e2"), idle_pilot=True)
        memory = plan.feedback
    text = explain(the(plan, "e1@f"))
    assert "note: 5 idle jobs of 1 shape not counted: the entry's idle pilots have refused them" in text
    kept = Observation(
        shapes=(jobs(5), jobs(2, other=1)), entries=(entry(),), slots=slots(1, SlotState.IDLE), feedback=memory
    )
    mixed = decide(kept, config({"main": FEEDBACK_GROUP}), T0 + 180)
    assert "2 matching idle jobs (not counted: 5 its idle pilots refuse) = 2.0 pilots" in explain(the(mixed))


# --------------------------------------------------------------------------
# The interface to matching
# --------------------------------------------------------------------------


def test_matching_skips_an_excluded_pair_as_if_the_expression_were_false() -> None:
    refused, other = jobs(6), jobs(4, other=1)
    group = config().groups["main"]
    entries = (entry("e1"), entry("e2"))
    free = match((refused, other), entries, "main", group)
    assert free.placed == {
        "e1@f": frozenset({shape_key(refused), shape_key(other)}),
        "e2@f": frozenset({shape_key(refused), shape_key(other)}),
    }
    skipped = match((refused, other), entries, "main", group, excluded={"e1@f": frozenset({shape_key(refused)})})
    assert skipped.placed == {
        "e1@f": frozenset({shape_key(other)}),
        "e2@f": frozenset({shape_key(refused), shape_key(other)}),
    }
    assert skipped.demands["e1@f"].idle_jobs == 2 and skipped.demands["e2@f"].idle_jobs == 8
    alone = match((refused,), entries[:1], "main", group, excluded={"e1@f": frozenset({shape_key(refused)})})
    assert alone.demands == {} and alone.unmatched == 6 and alone.placed == {}


def test_shapes_without_idle_jobs_are_not_placed() -> None:
    found = match((jobs(0, running=3),), (entry(),), "main", config().groups["main"])
    assert found.placed == {} and found.demands["e1@f"].running_jobs == 3


# --------------------------------------------------------------------------
# Monitoring: jobs_refused reaches the snapshot and every writer's numbers
# --------------------------------------------------------------------------


def refused_plan() -> Plan:
    memory = FeedbackMemory()
    for offset in (0, 60, 120):
        plan = cycle_of(memory, T0 + offset, entries=("e1", "e2"))
        memory = plan.feedback
    return plan


def test_refused_jobs_are_counted_in_the_snapshot_and_the_measurements() -> None:
    snapshot = snapshot_of(refused_plan(), config(), 3, {}, ())
    assert {row.entry: row.jobs_refused for row in snapshot.rows} == {"e1@f": 5.0, "e2@f": 0.0}
    values = {(m.name, m.tag_values[-1]): m.values["jobs_refused"] for m in metrics.measurements(snapshot)}
    assert values == {
        ("updraft_frontend", "vo"): 5.0,
        ("updraft_frontend_group", "main"): 5.0,
        ("updraft_frontend_match", "e1@f"): 5.0,
        ("updraft_frontend_match", "e2@f"): 0.0,
    }


def test_refused_jobs_are_in_the_xml_files_and_they_stay_valid(tmp_path: Path) -> None:
    snapshot = snapshot_of(refused_plan(), config(), 3, {}, ())
    writer = xml_status.PLUGIN.create(xml_status.PLUGIN.settings(), tmp_path)
    writer.write(snapshot)
    schema = xmlschema.XMLSchema10(str(xml_status.schema_path()))
    group_file = tmp_path / "xml" / "frontend-vo" / "group-main.xml"
    for path in (group_file, tmp_path / "xml" / "frontend-vo.xml"):
        with path.open("rb") as stream:
            schema.validate(stream)
    ns = {"s": xml_status.NAMESPACE}
    root = ET.parse(group_file).getroot()
    assert [e.get("jobs_refused") for e in root.findall("s:entries/s:entry", ns)] == ["5", "0"]
    assert root.find("s:totals", ns).get("jobs_refused") == "5"
