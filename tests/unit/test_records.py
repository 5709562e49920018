"""The one rule for when a bound is recorded, shared by the frontend's and the factory's decisions."""

from __future__ import annotations

import pytest

from updraft.records import Cap, Record, apply_cap, shared_rooms, tightest


def record(wanted: int, now: int | None = None) -> Record:
    made = Record()
    made.want(wanted)
    if now is not None:
        made.lower(now, "cap", ("earlier",), "")
    return made


@pytest.mark.parametrize(
    ("wanted", "now", "room", "value", "bound"),
    [
        (10, None, 4, 4, True),  # lowers it
        (10, 4, 4, 4, True),  # a tie with an earlier limit: lifting that one alone changes nothing
        (10, 4, 6, 4, False),  # not reached
        (10, None, 10, 10, False),  # leaves exactly the wish: holds nothing back
        (0, None, 0, 0, False),  # nothing was wanted
        (10, 0, 0, 0, True),  # zero after zero, still holding back the wish
        (10, None, -3, 0, True),  # a negative room is zero
    ],
)
def test_a_bound_is_recorded_when_it_holds_the_number_below_the_wish(
    wanted: int, now: int | None, room: int, value: int, bound: bool
) -> None:
    made = record(wanted, now)
    made.lower(room, "cap", ("limit",), "detail")
    assert made.value == value
    assert ("limit" in made.bound_by) is bound


def test_a_step_is_written_only_when_the_number_goes_down() -> None:
    made = record(10, 4)
    made.lower(4, "cap", ("tie",), "")
    assert [(s.name, s.value, s.note) for s in made.steps] == [("cap", 4, "earlier")]
    assert made.bound_by == ["earlier", "tie"]


@pytest.mark.parametrize(
    ("values", "room", "expected"),
    [
        ([3, 4], 10, [6, 7]),  # they fit: each may take what the others leave
        ([3, 4], 7, [3, 4]),  # exactly full: every one is at its room
        ([3, 4], 5, [2, 3]),  # too many: proportional shares
    ],
)
def test_shared_rooms(values: list[int], room: int, expected: list[int]) -> None:
    assert shared_rooms(values, room) == expected


def test_a_shared_room_is_a_bound_only_when_the_numbers_together_reach_it() -> None:
    lowered, free = record(10, 4), record(5)
    apply_cap([lowered, free], Cap(("entry.max_submits",), 100, "at most 100"), "share", "wanted in all")
    assert (lowered.value, free.value) == (4, 5)
    assert "entry.max_submits" not in lowered.bound_by and free.bound_by == []
    apply_cap([lowered, free], Cap(("entry.max_submits",), 9, "at most 9"), "share", "wanted in all")
    assert (lowered.value, free.value) == (4, 5)
    assert "entry.max_submits" in lowered.bound_by and free.bound_by == []


def test_no_cap_set_changes_nothing() -> None:
    made = record(10)
    apply_cap([made], tightest([("a", None, ""), ("b", None, "")]), "share", "wanted in all")
    assert (made.value, made.bound_by, made.steps) == (10, [], [])


def test_tightest_keeps_every_name_at_the_lowest_room() -> None:
    assert tightest([("a", 5, "five"), ("b", None, "none"), ("c", 5, "also five"), ("d", 7, "seven")]) == Cap(
        ("a", "c"), 5, "five; also five"
    )
    assert tightest([("a", -2, "over")]) == Cap(("a",), 0, "over")
