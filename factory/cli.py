"""``updraft factory``: commands to run and inspect a pilot factory."""

from __future__ import annotations

from pathlib import Path

import click

from updraft.cliutil import config_option as config_option_for
from updraft.cliutil import count, echo_warning
from updraft.factory.config import load_factory_config

config_option = config_option_for("factory")


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
    loaded = load_factory_config(config_path, on_warning=echo_warning)
    for file in loaded.files:
        click.echo(f"read {file}")
    config = loaded.config
    enabled = sum(entry.enabled for entry in config.entries.values())
    click.echo(
        f"factory {config.name}: {count(len(config.entries), 'entry', 'entries')} "
        f"({enabled} enabled), WMS collector {config.wms_collector}, schedd {config.schedd}"
    )
