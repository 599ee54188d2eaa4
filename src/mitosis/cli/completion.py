"""``mito completion SHELL``: print the shell completion script for bash, zsh or fish.

The script is click's own (it calls ``mito`` back with ``_MITO_COMPLETE`` set), so completion always
follows the installed command tree: commands, subcommands, flags and choice values.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

PROG = "mito"
COMPLETE_VAR = "_MITO_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def completion_script(root: click.Command, shell: str) -> str:
    cls = get_completion_class(shell)
    if cls is None:
        raise click.BadParameter(f"{shell!r}: choose one of {', '.join(SHELLS)}", param_hint="SHELL")
    return cls(root, {}, PROG, COMPLETE_VAR).source()


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash:  eval "$(mito completion bash)"     # add to ~/.bashrc
    zsh:   eval "$(mito completion zsh)"      # add to ~/.zshrc
    fish:  mito completion fish > ~/.config/fish/completions/mito.fish
    """
    click.echo(completion_script(ctx.find_root().command, shell))
