"""``groups``: create, inspect and manage the members of groups, and the group attachments.

Attachment key conventions follow 0.6.8 (behavior.md §9.2 details): keys are path-cleaned; with
``-s/--smart`` a ``GROUP/KEY`` argument names the group too.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import click

from mitosis.client import output
from mitosis.client.commands import Session, get_session, output_options
from mitosis.client.commands.params import LIMIT
from mitosis.client.commands.transfer import (
    MAX_CONCURRENT,
    Job,
    download_many,
    output_target,
    print_urls,
    progress_bar,
    want_progress,
)
from mitosis.client.output import Printer
from mitosis.wire.enums import Role

pass_session = click.make_pass_decorator(Session)


def parse_relation(text: str, what: str) -> tuple[str, Role]:
    """``NAME:ROLE`` with ROLE read|write|admin in any of 0.6.8's spellings."""
    name, sep, role = text.rpartition(":")
    if not sep or not name:
        raise click.BadParameter(f"{text!r}: expected {what}:ROLE, e.g. alice:write")
    try:
        return name, Role(role)
    except ValueError:
        raise click.BadParameter(f"{text!r}: role must be read, write or admin") from None


def clean_key(key: str) -> str:
    """Normalise ``a//b/./c`` to ``a/b/c`` as 0.6.8 does before sending a key."""
    cleaned = posixpath.normpath(key)
    return "" if cleaned == "." else cleaned


@click.group()
def groups() -> None:
    """Create groups and manage their members and attachments."""


@groups.command()
@click.argument("group")
@pass_session
def create(session: Session, group: str) -> None:
    """Create a group (you become its Admin)."""
    session.client().create_group(group)
    session.remember(groups=[group])
    click.echo(f"Group {group} created")


@groups.command()
@click.argument("group")
@output_options
def get(group: str, printer: Printer) -> None:
    """Show a group (members are listed for its admins)."""
    info = get_session().client().get_group(group)
    printer.data(info, lambda: output.render_group(printer, info))


@groups.command("update-user")
@click.argument("group")
@click.argument("relations", nargs=-1, metavar="[USER:ROLE]...")
@pass_session
def update_user(session: Session, group: str, relations: tuple[str, ...]) -> None:
    """Add users to GROUP or change their role (ROLE: read, write or admin)."""
    if not relations:
        raise click.UsageError("give at least one USER:ROLE")
    pairs = dict(parse_relation(r, "USER") for r in relations)
    session.client().update_group_users(group, pairs)
    click.echo(f"Updated {len(pairs)} member(s) of group {group}")


@groups.command("remove-user")
@click.argument("group")
@click.argument("users", nargs=-1, metavar="[USER]...")
@pass_session
def remove_user(session: Session, group: str, users: tuple[str, ...]) -> None:
    """Remove users from GROUP."""
    if not users:
        raise click.UsageError("give at least one USER")
    session.client().remove_group_users(group, users)
    click.echo(f"Removed {len(set(users))} member(s) from group {group}")


# ---------------------------------------------------------------------------------- attachments


def resolve(session: Session, group: str | None, key: str, smart: bool) -> tuple[str, str]:
    """The (group, key) of get/delete/download: ``-s`` splits ``group/rest`` at the first ``/``."""
    if group:
        return group, clean_key(key)
    if smart and "/" in key:
        head, _, rest = key.partition("/")
        return head, clean_key(rest)
    return session.username, clean_key(key)


def _group_or_me(session: Session, group: str | None) -> str:
    return group or session.username


@groups.group()
def attachments() -> None:
    """Upload, inspect, download and delete group attachments."""


