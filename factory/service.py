"""The factory loop: observe -> advertise -> decide -> act -> report, every cycle.

`plan_cycle` observes and decides without touching the queue or the
keyring (for `plan` and `status`); `run_cycle` also acts. `FactoryService` repeats it and owns
the process's signals: SIGTERM stops after the current cycle, SIGHUP
re-reads the configuration and keeps the old one when the new one is bad.
Nothing about pilots is kept in memory between cycles: the queue is the
state, so a restart or `kill -9` loses nothing and submits nothing twice.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import classad2
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from updraft import protocol
from updraft.condor import Collector, Schedd, use_client_config
from updraft.envelope import Keyring
from updraft.errors import CondorError, ConfigError
from updraft.loop import CycleSignals, Wake, write_pid
from updraft.factory import completed as completed_pilots
from updraft.factory import downtime
from updraft.factory.act import ActResult, release_pilots, remove_pilots, submit_clusters
from updraft.factory.advertise import entry_ads, factory_ad
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.credentials import (
    CredentialStore,
    CredentialStoreError,
    load_keyring,
    open_credential,
    public_key_attributes,
)
from updraft.factory.decide import count_pilots, decide
from updraft.factory.model import FactoryPlan, Pilot, PilotCounts, Release, Remove, Request, Submit
from updraft.factory.observe import FactoryView, observe
from updraft.factory.policy import (
    entries_in_downtime,
    entry_policies,
    frontend_in_downtime,
    member_entry,
)
from updraft.factory.pilot_args import glidein_arguments, glidein_environment
from updraft.factory.reconfig import pid_path, record_applied
from updraft.factory.render import PilotSpec, RenderError, render_submit
from updraft.factory.snapshot import CycleFacts, factory_snapshot
from updraft.factory.stage import stage_entries
from updraft.monitoring import registry
from updraft.monitoring.report import Reporter
from updraft.staging import StagingError, StagingRelease

log = logging.getLogger(__name__)
REJECTED_ATTRIBUTE = "UpdraftRejectedRequests"
"""In the factory ad: requests refused in the last cycle (each is also logged once, with its reason)."""


Stats = dict[completed_pilots.Key, completed_pilots.CompletedStats]
"""Completed-pilot statistics by (entry, frontend)."""


def downtimes_path(config: FactoryConfig) -> Path:
    return config.work_dir / "downtimes.json"


@dataclass(frozen=True)
class CycleResult:
    plan: FactoryPlan | None
    """None when the queue could not be read: nothing was decided."""
    view: FactoryView
    submitted: int = 0
    removed: int = 0
    released: int = 0
    problems: tuple[str, ...] = field(default=())
    completed: Mapping[completed_pilots.Key, completed_pilots.CompletedStats] = field(default_factory=dict)
    """Pilots that left the queue since the last cycle, by (entry, frontend), from their reports."""
    refusals: frozenset[str] = frozenset()
    """This cycle's refused requests with their reasons (`refusal_lines`): the next cycle logs only new ones."""


def accepted_requests(view: FactoryView, config: FactoryConfig, downtimes: list[downtime.Downtime], now: float,
                      openers: Mapping[str, X25519PrivateKey] | None = None) -> list[Request]:
    """Requests as the decision sees them, their credentials opened with `openers` (the keyring's keys
    at `now`); a frontend in its own downtime asks for nothing."""
    return [
        Request.from_published(r, r.security_class).with_credential(*open_credential(r, openers or {}, config.name))
        for r in view.requests
        if not frontend_in_downtime(downtimes, r.entry, r.frontend, now)
    ]


def entry_totals(config: FactoryConfig, pilots: tuple[Pilot, ...] | None, downtimes: list[downtime.Downtime],
                 now: float) -> dict[str, dict[str, int]]:
    """Each advertised entry's pilots by state, stale ones included, as its ad publishes them."""
    policies = entry_policies(config, downtimes, now)
    by_entry: dict[str, list[Pilot]] = {name: [] for name in policies}
    for pilot in pilots or ():
        by_entry.setdefault(pilot.entry, []).append(pilot)
    return {name: _as_totals(count_pilots(by_entry[name], now, policy)) for name, policy in policies.items()}


def _as_totals(counts: PilotCounts) -> dict[str, int]:
    return {**asdict(counts), "idle": counts.idle}


