"""``users``: one's own password and group memberships."""

from __future__ import annotations

import click

from mitosis.client import output
from mitosis.client.commands import Session, ask_new_password, ask_value, get_session, output_options
from mitosis.client.output import Printer

pass_session = click.make_pass_decorator(Session)


@click.group()
def users() -> None:
    """Your password and group memberships."""


@users.command("change-password")
@click.argument("orig_password", required=False)
@click.argument("new_password", required=False)
@pass_session
def change_password(session: Session, orig_password: str | None, new_password: str | None) -> None:
    """Change your password (prompts for missing values); your other sessions are logged out."""
    client = session.client()
    old = ask_value(orig_password, "Current password", secret=True)
    new = ask_new_password(new_password, "New password")
    token = client.change_password(old, new)
    client.store.put(session.username, token)
    click.echo(f"Password of {session.username} changed")


@click.command("groups")
@output_options
def my_groups(printer: Printer) -> None:
    """List the groups you belong to, with your role."""
    resp = get_session().client().my_groups()
    printer.data(resp, lambda: output.render_roles(printer, resp.groups, "group"))


users.add_command(my_groups, "groups")
users.add_command(my_groups, "my-groups")