@attachments.command()
@click.argument("local_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("key", required=False)
@click.option("-g", "--group", help="Group to upload to (default: your own group).")
@click.option("--pb", is_flag=True, help="Show a progress bar even without a terminal.")
@click.option("-s", "--smart", is_flag=True, help="KEY is GROUP/KEY (or just GROUP).")
@pass_session
def upload(
    session: Session, local_file: Path, key: str | None, group: str | None, pb: bool, smart: bool
) -> None:
    """Upload LOCAL_FILE as KEY (default: the file name; a KEY ending in / gets it appended)."""
    name = local_file.name
    if smart and not group and key:
        head, sep, rest = key.partition("/")
        group, key = head, (rest if sep else name)
    if not key:
        key = name
    elif key.endswith("/"):
        key += name
    key = clean_key(key)
    grp = _group_or_me(session, group)
    client = session.client()
    with progress_bar(f"upload {key}", want_progress(pb)) as cb:
        resp = client.upload_attachment_file(grp, key, local_file, cb)
    verb = "Replaced" if resp.exist else "Uploaded"
    click.echo(f"{verb} attachment {key} in group {grp} ({output.human_size(local_file.stat().st_size)})")


@attachments.command("get")
@click.argument("key")
@click.option("-g", "--group", help="Group of the attachment (default: your own group).")
@click.option("-s", "--smart", is_flag=True, help="KEY is GROUP/KEY.")
@output_options
def get_attachment(key: str, group: str | None, smart: bool, printer: Printer) -> None:
    """Show the metadata of an attachment."""
    session = get_session()
    grp, k = resolve(session, group, key, smart)
    meta = session.client().get_attachment(grp, k)
    printer.data(meta, lambda: output.render_attachment(printer, k, meta))


@attachments.command()
@click.argument("key")
@click.option("-g", "--group", help="Group of the attachment (default: your own group).")
@click.option(
    "-o", "--output", "dest", type=click.Path(), help="Output file, or directory (existing or ending in /)."
)
@click.option("--no-download", is_flag=True, help="Only print the download URL.")
@click.option("--pb", is_flag=True, help="Show a progress bar even without a terminal.")
@click.option("-s", "--smart", is_flag=True, help="KEY is GROUP/KEY; save under its last component.")
@pass_session
def download(
    session: Session, key: str, group: str | None, dest: str | None, no_download: bool, pb: bool, smart: bool
) -> None:
    """Download an attachment."""
    grp, k = resolve(session, group, key, smart)
    client = session.client()
    resp = client.attachment_download_url(grp, k)
    if no_download:
        print_urls([(k, resp.url, resp.size)])
        return
    local_name = posixpath.basename(k) if smart else k
    target = output_target(dest, local_name)
    with progress_bar(f"download {k}", want_progress(pb)) as cb:
        client.download_to(resp.url, target, cb)
    click.echo(f"Downloaded {grp}/{k} to {target}")


@attachments.command()
@click.argument("key")
@click.option("-g", "--group", help="Group of the attachment (default: your own group).")
@click.option("-s", "--smart", is_flag=True, help="KEY is GROUP/KEY.")
@pass_session
def delete(session: Session, key: str, group: str | None, smart: bool) -> None:
    """Delete an attachment (not within an hour of its last upload)."""
    grp, k = resolve(session, group, key, smart)
    session.client().delete_attachment(grp, k)
    click.echo(f"Deleted attachment {k} of group {grp}")


@attachments.command()
@click.option("-g", "--group", help="Group to search (default: your own group).")
@click.option("-k", "--key", help="Substring the keys must contain.")
@click.option("--limit", type=LIMIT)
@click.option("--offset", type=LIMIT)
@click.option("--count", is_flag=True, help="Only print the number of matches.")
@output_options
def query(
    group: str | None, key: str | None, limit: int | None, offset: int | None, count: bool, printer: Printer
) -> None:
    """List attachments of a group."""
    session = get_session()
    client, name = session.client(), _group_or_me(session, group)
    # Without --limit, every match, read in pages: a coordinator answers at most max_query_rows.
    if count or limit is not None:
        resp = client.query_attachments(name, key, limit, offset, count)
    else:
        resp = client.query_all_attachments(name, key, offset)
    printer.data(resp, lambda: output.render_attachments(printer, resp, count))


def _attachment_jobs(items: list[tuple[str, str, int]], dest: Path | None) -> list[Job]:
    """Each attachment under its file name (as 0.6.8); under its whole key when names collide."""
    base = dest or Path(".")
    names = [posixpath.basename(key) for key, _, _ in items]
    if len(set(names)) != len(names):
        # Two keys share a file name: keep their folders rather than overwrite one with the other.
        click.echo("some keys share a file name: saving each under its full key path", err=True)
        return [Job(url, base / key, size, key) for key, url, size in items]
    return [Job(url, base / name, size, key) for (key, url, size), name in zip(items, names, strict=True)]


@attachments.command("download-many")
@click.option("-g", "--group", help="Group (default: your own group).")
@click.option("-k", "--key", help="Substring the keys must contain.")
@click.option("--limit", type=LIMIT)
@click.option("--offset", type=LIMIT)
@click.option("-o", "--output", "dest", type=click.Path(file_okay=False, path_type=Path), help="Directory.")
@click.option("--no-download", is_flag=True, help="Only print the download URLs.")
@click.option("--pb", is_flag=True, help="Show a progress bar even without a terminal.")
@click.option(
    "--concurrent",
    type=click.IntRange(1, MAX_CONCURRENT),
    default=1,
    show_default=True,
    help="Downloads at once.",
)
@pass_session
def download_many_cmd(
    session: Session,
    group: str | None,
    key: str | None,
    limit: int | None,
    offset: int | None,
    dest: Path | None,
    no_download: bool,
    pb: bool,
    concurrent: int,
) -> None:
    """Download every attachment matching the filter."""
    client = session.client()
    resp = client.download_attachments_by_filter(_group_or_me(session, group), key, limit, offset)
    items = [(d.key, d.url, d.size) for d in resp.downloads]
    if no_download:
        print_urls(items)
        return
    download_many(client, _attachment_jobs(items, dest), concurrent, pb)


@attachments.command("download-list")
@click.argument("keys", nargs=-1, required=True)
@click.option("-g", "--group", help="Group (default: your own group).")
@click.option("-o", "--output", "dest", type=click.Path(file_okay=False, path_type=Path), help="Directory.")
@click.option("--no-download", is_flag=True, help="Only print the download URLs.")
@click.option("--pb", is_flag=True, help="Show a progress bar even without a terminal.")
@click.option(
    "--concurrent",
    type=click.IntRange(1, MAX_CONCURRENT),
    default=1,
    show_default=True,
    help="Downloads at once.",
)
@pass_session
def download_list(
    session: Session,
    keys: tuple[str, ...],
    group: str | None,
    dest: Path | None,
    no_download: bool,
    pb: bool,
    concurrent: int,
) -> None:
    """Download the named attachments (unknown keys are skipped)."""
    client = session.client()
    resp = client.download_attachments_by_keys(_group_or_me(session, group), [clean_key(k) for k in keys])
    items = [(d.key, d.url, d.size) for d in resp.downloads]
    if no_download:
        print_urls(items)
        return
    download_many(client, _attachment_jobs(items, dest), concurrent, pb)


@attachments.command("delete-many")
@click.option("-g", "--group", help="Group (default: your own group).")
@click.option("-k", "--key", help="Substring the keys must contain.")
@click.option("--limit", type=LIMIT)
@click.option("--offset", type=LIMIT)
@output_options
def delete_many(
    group: str | None, key: str | None, limit: int | None, offset: int | None, printer: Printer
) -> None:
    """Delete every attachment matching the filter (recently updated ones are skipped)."""
    session = get_session()
    resp = session.client().delete_attachments_by_filter(_group_or_me(session, group), key, limit, offset)
    printer.data(
        resp, lambda: printer.line(f"Deleted {resp.deleted_count} attachment(s) of group {resp.group_name}")
    )


@attachments.command("delete-list")
@click.argument("keys", nargs=-1, required=True)
@click.option("-g", "--group", help="Group (default: your own group).")
@output_options
def delete_list(keys: tuple[str, ...], group: str | None, printer: Printer) -> None:
    """Delete the named attachments."""
    session = get_session()
    resp = session.client().delete_attachments_by_keys(
        _group_or_me(session, group), [clean_key(k) for k in keys]
    )

    def human() -> None:
        printer.line(f"Deleted {resp.deleted_count} attachment(s) of group {resp.group_name}")
        for k in resp.failed_keys:
            printer.line(f"  not deleted: {k}")

    printer.data(resp, human)
