"""``updraft factory``: commands to run and inspect a pilot factory."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, overload

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
from updraft.config import Loaded, dotted
from updraft.errors import CondorError, ConfigError
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.monitoring import registry

if TYPE_CHECKING:
    from updraft.factory.model import FactoryPlan
    from updraft.factory.observe import FactoryView
    from updraft.monitoring.notifiers.base import NotifierSettings

config_option = config_option_for("factory")

CYCLE_LOGGERS = (
    ("updraft.factory.observe", logging.WARNING),
    ("updraft.factory.act", logging.WARNING),
    ("updraft.factory.service", logging.WARNING),
    ("updraft.factory.report", logging.WARNING),
    ("updraft.factory.accounting", logging.WARNING),
    ("updraft.factory.credentials", logging.ERROR),
    ("updraft.factory.health_store", logging.WARNING),
)
"""What a cycle logs and `once` prints itself (problems, refusals, the failure): shown only with -v."""


@click.group(cls=UpdraftGroup)
@group_config_option("factory")
def factory() -> None:
    """Run and inspect a pilot factory.

    The factory publishes its entries (places pilots can run) in the WMS
    collector, reads the frontends' pilot requests, and submits pilots
    through its schedd. Its configuration is a main YAML file plus
    drop-ins in the sibling factory.d/ directory.
    """


@factory.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the factory configuration and summarise it.

    Reads the main file, then every *.yaml file in its sibling .d directory
    in name order, merges them, and checks every value. Warnings (such as
    two files setting one key to different values) go to stderr. Exits 0
    if the configuration is valid; 1 with every problem listed, each with
    its file and key, if not.
    """
    from updraft.filechecks import check_files

    loaded = load_factory_config(config_path, on_warning=echo_warning)
    for file in loaded.files:
        click.echo(f"read {file}")
    check_files(loaded, echo_warning)  # staged files, an InfluxDB token file, the pilot executable ...
    config = loaded.config
    _check_renderable(loaded)  # what each grid type needs to render (cloud settings, resource shape...)
    enabled = sum(entry.enabled for entry in config.entries.values())
    click.echo(
        f"factory {config.name}: {count(len(config.entries), 'entry', 'entries')} "
        f"({enabled} enabled), WMS collector {config.wms_collector}, schedd {config.schedd}"
    )
    click.echo(f"monitoring: {', '.join(registry.loadable(config.monitoring.writers)) or 'no writers'}")
    for line in _notifier_lines(config.monitoring.notifiers):
        click.echo(line)


def _notifier_lines(notifiers: Mapping[str, NotifierSettings]) -> list[str]:
    """What ``check-config`` says of the notifiers: each one's name and type, and of its secrets only the
    files they are read from (`NotifierSettings.secret_files`), so the output can be pasted anywhere."""
    if not notifiers:
        return ["notifiers: none (entry health changes are not announced)"]
    lines = []
    for name, settings in notifiers.items():
        files = "".join(f", {key} {path}" for key, path in settings.secret_files().items())
        lines.append(f"notifier {name}: {settings.type}{files}")
    return lines


def _check_renderable(loaded: Loaded[FactoryConfig]) -> None:
    """Every entry's grid type checks, all problems in one error, each naming its file and key."""
    from updraft.factory.render import entry_problems

    found = [
        *(problem for name, entry in loaded.config.entries.items() for problem in entry_problems(name, entry)),
        *_missing_templates(loaded.config),
    ]
    problems = [
        f"{', '.join(str(file) for file in loaded.files_for(path))}: {dotted(path)}: {message}"
        for path, message in found
    ]
    if problems:
        lines = "\n".join(f"  {problem}" for problem in problems)
        raise ConfigError(f"invalid configuration ({count(len(problems), 'problem', 'problems')}):\n{lines}")


def _missing_templates(config: FactoryConfig) -> list[tuple[tuple[str, ...], str]]:
    """Each grid type in use whose template is not installed or does not parse, blamed on its first entry."""
    from updraft.factory.render import submit_template

    first_entry = {entry.grid_type: name for name, entry in reversed(config.entries.items())}
    problems: list[tuple[tuple[str, ...], str]] = []
    for name in first_entry.values():
        try:
            submit_template(config.entries[name].grid_plugin)
        except ConfigError as err:
            problems.append((("entries", name, "grid_type"), str(err)))
    return problems


