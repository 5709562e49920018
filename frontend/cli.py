"""``updraft frontend``: commands to run and inspect a VO frontend."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from updraft.cliutil import (
    UpdraftGroup,
    check_name,
    count,
    echo_monitoring_problems,
    echo_problems,
    echo_warning,
    group_config_option,
    quiet_repeated_log,
)
from updraft.cliutil import config_option as config_option_for
from updraft.errors import CondorError, UpdraftError
from updraft.frontend.config import FrontendConfig, load_frontend_config
from updraft.monitoring import registry
from updraft.tokens import load_signing_key

if TYPE_CHECKING:
    # Imported when a command runs, not when the CLI loads.
    from updraft.frontend.model import Observation
    from updraft.frontend.report import CycleResult

config_option = config_option_for("frontend")

CYCLE_LOGGERS = (("updraft.frontend.observe", logging.WARNING), ("updraft.frontend.service", logging.WARNING))
"""What a cycle logs and the commands print themselves (problems, the failure): shown only with -v."""


@click.group(cls=UpdraftGroup)
@group_config_option("frontend")
def frontend() -> None:
    """Run and inspect a VO frontend.

    The frontend counts the VO's idle jobs, matches them to the entries the
    trusted factories advertise in the WMS collector, and asks those
    factories for pilots, group by group. Its configuration is a main YAML
    file plus drop-ins in the sibling frontend.d/ directory.
    """


@frontend.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the frontend configuration and summarise it.

    Reads the main file, then every *.yaml file in its sibling .d directory
    in name order, merges them, and checks every value, including that each
    ClassAd expression parses. Warnings (such as two files setting one key
    to different values) go to stderr. Exits 0 if the configuration is
    valid; 1 with every problem listed, each with its file and key, if not.
    """
    from updraft.filechecks import check_files

    loaded = load_frontend_config(config_path, on_warning=echo_warning)
    for file in loaded.files:
        click.echo(f"read {file}")
    check_files(loaded, echo_warning)  # the signing key, staged files, an InfluxDB token file ...
    config = loaded.config
    enabled = sum(group.enabled for group in config.groups.values())
    click.echo(
        f"frontend {config.name}: {count(len(config.groups), 'group', 'groups')} ({enabled} enabled), "
        f"{count(len(config.factories), 'factory', 'factories')}, "
        f"VO collector {config.vo_collector}, WMS collector {config.wms_collector}"
    )
    click.echo(f"monitoring: {', '.join(registry.loadable(config.monitoring.writers)) or 'no writers'}")
    _say_how_groups_match(config)
    if config.pilot_tokens is not None:
        tokens = config.pilot_tokens
        key = load_signing_key(tokens.signing_key_file)  # TokenError (exit 1) if the frontend cannot read it
        click.echo(
            f"pilot tokens: {tokens.identity} issued by {tokens.trust_domain} with key {key.key_id} "
            f"({tokens.signing_key_file}), {tokens.lifetime_seconds} s, renewed {tokens.refresh_seconds} s "
            "before they end"
        )


def _say_how_groups_match(config: FrontendConfig) -> None:
    """Per group: whether its match index is used (a warning when configured but not implied) and
    whether jobs' own Requirements are read."""
    from updraft.frontend.matching import group_rules

    for name, group in sorted(config.groups.items()):
        rules = group_rules(group)
        if rules.index_problem is not None:
            echo_warning(f"groups.{name}.{rules.index_problem}")
        index = f"index {rules.index.job_attr} -> {rules.index.entry_attr}" if rules.index else "no index"
        requirements = "jobs' Requirements read" if group.match_job_requirements else "match_expr alone"
        click.echo(f"group {name}: {index}, {requirements}")


def _load(config_path: Path) -> FrontendConfig:
    """The validated config, with its HTCondor client set up for this process."""
    from updraft.condor import use_client_config

    config = load_frontend_config(config_path, on_warning=echo_warning).config
    use_client_config(config.condor_config)
    return config


