"""Top-level commands: ``auth`` (who am I), ``login`` (new token) and ``cmd`` (a local shell command)."""

from __future__ import annotations

import os
import subprocess

import click

from mitosis.client.commands import Session, ask_value, get_session, output_options
from mitosis.client.output import Printer

pass_session = click.make_pass_decorator(Session)


@click.command()
@output_options
def auth(printer: Printer) -> None:
    """Check the stored token and print the user it belongs to."""
    session = get_session()
    name = session.client().auth()
    printer.data({"username": name}, lambda: printer.line(name))


@click.command()
@click.argument("username", required=False)
@click.argument("password", required=False)
@click.option("--retain", is_flag=True, help="Keep your other sessions' tokens valid.")
@pass_session
def login(session: Session, username: str | None, password: str | None, retain: bool) -> None:
    """Log in and store a fresh token in the credential file."""
    name = username or session.settings.user or ask_value(None, "Username")
    pw = password if password is not None else ask_value(session.settings.password, "Password", secret=True)
    client = session.anonymous()
    token = client.login(name, pw, retain or session.settings.retain)
    client.store.put(name, token)
    click.echo(f"Logged in as {name}")


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("-s", "--split", is_flag=True, help="Pass the arguments separately after -c.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def cmd(ctx: click.Context, split: bool, command: tuple[str, ...]) -> None:
    """Run a local shell command ($SHELL -c "COMMAND...")."""
    shell = os.environ.get("SHELL") or "/bin/bash"
    argv = [shell, "-c", *command] if split else [shell, "-c", " ".join(command)]
    code = subprocess.call(argv)
    if code:
        ctx.exit(code)