def _load(config_path: Path) -> FactoryConfig:
    """The validated config, with its HTCondor client set up for this process."""
    from updraft.condor import use_client_config

    config = load_factory_config(config_path, on_warning=echo_warning).config
    use_client_config(config.condor_config)
    return config


def _describe(action: object) -> str:
    from updraft.factory.model import Release, Remove, Submit

    if isinstance(action, Submit):
        where = action.entry if action.member is None else f"{action.entry} (member {action.member})"
        return (
            f"submit {action.count} for {action.frontend}.{action.group} to {where} in clusters {list(action.clusters)}"
        )
    if isinstance(action, Remove):
        more = " ..." if len(action.job_ids) > 10 else ""
        return f"remove {len(action.job_ids)} ({action.reason}): {' '.join(action.job_ids[:10])}{more}"
    if isinstance(action, Release):
        return f"release {len(action.job_ids)}: {' '.join(action.job_ids[:10])}"
    return repr(action)


@factory.command()
@config_option
def once(config_path: Path) -> None:
    """Run one cycle: advertise the entries, read the requests, submit, remove and release pilots.

    Requests refused (unknown frontend, wrong identity, security class not
    allowed) are listed with the reason; so are sources that could not be
    read. With an unreadable queue nothing is submitted or removed, and the
    command exits 1 with the reason on one line ("updraft: error: ...").
    """
    import time

    from updraft.factory.service import run_cycle
    from updraft.monitoring.registry import reporter

    config = _load(config_path)
    quiet_repeated_log(CYCLE_LOGGERS)
    result = run_cycle(config, 1, time.time(), reporter=reporter(config.monitoring))
    if result.plan is not None:
        click.echo(f"submitted {result.submitted}, removed {result.removed}, released {result.released}")
        for rejection in result.plan.rejected:
            r = rejection.request
            click.echo(f"refused {r.frontend}.{r.group} on {r.entry}: {rejection.reason}", err=True)
    echo_problems(result.problems, result.failure)
    if result.failure is not None:
        raise CondorError(result.failure)


@factory.command()
@config_option
def run(config_path: Path) -> None:
    """Run cycles every cycle_seconds until stopped.

    SIGTERM (or Ctrl-C) finishes the cycle, withdraws the entry ads and
    exits 0; SIGHUP re-reads the configuration and keeps the running one
    when the new one is invalid. Pilots are never tracked in memory: a
    restart, even after kill -9, finds them all in the queue.
    """
    from updraft.factory.service import FactoryService

    service = FactoryService(config_path, _load(config_path))
    service.signals.install()
    service.run()


@factory.command()
@config_option
def plan(config_path: Path) -> None:
    """Print the actions the next cycle would take, and why, without taking them."""
    import time

    from updraft.factory.service import plan_cycle

    config = _load(config_path)
    quiet_repeated_log(CYCLE_LOGGERS)
    view, planned, _ = plan_cycle(config, time.time())
    planned = _planned_or_fail(view, planned)
    for decision in planned.decisions:
        for action in decision.actions:
            click.echo(f"{decision.entry:<16} {_describe(action)}")
        if decision.actions and decision.bound_by:
            click.echo(f"{'':<16} bound by {', '.join(decision.bound_by)}")
    for rejection in planned.rejected:
        r = rejection.request
        click.echo(f"refused {r.frontend}.{r.group} on {r.entry}: {rejection.reason}")
    for terminate in planned.cloud.actions:
        click.echo(f"{'(cloud)':<16} terminate {', '.join(terminate.ids)}: {terminate.reason}")
    if not planned.actions and not planned.cloud.actions:
        click.echo("nothing to do")


