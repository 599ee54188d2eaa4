"""The ``mito`` root command."""

from __future__ import annotations

import click

from mitosis import __version__
from mitosis.cli.client import client
from mitosis.cli.completion import completion
from mitosis.cli.coordinator import coordinator
from mitosis.cli.manager import manager
from mitosis.cli.up import up
from mitosis.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mito")
def cli() -> None:
    """Mitosis: run shell commands as tasks on a pool of machines."""


cli.add_command(coordinator)
cli.add_command(client)
cli.add_command(worker)
cli.add_command(manager)
cli.add_command(up)
cli.add_command(completion)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
