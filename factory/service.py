"""The factory loop: observe -> decide -> act -> report, every cycle.

`plan_cycle` observes and decides without touching the queue or the
keyring (for `plan` and `status`); `run_cycle` also acts. It creates or
rotates the keyring only in a cycle that read its queue, and so reached the
WMS collector and the schedd: a factory cut off from its pool makes no key
it could not advertise. `FactoryService` repeats the cycle under
`updraft.loop.run_service`: SIGTERM stops after the current cycle, SIGHUP
re-reads the configuration and keeps the old one when the new one is bad.
Nothing about pilots is kept in memory between cycles: the queue is the
state, so a restart or `kill -9` loses nothing and submits nothing twice.
Every daemon is reached through the cycle's ports (`updraft.factory.ports`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from updraft.condor import use_client_config
from updraft.envelope import Keyring
from updraft.errors import ConfigError
from updraft.factory import downtime, health_store, holds
from updraft.factory.accounting import account
from updraft.factory.act import act, send_ads, terminate_instances, withdraw
from updraft.factory.advertise import REJECTED_ATTRIBUTE, cycle_ads
from updraft.factory.cloud import decide_cloud, unknown_lines
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.credentials import keyring_or_problem, load_keyring, public_key_attributes
from updraft.factory.decide import decide
from updraft.factory.health import (
    HealthDecision,
    asking_for_pilots,
    cycle_evidence,
    decide_health,
    probing_since,
    submit_failures,
    with_outcomes,
)
from updraft.factory.health_model import HealthState, Override
from updraft.factory.health_store import HealthMemory
from updraft.factory.model import FactoryPlan, Request
from updraft.factory.observe import FactoryView, observe
from updraft.factory.policy import (
    accepted_requests,
    cloud_policies,
    entries_in_downtime,
    entry_policies,
    health_settings,
    with_health,
)
from updraft.factory.ports import FactoryPorts, connect
from updraft.factory.reconfig import record_applied
from updraft.factory.report import Acted, CycleResult, log_rejections
from updraft.factory.snapshot import factory_snapshot
from updraft.factory.stage import stage_entries
from updraft.factory.submission import describe, prune_credentials
from updraft.loop import ConfiguredService, CycleSignals, run_service
from updraft.monitoring import registry
from updraft.monitoring.notify import NOTIFIERS
from updraft.monitoring.report import Reporter
from updraft.staging import StagingError, StagingRelease

log = logging.getLogger(__name__)


def plan_cycle(
    config: FactoryConfig, now: float, ports: FactoryPorts | None = None
) -> tuple[FactoryView, FactoryPlan | None, list[downtime.Downtime]]:
    """Observe and decide; no queue is touched, no ad is sent, no history is read and no health is saved."""
    keyring = load_keyring(config, now, read_only=True)
    planned = timed_plan(config, ports or connect(config), now, keyring, with_history=False)
    return planned.view, planned.plan, planned.downtimes


@dataclass(frozen=True)
class Planned:
    """What observe and decide made of one cycle, before act."""

    view: FactoryView
    plan: FactoryPlan | None
    downtimes: list[downtime.Downtime]
    timings: dict[str, float]
    health: HealthDecision
    memory: HealthMemory
    """The health memory this cycle started from."""
    evaluated_at: float | None
    """Up to when outcomes were observed: `now`, or the previous evaluation when the queue was unknown."""
    problems: tuple[str, ...] = ()
    """The health inputs' own problems (a damaged override file)."""


def timed_plan(
    config: FactoryConfig,
    ports: FactoryPorts,
    now: float,
    keyring: Keyring | None,
    *,
    with_history: bool = True,
    cycle: int = 0,
    memory: HealthMemory | None = None,
) -> Planned:
    """`plan_cycle`, with the seconds spent observing and deciding (for monitoring).

    The entries' health is decided first, from the queue, the completed
    pilots, the health `memory` (read from the work folder when None) and the
    overrides; `decide` then applies it.
    `cycle` turns round-robin entry sets: each cycle starts at the next member."""
    started = time.perf_counter()
    downtimes = downtime.load(downtime.downtimes_path(config.work_dir))
    view = observe(config, ports, now, with_history=with_history)
    observed = time.perf_counter()
    timings = {"observe": observed - started}
    overrides, problems = _overrides(config)
    if memory is None:
        memory = health_store.load_memory(health_store.memory_path(config.work_dir))
    requests = accepted_requests(view.requests, config.name, downtimes, now, keyring.openers(now) if keyring else {})
    health, evaluated_at = _decide_health(config, view, memory, requests, overrides, now)
    if view.pilots is None:
        return Planned(view, None, downtimes, timings, health, memory, evaluated_at, problems)
    policies = with_health(entry_policies(config, downtimes, now), health.health)
    plan = decide(requests, view.pilots, policies, now, cycle)
    cloud = decide_cloud(config.name, view.cloud, view.instance_claims or {}, cloud_policies(config), now)
    plan = dataclasses.replace(plan, cloud=cloud)
    timings["decide"] = time.perf_counter() - observed
    return Planned(view, plan, downtimes, timings, health, memory, evaluated_at, problems)


