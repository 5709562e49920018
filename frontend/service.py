"""The frontend loop: observe -> decide -> publish -> report, every cycle.

`run_cycle` is one turn and is what `once`, `plan` and `explain` use too;
`FrontendService` repeats it and owns the process's signals: SIGTERM stops
after withdrawing our requests, SIGHUP re-reads the config and keeps the
old one when the new one does not validate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from updraft import protocol
from updraft.condor import use_client_config
from updraft.loop import CycleSignals, Wake, write_pid
from updraft.errors import ConfigError, CondorError, TokenError
from updraft.frontend.config import FrontendConfig, load_frontend_config
from updraft.frontend.credentials import TokenBook, seal_requests
from updraft.frontend.decide import decide
from updraft.frontend.model import Observation, Plan
from updraft.frontend.observe import observe
from updraft.frontend.publish import publish, published_requests, request_ads, withdraw_all
from updraft.frontend.stage import pilot_params, stage_groups
from updraft.monitoring import registry
from updraft.monitoring.report import Reporter
from updraft.monitoring.snapshot import FrontendSnapshot, GroupEntryRow
from updraft.staging import StagingRelease, StagingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CycleResult:
    plan: Plan
    ads: list[dict[str, Any]]
    snapshot: FrontendSnapshot
    published: bool
    problems: tuple[str, ...] = field(default=())


def snapshot_of(plan: Plan, config: FrontendConfig, cycle: int, timings: dict[str, float], problems: tuple[str, ...]) -> FrontendSnapshot:
    """What monitoring gets from a cycle: counts and requests per (group, entry)."""
    rows = tuple(
        GroupEntryRow(
            group=d.group,
            entry=d.entry.key,
            jobs_idle=d.inputs.idle_jobs,
            jobs_old_idle=d.inputs.old_idle_jobs,
            jobs_running=d.inputs.running_jobs,
            slots_total=d.inputs.pilots,
            slots_idle=d.inputs.idle_slots,
            slots_running=d.inputs.running_slots,
            slots_failed=d.inputs.failed_slots,
            slots_cores=d.inputs.pilot_cores,
            requested_idle=d.idle,
            requested_max=d.max_pilots,
            remove=d.remove.value,
            bound_by=d.bound_by,
            in_downtime=d.entry.in_downtime,
        )
        for d in plan.decisions
    )
    return FrontendSnapshot(config.name, plan.now, cycle, rows, dict(plan.unmatched), dict(plan.in_downtime), problems, timings)


def plan_cycle(config: FrontendConfig, now: float) -> tuple[Plan, dict[str, float]]:
    """Observe and decide, without acting: shared by a real cycle and `plan`/`explain`."""
    plan, timings, _ = observe_and_decide(config, now)
    return plan, timings


def observe_and_decide(config: FrontendConfig, now: float) -> tuple[Plan, dict[str, float], Observation]:
    """`plan_cycle`, also returning what was observed (the factories' keys, for sealing)."""
    started = time.perf_counter()
    observation = observe(config, now)
    observed = time.perf_counter()
    plan = decide(observation, config, now)
    return plan, {"observe": observed - started, "decide": time.perf_counter() - observed}, observation


def token_book(config: FrontendConfig) -> TokenBook | None:
    """The pilot tokens' holder, when the config mints tokens; reads the signing key (TokenError if it cannot)."""
    return TokenBook(config.pilot_tokens) if config.pilot_tokens is not None else None


def run_cycle(config: FrontendConfig, reporter: Reporter, cycle: int, now: float,
              releases: Mapping[str, StagingRelease] | None = None, tokens: TokenBook | None = None) -> CycleResult:
    """One full turn; a collector that refuses our ads is a problem reported, not a crash.

    `releases` are the groups' staged files (`stage_groups`), written here when None.
    `tokens` holds the pilot tokens between cycles; None with `pilot_tokens`
    configured mints fresh ones for this cycle alone (`once`).
    """
    if releases is None:
        releases = stage_groups(config)
    if tokens is None:
        tokens = token_book(config)
    plan, timings, observation = observe_and_decide(config, now)
    ads = request_ads(plan, config, cycle, pilot_params(config, releases))
    problems = [f"{p.source}: {p.message}" for p in plan.problems]
    if tokens is not None:
        entries = [protocol.entry_ad_name(ad[protocol.R_ENTRY], ad[protocol.R_FACTORY]) for ad in ads]
        ads, sealing_problems = seal_requests(ads, tokens.tokens(entries, now), observation.factory_keys, config)
        for problem in sealing_problems:
            log.warning("%s", problem)
        problems.extend(sealing_problems)
    started = time.perf_counter()
    try:
        publish(ads, config, stale=published_requests(config))
        published = True
    except CondorError as err:
        log.error("requests not published this cycle: %s", err)
        problems.append(str(err))
        published = False
    timings["publish"] = time.perf_counter() - started
    snapshot = snapshot_of(plan, config, cycle, timings, tuple(problems))
    reporter.report(snapshot)
    return CycleResult(plan, ads, snapshot, published, tuple(problems))


def pid_path(config: FrontendConfig) -> Path:
    return config.work_dir / "frontend.pid"



class FrontendService:
    """Runs cycles until SIGTERM; SIGHUP reloads the configuration."""

    def __init__(self, config_path: Path, config: FrontendConfig) -> None:
        self.config_path = config_path
        self.config = config
        self.reporter = registry.reporter(config.monitoring)
        self.signals = CycleSignals()
        self.cycle = 0
        self.releases: Mapping[str, StagingRelease] = {}
        self.tokens = token_book(config)

    def run(self, max_cycles: int | None = None) -> None:
        self.releases = stage_groups(self.config)
        write_pid(pid_path(self.config))
        try:
            while max_cycles is None or self.cycle < max_cycles:
                self.cycle += 1
                result = run_cycle(self.config, self.reporter, self.cycle, time.time(), self.releases, self.tokens)
                log.info("cycle %d: %d requests, %d problems", self.cycle, len(result.ads), len(result.problems))
                wake = self.signals.sleep(self.config.cycle_seconds)
                if wake is Wake.STOP:
                    break
                if wake is Wake.RELOAD:
                    self.reload()
        finally:
            self._withdraw()
            pid_path(self.config).unlink(missing_ok=True)

    def reload(self) -> None:
        try:
            loaded = load_frontend_config(self.config_path)
            releases = stage_groups(loaded.config)
            tokens = token_book(loaded.config)  # the signing key is read again: it may have been rotated
        except (ConfigError, StagingError, TokenError) as err:
            log.error("reload refused, keeping the running configuration: %s", err)
            return
        self.config, self.releases, self.tokens = loaded.config, releases, tokens
        use_client_config(self.config.condor_config)
        self.reporter = registry.reporter(self.config.monitoring)
        log.warning("configuration reloaded from %s", self.config_path)

    def _withdraw(self) -> None:
        try:
            withdraw_all(self.config)
            log.warning("stopped; requests withdrawn")
        except CondorError as err:
            log.error("stopped, but requests could not be withdrawn (they expire on their own): %s", err)
