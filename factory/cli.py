"""``updraft factory``: commands to run and inspect a pilot factory."""

from __future__ import annotations

from pathlib import Path

import click

from updraft.factory.config import load_factory_config

DEFAULT_CONFIG = Path("/etc/updraft/factory.yaml")

config_option = click.option(
    "-c", "--config", "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="UPDRAFT_FACTORY_CONFIG", show_envvar=True,
    default=DEFAULT_CONFIG, show_default=True,
    help="Main config file; *.yaml files in its sibling <stem>.d/ directory are read after it.",
)


def _echo_warning(warning: str) -> None:
    click.echo(f"warning: {warning}", err=True)


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


@click.group()
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
    loaded = load_factory_config(config_path, on_warning=_echo_warning)
    for file in loaded.files:
        click.echo(f"read {file}")
    config = loaded.config
    enabled = sum(entry.enabled for entry in config.entries.values())
    click.echo(
        f"factory {config.name}: {_count(len(config.entries), 'entry', 'entries')} "
        f"({enabled} enabled), WMS collector {config.wms_collector}, schedd {config.schedd}"
    )
