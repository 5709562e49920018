"""The factory's act step renders and submits exactly what decide said: member CE, count and clusters."""

from __future__ import annotations

from pathlib import Path

from updraft.factory.act import act
from updraft.factory.config import FactoryConfig
from updraft.factory.model import EntryDecision, FactoryPlan, Submit
from updraft.factory.ports import fake_ports
from updraft.factory.submission import describe
from updraft.protocol import PilotParams

POOL = PilotParams(collector="vo.example.org:9618")


def config(work_dir: Path) -> FactoryConfig:
    ce = {"grid_type": "condor"}
    return FactoryConfig.model_validate(
        {
            "name": "fac",
            "wms_collector": "127.0.0.1:9619",
            "schedd": "s@x",
            "cycle_seconds": 20,
            "work_dir": str(work_dir),
            "entries": {
                "a": {**ce, "resource": "ce a:1"},
                "b": {**ce, "resource": "ce b:1"},
                "solo": {**ce, "resource": "ce s:1"},
            },
            "entry_sets": {"us": {"members": ["a", "b"], "policy": "round_robin"}},
        }
    )


def test_act_submits_each_members_clusters_as_decided(tmp_path: Path) -> None:
    factory = config(tmp_path)
    ports, _, schedd = fake_ports(factory, now=0.0)
    actions = (
        Submit("us", "fe1", "g1", "default", 3, (2, 1), POOL, member="b"),
        Submit("us", "fe1", "g1", "default", 1, (1,), POOL, member="a"),
        Submit("solo", "fe1", "g1", "default", 2, (2,), POOL),
    )
    plan = FactoryPlan(0.0, (EntryDecision("us", "fe1", "g1", None, actions),))
    results = act(ports.schedd, plan, lambda action: describe(factory, action, {}))
    assert [(d["+UpdraftMember"], n) for d, n in schedd.submitted] == [
        ('"b"', 2),
        ('"b"', 1),
        ('"a"', 1),
        ('"solo"', 2),
    ]
    assert {job["UpdraftMember"] for job in schedd.jobs} == {"a", "b", "solo"}
    assert [r.submitted for r in results] == [3, 1, 2] and not any(r.errors for r in results)
