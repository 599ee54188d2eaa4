"""``admin``: user accounts, quotas, forced deletions and coordinator shutdown (admin token needed)."""

from __future__ import annotations

from uuid import UUID

import click

from mitosis.client.commands import Session, ask_new_password, ask_value, get_session, output_options
from mitosis.client.commands.groups import resolve
from mitosis.client.commands.params import CONTENT_TYPE, UUID_TYPE
from mitosis.client.output import Printer, human_size
from mitosis.wire.codecs import DurationError, parse_duration
from mitosis.wire.enums import ArtifactContentType, UserState

pass_session = click.make_pass_decorator(Session)


@click.group()
def admin() -> None:
    """Administer users, quotas, workers and the coordinator."""


@admin.group("users")
def admin_users() -> None:
    """Create and delete users, reset passwords, set quotas."""


@admin_users.command()
@click.argument("username", required=False)
@click.argument("password", required=False)
@click.option("--admin", "is_admin", is_flag=True, help="Make the user a system admin.")
@pass_session
def create(session: Session, username: str | None, password: str | None, is_admin: bool) -> None:
    """Create a user (and its personal group); prompts for missing values."""
    name = ask_value(username, "Username")
    pw = ask_new_password(password, "Password")
    session.client().create_user(name, pw, is_admin)
    click.echo(f"User {name} created{' (admin)' if is_admin else ''}")


@admin_users.command()
@click.argument("username")
@output_options
def delete(username: str, printer: Printer) -> None:
    """Mark a user as deleted."""
    resp = get_session().client().delete_user(username)
    printer.data(resp, lambda: printer.line(f"User {username} is now {resp.state.value}"))


@admin_users.command("change-password")
@click.argument("username", required=False)
@click.argument("new_password", required=False)
@pass_session
def change_password(session: Session, username: str | None, new_password: str | None) -> None:
    """Set a user's password (their tokens stop working)."""
    name = ask_value(username, "Username")
    pw = ask_new_password(new_password, "New password")
    session.client().change_user_password(name, pw)
    click.echo(f"Password of {name} changed")


@admin_users.command("group-quota")
@click.argument("username")
@click.argument("group_quota")
@output_options
def group_quota(username: str, group_quota: str, printer: Printer) -> None:
    """Change how many groups a user may create: +N, -N, =N or N."""
    resp = get_session().client().user_group_quota(username, group_quota)
    printer.data(resp, lambda: printer.line(f"Group quota of {username} is now {resp.group_quota}"))


@admin_users.command("state")
@click.argument("username")
@click.argument("state", type=click.Choice([s.value for s in UserState], case_sensitive=False))
@output_options
def state(username: str, state: str, printer: Printer) -> None:
    """Set a user's state: Active, Locked or Deleted."""
    canonical = next(s for s in UserState if s.value.lower() == state.lower())
    resp = get_session().client().user_state(username, canonical)
    printer.data(resp, lambda: printer.line(f"User {username} is now {resp.state.value}"))


@admin.command()
@click.argument("secret")
@pass_session
def shutdown(session: Session, secret: str) -> None:
    """Shut the coordinator down (SECRET is printed in its log at start-up)."""
    session.client().shutdown(secret)
    session.quit_requested = True
    click.echo("Coordinator is shutting down")


@admin.group("groups")
def admin_groups() -> None:
    """Group storage quotas, retention and attachments."""


@admin_groups.command("storage-quota")
@click.argument("group_name")
@click.argument("storage_quota")
@output_options
def storage_quota(group_name: str, storage_quota: str, printer: Printer) -> None:
    """Change a group's storage quota: 20GB, +5GiB, -1G, =100MB."""
    resp = get_session().client().group_storage_quota(group_name, storage_quota)
    printer.data(
        resp, lambda: printer.line(f"Storage quota of {group_name} is now {human_size(resp.storage_quota)}")
    )


@admin_groups.command("retention")
@click.argument("group_name")
@click.argument("period", required=False)
@output_options
def retention(group_name: str, period: str | None, printer: Printer) -> None:
    """Show, or with PERIOD set, how long GROUP_NAME keeps archived tasks and their artifacts:
    days or whole-day durations (30, 30d, 12w), "forever" (or 0), or "default" (the coordinator's)."""
    client = get_session().client()
    if period is None:
        resp = client.get_group_retention(group_name)
    else:
        resp = client.group_retention(group_name, _retention_days(period))

    def human() -> None:
        own = "the coordinator's default" if resp.retention_days is None else f"{resp.retention_days} days"
        now = "forever" if resp.effective_days is None else f"{resp.effective_days} days"
        printer.line(f"Retention of {group_name}: {own} (archived tasks are kept {now})")

    printer.data(resp, human)


def _retention_days(period: str) -> int | None:
    text = period.strip().lower()
    if text == "default":
        return None
    if text in ("forever", "never", "0"):
        return 0
    if text.isdigit():
        return int(text)
    try:
        seconds = parse_duration(text).total_seconds()
    except DurationError as exc:
        raise click.BadParameter(f"{period!r}: {exc} (e.g. 30, 30d, 12w, forever, default)") from None
    if seconds <= 0 or seconds % 86400:
        raise click.BadParameter(f"{period!r} is not a whole number of days (e.g. 30, 30d, 12w)")
    return int(seconds // 86400)


@admin_groups.group("attachments")
def admin_attachments() -> None:
    """Delete any group's attachments."""


@admin_attachments.command("delete")
@click.argument("key")
@click.option("-g", "--group", help="Group of the attachment (default: your own group).")
@click.option("-s", "--smart", is_flag=True, help="KEY is GROUP/KEY.")
@pass_session
def delete_attachment(session: Session, key: str, group: str | None, smart: bool) -> None:
    """Delete an attachment regardless of membership and age."""
    grp, k = resolve(session, group, key, smart)
    session.client().admin_delete_attachment(grp, k)
    click.echo(f"Deleted attachment {k} of group {grp}")


@admin.group("tasks")
def admin_tasks() -> None:
    """Task artifacts."""


@admin_tasks.group("artifacts")
def admin_artifacts() -> None:
    """Delete any task's artifacts."""


@admin_artifacts.command("delete")
@click.argument("uuid", type=UUID_TYPE)
@click.argument("content_type", type=CONTENT_TYPE)
@pass_session
def delete_artifact(session: Session, uuid: UUID, content_type: ArtifactContentType) -> None:
    """Delete an artifact regardless of membership and age."""
    session.client().admin_delete_artifact(uuid, content_type)
    click.echo(f"Deleted {content_type.file_name} of task {uuid}")


@admin.group("workers")
def admin_workers() -> None:
    """Shut down any worker."""


@admin_workers.command("cancel")
@click.argument("uuid", type=UUID_TYPE)
@click.option("-f", "--force", is_flag=True, help="Stop at once instead of after the current task.")
@pass_session
def cancel_worker(session: Session, uuid: UUID, force: bool) -> None:
    """Shut a worker down regardless of group roles."""
    session.client().admin_cancel_worker(uuid, force)
    click.echo(f"Worker {uuid} {'stopped' if force else 'asked to stop after its current task'}")