def _print_summary(result: CycleResult) -> None:
    for ad in result.ads:
        click.echo(
            f"{ad['UpdraftGroup']:<12} {ad['UpdraftEntry'] + '@' + ad['UpdraftFactory']:<28} "
            f"idle {ad['UpdraftReqIdlePilots']:<4} max {ad['UpdraftReqMaxPilots']:<5} "
            f"remove {ad['UpdraftReqRemoveMode']}"
        )
    for group, jobs in sorted(result.plan.unmatched.items()):
        if not jobs:
            continue
        click.echo(f"{group:<12} {jobs} idle job(s) match no entry")
    for group, jobs in sorted(result.plan.in_downtime.items()):
        if not jobs:
            continue
        click.echo(f"{group:<12} {jobs} idle job(s) match only entries in downtime or banned")
    echo_problems(result.problems, result.failure)


@frontend.command()
@config_option
def once(config_path: Path) -> None:
    """Run one cycle: observe, decide, publish the requests, report; then exit.

    Sources that cannot be read (a schedd down or slower than
    query_timeout_seconds) are listed as problems on stderr; the cycle still
    completes with the rest, and removals are disabled for the groups whose
    view is incomplete, and their last good requests are a floor. When a
    collector cannot be read (the VO pool's or the WMS), no request is
    computed: the last good ones are republished where they can be (never
    lowered, removing nothing, for at most hold_last_request_seconds), and
    the command exits 1 with the reason on one line ("updraft: error: ...").
    """
    import time

    from updraft.frontend.service import run_cycle
    from updraft.monitoring.registry import reporter

    config = _load(config_path)
    quiet_repeated_log(CYCLE_LOGGERS)
    result = run_cycle(config, reporter(config.monitoring), 1, time.time())
    _print_summary(result)
    if result.failure is not None:
        raise CondorError(result.failure)


@frontend.command()
@config_option
def run(config_path: Path) -> None:
    """Run cycles every cycle_seconds until stopped.

    SIGTERM (or Ctrl-C) finishes the current cycle, withdraws this
    frontend's requests from the WMS collector and exits 0. SIGHUP re-reads
    the configuration; when the new one is invalid the error is logged and
    the running configuration is kept.
    """
    from updraft.frontend.service import FrontendService

    service = FrontendService(config_path, _load(config_path))
    service.signals.install()
    service.run()


@frontend.command()
@config_option
def plan(config_path: Path) -> None:
    """Compute the next cycle's requests without publishing them.

    Prints them as a diff against the requests published now: '+' new,
    '-' withdrawn, '~' changed, '=' unchanged.
    """
    import time

    from updraft.frontend.ports import connect
    from updraft.frontend.publish import diff, request_ads
    from updraft.frontend.report import blind_spot
    from updraft.frontend.service import observe_and_decide

    config = _load(config_path)
    quiet_repeated_log(CYCLE_LOGGERS)
    planned, _, observation = observe_and_decide(config, connect(config), time.time())
    failure = blind_spot(planned)
    if failure is None:
        for change in diff(observation.published or (), request_ads(planned, config, 0)):
            click.echo(change.describe())
    echo_problems((f"{p.source}: {p.message}" for p in planned.problems), failure)
    if failure is not None:  # requests computed without a collector would be guesses, as in `once`
        raise CondorError(f"no plan: {failure}")


@frontend.command()
@config_option
@click.option("--entry", "entry_name", default=None, help="Entry name, or entry@factory.")
@click.option("--unmatched", is_flag=True, help="Instead: why idle jobs get no pilots at all, entry by entry.")
@click.option("--group", "group_name", default=None, help="Only this group (default: every group).")
def explain(config_path: Path, entry_name: str | None, unmatched: bool, group_name: str | None) -> None:
    """Explain, in plain words, how the next request for an entry is computed.

    Observes and decides like a cycle, publishes nothing, and prints each
    step from the matching jobs to the number requested, naming the limit
    or curb that bound it. With --unmatched it prints, for each shape of
    idle jobs that no entry takes, the test each entry failed.
    """
    if (entry_name is None) == (not unmatched):
        raise click.UsageError("give either --entry NAME or --unmatched")
    config = _load(config_path)
    if group_name is not None:
        check_name(group_name, list(config.groups), "--group", "a group of the frontend")
    quiet_repeated_log(CYCLE_LOGGERS)
    if entry_name is None:  # so --unmatched
        _explain_unmatched(config, group_name)
    else:
        _explain_entry(config, entry_name, group_name)