@factory.command()
@config_option
@click.option(
    "--pilots", "show_pilots", is_flag=True, help="Also list each live pilot, with its batch system's job id."
)
def status(config_path: Path, show_pilots: bool) -> None:
    """A table per entry and frontend: requested idle, pilots waiting / pending at the CE /
    staging / running / held, the limits that bound the next cycle; then why pilots are held
    (a batch system's refusal in its own words); the cloud entries' instances by state and those
    that belong to no pilot; with --pilots each live pilot (its Slurm job id for a batch entry);
    then the completed pilots counted from their reports."""
    import time

    from updraft.factory.service import plan_cycle
    from updraft.factory.status import cloud_lines, held_lines, pilot_lines, status_rows

    config = _load(config_path)
    quiet_repeated_log(CYCLE_LOGGERS)
    view, planned, _downtimes = plan_cycle(config, time.time())
    planned = _planned_or_fail(view, planned)
    click.echo(
        f"{'entry':<16} {'frontend':<12} {'requested':>9} {'waiting':>7} {'pending':>7} {'staging':>7} "
        f"{'running':>7} {'held':>5}  limits hit"
    )
    for row in status_rows(planned, view.pilots or (), view.requests):
        click.echo(
            f"{row.entry:<16} {row.frontend:<12} {row.requested:>9} {row.waiting:>7} {row.pending:>7} "
            f"{row.staging:>7} {row.running:>7} {row.held:>5}  {', '.join(row.limits_hit) or '-'}"
        )
    for line in held_lines(view.pilots or ()):
        click.echo(line)
    for line in cloud_lines(planned.cloud):
        click.echo(line)
    if show_pilots:
        click.echo(f"{'pilot':<12} {'entry':<16} {'frontend.group':<20} {'state':<8} {'batch job':<12}")
        for line in pilot_lines(view.pilots or ()):
            click.echo(line)
    _echo_completed(config)


def _planned_or_fail(view: FactoryView, planned: FactoryPlan | None) -> FactoryPlan:
    """The plan, after each problem of the view once on stderr; CondorError when the queue was unreadable."""
    failure = (
        None
        if planned is not None
        else f"the pilot queue could not be read: {view.problems[0] if view.problems else 'unknown'}"
    )
    echo_problems(view.problems, failure)
    if planned is None:
        raise CondorError(failure)
    return planned


def _echo_completed(config: FactoryConfig) -> None:
    """Completed pilots as counted from their reports since the factory started counting."""
    from updraft.factory.completed import CompletedTotals
    from updraft.factory.observe import totals_path

    totals = CompletedTotals(totals_path(config)).load()
    if not totals:
        return
    click.echo(
        f"\ncompleted pilots (from their reports)\n{'entry':<16} {'frontend':<12} {'pilots':>6} {'ok':>5} "
        f"{'failed':>6} {'no rep':>6} {'jobs/pilot':>10} {'mean life':>9} {'goodput':>7}  failures by step"
    )
    for (entry, frontend), stats in sorted(totals.items()):
        steps = ", ".join(f"{step} {n}" for step, n in sorted(stats.failed_by_step.items())) or "-"
        click.echo(
            f"{entry:<16} {frontend:<12} {stats.pilots:>6} {stats.ok:>5} {stats.failed:>6} {stats.no_report:>6} "
            f"{stats.jobs_per_pilot:>10.1f} {stats.mean_lifetime_seconds:>8.0f}s "
            f"{stats.goodput_fraction:>7.0%}  {steps}"
        )


@factory.command()
@config_option
@click.option("--force", is_flag=True, help="Also remove entries that still have pilots in the queue.")
def reconfig(config_path: Path, force: bool) -> None:
    """Validate a changed configuration, show what changes, and apply it.

    Prints the entries added, removed and changed against the configuration
    applied last, and monitoring files of an older schema (an RRD file keeps
    its data sources, so a changed catalogue needs the file moved aside).
    Refuses to remove an entry that still has pilots unless --force; their
    pilots stay in the queue and stay tracked. Applying
    records the new configuration, writes the staging area (one release per
    entry, see `staging:`) and sends SIGHUP to a running factory.
    """
    from updraft.factory.reconfig import apply, changes

    config = _load(config_path)
    diff = changes(config)
    for line in diff.describe():
        click.echo(line)
    click.echo(apply(config, diff, force))
    echo_monitoring_problems(config.monitoring)


