"""``updraft factory health``: each entry's health, and operators' overrides of it (docs/entry-health.md).

The table reads what the running factory last decided (``health.json``)
with the stored overrides laid over it: one set since the last cycle shows
at once, marked as applying from the next cycle. ``set`` and ``clear``
change ``health-overrides.json`` atomically and append who, when, what and
why to ``health-audit.log``. Bad input (an unknown entry or state, no
reason, an end that cannot be read or is not in the future, a damaged
override file) is refused before anything is written.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from updraft import timefmt
from updraft.cliutil import UpdraftGroup, check_name, echo_warning, from_group
from updraft.factory import health_store
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.health_model import EntryHealth, HealthState, Override
from updraft.factory.policy import advertised_entries

STATES = tuple(state.value for state in HealthState)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_REASON = 500
"""A reason goes into the entry ad, logs and notifications: one line, and short."""


def _config_here_or_above(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """`-c` given on this command wins; then on `health`; then on `factory`, the environment, the default."""
    value = from_group(ctx, param, value)
    parent = ctx.parent
    own = ctx.get_parameter_source(param.name or "")
    inherits = own in (ParameterSource.DEFAULT, ParameterSource.ENVIRONMENT)
    if parent is not None and inherits and parent.get_parameter_source("config_path") is ParameterSource.COMMANDLINE:
        return parent.params["config_path"]
    return value


def _config_option(callback: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="UPDRAFT_FACTORY_CONFIG",
        show_envvar=True,
        default=Path("/etc/updraft/factory.yaml"),
        show_default=True,
        callback=callback,
        help="Main config file; *.yaml files in its sibling <stem>.d/ directory are read after it.",
    )


@click.group("health", cls=UpdraftGroup, invoke_without_command=True)
@_config_option(from_group)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry, in a list.")
@click.pass_context
def health(ctx: click.Context, config_path: Path, as_json: bool) -> None:
    """Each entry's health: state, reason, since, next review; `set` and `clear` override it.

    Without a subcommand, prints the table of what the factory last decided,
    with stored overrides laid over it.
    """
    if ctx.invoked_subcommand is not None:
        return
    config = load_factory_config(config_path, on_warning=echo_warning).config
    rows = health_rows(config, time.time())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'entry':<20} {'state':<9} {'since':<20} {'next review':<20} reason")
    for row in rows:
        since = _show(row["since"]) if row["since"] is not None else "-"
        review = _show(row["next_review"]) if row["next_review"] is not None else "-"
        click.echo(f"{row['entry']:<20} {row['state']:<9} {since:<20} {review:<20} {row['reason']}")


def health_rows(config: FactoryConfig, now: float) -> list[dict[str, Any]]:
    """One row per advertised entry: the last decided health, an unexpired stored override laid over it."""
    path = health_store.memory_path(config.work_dir)
    memory = health_store.load_memory(path, history=False) if path.exists() else health_store.HealthMemory()
    overrides = health_store.load_overrides(health_store.overrides_path(config.work_dir))
    rows = []
    for name in advertised_entries(config):
        decided = memory.states.get(name)
        override = overrides.get(name)
        if override is not None and override.until > now:
            rows.append(_override_row(name, decided, override))
        elif decided is not None:
            rows.append(_row(decided))
        else:
            rows.append(_empty_row(name))
    return rows


def _row(decided: EntryHealth) -> dict[str, Any]:
    return {
        "entry": decided.entry,
        "state": decided.state.value,
        "reason": decided.reason,
        "since": decided.since,
        "next_review": decided.next_review,
        "cap": decided.cap,
        "override": health_store.override_to_json(decided.override) if decided.override else None,
    }


def _override_row(name: str, decided: EntryHealth | None, override: Override) -> dict[str, Any]:
    applied = decided is not None and decided.override == override
    if applied and decided is not None:
        return _row(decided)
    since = decided.since if decided is not None and decided.state is override.state else override.set_at
    return {
        "entry": name,
        "state": override.state.value,
        "reason": f"set by {override.set_by}: {override.reason} (from the next cycle)",
        "since": since,
        "next_review": override.until,
        "cap": None,
        "override": health_store.override_to_json(override),
    }


def _empty_row(name: str) -> dict[str, Any]:
    return {
        "entry": name,
        "state": HealthState.ACTIVE.value,
        "reason": "no cycle has decided its health yet",
        "since": None,
        "next_review": None,
        "cap": None,
        "override": None,
    }


@health.command("set")
@_config_option(_config_here_or_above)
@click.argument("entry")
@click.argument("state")
@click.option("--reason", required=True, help="Why: shown in the entry ad, the table, monitoring and the audit log.")
@click.option("--until", "until", required=True, help="When the override ends: ISO time (UTC) or epoch seconds.")
def set_override(config_path: Path, entry: str, state: str, reason: str, until: str) -> None:
    """Set ENTRY's state to STATE (active, degraded, banned, probing) until --until, whatever the policy says."""
    config = load_factory_config(config_path, on_warning=echo_warning).config
    check_name(entry, list(advertised_entries(config)), "ENTRY", "an entry of the factory")
    check_name(state, list(STATES), "STATE", "a health state")
    reason = _checked_reason(reason)
    now = time.time()
    end = _when(until, "--until")
    if end <= now:
        raise click.BadParameter(f"{until!r} ({_show(end)}) is not in the future", param_hint="--until")
    stored_path = health_store.overrides_path(config.work_dir)
    with health_store.overrides_locked(stored_path):  # another operator's set or clear waits, so none is lost
        stored = health_store.load_overrides(stored_path)
        override = Override(entry, HealthState(state), reason, end, invoking_user(), now)
        updated = {**_unexpired(stored, now), entry: override}
        _store(config, stored, updated, {"action": "set", **health_store.override_to_json(override)})
    click.echo(f"{entry}: {state} until {_show(end)} (from the factory's next cycle)")


