"""The entry health memory between cycles: kept by the running service, its history written now and
then, and every change kept until the notifiers have taken it."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from updraft.factory import health_store, observe
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.health import History
from updraft.factory.health_model import EntryHealth, HealthState, Override, Transition
from updraft.factory.ports import FactoryPorts, fake_ports
from updraft.factory.service import FactoryService, run_cycle
from updraft.monitoring.notify import NOTIFIERS
from updraft.monitoring.report import Reporter
from updraft.monitoring.snapshot import Snapshot

from .conftest import ConfigTree
from .test_factory_health_cycle import ENTRY, FACTORY

NOW = 1_800_000_000.0


@pytest.fixture
def config(tree: ConfigTree, tmp_path: Path) -> FactoryConfig:
    main = FACTORY.format(work=tmp_path / "work") + ENTRY.format(name="dead")
    return load_factory_config(tree.factory(main=main)).config


def banned_long_ago(config: FactoryConfig, history: History | None = None) -> None:
    """'dead' banned for longer than its ban (3600 s): the next cycle moves it to probing (one change)."""
    banned = EntryHealth("dead", HealthState.BANNED, "held every pilot", NOW - 3700)
    memory = health_store.HealthMemory({"dead": banned}, {"dead": history or History()}, NOW - 10)
    health_store.save_memory(health_store.memory_path(config.work_dir), memory, now=NOW - 10)


class Notifiers:
    """The notifiers' writer as the reporter sees it: fails while `failing`, and keeps what it was offered."""

    name = NOTIFIERS

    def __init__(self) -> None:
        self.failing = True
        self.offered: list[tuple[str, ...]] = []

    def write(self, snapshot: Snapshot) -> None:
        if self.failing:
            raise OSError("no space left on device")
        self.offered.append(tuple(row.key for row in getattr(snapshot, "announce", ())))


def cycle(config: FactoryConfig, ports: FactoryPorts, now: float, reporter: Any, memory: Any = None) -> Any:
    return run_cycle(config, 1, now, releases={}, reporter=reporter, ports=ports, memory=memory)


def test_a_change_the_notifiers_could_not_take_is_offered_again_until_they_do(config: FactoryConfig) -> None:
    banned_long_ago(config)
    ports, _wms, _schedd = fake_ports(config, NOW)
    notifiers = Notifiers()
    reporter = Reporter((notifiers,), 5.0)
    first = cycle(config, ports, NOW, reporter)
    [change] = first.health.unannounced
    assert (change.old, change.new) == (HealthState.BANNED, HealthState.PROBING)
    assert notifiers.offered == [], "the writer failed: nothing was taken"
    notifiers.failing = False
    second = cycle(config, ports, NOW + 10, reporter, first.health)
    assert notifiers.offered == [(change.key,)], "offered again with its key, so the outbox queues it once"
    assert second.health.unannounced == ()
    cycle(config, ports, NOW + 20, reporter, second.health)
    assert notifiers.offered[-1] == (), "taken: never offered again"


def test_a_change_decided_just_before_the_process_died_is_announced_after_the_restart(config: FactoryConfig) -> None:
    banned_long_ago(config)
    ports, _wms, _schedd = fake_ports(config, NOW)
    notifiers = Notifiers()
    cycle(config, ports, NOW, Reporter((notifiers,), 5.0))
    saved = json.loads(health_store.memory_path(config.work_dir).read_text())
    assert [c["new"] for c in saved["unannounced"]] == ["probing"], "saved before the report ran"
    notifiers.failing = False
    restarted = cycle(config, ports, NOW + 10, Reporter((notifiers,), 5.0))
    [offered] = notifiers.offered
    assert len(offered) == 1 and offered[0].startswith("dead|") and offered[0].endswith("banned>probing")
    assert restarted.health.unannounced == ()


def test_without_notifiers_no_change_is_kept_for_them(config: FactoryConfig) -> None:
    banned_long_ago(config)
    ports, _wms, _schedd = fake_ports(config, NOW)
    result = cycle(config, ports, NOW, Reporter((), 5.0))
    assert result.health.states["dead"].state is HealthState.PROBING
    assert result.health.unannounced == ()
    assert json.loads(health_store.memory_path(config.work_dir).read_text())["unannounced"] == []


def test_the_changes_kept_for_the_notifiers_are_bounded_oldest_dropped_first() -> None:
    changes = tuple(
        Transition(f"e{i}", HealthState.ACTIVE, HealthState.DEGRADED, "x", NOW + i)
        for i in range(health_store.MAX_UNANNOUNCED + 5)
    )
    memory = health_store.HealthMemory(unannounced=changes[:10])
    kept = memory.announcing(changes[10:])
    assert len(kept) == health_store.MAX_UNANNOUNCED and kept[-1] == changes[-1] and kept[0] == changes[5]


def history_saved_at(config: FactoryConfig) -> float:
    path = health_store.history_path(health_store.memory_path(config.work_dir))
    return float(json.loads(path.read_text())["saved_at"])


