"""The `updraft` command: one root, one group per component.

Exit codes follow the usual convention: 0 success, 1 a failure Updraft
detected and explained (an `UpdraftError`), 2 a usage error (click's own).
"""

from __future__ import annotations

import logging
import sys

import click

from updraft import __version__, redact
from updraft.errors import UpdraftError
from updraft.factory.cli import factory
from updraft.frontend.cli import frontend
from updraft.lab.cli import lab


class UpdraftGroup(click.Group):
    """Turns our own errors into one clear line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except UpdraftError as err:
            click.echo(f"updraft: error: {redact.redact(str(err))}", err=True)
            ctx.exit(1)


@click.group(cls=UpdraftGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="updraft")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Updraft provisions pilots (glideins) for HTCondor pools.

    \b
    factory   run and inspect a pilot factory
    frontend  run and inspect a VO frontend
    lab       a real HTCondor grid lab on this machine, for tests and demos
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact.install()


main.add_command(factory)
main.add_command(frontend)
main.add_command(lab)
