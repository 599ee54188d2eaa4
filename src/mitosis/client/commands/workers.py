"""``workers``: inspect, query, re-tag, re-assign and shut down workers (user-facing routes 38-47)."""

from __future__ import annotations

from uuid import UUID

import click

from mitosis.client import output
from mitosis.client.commands import Session, get_session, list_option, output_options, split_list
from mitosis.client.commands.groups import parse_relation
from mitosis.client.commands.params import UUID_TYPE
from mitosis.client.output import Printer
from mitosis.wire import models as m
from mitosis.wire.enums import Role, WorkerShutdownOp

pass_session = click.make_pass_decorator(Session)

FORCE_HELP = "Stop at once (its running task goes back to Ready) instead of after the current task."


def parse_roles(values: tuple[str, ...]) -> list[Role] | None:
    out: list[Role] = []
    for name in split_list(values):
        try:
            out.append(Role(name))
        except ValueError:
            raise click.BadParameter(
                f"{name!r}: role must be read, write or admin", param_hint="-r/--roles"
            ) from None
    return out or None


def _filter(
    group: str | None,
    roles: tuple[str, ...],
    tags: tuple[str, ...],
    labels: tuple[str, ...],
    creator: str | None,
) -> dict[str, object]:
    return {
        "group_name": group,
        "role": parse_roles(roles),
        "tags": split_list(tags) or None,
        "labels": split_list(labels) or None,
        "creator_username": creator,
    }


@click.group()
def workers() -> None:
    """Inspect, query, re-tag and shut down workers."""


@workers.command()
@click.argument("uuid", type=UUID_TYPE)
@click.option("-f", "--force", is_flag=True, help=FORCE_HELP)
@pass_session
def cancel(session: Session, uuid: UUID, force: bool) -> None:
    """Shut a worker down."""
    session.client().cancel_worker(uuid, force)
    click.echo(f"Worker {uuid} {'stopped' if force else 'asked to stop after its current task'}")


@workers.command("cancel-many")
@click.option("-g", "--group", help="Group of the workers (default: your own group).")
@list_option("-r", "--roles", help="Roles of the workers in the group")
@list_option("-t", "--tags", help="Tags the workers must all carry")
@list_option("-l", "--labels", help="Labels the workers must all carry")
@click.option("--creator", help="Username that registered the workers.")
@click.option("-f", "--force", is_flag=True, help=FORCE_HELP)
@output_options
def cancel_many(
    group: str | None,
    roles: tuple[str, ...],
    tags: tuple[str, ...],
    labels: tuple[str, ...],
    creator: str | None,
    force: bool,
    printer: Printer,
) -> None:
    """Shut down every worker matching the filter."""
    op = WorkerShutdownOp.Force if force else WorkerShutdownOp.Graceful
    req = m.WorkersShutdownByFilterReq(**_filter(group, roles, tags, labels, creator), op=op)  # type: ignore[arg-type]
    resp = get_session().client().shutdown_workers(req)
    printer.data(
        resp, lambda: printer.line(f"Shut down {resp.shutdown_count} worker(s) of group {resp.group_name}")
    )


@workers.command("cancel-list")
@click.argument("uuids", nargs=-1, required=True, type=UUID_TYPE)
@click.option("-f", "--force", is_flag=True, help=FORCE_HELP)
@output_options
def cancel_list(uuids: tuple[UUID, ...], force: bool, printer: Printer) -> None:
    """Shut down the listed workers."""
    resp = get_session().client().shutdown_worker_list(uuids, force)

    def human() -> None:
        printer.line(f"Shut down {resp.shutdown_count} worker(s)")
        for u in resp.failed_uuids:
            printer.line(f"  not shut down: {u}")

    printer.data(resp, human)


@workers.command("update-tags")
@click.argument("uuid", type=UUID_TYPE)
@click.argument("tags", nargs=-1, required=True)
@pass_session
def update_tags(session: Session, uuid: UUID, tags: tuple[str, ...]) -> None:
    """Replace the tags of a worker."""
    session.client().replace_worker_tags(uuid, tags)
    click.echo(f"Tags of worker {uuid} set to: {', '.join(dict.fromkeys(tags))}")


@workers.command("update-labels")
@click.argument("uuid", type=UUID_TYPE)
@click.argument("labels", nargs=-1, required=True)
@pass_session
def update_labels(session: Session, uuid: UUID, labels: tuple[str, ...]) -> None:
    """Replace the labels of a worker."""
    session.client().replace_worker_labels(uuid, labels)
    click.echo(f"Labels of worker {uuid} set to: {', '.join(dict.fromkeys(labels))}")


@workers.command("update-roles")
@click.argument("uuid", type=UUID_TYPE)
@click.argument("relations", nargs=-1, required=True, metavar="GROUP:ROLE...")
@pass_session
def update_roles(session: Session, uuid: UUID, relations: tuple[str, ...]) -> None:
    """Grant groups a role on a worker (read, write: runs its tasks, admin: manages it)."""
    pairs = dict(parse_relation(r, "GROUP") for r in relations)
    session.client().update_worker_groups(uuid, pairs)
    click.echo(f"Updated {len(pairs)} group role(s) of worker {uuid}")


@workers.command("remove-roles")
@click.argument("uuid", type=UUID_TYPE)
@click.argument("groups", nargs=-1, required=True, metavar="GROUP...")
@pass_session
def remove_roles(session: Session, uuid: UUID, groups: tuple[str, ...]) -> None:
    """Remove groups from a worker."""
    session.client().remove_worker_groups(uuid, groups)
    click.echo(f"Removed {len(set(groups))} group(s) from worker {uuid}")


@workers.command()
@click.argument("uuid", type=UUID_TYPE)
@output_options
def get(uuid: UUID, printer: Printer) -> None:
    """Show a worker."""
    resp = get_session().client().get_worker(uuid)
    printer.data(resp, lambda: output.render_worker(printer, resp))


@workers.command()
@click.option("-g", "--group", help="Group of the workers (default: your own group).")
@list_option("-r", "--roles", help="Roles of the workers in the group")
@list_option("-t", "--tags", help="Tags the workers must all carry")
@list_option("-l", "--labels", help="Labels the workers must all carry")
@click.option("--creator", help="Username that registered the workers.")
@click.option("-v", "--verbose", is_flag=True, help="Show every field, not only worker ids.")
@click.option("--count", is_flag=True, help="Only print the number of matches.")
@output_options
def query(
    group: str | None,
    roles: tuple[str, ...],
    tags: tuple[str, ...],
    labels: tuple[str, ...],
    creator: str | None,
    verbose: bool,
    count: bool,
    printer: Printer,
) -> None:
    """Query the workers serving a group."""
    req = m.WorkersQueryReq(**_filter(group, roles, tags, labels, creator), count=count)  # type: ignore[arg-type]
    resp = get_session().client().query_workers(req)
    printer.data(resp, lambda: output.render_workers(printer, resp, verbose, count))
