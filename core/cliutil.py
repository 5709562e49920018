"""Pieces every component's command group shares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from updraft.monitoring.registry import MonitoringSettings


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
        help="Main config file; *.yaml files in its sibling <stem>.d/ directory are read after it.",
    )


def echo_warning(warning: str) -> None:
    click.echo(f"warning: {warning}", err=True)


def count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def echo_monitoring_problems(monitoring: MonitoringSettings) -> None:
    """What the configured writers find wrong with their files (an RRD file of an older schema)."""
    from updraft.monitoring import registry

    for problem in registry.check(monitoring.writers, monitoring.dir):
        echo_warning(problem)