def factory_totals(per_entry: dict[str, dict[str, int]]) -> dict[str, int]:
    """The sum over entries: the pilot numbers of the factory ad."""
    totals: Counter[str] = Counter()
    for counts in per_entry.values():
        totals.update(counts)
    return dict(totals)


def plan_cycle(config: FactoryConfig, now: float) -> tuple[FactoryView, FactoryPlan | None, list[downtime.Downtime]]:
    """Observe and decide; no queue is touched and no ad is sent."""
    view, plan, downtimes, _ = timed_plan(config, now, load_keyring(config, now, read_only=True))
    return view, plan, downtimes


def timed_plan(config: FactoryConfig, now: float, keyring: Keyring | None
               ) -> tuple[FactoryView, FactoryPlan | None, list[downtime.Downtime], dict[str, float]]:
    """`plan_cycle`, with the seconds spent observing and deciding (for monitoring)."""
    started = time.perf_counter()
    downtimes = downtime.load(downtimes_path(config))
    view = observe(config)
    observed = time.perf_counter()
    timings = {"observe": observed - started}
    if view.pilots is None:
        return view, None, downtimes, timings
    requests = accepted_requests(view, config, downtimes, now, keyring.openers(now) if keyring else {})
    plan = decide(requests, view.pilots, entry_policies(config, downtimes, now), now)
    timings["decide"] = time.perf_counter() - observed
    return view, plan, downtimes, timings


def advertise(config: FactoryConfig, downtimes: list[downtime.Downtime], pilots: tuple[Pilot, ...] | None,
              now: float, rejected: int, keyring: Keyring | None) -> str | None:
    """Entry ads and the global factory ad (with the key frontends seal to); a refusal is this cycle's
    problem, not a crash."""
    per_entry = entry_totals(config, pilots, downtimes, now) if pilots is not None else {}
    global_ad = {**factory_ad(config, factory_totals(per_entry)), **public_key_attributes(keyring),
                 REJECTED_ATTRIBUTE: rejected}
    ads = [*entry_ads(config, entries_in_downtime(config, downtimes, now), per_entry), global_ad]
    try:
        Collector(config.wms_collector, timeout=config.query_timeout_seconds).advertise(ads)
    except CondorError as err:
        log.error("entries not advertised this cycle: %s", err)
        return str(err)
    return None


def run_cycle(config: FactoryConfig, cycle: int, now: float,
              releases: Mapping[str, StagingRelease] | None = None, reporter: Reporter | None = None,
              already_logged: frozenset[str] = frozenset()) -> CycleResult:
    """One cycle; `releases` are the entries' staged files (`stage_entries`), read from disk when None.

    `reporter` gets the cycle's snapshot last, whatever happened before:
    monitoring shows the cycles that went wrong too. `already_logged`: the
    refusals the previous cycle logged (`CycleResult.refusals`), not logged again.
    """
    if releases is None:
        releases = stage_entries(config)
    keyring, problems = None, []
    try:
        keyring = load_keyring(config, now)
    except CredentialStoreError as err:  # no credential opens this cycle; the rest of the cycle goes on
        log.error("%s", err)
        problems.append(str(err))
    view, plan, downtimes, timings = timed_plan(config, now, keyring)
    problems.extend(view.problems)
    trouble = advertise(config, downtimes, view.pilots, now, len(plan.rejected) if plan else 0, keyring)
    if trouble:
        problems.append(trouble)
    results: list[ActResult] = []
    completed: Stats = {}
    totals: Stats = {}
    if plan is None:
        log.error("pilot queue unreadable: nothing submitted or removed this cycle")
    else:
        log_rejections(plan, already_logged)
        started = time.perf_counter()
        results = act(config, plan, view.pilots or (), cycle, downtimes, releases)
        problems.extend(e for r in results for e in r.errors)
        trouble = prune_credentials(config, plan, view.pilots or ())
        if trouble:
            problems.append(trouble)
        acted = time.perf_counter()
        completed, totals, trouble = account_completed(config, now)
        if trouble:
            problems.append(trouble)
        timings.update(act=acted - started, account=time.perf_counter() - acted)
    result = CycleResult(
        plan, view,
        submitted=sum(r.submitted for r in results),
        removed=sum(r.removed for r in results),
        released=sum(r.released for r in results),
        problems=tuple(problems),
        completed=completed,
        refusals=refusal_lines(plan),
    )
    if reporter is not None:
        facts = CycleFacts(now, cycle, view.pilots or (), plan, entries_in_downtime(config, downtimes, now),
                           totals, result.problems, timings)
        reporter.report(factory_snapshot(config, facts))
    return result


