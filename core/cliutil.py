"""Pieces every component's command group shares: the global options, the one error style, config paths.

Every command prints what went wrong the same way, on stderr:

    updraft: error: <message>

exit 1 for a failure Updraft detected (an `UpdraftError`, or a command's own
`click.ClickException`), exit 2 for a usage error (after click's usage line
and help hint). Options that concern the whole program (`-v`) are accepted
on the root, on every group and on every command, so `updraft -v factory
once`, `updraft factory -v once` and `updraft factory once -v` agree.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from updraft import redact
from updraft.errors import UpdraftError

if TYPE_CHECKING:
    from updraft.monitoring.registry import MonitoringSettings

PREFIX = "updraft: error:"
VERBOSITY = "updraft.verbosity"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# ------------------------------------------------------------------ the one error style


class Failure(click.ClickException):
    """An error Updraft explains in one line: exit 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{PREFIX} {redact.redact(self.format_message())}", file=file or sys.stderr)


class UsageFailure(click.UsageError):
    """Click's usage error, shown with the usage line and the help hint, then our prefix: exit 2."""

    def __init__(self, original: click.UsageError) -> None:
        super().__init__(original.format_message(), original.ctx)

    def show(self, file: IO[Any] | None = None) -> None:
        out = file or sys.stderr
        ctx = self.ctx
        if ctx is not None:
            click.echo(ctx.get_usage(), file=out)
            if ctx.command.get_help_option(ctx) is not None:
                longest = max(ctx.command.get_help_option_names(ctx), key=len)
                click.echo(f"Try '{ctx.command_path} {longest}' for help.", file=out)
        click.echo(f"{PREFIX} {redact.redact(self.format_message())}", file=out)


@contextmanager
def _one_error_style() -> Iterator[None]:
    """Our errors and click's own leave as `Failure` or `UsageFailure`; a bug keeps its traceback."""
    try:
        yield
    except (Failure, UsageFailure):
        raise
    except UpdraftError as err:
        raise Failure(str(err)) from err
    except click.UsageError as err:
        raise UsageFailure(err) from err
    except click.ClickException as err:
        raise Failure(err.format_message()) from err


class UpdraftGroup(click.Group):
    """A command group with the global options on itself and on every command added to it,
    and the one error style for everything parsed or run below it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        add_global_options(self)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        add_global_options(cmd)
        super().add_command(cmd, name)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        with _one_error_style():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_error_style():
            return super().invoke(ctx)


# ------------------------------------------------------------------ global options


def _add_verbosity(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    """Each level's -v count adds up (`updraft -v factory -v once` is -vv); logging follows at once."""
    if ctx.resilient_parsing:
        return
    ctx.meta[VERBOSITY] = ctx.meta.get(VERBOSITY, 0) + (value or 0)
    use_verbosity(ctx.meta[VERBOSITY])


def _verbose_option() -> click.Option:
    return click.Option(
        ["-v", "--verbose"],
        count=True,
        expose_value=False,
        callback=_add_verbosity,
        help="More log output (-v info, -vv debug); accepted before or after any command.",
    )


def add_global_options(command: click.Command) -> None:
    """Give `command` the program-wide options it lacks (a command added twice keeps one copy)."""
    if not any(param.name == "verbose" for param in command.params):
        command.params.append(_verbose_option())


def verbosity() -> int:
    """The -v count given anywhere on the command line of the command running now."""
    ctx = click.get_current_context(silent=True)
    return 0 if ctx is None else int(ctx.meta.get(VERBOSITY, 0))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record comes (click's test runner swaps it per run)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        """The stream is always the current stderr: nothing to set."""


def _our_handler() -> logging.Handler:
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, _StderrHandler):
            return handler
    handler = _StderrHandler()
    handler.setFormatter(redact.RedactingFormatter(LOG_FORMAT))
    root.addHandler(handler)
    return handler


