"""The factory's act step renders and submits exactly what decide said: member CE, count and clusters."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from updraft.factory import service
from updraft.factory.config import FactoryConfig
from updraft.factory.model import EntryDecision, FactoryPlan, Submit
from updraft.protocol import PilotParams

POOL = PilotParams(collector="vo.example.org:9618")


class FakeSchedd:
    def __init__(self) -> None:
        self.submitted: list[tuple[str, int]] = []

    def submit(self, description: Mapping[str, str], count: int) -> None:
        self.submitted.append((description["+UpdraftMember"], count))


class FakeCollector:
    schedd_seen = FakeSchedd()

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def schedd(self, _: str) -> FakeSchedd:
        return self.schedd_seen


def config(work_dir: Path) -> FactoryConfig:
    ce = {"grid_type": "condor"}
    return FactoryConfig.model_validate({
        "name": "fac", "wms_collector": "127.0.0.1:9619", "schedd": "s@x", "cycle_seconds": 20,
        "work_dir": str(work_dir),
        "entries": {"a": {**ce, "resource": "ce a:1"}, "b": {**ce, "resource": "ce b:1"},
                    "solo": {**ce, "resource": "ce s:1"}},
        "entry_sets": {"us": {"members": ["a", "b"], "policy": "round_robin"}},
    })


def test_act_submits_each_members_clusters_as_decided(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    schedd = FakeSchedd()
    monkeypatch.setattr(FakeCollector, "schedd_seen", schedd)
    monkeypatch.setattr(service, "Collector", FakeCollector)
    actions = (
        Submit("us", "fe1", "g1", "default", 3, (2, 1), POOL, member="b"),
        Submit("us", "fe1", "g1", "default", 1, (1,), POOL, member="a"),
        Submit("solo", "fe1", "g1", "default", 2, (2,), POOL),
    )
    plan = FactoryPlan(0.0, (EntryDecision("us", "fe1", "g1", None, actions),))
    results = service.act(config(tmp_path), plan, (), 7, [], {})
    assert schedd.submitted == [('"b"', 2), ('"b"', 1), ('"a"', 1), ('"solo"', 2)]
    assert [r.submitted for r in results] == [3, 1, 2] and not any(r.errors for r in results)
