"""``mito client``: the global options, settings loading and error handling around the command tree.

The tree itself lives in :mod:`mitosis.client.commands`; the interactive shell (``-i``) in
:mod:`mitosis.client.shell`. Authentication is lazy: only commands that talk to the coordinator
with a token run the credential flow, so ``mito client tasks --help`` works offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mitosis.cli import flag_names
from mitosis.client.commands import EXPECTED_ERRORS, Session, register, report_error
from mitosis.client.shell import run_shell
from mitosis.config import ClientSettings, load


class ClientGroup(click.Group):
    """Turns expected errors into one ``error:`` line and an exit code; enters the shell after a
    command when ``-i`` was given (0.6.8 does both, in that order)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
        except EXPECTED_ERRORS as exc:
            code = report_error(exc)
            session = ctx.find_object(Session)
            if session is None or not session.interactive or session.quit_requested:
                ctx.exit(code)
            result = None
        session = ctx.find_object(Session)
        if (
            session is not None
            and session.interactive
            and ctx.invoked_subcommand
            and not session.quit_requested
        ):
            run_shell(session)
        return result


@click.group(cls=ClientGroup, invoke_without_command=True)
@click.option(
    "--config", type=click.Path(dir_okay=False, path_type=Path), help="Config file (TOML, [client])."
)
@click.option("-c", "--coordinator", metavar="URL", help="Coordinator URL [default: http://127.0.0.1:5000].")
@click.option("--credential-path", type=click.Path(dir_okay=False, path_type=Path), help="Credential file.")
@click.option("-u", "--user", help="Username (for logging in and as the default group).")
@click.option("-p", "--password", help="Password, used only when the stored token is missing or invalid.")
@click.option(
    "-i", "--interactive", is_flag=True, help="Enter the interactive shell (after COMMAND, if any)."
)
@click.option("--retain", is_flag=True, help="On login, keep other sessions' tokens valid.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.pass_context
def client(
    ctx: click.Context,
    config: Path | None,
    coordinator: str | None,
    credential_path: Path | None,
    user: str | None,
    password: str | None,
    interactive: bool,
    retain: bool,
    as_json: bool,
) -> None:
    """Use the coordinator: users, groups, tasks, artifacts, attachments and workers."""
    cli = {
        "coordinator_addr": coordinator,
        "credential_path": credential_path,
        "user": user,
        "password": password,
        "retain": True if retain else None,
    }
    loaded = load(ClientSettings, config_file=config, cli=cli, flags=flag_names())
    session = Session(
        loaded.settings,
        fmt="json" if as_json else "table",
        interactive=interactive,
        sources=loaded.sources,
    )
    ctx.obj = session
    ctx.call_on_close(session.close)
    if ctx.invoked_subcommand is not None:
        return
    if interactive:
        run_shell(session)
    else:
        # 0.6.8 with neither a command nor -i just authenticates (and stores the token).
        click.echo(f"Authenticated as {session.username}")


register(client)