def use_verbosity(count: int) -> None:
    """Log to stderr, masked, at WARNING (0), INFO (1) or DEBUG (2 or more); no filter left from before."""
    handler = _our_handler()
    for old in list(handler.filters):
        handler.removeFilter(old)
    logging.getLogger().setLevel({0: logging.WARNING, 1: logging.INFO}.get(count, logging.DEBUG))
    redact.install()


class _PrintedByTheCommand(logging.Filter):
    """Drops the records that repeat, in log form, a problem the command prints itself."""

    def __init__(self, loggers: Iterable[tuple[str, int]]) -> None:
        super().__init__()
        self.loggers = dict(loggers)

    def filter(self, record: logging.LogRecord) -> bool:
        lowest = self.loggers.get(record.name)
        return lowest is None or record.levelno < lowest


def quiet_repeated_log(loggers: Iterable[tuple[str, int]]) -> None:
    """Without -v, records of `loggers` (name, from which level) are not shown: the command prints
    each problem they would log once, as `problem:` or `updraft: error:` lines. With -v the log shows all."""
    if verbosity() == 0:
        _our_handler().addFilter(_PrintedByTheCommand(loggers))


def echo_problems(problems: Iterable[str], failure: str | None = None) -> None:
    """Each problem once on stderr, leaving out what the final error line (`failure`) already says."""
    for problem in dict.fromkeys(problems):
        if failure is None or problem not in failure:
            click.echo(f"problem: {redact.redact(problem)}", err=True)


# ------------------------------------------------------------------ options a group passes to its commands


def _group_key(param: click.Parameter) -> str:
    return f"updraft.group.{param.name}"


def from_group(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A callback for a command's option that its group also takes (`updraft factory -c X once`):
    a value given on the command wins, then one given on the group, then the environment, then the default."""
    given_on_group = ctx.meta.get(_group_key(param))
    source = ctx.get_parameter_source(param.name or "")
    if given_on_group is not None and source in (ParameterSource.DEFAULT, ParameterSource.ENVIRONMENT):
        return given_on_group
    return value


def _keep_for_commands(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None and not ctx.resilient_parsing:
        ctx.meta[_group_key(param)] = value


def group_option(
    *decls: str, param_type: click.ParamType[Any], help_text: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The group's copy of an option its commands take with `from_group`; `decls` must name the same parameter."""
    return click.option(
        *decls, type=param_type, default=None, expose_value=False, callback=_keep_for_commands, help=help_text
    )


def config_option(component: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`-c/--config` for a component: /etc/updraft/<component>.yaml, or $UPDRAFT_<COMPONENT>_CONFIG."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar=f"UPDRAFT_{component.upper()}_CONFIG",
        show_envvar=True,
        default=Path(f"/etc/updraft/{component}.yaml"),
        show_default=True,
        callback=from_group,
        help="Main config file; *.yaml files in its sibling <stem>.d/ directory are read after it.",
    )


def group_config_option(component: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`-c/--config` on the component's group, for every command under it (a command's own -c wins)."""
    return group_option(
        "-c",
        "--config",
        "config_path",
        param_type=click.Path(dir_okay=False, path_type=Path),
        help_text=f"Main config file for the command that follows (default /etc/updraft/{component}.yaml).",
    )


# ------------------------------------------------------------------ names given on the command line


def check_name(given: str, known: Sequence[str], param_hint: str, what: str) -> None:
    """A usage error (exit 2) naming `given` and listing the `known` names, when it is not one of them."""
    if given not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise click.BadParameter(f"{given!r} is not {what} (known: {listed})", param_hint=param_hint)


# ------------------------------------------------------------------ small outputs


def echo_warning(warning: str) -> None:
    click.echo(f"warning: {redact.redact(warning)}", err=True)


def count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def echo_monitoring_problems(monitoring: MonitoringSettings) -> None:
    """What the configured writers find wrong with their files (an RRD file of an older schema)."""
    from updraft.monitoring import registry

    for problem in registry.check(monitoring.writers, monitoring.dir):
        echo_warning(problem)