def _overrides(config: FactoryConfig) -> tuple[dict[str, Override], tuple[str, ...]]:
    """The operators' overrides; a damaged file applies none and is the cycle's problem, every cycle."""
    try:
        return health_store.load_overrides(health_store.overrides_path(config.work_dir)), ()
    except ConfigError as err:
        log.error("entry health overrides not applied: %s", err)
        return {}, (f"entry health overrides not applied: {err}",)


def _decide_health(
    config: FactoryConfig,
    view: FactoryView,
    memory: HealthMemory,
    requests: list[Request],
    overrides: dict[str, Override],
    now: float,
) -> tuple[HealthDecision, float | None]:
    """This cycle's outcomes from what was observed, every advertised entry's health from them, and up to
    when outcomes were observed.

    With the queue unknown nothing is observed (its holds and starts were
    not seen, and the completed pilots are read again next cycle, since
    accounting does not run): the states follow time alone (a ban ends,
    nothing is judged from a window missing this cycle's outcomes), and the
    next cycle looks for outcomes from the last evaluation on. `requests`
    say where pilots are still wanted (`asking_for_pilots`)."""
    settings = health_settings(config)
    if view.pilots is None:
        health = decide_health(memory.states, memory.history, {}, overrides, settings, now, evidence=False)
        return dataclasses.replace(health, counted=memory.counted, probe_ids=memory.probes), memory.evaluated_at
    completed = view.completed.pilots if view.completed is not None else ()
    probing, last = probing_since(memory.states), memory.evaluated_at
    asking = asking_for_pilots(requests) if view.requests_known else None  # unknown is not "none asked"
    seen = cycle_evidence(
        view.pilots, completed, settings, last, now, probing, memory.counted, memory.probes, asking or frozenset()
    )
    health = decide_health(
        memory.states,
        memory.history,
        seen.outcomes,
        overrides,
        settings,
        now,
        probes=seen.probes,
        retracted=seen.retracted,
        asking=asking,
    )
    probe_ids = _still_probing(seen.probe_ids, probing, health)
    return dataclasses.replace(health, counted=seen.counted, probe_ids=probe_ids), now


def _still_probing(
    probe_ids: Mapping[str, frozenset[str]], probing: Mapping[str, float], health: HealthDecision
) -> dict[str, frozenset[str]]:
    """The probes seen, for the entries still in the probing period they were seen in: a new period
    (after probes that gave no verdict) starts with none."""
    kept = {}
    for entry, ids in probe_ids.items():
        state = health.health.get(entry)
        if state is not None and state.state is HealthState.PROBING and state.since == probing.get(entry):
            kept[entry] = ids
    return kept


def _remembered(planned: Planned, acted: Acted, now: float, notifying: bool) -> HealthMemory:
    """What the health policy keeps for the next cycle: this cycle's states and history with the
    submissions refused in act, and, when there are notifiers, every change they have not yet taken."""
    history = planned.health.history
    if planned.plan is not None:
        refused = submit_failures(planned.plan.actions, acted.results)
        history = with_outcomes(history, refused, now)
    before = planned.memory
    waiting = len(before.unannounced) + len(planned.health.transitions)
    if notifying and waiting > health_store.MAX_UNANNOUNCED:
        log.warning(
            "%d entry health change(s) the notifiers have not taken dropped, oldest first (at most %d kept)",
            waiting - health_store.MAX_UNANNOUNCED,
            health_store.MAX_UNANNOUNCED,
        )
    return HealthMemory(
        planned.health.health,
        history,
        planned.evaluated_at,
        planned.health.counted,
        before.announcing(planned.health.transitions) if notifying else (),
        before.history_saved_at,
        probes=planned.health.probe_ids,
        written=before.written,  # still the file on disk if this cycle cannot replace it
    )