@health.command("clear")
@_config_option(_config_here_or_above)
@click.argument("entry")
@click.option("--reason", default="", help="Why, for the audit log.")
def clear_override(config_path: Path, entry: str, reason: str) -> None:
    """End ENTRY's override now: the policy decides again from the factory's next cycle."""
    config = load_factory_config(config_path, on_warning=echo_warning).config
    stored_path = health_store.overrides_path(config.work_dir)
    with health_store.overrides_locked(stored_path):  # another operator's set or clear waits, so none is lost
        stored = health_store.load_overrides(stored_path)
        known = list(dict.fromkeys([*advertised_entries(config), *stored]))
        check_name(entry, known, "ENTRY", "an entry of the factory")
        now = time.time()
        current = _unexpired(stored, now)
        if entry not in current:
            raise click.BadParameter(f"{entry!r} has no override in force", param_hint="ENTRY")
        reason = _checked_reason(reason, required=False)
        updated = {name: o for name, o in current.items() if name != entry}
        record = {"action": "clear", "entry": entry, "reason": reason, "set_by": invoking_user(), "set_at": now}
        _store(config, stored, updated, {**record, "ended": health_store.override_to_json(current[entry])})
    click.echo(f"{entry}: override ended (from the factory's next cycle)")


def _store(
    config: FactoryConfig, before: Mapping[str, Override], after: Mapping[str, Override], record: dict[str, Any]
) -> None:
    """Write the overrides, then the audit line; if the audit cannot be written, the old overrides are put back,
    so no change is ever in force unaudited. The caller holds the overrides' lock, so `before` is still current."""
    path = health_store.overrides_path(config.work_dir)
    health_store.save_overrides(path, after)
    try:
        health_store.audit(health_store.audit_path(config.work_dir), {"who": invoking_user(), **record})
    except OSError as err:
        health_store.save_overrides(path, before)
        where = health_store.audit_path(config.work_dir)
        raise click.ClickException(f"{where}: audit log not written, override not changed ({err})") from err


def _unexpired(overrides: Mapping[str, Override], now: float) -> dict[str, Override]:
    """Expired overrides are dropped when the file is next written (the audit log keeps them)."""
    return {name: o for name, o in overrides.items() if o.until > now}


def invoking_user() -> str:
    """The user running the command, by uid (not an environment variable); under sudo, who called sudo too."""
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = f"uid {os.getuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"{name} (sudo by {sudo})" if sudo and os.getuid() == 0 else name


def _checked_reason(reason: str, *, required: bool = True) -> str:
    text = reason.strip()
    if required and not text:
        raise click.BadParameter(
            "a reason is required: it is what the entry ad and the audit log say", param_hint="--reason"
        )
    if _CONTROL.search(text):
        raise click.BadParameter("one line of text, without control characters", param_hint="--reason")
    if len(text) > MAX_REASON:
        raise click.BadParameter(f"at most {MAX_REASON} characters, got {len(text)}", param_hint="--reason")
    return text


def _when(text: str, option: str) -> float:
    """ISO 8601 (naive means UTC) or epoch seconds, as `updraft factory down` reads them."""
    from updraft.factory.cli import _when as read_moment

    return read_moment(text, 0.0, option)


def _show(when: float) -> str:
    return timefmt.utc(when, timefmt.MINUTES)