def test_a_running_service_writes_the_states_each_cycle_and_the_history_every_five_minutes(
    config: FactoryConfig,
) -> None:
    banned_long_ago(config, History(bad=(NOW - 800,), causes=("held_other",)))
    ports, _wms, _schedd = fake_ports(config, NOW)
    first = cycle(config, ports, NOW, None)
    assert history_saved_at(config) == NOW, "a memory read from the folder is written back whole"
    states = health_store.memory_path(config.work_dir)
    before = states.stat().st_ino
    second = cycle(config, ports, NOW + 10, None, first.health)
    assert history_saved_at(config) == NOW, "held by the service: not written again so soon"
    assert states.stat().st_ino != before, "the states are written (replaced) every cycle"
    assert config.health_save_seconds == 300, "the default"
    cycle(config, ports, NOW + 300, None, second.health)
    assert history_saved_at(config) == NOW + 300
    loaded = health_store.load_memory(health_store.memory_path(config.work_dir))
    assert loaded.history["dead"].bad == (NOW - 800,) and loaded.states["dead"].state is HealthState.PROBING


def test_the_history_is_written_at_once_when_a_change_forgets_it() -> None:
    memory = health_store.HealthMemory(history_saved_at=NOW)
    to_active = (Transition("e", HealthState.PROBING, HealthState.ACTIVE, "probes good", NOW + 10),)
    to_banned = (Transition("e", HealthState.DEGRADED, HealthState.BANNED, "failing", NOW + 10),)
    assert health_store.history_due(memory, to_active, NOW + 10, 300)
    assert not health_store.history_due(memory, to_banned, NOW + 10, 300)
    assert health_store.history_due(memory, to_banned, NOW + 10, 10)
    assert health_store.history_due(memory, (), NOW - 60, 300), "the clock stepped back: written, not held for hours"
    assert health_store.history_due(health_store.HealthMemory(), (), NOW, 300), "never written since it was read"


def test_the_service_writes_its_history_when_it_stops(config: FactoryConfig) -> None:
    banned_long_ago(config)
    ports, _wms, _schedd = fake_ports(config, NOW)
    service = FactoryService(Path("unused.yaml"), config, connect_ports=lambda _: ports)
    service.cycle(1, NOW)
    assert service.health is not None
    service.health = dataclasses.replace(service.health, history={"dead": History(good=(NOW + 5,))})
    service.shutdown()
    loaded = health_store.load_memory(health_store.memory_path(config.work_dir))
    assert loaded.history == {"dead": History(good=(NOW + 5,))}
    assert loaded.states["dead"].state is HealthState.PROBING


def test_a_memory_of_version_1_with_its_history_inline_is_still_read(tmp_path: Path) -> None:
    path = health_store.memory_path(tmp_path)
    entry = {"state": "degraded", "reason": "r", "since": NOW, "next_review": None, "cap": 2, "override": None}
    inline = {**entry, "good": [NOW - 5], "bad": [NOW - 9], "causes": ["validation"]}
    path.write_text(json.dumps({"version": 1, "evaluated_at": NOW, "entries": {"ce1": inline}}))
    memory = health_store.load_memory(path)
    assert memory.states["ce1"].state is HealthState.DEGRADED and memory.states["ce1"].cap == 2
    assert memory.history["ce1"] == History((NOW - 5,), (NOW - 9,), ("validation",))