def _save_health(
    config: FactoryConfig, memory: HealthMemory, decided: HealthDecision, now: float, held: bool
) -> tuple[HealthMemory, list[str]]:
    """Write the memory before the cycle reports: a change reported and then lost with the process would
    be decided (and announced) again, and one decided but not yet announced must be found after a restart.

    Saved in every cycle, also one that could not read its queue. The
    evidence is written when due (`health_store.history_due`); a memory not
    `held` by a running service (a single cycle, a test) is written whole,
    since nothing else keeps it. The states are written even when the
    evidence could not be: they are small, and a restart must find them."""
    path = health_store.memory_path(config.work_dir)
    problems = []
    due = health_store.history_due(memory, decided.transitions, now, config.health_save_seconds, decided.forgotten)
    if not held or due:
        try:
            memory = health_store.save_history(path, memory, now)
        except OSError as err:
            log.error("entry health history not saved: %s", err)
            problems.append(f"entry health history not saved: {err}")
    try:
        return health_store.save_states(path, memory), problems
    except OSError as err:
        log.error("entry health not saved: %s", err)
        return memory, [*problems, f"entry health not saved: {err}"]


def _notifying(reporter: Reporter | None) -> bool:
    """Whether the cycle's report goes to notifiers: without them there is no one to announce to."""
    return reporter is not None and any(writer.name == NOTIFIERS for writer in reporter.writers)


def _announced(memory: HealthMemory, failed: Mapping[str, str]) -> HealthMemory:
    """The memory once the report ran: its changes are announced (queued in the notifiers' outbox, which
    delivers and retries on its own) unless the notifiers' writer failed or was skipped; then they are
    offered again next cycle (the outbox knows each by its key, so none is queued twice)."""
    if NOTIFIERS in failed:
        return memory
    return dataclasses.replace(memory, unannounced=())


def _log_transitions(health: HealthDecision) -> None:
    for change in health.transitions:
        log.warning(
            "entry %s: %s -> %s (%s): %s", change.entry, change.old.value, change.new.value, change.by, change.reason
        )


def run_cycle(
    config: FactoryConfig,
    cycle: int,
    now: float,
    releases: Mapping[str, StagingRelease] | None = None,
    reporter: Reporter | None = None,
    already_logged: frozenset[str] = frozenset(),
    ports: FactoryPorts | None = None,
    memory: HealthMemory | None = None,
) -> CycleResult:
    """One cycle through `ports` (the real daemons when None); `releases` are the entries' staged files.

    `reporter` gets the cycle's snapshot last, whatever happened before:
    monitoring shows the cycles that went wrong too. `already_logged`: the
    refusals the previous cycle logged (`CycleResult.refusals`), not logged again.
    `memory`: the entry health memory the previous cycle left (`CycleResult.health`);
    None reads it from the work folder and writes it back whole.
    """
    ports = ports or connect(config)
    releases = stage_entries(config) if releases is None else releases
    keyring, problems = keyring_or_problem(config, now, read_only=True)
    planned = timed_plan(config, ports, now, keyring, cycle=cycle, memory=memory)
    view, plan, downtimes = planned.view, planned.plan, planned.downtimes
    if plan is not None and not problems:  # the cycle reached its daemons: its factory ad can carry a new key
        keyring, problems = keyring_or_problem(config, now)
    extra = {**public_key_attributes(keyring), REJECTED_ATTRIBUTE: len(plan.rejected) if plan else 0}
    ads = cycle_ads(config, downtimes, view.pilots, now, extra, planned.health.health)
    problems += [*view.problems, *planned.problems, *_some(send_ads(ports.wms, ads))]
    problems += _held_problems(view) + _unknown_instances(plan)
    _log_transitions(planned.health)
    acted = Acted()
    if plan is None:
        log.error("pilot queue unreadable: nothing submitted or removed this cycle")
    else:
        log_rejections(plan, already_logged)
        acted = _act(config, ports, plan, view, releases, now)
    notifying = _notifying(reporter)
    remembered, unsaved = _save_health(
        config, _remembered(planned, acted, now, notifying), planned.health, now, held=memory is not None
    )
    result = CycleResult.of(plan, view, acted, [*problems, *unsaved], planned.timings)
    if reporter is None:
        return dataclasses.replace(result, health=remembered)
    facts = result.facts(now, cycle, entries_in_downtime(config, downtimes, now))
    health = planned.health
    facts = dataclasses.replace(
        facts, health=health.health, transitions=health.transitions, announce=remembered.unannounced
    )
    failed = reporter.report(factory_snapshot(config, facts))
    return dataclasses.replace(result, health=_announced(remembered, failed) if notifying else remembered)


