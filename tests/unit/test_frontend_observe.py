"""The pure half of observing: ads in, model objects out."""

from __future__ import annotations

from pathlib import Path

import pytest

from updraft.fakes import FakeSchedd
from updraft.frontend.config import FrontendConfig, Group
from updraft.frontend.model import SlotKind, SlotState, pilot_cores
from updraft.frontend.observe import (
    BY_STATUS,
    OLD_IDLE,
    job_attributes,
    merge_shapes,
    observe,
    parse_entry,
    parse_slot,
    pilot_id,
    shape_queries,
    slot_kind,
    slot_state,
)
from updraft.frontend.ports import fake_ports

NOW = 1_800_000_000.0
ENTRY = {
    "Name": "ce1@fac",
    "UpdraftSchema": 1,
    "UpdraftFactory": "fac",
    "UpdraftEntry": "ce1",
    "GLIDEIN_CPUS": 8,
    "UpdraftMaxPilots": 50,
    "UpdraftMaxIdle": 5,
    "UpdraftInDowntime": False,
    "AuthenticatedIdentity": "fac@lab",
    "GLIDEIN_Site": "S1",
}


def group(**fields) -> Group:
    return Group.model_validate(fields)


@pytest.mark.parametrize(
    ("expr", "index", "expected"),
    [
        ("true", None, ("RequestCpus", "RequestMemory")),
        (
            'MY.DESIRED_Sites =!= undefined && TARGET.GLIDEIN_Site == "x"',
            None,
            ("DESIRED_Sites", "RequestCpus", "RequestMemory"),
        ),
        (
            "stringListMember(TARGET.GLIDEIN_Site, DESIRED_Sites)",
            None,
            ("DESIRED_Sites", "RequestCpus", "RequestMemory"),
        ),
        ("true", {"job_attr": "Wanted", "entry_attr": "GLIDEIN_Site"}, ("RequestCpus", "RequestMemory", "Wanted")),
    ],
)
def test_job_attributes_are_what_the_match_reads_from_the_job(expr, index, expected) -> None:
    fields = {"match_expr": expr, "match_job_requirements": False} | ({"match_index": index} if index else {})
    assert job_attributes(group(**fields)) == expected


def test_with_job_requirements_shapes_also_group_on_requirements_and_what_pilot_start_reads() -> None:
    names = job_attributes(group(pilot_start='TARGET.Owner == "alice" && MY.Memory > 0'))
    assert names == (
        "FileSystemDomain",
        "Owner",
        "RequestCpus",
        "RequestDisk",
        "RequestMemory",
        "Requirements",
        "UidDomain",
    )


def test_every_attribute_a_grouped_constraint_reads_is_grouped_on() -> None:
    queries = shape_queries(
        group(
            job_constraint='Owner == "alice" && MY.Project =!= undefined',
            old_idle_seconds=600,
            match_job_requirements=False,
        ),
        NOW,
    )
    constraint, by = queries[BY_STATUS]
    assert constraint == '(JobStatus == 1 || JobStatus == 2) && (Owner == "alice" && MY.Project =!= undefined)'
    assert by == ("RequestCpus", "RequestMemory", "JobStatus", "Owner", "Project")
    old_constraint, old_by = queries[OLD_IDLE]
    assert old_constraint.startswith(f"JobStatus == 1 && EnteredCurrentStatus < {int(NOW) - 600} && ")
    assert {"EnteredCurrentStatus", "JobStatus", "Owner", "Project"} <= set(old_by)


def test_grouped_counts_of_one_shape_join_into_one_record() -> None:
    attrs = ("RequestCpus", "RequestMemory", "DESIRED_Sites")
    shape = {"RequestCpus": 4, "RequestMemory": 2000, "DESIRED_Sites": "S1"}
    results = {
        BY_STATUS: [
            {**shape, "JobStatus": 1, "Owner": "a", "JobCount": 6},
            {**shape, "JobStatus": 1, "Owner": "b", "JobCount": 4},
            {**shape, "JobStatus": 2, "Owner": "a", "JobCount": 7},
            {"RequestCpus": 1, "RequestMemory": 100, "DESIRED_Sites": "S2", "JobStatus": 1, "JobCount": 1},
            {**shape, "JobStatus": 5, "JobCount": 99},
        ],
        OLD_IDLE: [
            {**shape, "EnteredCurrentStatus": 1, "JobCount": 2},
            {**shape, "EnteredCurrentStatus": 2, "JobCount": 1},
        ],
    }
    shapes = {s.attrs["DESIRED_Sites"]: s for s in merge_shapes("g", "schedd@x", results, attrs)}
    big = shapes["S1"]
    assert (big.idle, big.old_idle, big.running, big.cpus, big.memory_mb) == (10, 3, 7, 4, 2000)
    assert (big.group, big.schedd) == ("g", "schedd@x")
    assert set(big.attrs) == set(attrs)
    assert (shapes["S2"].idle, shapes["S2"].running) == (1, 0)