@factory.command()
@config_option
@click.option("--entry", required=True, help="Entry name, or 'all'.")
@click.option("--frontend", default=None, help="Only for this frontend (default: every frontend).")
@click.option("--start", "start", default=None, help="ISO time or epoch seconds (default: now).")
@click.option("--end", "end", default=None, help="ISO time or epoch seconds (default: until `up`).")
@click.option("--comment", default="", help="Why; shown by `downtimes`.")
def down(config_path: Path, entry: str, frontend: str | None, start: str | None, end: str | None, comment: str) -> None:
    """Put an entry (or all) in downtime: it advertises so and gets no new pilots."""
    import time

    from updraft.factory import downtime
    from updraft.factory.downtime import downtimes_path

    config = load_factory_config(config_path, on_warning=echo_warning).config
    _check_entry(config, entry)
    _check_frontend(config, frontend)
    now = time.time()
    start_at, end_at = _when(start, now, "--start"), _when(end, None, "--end")
    if end_at is not None and end_at <= start_at:
        raise click.BadParameter(
            f"{end!r} ({_show(end_at)}) is not after the start ({_show(start_at)}): a downtime ends after it begins",
            param_hint="--end",
        )
    new = downtime.Downtime(entry, start_at, end_at, frontend, comment)
    path = downtimes_path(config.work_dir)
    downtime.save(path, [*downtime.load(path), new])
    click.echo(f"{entry} down from {_show(new.start)} until {_show(new.end) if new.end else 'further notice'}")


@factory.command()
@config_option
@click.option("--entry", required=True, help="Entry name, or 'all'.")
@click.option("--frontend", default=None, help="Only the downtime for this frontend.")
def up(config_path: Path, entry: str, frontend: str | None) -> None:
    """End the downtimes of an entry that are running now."""
    import time

    from updraft.factory import downtime
    from updraft.factory.downtime import downtimes_path

    config = load_factory_config(config_path, on_warning=echo_warning).config
    path = downtimes_path(config.work_dir)
    stored = downtime.load(path)
    _check_entry(config, entry, also=(d.entry for d in stored))  # an entry since removed may still be down
    _check_frontend(config, frontend, also=(d.frontend for d in stored if d.frontend))
    updated, closed = downtime.end_now(stored, entry, frontend, time.time())
    downtime.save(path, updated)
    click.echo(f"{entry}: {closed} downtime(s) ended")


@factory.command()
@config_option
def downtimes(config_path: Path) -> None:
    """List every stored downtime, marking the ones in force now."""
    import time

    from updraft.factory import downtime
    from updraft.factory.downtime import downtimes_path

    config = load_factory_config(config_path, on_warning=echo_warning).config
    now = time.time()
    for d in downtime.load(downtimes_path(config.work_dir)):
        live = "*" if d.covers(d.entry, d.frontend, now) else " "
        click.echo(
            f"{live} {d.entry:<16} {d.frontend or 'all frontends':<16} {_show(d.start)} -> "
            f"{_show(d.end) if d.end else 'open':<20} {d.comment}"
        )


def _check_entry(config: FactoryConfig, entry: str, also: Iterable[str] = ()) -> None:
    """A usage error naming `entry` and the known ones, unless it is 'all', advertised, or in `also`."""
    from updraft.factory.policy import advertised_entries

    check_name(
        entry, ["all", *dict.fromkeys([*advertised_entries(config), *also])], "--entry", "an entry of the factory"
    )


def _check_frontend(config: FactoryConfig, frontend: str | None, also: Iterable[str] = ()) -> None:
    """A usage error naming `frontend` and the known ones, unless some entry (or set) allows it, or it is in `also`."""
    if frontend is None:
        return
    allowed = [
        *(name for entry in config.entries.values() for name in entry.frontends),
        *(name for entry_set in config.entry_sets.values() for name in entry_set.frontends),
    ]
    check_name(frontend, list(dict.fromkeys([*allowed, *also])), "--frontend", "a frontend of the factory")


@overload
def _when(text: str | None, default: float, option: str) -> float: ...
@overload
def _when(text: str | None, default: None, option: str) -> float | None: ...
def _when(text: str | None, default: float | None, option: str) -> float | None:
    """ISO 8601 (naive means UTC) or epoch seconds, a moment a calendar can show (`updraft.timefmt.is_time`)."""
    from datetime import UTC, datetime

    from updraft import timefmt

    if not text:
        return default
    try:
        moment = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise click.BadParameter(
                f"{text!r}: expected ISO 8601 (2026-11-22T10:00) or epoch seconds", param_hint=option
            ) from None
        moment = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if not timefmt.is_time(moment):
        raise click.BadParameter(f"{text!r}: not a moment between the years 1970 and 9999", param_hint=option)
    return moment


def _show(when: float) -> str:
    from updraft import timefmt

    return timefmt.utc(when, timefmt.MINUTES)


def _add_health() -> None:
    """`updraft factory health` lives in its own module (`updraft.factory.health_cli`)."""
    from updraft.factory.health_cli import health

    factory.add_command(health)


_add_health()