def test_a_damaged_history_keeps_the_states(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = health_store.memory_path(tmp_path)
    banned = EntryHealth("ce1", HealthState.BANNED, "held", NOW)
    health_store.save_memory(path, health_store.HealthMemory({"ce1": banned}, {"ce1": History(good=(NOW,))}))
    history = health_store.history_path(path)
    history.write_text('{"version": 1, "entries": {"ce1": {"good": [1e20], "bad": [], "causes": []}}}')
    with caplog.at_level(logging.WARNING):
        memory = health_store.load_memory(path)
    assert memory.states == {"ce1": banned}, "a ban is never lifted by a damaged history"
    assert memory.history == {}
    assert str(history) in caplog.text and "states are kept" in caplog.text
    health_store.save_memory(path, health_store.HealthMemory({"ce1": banned}, {"ce1": History(good=(NOW,))}))
    assert health_store.load_memory(path).history == {"ce1": History(good=(NOW,))}
    assert health_store.load_memory(path, history=False).history == {}, "a quick look reads the states alone"


def test_a_damaged_part_of_the_memory_costs_only_that_part(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = health_store.memory_path(tmp_path)
    banned = EntryHealth("ce1", HealthState.BANNED, "held", NOW)
    memory = health_store.HealthMemory({"ce1": banned}, {"ce1": History(good=(NOW,))}, NOW, {"1.0": NOW})
    health_store.save_memory(path, memory, now=NOW)
    states = json.loads(path.read_text())
    path.write_text(json.dumps({**states, "unannounced": [{"entry": 3}]}))
    evidence = json.loads(health_store.history_path(path).read_text())
    health_store.history_path(path).write_text(json.dumps({**evidence, "probes_seen": {"ce1": "5.0"}}))
    with caplog.at_level(logging.WARNING):
        loaded = health_store.load_memory(path)
    assert loaded.states == {"ce1": banned}, "one bad item about notifiers or probes never lifts a ban"
    assert loaded.history == memory.history and loaded.counted == memory.counted and loaded.evaluated_at == NOW
    assert loaded.unannounced == () and loaded.probes == {}
    assert "unannounced[0].entry" in caplog.text and "probes_seen" in caplog.text and str(path) in caplog.text


def test_a_failed_history_write_still_saves_the_states(config: FactoryConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    banned_long_ago(config)
    real = health_store.write_atomically  # type: ignore[attr-defined]

    def full_disk(path: Path, text: str) -> None:  # 14 MB do not fit; the small file would
        if path.name == "health-history.json":
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(health_store, "write_atomically", full_disk)
    ports, _wms, _schedd = fake_ports(config, NOW)
    notifiers = Notifiers()
    notifiers.failing = False
    result = cycle(config, ports, NOW, Reporter((notifiers,), 5.0))
    assert any("entry health history not saved" in p for p in result.problems)
    [[key]] = notifiers.offered  # banned > probing announced
    saved = json.loads(health_store.memory_path(config.work_dir).read_text())
    assert saved["entries"]["dead"]["state"] == "probing", f"announced {key}, but health.json still says banned"


def test_once_beside_a_running_service_announces_one_change_once(config: FactoryConfig) -> None:
    banned_long_ago(config)
    ports, _wms, _schedd = fake_ports(config, NOW)
    notifiers = Notifiers()
    notifiers.failing = False
    service = FactoryService(Path("unused.yaml"), config, connect_ports=lambda _: ports)
    service.reporter = Reporter((notifiers,), 5.0)
    service.cycle(1, NOW - 200)  # the service: still banned (its ban is over at NOW - 100)
    cycle(config, ports, NOW, Reporter((notifiers,), 5.0))  # `updraft factory once` by an operator
    service.cycle(2, NOW + 10)
    keys = {k for offered in notifiers.offered for k in offered}
    assert len(keys) == 1, f"one change banned>probing, announced under two keys: {sorted(keys)}"


def test_unreadable_requests_are_not_announced_as_no_pilots_requested(
    config: FactoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    banned_long_ago(config)
    ports, _wms, _schedd = fake_ports(config, NOW)
    # _read_requests' own CondorError branch: the requests cannot be read, the queue can
    monkeypatch.setattr(observe, "_read_requests", lambda _ports, _config: (None, ["requests unreadable: timeout"]))
    result = cycle(config, ports, NOW, None)
    state = result.health.states["dead"]
    assert "no pilots requested" not in state.reason, f"unknown read as none: {state.reason!r}"
    assert state.state is HealthState.PROBING and "sending probe pilots" in state.reason


def test_an_operator_vouching_for_an_active_entry_has_its_history_written_at_once(config: FactoryConfig) -> None:
    active = EntryHealth("dead", HealthState.ACTIVE, "fine", NOW - 700)
    failures = History(bad=(NOW - 100, NOW - 90), causes=("validation", "validation"))
    health_store.save_memory(
        health_store.memory_path(config.work_dir), health_store.HealthMemory({"dead": active}, {"dead": failures})
    )
    ports, _wms, _schedd = fake_ports(config, NOW)
    first = cycle(config, ports, NOW - 10, None)
    vouched = Override("dead", HealthState.ACTIVE, "CE fixed", NOW + 3600, "ops", NOW - 5)
    health_store.save_overrides(health_store.overrides_path(config.work_dir), {"dead": vouched})
    second = cycle(config, ports, NOW, None, first.health)
    assert second.health.states["dead"].state is HealthState.ACTIVE, "no change of state"
    assert history_saved_at(config) == NOW, "the forgotten failures must not come back after a crash"
    assert health_store.load_memory(health_store.memory_path(config.work_dir)).history["dead"] == History()


def test_a_cycle_that_cannot_write_its_states_keeps_them_for_the_next(
    config: FactoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    banned_long_ago(config)
    ports, _wms, _schedd = fake_ports(config, NOW)
    notifiers = Notifiers()
    notifiers.failing = False
    service = FactoryService(Path("unused.yaml"), config, connect_ports=lambda _: ports)
    service.reporter = Reporter((notifiers,), 5.0)
    service.cycle(1, NOW - 200)  # still banned
    real = health_store.write_atomically  # type: ignore[attr-defined]

    def full_disk(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(health_store, "write_atomically", full_disk)
    service.cycle(2, NOW)  # banned -> probing, nothing written
    monkeypatch.setattr(health_store, "write_atomically", real)
    service.cycle(3, NOW + 10)
    keys = {key for offered in notifiers.offered for key in offered}
    assert len(keys) == 1, f"the old file must not be read back over the newer memory: {sorted(keys)}"
    assert service.health is not None and service.health.states["dead"].state is HealthState.PROBING