def completed_paths(config: FactoryConfig) -> tuple[Path, Path]:
    """(checkpoint, running totals) of the completed-pilot accounting."""
    return config.work_dir / "completed-checkpoint.json", config.work_dir / "completed-totals.json"


def account_completed(config: FactoryConfig, now: float) -> tuple[Stats, Stats, str | None]:
    """Read the reports of pilots that left the queue since last time and add them to the totals.

    Returns (this cycle's pilots, the running totals, the problem if any).

    The checkpoint is saved before the totals: a crash in between loses one
    cycle's pilots rather than counting them twice. Old pilot logs are
    pruned here too, long after their reports were read.
    """
    checkpoint_path, totals_path = completed_paths(config)
    checkpoint = completed_pilots.load_checkpoint(checkpoint_path, now)
    try:
        schedd = Collector(config.wms_collector, timeout=config.query_timeout_seconds).schedd(config.schedd)
        pilots, following = completed_pilots.read_completed(schedd, config.name, checkpoint)
    except CondorError as err:
        log.error("completed pilots not read this cycle: %s", err)
        return {}, completed_pilots.CompletedTotals(totals_path).load(), str(err)
    new = completed_pilots.summarize(pilots)
    store = completed_pilots.CompletedTotals(totals_path)
    totals = completed_pilots.merge(store.load(), new)
    try:
        completed_pilots.save_checkpoint(checkpoint_path, following)
        store.save(totals)
        completed_pilots.prune_pilot_logs(config.work_dir / "entries", config.pilot_log_retention_seconds, now)
    except OSError as err:
        log.error("completed-pilot accounting not saved: %s", err)
        return new, totals, f"completed-pilot accounting not saved: {err}"
    for (entry, frontend), stats in sorted(new.items()):
        log.info("completed on %s for %s: %d pilots (%d ok, %d failed%s, %d without report), %d jobs",
                 entry, frontend, stats.pilots, stats.ok, stats.failed, _by_step(stats), stats.no_report, stats.jobs_run)
    return new, totals, None


def _by_step(stats: completed_pilots.CompletedStats) -> str:
    steps = ", ".join(f"{step} {count}" for step, count in sorted(stats.failed_by_step.items()))
    return f": {steps}" if steps else ""


def refusal_lines(plan: FactoryPlan | None) -> frozenset[str]:
    """Each refused request with its reason, as logged."""
    if plan is None:
        return frozenset()
    return frozenset(f"{r.request.frontend}.{r.request.group} for {r.request.entry}: {r.reason}" for r in plan.rejected)


def log_rejections(plan: FactoryPlan, already_logged: frozenset[str] = frozenset()) -> None:
    """Who was refused and why, once: a request refused again for the same reason is not logged again
    (it is still counted in every cycle's monitoring)."""
    for line in sorted(refusal_lines(plan) - already_logged):
        log.warning("request refused: %s", line)


def prune_credentials(config: FactoryConfig, plan: FactoryPlan, pilots: tuple[Pilot, ...]) -> str | None:
    """Delete the pilot tokens that no queued pilot and no accepted request names any more."""
    needed = {(p.frontend, p.credential_id) for p in pilots}
    needed |= {(d.request.frontend, d.request.credential.credential_id)
               for d in plan.decisions if d.request is not None and d.request.credential is not None}
    try:
        for path in CredentialStore.of(config).prune(needed):
            log.info("pilot token %s deleted: no queued pilot needs it", path.name)
    except OSError as err:
        return f"pilot tokens not pruned: {err}"
    return None


def act(config: FactoryConfig, plan: FactoryPlan, pilots: tuple[Pilot, ...], cycle: int,
        downtimes: list[downtime.Downtime], releases: Mapping[str, StagingRelease]) -> list[ActResult]:
    """Do what the plan says, in its order; nothing is decided here.

    `pilots`, `cycle` and `downtimes` are not used any more: `decide` spread
    the submissions over member CEs with them (`Submit.member`). They stay
    in the signature for the callers.
    """
    if not plan.actions:
        return []
    try:
        schedd = Collector(config.wms_collector, timeout=config.query_timeout_seconds).schedd(config.schedd)
    except CondorError as err:
        return [ActResult(errors=(str(err),))]
    results = []
    for action in plan.actions:
        if isinstance(action, Submit):
            results.append(_submit(config, schedd, action, releases))
        elif isinstance(action, Remove):
            results.append(remove_pilots(schedd, action.job_ids, f"Updraft factory: {action.reason}"))
        elif isinstance(action, Release):
            results.append(release_pilots(schedd, action.job_ids))
    return results


