"""The `updraft` command: one root, one group per component.

Exit codes follow the usual convention: 0 success, 1 a failure Updraft
detected and explained (an `UpdraftError`), 2 a usage error. Both print one
line, `updraft: error: <message>`, on stderr (`updraft.cliutil`).
"""

from __future__ import annotations

import click

from updraft import __version__
from updraft.cliutil import UpdraftGroup
from updraft.factory.cli import factory
from updraft.frontend.cli import frontend
from updraft.lab.cli import lab


@click.group(cls=UpdraftGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="updraft")
def main() -> None:
    """Updraft provisions pilots (glideins) for HTCondor pools.

    \b
    factory   run and inspect a pilot factory
    frontend  run and inspect a VO frontend
    lab       a real HTCondor grid lab on this machine, for tests and demos

    -v (more log output) is accepted before or after any command.
    """


main.add_command(factory)
main.add_command(frontend)
main.add_command(lab)