def test_a_memory_request_that_is_an_unevaluated_expression_counts_as_zero() -> None:
    counts = {BY_STATUS: [{"RequestCpus": 1, "RequestMemory": "ifThenElse(...)", "JobStatus": 1, "JobCount": 2}]}
    (shape,) = merge_shapes("g", "s", counts, ("RequestCpus", "RequestMemory"))
    assert shape.memory_mb == 0 and shape.idle == 2


@pytest.mark.parametrize(
    ("ad", "state"),
    [
        ({"State": "Claimed", "Activity": "Busy"}, SlotState.RUNNING),
        ({"State": "Unclaimed", "Activity": "Idle"}, SlotState.IDLE),
        ({"State": "Unclaimed", "Activity": "Benchmarking"}, SlotState.IDLE),
        ({"State": "Unclaimed", "Activity": "Idle", "GLIDEIN_ToRetire": NOW - 1}, SlotState.RETIRING),
        ({"State": "Unclaimed", "Activity": "Idle", "GLIDEIN_ToRetire": NOW + 60}, SlotState.IDLE),
        ({"State": "Drained", "Activity": "Retiring"}, SlotState.RETIRING),
        ({"State": "Owner", "Activity": "Idle"}, SlotState.FAILED),
    ],
)
def test_slot_state(ad, state) -> None:
    assert slot_state(ad, NOW) is state


def test_a_slot_names_its_entry_group_size_and_death() -> None:
    slot = parse_slot(
        {
            "GLIDEIN_Entry_Name": "ce1",
            "GLIDEIN_Factory": "fac",
            "GLIDECLIENT_Group": "main",
            "State": "Unclaimed",
            "Activity": "Idle",
            "Cpus": 8,
            "Memory": 16000,
            "GLIDEIN_ToDie": NOW + 3600,
        },
        NOW,
    )
    assert (slot.entry_key, slot.group, slot.cpus, slot.memory_mb, slot.to_die) == (
        "ce1@fac",
        "main",
        8,
        16000,
        NOW + 3600,
    )
    assert parse_slot({"State": "Unclaimed"}, NOW) is None


def test_a_trusted_entry_ad_becomes_an_entry() -> None:
    entry, why = parse_entry(ENTRY, {"fac": "fac@lab"})
    assert why is None
    assert (entry.key, entry.cpus_per_pilot, entry.max_pilots, entry.max_idle, entry.in_downtime) == (
        "ce1@fac",
        8,
        50,
        5,
        False,
    )
    assert entry.attrs["GLIDEIN_Site"] == "S1"


@pytest.mark.parametrize(
    ("change", "trusted", "reason"),
    [
        ({"AuthenticatedIdentity": "intruder@lab"}, {"fac": "fac@lab"}, "came from 'intruder@lab'"),
        ({"AuthenticatedIdentity": None}, {"fac": "fac@lab"}, "came from None"),
        ({"UpdraftSchema": 2}, {"fac": "fac@lab"}, "UpdraftSchema 2 is not 1"),
        ({"UpdraftEntry": None}, {"fac": "fac@lab"}, "lacks"),
        ({"GLIDEIN_CPUS": 10**30}, {"fac": "fac@lab"}, "GLIDEIN_CPUS 100000000000000000000000 is outside 0..1000000"),
        ({"UpdraftMaxPilots": -(2**40)}, {"fac": "fac@lab"}, "UpdraftMaxPilots -1099511627776 is outside"),
    ],
)
def test_an_untrusted_or_malformed_entry_ad_is_ignored_with_a_reason(change, trusted, reason) -> None:
    entry, why = parse_entry({**ENTRY, **change}, trusted)
    assert entry is None
    assert reason in why


def test_an_entry_of_a_factory_we_do_not_use_is_ignored_silently() -> None:
    assert parse_entry(ENTRY, {"other": "other@lab"}) == (None, None)


def test_downtime_is_only_a_real_true() -> None:
    assert parse_entry({**ENTRY, "UpdraftInDowntime": True}, {"fac": "fac@lab"})[0].in_downtime
    assert not parse_entry({**ENTRY, "UpdraftInDowntime": "yes"}, {"fac": "fac@lab"})[0].in_downtime


