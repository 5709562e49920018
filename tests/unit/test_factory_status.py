"""The factory's operator views: status rows, advertised totals, reconfig diffs."""

from __future__ import annotations

from updraft import protocol
from updraft.factory.advertise import entry_totals, factory_totals
from updraft.factory.config import FactoryConfig
from updraft.factory.model import EntryDecision, FactoryPlan, Pilot, PilotState
from updraft.factory.reconfig import Changes, diff_entries
from updraft.factory.status import status_rows

NOW = 1_800_000_000.0
CONFIG = FactoryConfig.model_validate(
    {
        "name": "fac",
        "wms_collector": "127.0.0.1:1",
        "schedd": "s@x",
        "entries": {
            "ce1": {"grid_type": "condor", "resource": "ce x:1", "stale": {"idle_seconds": 3600}},
            "ce2": {"grid_type": "condor", "resource": "ce x:2"},
        },
    }
)


def pilot(n: int, entry: str, state: PilotState, frontend: str = "vo", age: float = 60) -> Pilot:
    return Pilot(f"{n}.0", entry, frontend, "main", "default", "c", state, NOW - age, NOW - age)


PILOTS = (
    pilot(1, "ce1", PilotState.WAITING),
    pilot(2, "ce1", PilotState.PENDING, age=7200),
    pilot(3, "ce1", PilotState.RUNNING),
    pilot(4, "ce1", PilotState.HELD, frontend="other"),
    pilot(5, "ce2", PilotState.STAGING),
)


def test_status_has_a_row_per_entry_and_frontend_with_requests_and_bounds() -> None:
    request = protocol.PublishedRequest("vo", "main", "fac", "ce1", 4, 10, "none", 0, "vo@lab")
    plan = FactoryPlan(NOW, (EntryDecision("ce1", "vo", "main", None, bound_by=("entry.max_idle",)),))
    rows = {(r.entry, r.frontend): r for r in status_rows(plan, PILOTS, [request])}
    assert set(rows) == {("ce1", "vo"), ("ce1", "other"), ("ce2", "vo")}
    ce1 = rows["ce1", "vo"]
    assert (ce1.requested, ce1.waiting, ce1.pending, ce1.staging, ce1.running, ce1.held) == (4, 1, 1, 0, 1, 0)
    assert ce1.limits_hit == ("entry.max_idle",)
    assert rows["ce1", "other"].held == 1 and rows["ce2", "vo"].staging == 1


def test_advertised_totals_count_states_and_stale_pilots_per_entry() -> None:
    totals = entry_totals(CONFIG, PILOTS, [], NOW)
    assert totals["ce1"]["idle"] == 2 and totals["ce1"]["running"] == 1 and totals["ce1"]["held"] == 1
    assert totals["ce1"]["stale_idle"] == 1  # pending for 2 h, stale after 1 h
    assert totals["ce2"]["staging"] == 1 and totals["ce2"]["stale_idle"] == 0
    assert factory_totals(totals)["idle"] == 3


def test_reconfig_diff_names_added_removed_and_changed_entries() -> None:
    before = {"entry a": {"x": 1}, "entry b": {"x": 1}, "entry c": {"x": 1}}
    after = {"entry a": {"x": 1}, "entry b": {"x": 2}, "entry d": {"x": 1}}
    assert diff_entries(before, after) == (("entry d",), ("entry c",), ("entry b",))
    lines = Changes(("entry d",), ("entry c",), ("entry b",), {"entry c": 3}).describe()
    assert lines == ["+ entry d", "~ entry b", "- entry c (3 pilots in the queue)"]
    assert Changes().describe() == ["no entry changes"]
