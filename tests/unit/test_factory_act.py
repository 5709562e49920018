"""The factory's act step renders and submits exactly what decide said: member CE, count and clusters."""

from __future__ import annotations

from pathlib import Path

from updraft.errors import CallFailed, CondorError, DaemonSilent
from updraft.factory.act import act
from updraft.factory.config import FactoryConfig
from updraft.factory.model import EntryDecision, FactoryPlan, Submit
from updraft.factory.ports import fake_ports
from updraft.factory.render import RenderError
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


class _RefusingSchedd:
    """A schedd that accepts every description but those naming `refused_member`, or answers nothing;
    `crashed`: the call for `refused_member` brings no answer back (its process died)."""

    def __init__(self, refused_member: str, *, silent: bool = False, crashed: bool = False) -> None:
        self.refused_member = refused_member
        self.silent = silent
        self.crashed = crashed

    def submit(self, description: dict[str, str], count: int = 1) -> int:
        if self.silent:
            raise DaemonSilent("submit to schedd s@x: no answer within 20 s")
        if description["+UpdraftMember"] == f'"{self.refused_member}"':
            if self.crashed:
                raise CallFailed("submit to schedd s@x: the call's process ended without a result (SIGSEGV)")
            raise CondorError("submit to schedd s@x: SUBMIT_REQUIREMENT not met")
        return 1


class _Located:
    def __init__(self, schedd: _RefusingSchedd | None) -> None:
        self.schedd = schedd

    def get(self) -> _RefusingSchedd:
        if self.schedd is None:
            raise CondorError("cannot locate schedd s@x")
        return self.schedd


def test_only_a_refusal_the_schedd_answered_is_marked_refused(tmp_path: Path) -> None:
    factory = config(tmp_path)
    actions = (
        Submit("solo", "fe1", "g1", "default", 1, (1,), POOL),
        Submit("us", "fe1", "g1", "default", 1, (1,), POOL, member="a"),
    )
    plan = FactoryPlan(0.0, (EntryDecision("us", "fe1", "g1", None, actions),))

    def run(
        schedd: _RefusingSchedd | None, render=lambda action: describe(factory, action, {})
    ) -> list[tuple[int, bool]]:
        return [(r.submitted, r.refused) for r in act(_Located(schedd), plan, render)]  # type: ignore[arg-type]

    assert run(_RefusingSchedd("solo")) == [(0, True), (1, False)]
    assert run(_RefusingSchedd("solo", silent=True)) == [(0, False), (0, False)], "a silent schedd refused nothing"
    assert run(None) == [(0, False)], "a schedd not located refused nothing"
    assert run(_RefusingSchedd("solo", crashed=True)) == [(0, False), (1, False)], "a call that crashed refused nothing"

    def broken_render(action: Submit) -> dict[str, str]:
        raise RenderError("template pilot.sub: undefined variable")

    assert run(_RefusingSchedd("nobody"), broken_render) == [(0, False), (0, False)], "our own render is no refusal"