def _explain_entry(config: FrontendConfig, entry_name: str, group_name: str | None) -> None:
    import time

    from updraft.frontend.explain import explain as explain_decision
    from updraft.frontend.explain import why_no_request
    from updraft.frontend.ports import connect
    from updraft.frontend.service import observe_and_decide

    planned, _, seen = observe_and_decide(config, connect(config), time.time())
    echo_problems(f"{p.source}: {p.message}" for p in planned.problems)
    chosen = [
        d for d in planned.decisions if entry_name in (d.entry.name, d.entry.key) and group_name in (None, d.group)
    ]
    closed = [e for e in seen.entries if entry_name in (e.name, e.key) and e.takes_no_pilots]
    if not chosen and closed:
        for entry in closed:
            click.echo(why_no_request(entry))
        return
    if not chosen:
        known = sorted({d.entry.key for d in planned.decisions if group_name in (None, d.group)})
        raise UpdraftError(
            f"no decision for entry {entry_name!r}: no matching jobs, pilots or advertised entry "
            f"(entries with a decision: {', '.join(known) or 'none'})"
        )
    for decision in chosen:
        click.echo(explain_decision(decision))


def _explain_unmatched(config: FrontendConfig, group_name: str | None) -> None:
    import time

    from updraft.frontend.observe import observe
    from updraft.frontend.ports import connect
    from updraft.frontend.prospective import prospective_slots
    from updraft.frontend.whynot import describe, refused_shapes

    seen = observe(config, connect(config), time.time())
    unknown = _unread_for_unmatched(seen, config, group_name)
    echo_problems(f"{p.source}: {p.message}" for p in seen.problems if not p.unreadable)
    slots = prospective_slots(seen.entries, seen.slots)
    refused = refused_shapes(seen.shapes, seen.entries, config, group_name, slots=slots)
    for verdict in refused:
        click.echo(describe(verdict))
    if unknown:
        raise UpdraftError(f"cannot tell which idle jobs match: {'; '.join(unknown)}")
    if not any(s.idle for s in seen.shapes if group_name in (None, s.group)):
        click.echo("no idle jobs" + (f" in group {group_name}" if group_name else ""))
    elif not refused:
        click.echo("every idle job matches at least one live entry")


def _unread_for_unmatched(seen: Observation, config: FrontendConfig, group_name: str | None) -> list[str]:
    """What --unmatched needed and could not read: a collector, a schedd holding the group's jobs, or
    any entry at all. Without these an answer of 'every idle job matches' would be a guess."""
    unknown = [
        f"{p.source}: {p.message}"
        for p in seen.problems
        if p.unreadable and (not p.groups or group_name is None or group_name in p.groups)
    ]
    wms = f"collector {config.wms_collector}"
    if not seen.entries and not any(p.unreadable and p.source == wms for p in seen.problems):
        factories = ", ".join(sorted(config.factories)) or "none configured"
        unknown.append(
            f"no entry of a trusted factory ({factories}) read from the WMS collector {config.wms_collector}"
        )
    return list(dict.fromkeys(unknown))


@frontend.command()
@config_option
def reconfig(config_path: Path) -> None:
    """Validate the configuration, write the staging area, and make a running frontend reload.

    Each group's files (``staging.files`` then its ``staging_files``) are
    published as a release named after its manifest's digest; the request
    ads then tell pilots where it is and what its digest must be. A running
    frontend (its pid file in ``work_dir``) gets SIGHUP.
    """
    import signal

    from updraft.frontend.service import pid_path
    from updraft.frontend.stage import stage_groups
    from updraft.loop import signal_running
    from updraft.staging import describe_releases

    config = _load(config_path)
    for line in describe_releases(stage_groups(config)):
        click.echo(line)
    pid = signal_running(pid_path(config), signal.SIGHUP)
    click.echo(
        "applied; no frontend running" if pid is None else f"applied; the running frontend (pid {pid}) is reloading"
    )
    echo_monitoring_problems(config.monitoring)
