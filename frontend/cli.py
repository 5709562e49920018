"""``updraft frontend``: commands to run and inspect a VO frontend."""

from __future__ import annotations

from pathlib import Path

import click

from updraft.frontend.config import load_frontend_config

DEFAULT_CONFIG = Path("/etc/updraft/frontend.yaml")

config_option = click.option(
    "-c", "--config", "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="UPDRAFT_FRONTEND_CONFIG", show_envvar=True,
    default=DEFAULT_CONFIG, show_default=True,
    help="Main config file; *.yaml files in its sibling <stem>.d/ directory are read after it.",
)


def _echo_warning(warning: str) -> None:
    click.echo(f"warning: {warning}", err=True)


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


@click.group()
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
    loaded = load_frontend_config(config_path, on_warning=_echo_warning)
    for file in loaded.files:
        click.echo(f"read {file}")
    config = loaded.config
    enabled = sum(group.enabled for group in config.groups.values())
    click.echo(
        f"frontend {config.name}: {_count(len(config.groups), 'group', 'groups')} ({enabled} enabled), "
        f"{_count(len(config.factories), 'factory', 'factories')}, "
        f"VO collector {config.vo_collector}, WMS collector {config.wms_collector}"
    )