def _submit(config: FactoryConfig, schedd: Schedd, action: Submit, releases: Mapping[str, StagingRelease]
            ) -> ActResult:
    """Render the description for the action's CE and submit the clusters decide chose."""
    try:
        description = _description(config, action, releases.get(action.target))
    except (RenderError, CredentialStoreError) as err:
        log.error("no pilots for %s on %s this cycle: %s", action.frontend, action.target, err)
        return ActResult(errors=(str(err),))
    return submit_clusters(schedd, description, action.clusters)


def _description(config: FactoryConfig, action: Submit, release: StagingRelease | None) -> dict[str, str]:
    entry = member_entry(config, action.entry, action.target)
    token_file = None
    if action.credential is not None:
        token_file = CredentialStore.of(config).save(action.frontend, action.credential)
    spec = PilotSpec(
        frontend=action.frontend,
        group=action.group,
        security_class=action.security_class,
        credential_id=action.credential.credential_id if action.credential else f"{action.frontend}.{action.group}",
        pilot_token_file=token_file,
        executable=config.pilot.executable,
        work_dir=_log_dir(config, action.entry, action.frontend),
        arguments=glidein_arguments(entry, release, action.pilot, config.pilot.arguments),
        environment=glidein_environment(entry, action.pilot),
    )
    description = render_submit(config, action.entry, entry, spec)
    description["+UpdraftMember"] = classad2.quote(action.target)
    return description


def _log_dir(config: FactoryConfig, entry: str, frontend: str) -> Path:
    """Pilot logs per entry and frontend. A factory running as root submits as a
    token identity that is not root, so the pilot owner must be able to write here."""
    path = config.work_dir / "entries" / entry / frontend
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        path.chmod(0o1777)
    return path


def withdraw(config: FactoryConfig) -> None:
    """On clean shutdown: our entries disappear, so no frontend keeps asking for them."""
    wms = Collector(config.wms_collector, timeout=config.query_timeout_seconds)
    try:
        wms.invalidate(protocol.ENTRY_TYPE, f"{protocol.E_FACTORY} == {classad2.quote(config.name)}")
        wms.invalidate(protocol.FACTORY_TYPE, f"Name == {classad2.quote(config.name)}")
    except CondorError as err:
        log.error("entries not withdrawn (they expire on their own): %s", err)



class FactoryService:
    """Runs cycles until SIGTERM; SIGHUP reloads the configuration."""

    def __init__(self, config_path: Path, config: FactoryConfig) -> None:
        self.config_path = config_path
        self.config = config
        self.signals = CycleSignals()
        self.cycle = 0
        self.releases: Mapping[str, StagingRelease] = {}
        self.reporter = registry.reporter(config.monitoring)
        self.refusals: frozenset[str] = frozenset()

    def run(self, max_cycles: int | None = None) -> None:
        write_pid(pid_path(self.config))
        record_applied(self.config)
        self.releases = stage_entries(self.config)
        try:
            while max_cycles is None or self.cycle < max_cycles:
                self.cycle += 1
                result = run_cycle(self.config, self.cycle, time.time(), self.releases, self.reporter, self.refusals)
                self.refusals = result.refusals
                log.info("cycle %d: submitted %d, removed %d, released %d, %d problems", self.cycle,
                         result.submitted, result.removed, result.released, len(result.problems))
                wake = self.signals.sleep(self.config.cycle_seconds)
                if wake is Wake.STOP:
                    break
                if wake is Wake.RELOAD:
                    self.reload()
        finally:
            withdraw(self.config)
            pid_path(self.config).unlink(missing_ok=True)

    def reload(self) -> None:
        try:
            config = load_factory_config(self.config_path).config
            releases = stage_entries(config)
        except (ConfigError, StagingError) as err:
            log.error("reload refused, keeping the running configuration: %s", err)
            return
        self.config, self.releases = config, releases
        self.reporter = registry.reporter(config.monitoring)
        use_client_config(self.config.condor_config)
        record_applied(self.config)
        log.warning("configuration reloaded from %s", self.config_path)
