"""Entry health at its edges, found by review: probes the factory removed, goods retracted after a
history was forgotten or pruned, a `factory once` beside the service, a service that cannot write."""

from __future__ import annotations

from pathlib import Path

import pytest

from updraft.factory import health_store
from updraft.factory.completed import CompletedPilot
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.health import VALIDATION, HealthSettings, History, cycle_evidence, decide_health
from updraft.factory.health_model import EntryHealth, HealthState, Override
from updraft.factory.model import Pilot, PilotState
from updraft.factory.ports import fake_ports
from updraft.factory.service import FactoryService
from updraft.monitoring.report import Reporter

from .conftest import ConfigTree
from .test_factory_health_cycle import ENTRY, FACTORY
from .test_factory_health_memory import NOW, Notifiers, banned_long_ago, cycle

S = HealthSettings()


@pytest.fixture
def config(tree: ConfigTree, tmp_path: Path) -> FactoryConfig:
    main = FACTORY.format(work=tmp_path / "work") + ENTRY.format(name="dead")
    return load_factory_config(tree.factory(main=main)).config


def test_a_held_probe_the_factory_removed_is_not_replaced() -> None:
    """The hold was the probe's outcome (told in the queue); its removal (no report) must not free a probe."""
    since = NOW - 1000
    held = Pilot(
        "7.0", "ce1", "vo", "main", "default", "c", PilotState.HELD, NOW - 30, since + 10, last_hold_time=NOW - 30
    )
    first = cycle_evidence([held], (), {"ce1": S}, NOW - 60, NOW, {"ce1": since})
    assert first.outcomes["ce1"] and first.probes["ce1"].sent == 1
    removed = CompletedPilot(
        "7.0", "ce1", "ce1", "vo", "main", False, int(NOW + 30), int(NOW + 30), submitted=int(since) + 10
    )
    second = cycle_evidence((), [removed], {"ce1": S}, NOW, NOW + 60, {"ce1": since}, probe_ids=first.probe_ids)
    assert second.probes["ce1"].gone == 1, f"a failed probe was forgotten and will be replaced: {second.probes}"


def test_a_retraction_after_the_history_was_forgotten_removes_no_other_pilots_good() -> None:
    """Pilot 1.0 counted good at NOW-5000; the entry later goes probing -> active (history before probing
    forgotten, no clock step); 1.0 then ends badly: the probes' goods must stay."""
    since = NOW - 600
    history = {"ce1": History(good=(NOW - 5000, NOW - 300, NOW - 300), bad=(), causes=())}
    probing = EntryHealth("ce1", HealthState.PROBING, "x", since, cap=3)
    settings = HealthSettings(min_time_in_state_seconds=0)
    decided = decide_health({"ce1": probing}, history, {}, {}, {"ce1": settings}, NOW)
    assert decided.health["ce1"].state is HealthState.ACTIVE
    assert decided.history["ce1"].good == (NOW - 300, NOW - 300)
    again = decide_health(
        decided.health,
        decided.history,
        {"ce1": [VALIDATION]},
        {},
        {"ce1": settings},
        NOW + 60,
        retracted={"ce1": [NOW - 5000]},
    )
    assert again.history["ce1"].good == (NOW - 300, NOW - 300), "another pilot's good was retracted"


def test_per_entry_history_seconds_shorter_than_the_longest_retracts_a_wrong_good() -> None:
    short = HealthSettings(history_seconds=3600, window_seconds=3600)
    counted = {"1.0": NOW - 7000}  # counted good long ago; kept: another entry keeps a day
    done = CompletedPilot("1.0", "ce1", "ce1", "vo", "main", False, int(NOW), int(NOW), report=None)
    from updraft.glidein.report import PilotReport

    bad = PilotReport("failed", "validate", "no cvmfs", "f", "ce1", "vo", "main", "1.0", "c")
    done = CompletedPilot("1.0", "ce1", "ce1", "vo", "main", False, int(NOW), int(NOW), report=bad)
    seen = cycle_evidence((), [done], {"ce1": short, "other": S}, NOW - 60, NOW, counted=counted)
    history = {"ce1": History(good=(NOW - 100,))}  # NOW-7000 was pruned (history_seconds 3600)
    decided = decide_health({}, history, seen.outcomes, {}, {"ce1": short, "other": S}, NOW, retracted=seen.retracted)
    assert decided.history["ce1"].good == (NOW - 100,), "pilot 2's good removed for pilot 1's failure"


def test_stopping_after_once_does_not_write_the_services_old_states_over_it(config: FactoryConfig) -> None:
    banned_long_ago(config)
    ports, _wms, _schedd = fake_ports(config, NOW)
    notifiers = Notifiers()
    notifiers.failing = False
    service = FactoryService(Path("unused.yaml"), config, connect_ports=lambda _: ports)
    service.reporter = Reporter((notifiers,), 5.0)
    service.cycle(1, NOW - 200)  # still banned
    cycle(config, ports, NOW, Reporter((notifiers,), 5.0))  # `factory once`: banned > probing, announced
    service.shutdown()
    restarted = FactoryService(Path("unused.yaml"), config, connect_ports=lambda _: ports)
    restarted.reporter = Reporter((notifiers,), 5.0)
    restarted.cycle(1, NOW + 10)
    keys = {k for offered in notifiers.offered for k in offered}
    assert len(keys) == 1, f"shutdown wrote the stale 'banned' back; announced twice: {sorted(keys)}"


def test_a_service_that_cannot_write_from_its_first_cycle_keeps_its_memory(
    config: FactoryConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No health.json yet (first start) and a full disk: written stays None, so every cycle reads the
    folder again, forgets what it decided, and decides (and announces) it again under a new key."""
    vouched = Override("dead", HealthState.BANNED, "CE down", NOW + 3600, "ops", NOW - 5)
    health_store.save_overrides(health_store.overrides_path(config.work_dir), {"dead": vouched})

    def full_disk(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(health_store, "write_atomically", full_disk)
    ports, _wms, _schedd = fake_ports(config, NOW)
    notifiers = Notifiers()
    notifiers.failing = False
    service = FactoryService(Path("unused.yaml"), config, connect_ports=lambda _: ports)
    service.reporter = Reporter((notifiers,), 5.0)
    service.cycle(1, NOW)
    service.cycle(2, NOW + 10)
    keys = {k for offered in notifiers.offered for k in offered}
    assert len(keys) == 1, f"memory thrown away each cycle: {sorted(keys)}"


def test_probes_all_gone_without_a_verdict_start_a_new_probing_period_once(config: FactoryConfig) -> None:
    probing = EntryHealth("dead", HealthState.PROBING, "ban over", NOW - 1000, cap=0)
    used = {"dead": frozenset({"5.0", "6.0", "7.0"})}  # removed before they ran: gone, no outcome
    memory = health_store.HealthMemory({"dead": probing}, {}, NOW - 10, probes=used)
    health_store.save_memory(health_store.memory_path(config.work_dir), memory, now=NOW - 10)
    ports, _wms, _schedd = fake_ports(config, NOW)
    first = cycle(config, ports, NOW, None)
    again = first.health.states["dead"]
    assert (again.state, again.since, again.cap) == (HealthState.PROBING, NOW, 3), again
    assert "every probe gone without a verdict: probing again" in again.reason
    assert first.health.probes.get("dead", frozenset()) == frozenset(), "the new period starts with no probe"
    second = cycle(config, ports, NOW + 10, None, first.health)
    assert second.health.states["dead"].since == NOW and second.health.states["dead"].cap == 3, "not again"
