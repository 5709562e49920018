"""The frontend loop: observe -> decide -> publish -> report, every cycle.

`run_cycle` is one turn and is what `once`, `plan` and `explain` use too;
`FrontendService` repeats it under `updraft.loop.run_service`: SIGTERM stops
after withdrawing our requests, SIGHUP re-reads the config and keeps the
old one when the new one does not validate. Every daemon is reached through
the cycle's ports (`updraft.frontend.ports`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from updraft import protocol
from updraft.condor import use_client_config
from updraft.errors import CondorError, ConfigError, TokenError
from updraft.frontend.config import FrontendConfig, load_frontend_config
from updraft.frontend.credentials import TokenBook, seal_requests, token_book
from updraft.frontend.decide import decide
from updraft.frontend.feedback_file import load_memory, save_memory
from updraft.frontend.model import FeedbackMemory, Observation, Plan
from updraft.frontend.observe import observe
from updraft.frontend.ports import FrontendPorts, connect
from updraft.frontend.publish import publish, request_ads, withdraw_all
from updraft.frontend.report import CycleResult, blind_spot, snapshot_of
from updraft.frontend.restarts import restart_rows
from updraft.frontend.stage import pilot_params, stage_groups
from updraft.loop import ConfiguredService, CycleSignals, pid_file, run_service
from updraft.monitoring import registry
from updraft.monitoring.report import Reporter
from updraft.staging import StagingError, StagingRelease

log = logging.getLogger(__name__)


def plan_cycle(config: FrontendConfig, now: float, ports: FrontendPorts | None = None) -> tuple[Plan, dict[str, float]]:
    """Observe and decide, without acting: shared by a real cycle and `plan`/`explain`."""
    plan, timings, _ = observe_and_decide(config, ports or connect(config), now)
    return plan, timings


def observe_and_decide(
    config: FrontendConfig, ports: FrontendPorts, now: float, memory: FeedbackMemory | None = None
) -> tuple[Plan, dict[str, float], Observation]:
    """`plan_cycle`, also returning what was observed (the factories' keys, the published requests).

    `memory` is what idle pilots taught earlier cycles (the last `Plan.feedback`); None reads it from
    the work_dir, as `plan` and `explain` do, so they show the decisions the running frontend makes.
    """
    started = time.perf_counter()
    remembered = load_memory(config) if memory is None else memory
    observation = dataclasses.replace(observe(config, ports, now), feedback=remembered)
    observed = time.perf_counter()
    plan = decide(observation, config, now)
    return plan, {"observe": observed - started, "decide": time.perf_counter() - observed}, observation


def run_cycle(
    config: FrontendConfig,
    reporter: Reporter,
    cycle: int,
    now: float,
    releases: Mapping[str, StagingRelease] | None = None,
    tokens: TokenBook | None = None,
    ports: FrontendPorts | None = None,
    memory: FeedbackMemory | None = None,
) -> CycleResult:
    """One full turn through `ports` (the real daemons when None); a refused publish is a problem, not a crash.

    `releases` are the groups' staged files (`stage_groups`), written here when None.
    `tokens` holds the pilot tokens between cycles; None with `pilot_tokens`
    configured mints fresh ones for this cycle alone (`once`).
    `memory` is the last cycle's `Plan.feedback` (None: read from the work_dir, as `once` does); the
    new one is in the result's plan and is saved to the work_dir when it changed.
    """
    ports = ports or connect(config)
    releases = stage_groups(config) if releases is None else releases
    tokens = token_book(config) if tokens is None else tokens
    memory = load_memory(config) if memory is None else memory
    plan, timings, observation = observe_and_decide(config, ports, now, memory)
    save_memory(config, plan.feedback, memory)
    ads = request_ads(plan, config, cycle, pilot_params(config, releases))
    problems = [f"{p.source}: {p.message}" for p in plan.problems]
    if tokens is not None:
        entries = [protocol.entry_ad_name(ad[protocol.R_ENTRY], ad[protocol.R_FACTORY]) for ad in ads]
        ads, sealing_problems = seal_requests(ads, tokens.tokens(entries, now), observation.factory_keys, config)
        for problem in sealing_problems:
            log.warning("%s", problem)
        problems.extend(sealing_problems)
    started = time.perf_counter()
    blind = blind_spot(plan)
    if observation.published is None:  # what is published is unknown: nothing to keep, nothing to withdraw
        refused: str | None = blind or "requests not published: the published ones could not be read"
        log.error("requests not published this cycle: %s", refused)
    else:  # blind or not: decide kept the last good requests where data is missing, and computed no guess
        refused = _publish(ads, config, ports, observation)
        if blind is not None:
            log.error("requests kept as they were where data is missing: %s", blind)
    timings["publish"] = time.perf_counter() - started
    _log_kept(plan)
    failure = blind or refused
    problems = list(dict.fromkeys([*problems, *([failure] if failure else []), *([refused] if refused else [])]))
    unread = observation.restarts_unread
    known = [(d.group, d.entry.key) for d in plan.decisions]
    restarts = restart_rows(observation.restarted, now, unread, known)
    snapshot = snapshot_of(plan, config, cycle, timings, tuple(problems), restarts, tuple(sorted(unread)))
    reporter.report(snapshot)
    return CycleResult(plan, ads, snapshot, refused is None, tuple(problems), failure)


def _log_kept(plan: Plan) -> None:
    """One line per cycle for the requests kept or withdrawn against missing data (the records say why)."""
    kept = [f"{d.group}/{d.entry.key}" for d in plan.decisions if d.held_since is not None and not d.withdrawn]
    gone = [f"{d.group}/{d.entry.key}" for d in plan.decisions if d.withdrawn and d.held_since is not None]
    if kept:
        log.warning("data missing: %d requests kept, nothing removed for them: %s", len(kept), ", ".join(kept[:10]))
    if gone:
        log.warning("data missing too long or no request to keep: %d withdrawn: %s", len(gone), ", ".join(gone[:10]))


def _publish(ads: list[dict[str, Any]], config: FrontendConfig, ports: FrontendPorts, seen: Observation) -> str | None:
    """Advertise the cycle's requests; why they are not published, or None when they are."""
    try:
        publish(ads, config, ports.wms, seen.published)
    except CondorError as err:
        log.error("requests not published this cycle: %s", err)
        return f"requests not published: {err}"
    return None


def pid_path(config: FrontendConfig) -> Path:
    return pid_file(config, FrontendService.kind)


class FrontendService(ConfiguredService[FrontendConfig]):
    """A frontend's cycles under `run_service`; SIGHUP reloads the configuration."""

    kind = "frontend"

    def __init__(
        self,
        config_path: Path,
        config: FrontendConfig,
        connect_ports: Callable[[FrontendConfig], FrontendPorts] = connect,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.connect_ports = connect_ports
        self.reporter = registry.reporter(config.monitoring)
        self.signals = CycleSignals()
        self.releases: Mapping[str, StagingRelease] = {}
        self.tokens = token_book(config)
        self.feedback: FeedbackMemory | None = None
        """The last cycle's idle-feedback memory; None until the first cycle reads it from the work_dir."""

    def run(self, max_cycles: int | None = None) -> int:
        self.releases = stage_groups(self.config)
        return run_service(self, self.signals, max_cycles)

    def cycle(self, number: int, now: float) -> str:
        result = run_cycle(
            self.config,
            self.reporter,
            number,
            now,
            self.releases,
            self.tokens,
            self.connect_ports(self.config),
            self.feedback,
        )
        self.feedback = result.plan.feedback
        return f"{len(result.ads)} requests, {len(result.problems)} problems"

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

    def shutdown(self) -> None:
        try:
            withdraw_all(self.config, self.connect_ports(self.config).wms)
            log.warning("stopped; requests withdrawn")
        except CondorError as err:
            log.error("stopped, but requests could not be withdrawn (they expire on their own): %s", err)