def _act(
    config: FactoryConfig,
    ports: FactoryPorts,
    plan: FactoryPlan,
    view: FactoryView,
    releases: Mapping[str, StagingRelease],
    now: float,
) -> Acted:
    """Submit, remove and release as decided, keep the token store tidy, and account the pilots that left."""
    started = time.perf_counter()
    results = tuple(act(ports.schedd, plan, lambda action: describe(config, action, releases)))
    cloud = terminate_instances(ports.cloud, plan.cloud)
    problems = [*(e for r in results for e in r.errors), *cloud.errors, *_some(prune_credentials(config, plan, view))]
    acted = time.perf_counter()
    accounting = account(config, view.completed, now)
    timings = {"act": acted - started, "account": time.perf_counter() - acted}
    return Acted(results, accounting, (*problems, *_some(accounting.problem)), timings)


def _held_problems(view: FactoryView) -> list[str]:
    """Entries whose batch system refuses pilots or cannot be reached: logged, and the cycle's problems."""
    found = holds.entry_problems(view.pilots or ())
    for problem in found:
        log.warning("%s", problem)
    return found


def _unknown_instances(plan: FactoryPlan | None) -> list[str]:
    """Cloud instances no pilot of this factory owns: logged and the cycle's problems, every cycle, until
    they are gone (cloud money: never left running unsaid)."""
    found = unknown_lines(plan.cloud) if plan is not None else []
    for line in found:
        log.warning("%s", line)
    return found


def _some(problem: str | None) -> list[str]:
    return [problem] if problem else []


class FactoryService(ConfiguredService[FactoryConfig]):
    """A factory's cycles under `run_service`; SIGHUP reloads the configuration."""

    kind = "factory"

    def __init__(
        self, config_path: Path, config: FactoryConfig, connect_ports: Callable[[FactoryConfig], FactoryPorts] = connect
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.connect_ports = connect_ports
        self.signals = CycleSignals()
        self.releases: Mapping[str, StagingRelease] = {}
        self.reporter = registry.reporter(config.monitoring)
        self.refusals: frozenset[str] = frozenset()
        self.health: HealthMemory | None = None
        """The entry health memory between cycles (read from the work folder by the first cycle)."""

    def run(self, max_cycles: int | None = None) -> int:
        record_applied(self.config)
        self.releases = stage_entries(self.config)
        return run_service(self, self.signals, max_cycles)

    def cycle(self, number: int, now: float) -> str:
        ports = self.connect_ports(self.config)
        result = run_cycle(
            self.config, number, now, self.releases, self.reporter, self.refusals, ports, memory=self._health()
        )
        self.refusals, self.health = result.refusals, result.health
        return (
            f"submitted {result.submitted}, removed {result.removed}, released {result.released}, "
            f"{len(result.problems)} problems"
        )

    def reload(self) -> None:
        try:
            config = load_factory_config(self.config_path).config
            releases = stage_entries(config)
        except (ConfigError, StagingError) as err:
            log.error("reload refused, keeping the running configuration: %s", err)
            return
        if config.work_dir != self.config.work_dir:  # the new folder's memory is read, the old one kept there
            self._save_history()
            self.health = None
        self.config, self.releases = config, releases
        self.reporter = registry.reporter(config.monitoring)
        use_client_config(self.config.condor_config)
        record_applied(self.config)
        log.warning("configuration reloaded from %s", self.config_path)

    def shutdown(self) -> None:
        """Withdraw the factory's ads, and write the entry health history kept since it was last written."""
        self._save_history()
        withdraw(self.connect_ports(self.config).wms, self.config.name)

    def _health(self) -> HealthMemory | None:
        """The memory the last cycle left, unless another process replaced ``health.json`` since (then it
        is read again, None)."""
        path = health_store.memory_path(self.config.work_dir)
        if self.health is not None and not health_store.written_by_us(path, self.health):
            log.warning("%s was changed by another process (a `factory once`?): read again", path)
            return None
        return self.health

    def _save_history(self) -> None:
        """Write the memory at stop or before a reload, unless another process replaced ``health.json``
        since (its file is newer than this memory; the next start reads it)."""
        if self.health is None:
            return
        path = health_store.memory_path(self.config.work_dir)
        if not health_store.written_by_us(path, self.health):
            log.warning("%s was changed by another process: this service's older memory is not written", path)
            return
        try:
            health_store.save_memory(path, self.health)
        except OSError as err:
            log.error("entry health history not saved at shutdown: %s", err)