def slot_ad(name: str, state: str = "Claimed", **attrs: object) -> dict[str, object]:
    """A slot of pilot 7.0 of factory fac, as its startd advertises it (STARTD_ATTRS of the glidein's config)."""
    return {
        "MyType": "Machine",
        "Name": name,
        "IS_GLIDEIN": True,
        "GLIDEIN_Entry_Name": "ce1",
        "GLIDEIN_Factory": "fac",
        "GLIDEIN_Name": "fac",
        "GLIDECLIENT_Name": "vo",
        "GLIDECLIENT_Group": "main",
        "GLIDEIN_ClusterId": 7,
        "GLIDEIN_ProcId": 0,
        "State": state,
        "Cpus": 1,
        "Memory": 1000,
        **attrs,
    }


def test_every_slot_of_one_glidein_names_the_same_pilot() -> None:
    parent = parse_slot(slot_ad("slot1@glidein_7", "Unclaimed", SlotType="Partitionable", TotalSlotCpus=8, Cpus=6), NOW)
    carved = parse_slot(slot_ad("slot1_1@glidein_7", SlotType="Dynamic"), NOW)
    other_node = parse_slot(slot_ad("slot1@glidein_7_node1@host2", GLIDEIN_NodeIndex=1), NOW)
    assert parent and carved and other_node
    assert parent.pilot == carved.pilot == other_node.pilot == "fac/fac//7.0"
    assert (parent.kind, carved.kind, other_node.kind) == (SlotKind.PARTITIONABLE, SlotKind.DYNAMIC, SlotKind.STATIC)
    assert (parent.cores, carved.cores) == (8, 1)
    assert pilot_cores([parent, carved]) == 8 and pilot_cores([carved, carved]) == 2
    another = slot_ad("slot1@glidein_8", GLIDEIN_ProcId=1)
    assert pilot_id(another) == "fac/fac//7.1"
    assert (parent.node, other_node.node) == (0, 1), "the startd's node of a multi-node pilot"


def test_a_slot_without_the_pilots_job_id_falls_back_to_its_startd_then_to_itself() -> None:
    bare = {k: v for k, v in slot_ad("slot2@glidein_9@host").items() if k != "GLIDEIN_ClusterId"}
    assert pilot_id(bare) == "startd glidein_9@host"
    assert pilot_id({}) == ""
    assert slot_kind({"PartitionableSlot": True}) is SlotKind.PARTITIONABLE
    assert slot_kind({"DynamicSlot": True}) is SlotKind.DYNAMIC


def test_the_pools_pilots_are_counted_once_per_glidein(tmp_path: Path) -> None:
    config = FrontendConfig.model_validate(
        {
            "name": "vo",
            "vo_collector": "127.0.0.1:29618",
            "wms_collector": "127.0.0.1:29619",
            "schedds": ["s@lab"],
            "work_dir": str(tmp_path),
            "factories": {"fac": {"identity": "fac@lab"}},
            "groups": {"main": {}},
        }
    )
    ports, vo, _wms = fake_ports(config)
    vo.schedds["s@lab"] = FakeSchedd("s@lab")
    vo.ads.extend(
        [
            slot_ad("slot1@glidein_7", "Unclaimed", SlotType="Partitionable", TotalSlotCpus=8),
            slot_ad("slot1_1@glidein_7", SlotType="Dynamic"),
            slot_ad("slot1_2@glidein_7", SlotType="Dynamic"),
            slot_ad("slot1@glidein_8", "Unclaimed", GLIDEIN_ProcId=1, GLIDECLIENT_Name="other-vo"),
        ]
    )
    seen = observe(config, ports, NOW)
    assert (seen.pool_running_pilots, seen.pool_idle_pilots) == (1, 1), "3 slots of pilot 7 are one running pilot"
    assert len(seen.slots) == 3 and not seen.slots_unread


def test_an_unreadable_pool_is_unknown_pilots_not_zero(tmp_path: Path) -> None:
    config = FrontendConfig.model_validate(
        {
            "name": "vo",
            "vo_collector": "127.0.0.1:29618",
            "wms_collector": "127.0.0.1:29619",
            "schedds": ["s@lab"],
            "work_dir": str(tmp_path),
            "factories": {"fac": {"identity": "fac@lab"}},
            "groups": {"main": {}},
        }
    )
    ports, _vo, _wms = fake_ports(config, vo_unreachable=True)
    seen = observe(config, ports, NOW)
    assert seen.slots_unread and not seen.entries_unread
    ports, _vo, _wms = fake_ports(config, wms_unreachable=True)
    seen = observe(config, ports, NOW)
    assert seen.entries_unread and seen.published is None
