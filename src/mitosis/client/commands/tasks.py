"""``tasks``: submit, inspect, query, change, cancel and wait for tasks, and manage their artifacts."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import click
from pydantic import ValidationError

from mitosis.client import output, sweep
from mitosis.client.commands import (
    EXIT_ERROR,
    Session,
    get_session,
    list_option,
    live,
    output_options,
    split_list,
    sweeps,
)
from mitosis.client.commands.groups import clean_key
from mitosis.client.commands.params import (
    CONTENT_TYPE,
    DURATION,
    LIMIT,
    PRIORITY,
    UUID_TYPE,
    filter_fields,
    task_filter_options,
)
from mitosis.client.commands.transfer import (
    MAX_CONCURRENT,
    Job,
    download_many,
    extract_archives,
    output_target,
    print_urls,
    progress_bar,
    want_progress,
)
from mitosis.client.errors import MitoError, NotFoundError, WaitTimeout
from mitosis.client.output import Printer
from mitosis.wire import models as m
from mitosis.wire.codecs import parse_uuid
from mitosis.wire.enums import ArtifactContentType, TaskExecState, TaskState

# An exit-status filter every recorded result matches (the wire's i32 range): counts committed tasks.
ANY_EXIT_STATUS = f">={-(2**31)}"

pass_session = click.make_pass_decorator(Session)


def parse_envs(values: tuple[str, ...]) -> dict[str, str]:
    envs: dict[str, str] = {}
    for item in split_list(values):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="-e/--envs")
        envs[key] = value
    return envs


def parse_resource(text: str) -> m.RemoteResourceDownload:
    """``artifact=<uuid>:<content-type>:<local_path>`` or ``attachment=<key>:<local_path>``."""
    kind, sep, rest = text.partition("=")
    parts = rest.split(":")
    try:
        if sep and kind == "artifact" and len(parts) == 3:
            ref = m.ArtifactRef(uuid=parse_uuid(parts[0]), content_type=ArtifactContentType(parts[1]))
            return m.RemoteResourceDownload(remote_file=m.RemoteResource(Artifact=ref), local_path=parts[2])
        if sep and kind == "attachment" and len(parts) == 2:
            ref2 = m.AttachmentRef(key=clean_key(parts[0]))
            return m.RemoteResourceDownload(
                remote_file=m.RemoteResource(Attachment=ref2), local_path=parts[1]
            )
    except (ValueError, ValidationError) as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint="-r/--resources") from None
    raise click.BadParameter(
        f"{text!r}: expected artifact=UUID:CONTENT_TYPE:LOCAL_PATH or attachment=KEY:LOCAL_PATH",
        param_hint="-r/--resources",
    )


def parse_watch(text: str | None) -> tuple[UUID, TaskExecState] | None:
    """``UUID,STATE``; like 0.6.8, an unknown state name means ``Unknown``."""
    if text is None:
        return None
    uuid_text, sep, state = text.partition(",")
    try:
        uuid = parse_uuid(uuid_text.strip())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--watch") from None
    if not sep:
        raise click.BadParameter(
            f"{text!r}: expected UUID,STATE e.g. <uuid>,ExecSpawned", param_hint="--watch"
        )
    try:
        return uuid, TaskExecState(state.strip())
    except ValueError:
        return uuid, TaskExecState.Unknown


@click.group()
def tasks() -> None:
    """Submit, inspect, query, change, cancel and wait for tasks."""


@tasks.command()
@click.option("-g", "--group", help="Group to submit to (default: your own group).")
@list_option("-t", "--tags", help="Tags a worker must carry to run the task")
@list_option("-l", "--labels", help="Labels for finding the task later")
@click.option("--timeout", type=DURATION, default="10min", show_default=True, help="Run time limit.")
@click.option("-p", "--priority", type=PRIORITY, default=0, show_default=True, help="Higher runs first.")
@list_option("-e", "--envs", help="Environment variables KEY=VALUE")
@click.option("--terminal", is_flag=True, help="Capture stdout/stderr as the std-log artifact.")
@list_option("-r", "--resources", help="artifact=UUID:CONTENT_TYPE:PATH or attachment=KEY:PATH")
@click.option("--watch", metavar="UUID,STATE", help="Start only when that task reaches STATE.")
@click.option(
    "-m",
    "--matrix",
    multiple=True,
    metavar="KEY=V1,V2,...",
    help="Sweep: one task per combination of the values of every --matrix KEY, with {KEY} replaced "
    "in the command, -e values, -l labels and -r resources ({{ and }} are literal braces). Repeatable.",
)
@click.option(
    "--uuids-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Sweep: write the new tasks' uuids to FILE instead of stdout.",
)
@click.option(
    "--max-tasks",
    type=click.IntRange(min=1),
    default=sweep.DEFAULT_MAX_TASKS,
    show_default=True,
    help="Sweep: refuse a matrix expanding to more tasks.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1, max=m.MAX_BATCH_ITEMS),
    default=sweep.DEFAULT_CHUNK,
    show_default=True,
    help="Sweep: tasks per batch request.",
)
@click.option("--pb", is_flag=True, help="Sweep: show the progress bar even without a terminal.")
@click.argument("command", nargs=-1, required=True)
@output_options
def submit(
    group: str | None,
    tags: tuple[str, ...],
    labels: tuple[str, ...],
    timeout: timedelta,
    priority: int,
    envs: tuple[str, ...],
    terminal: bool,
    resources: tuple[str, ...],
    watch: str | None,
    matrix: tuple[str, ...],
    uuids_file: Path | None,
    max_tasks: int,
    chunk_size: int,
    pb: bool,
    command: tuple[str, ...],
    printer: Printer,
) -> None:
    """Submit COMMAND (everything after --) as a task, or as a sweep of tasks with --matrix.

    \b
    A sweep prints the new uuids one per line, in matrix order (last KEY fastest):
      mito client tasks submit -l sweep=lr -l lr={lr} --matrix lr=0.1,0.01 \\
        --matrix seed=1,2,3 -- python train.py --lr {lr} --seed {seed}
    """
    session = get_session()
    spec = m.TaskSpec(
        args=list(command),
        envs=parse_envs(envs),
        resources=[parse_resource(r) for r in split_list(resources)],
        terminal_output=terminal,
        watch=parse_watch(watch),
    )
    req = m.SubmitTaskReq(
        group_name=group or "",
        tags=split_list(tags),
        labels=split_list(labels),
        timeout=timeout,
        priority=priority,
        task_spec=spec,
    )
    if matrix:
        grid = sweeps.parse_or_usage(matrix)
        total = sweeps.check_or_usage(req, grid, max_tasks)
        with sweeps.uuids_sink(uuids_file) as sink:
            req.group_name = group or session.username
            sweeps.run_sweep(
                session,
                req,
                grid,
                total=total,
                chunk=chunk_size,
                max_tasks=max_tasks,
                uuids_file=uuids_file,
                sink=sink,
                pb=pb,
                printer=printer,
            )
        return
    if uuids_file is not None:
        raise click.UsageError("--uuids-file only applies to a sweep (--matrix)")
    grp = req.group_name = group or session.username
    resp = session.client().submit_task(req)
    session.remember(tasks=[resp.uuid])
    printer.data(
        resp,
        lambda: printer.line(
            f"Task submitted with id {resp.task_id} in group {grp} and a global uuid {resp.uuid}"
        ),
    )


@tasks.command("submit-many")
@click.option(
    "-f", "--file", "file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@output_options
def submit_many(file: Path, printer: Printer) -> None:
    """Submit every task of a JSON file (an array of SubmitTaskReq objects)."""
    try:
        raw: Any = json.loads(file.read_text(encoding="utf-8"))
        items = raw["tasks"] if isinstance(raw, dict) and "tasks" in raw else raw
        reqs = [m.SubmitTaskReq.model_validate(item) for item in items]
    except (ValueError, TypeError, ValidationError) as exc:
        raise click.BadParameter(
            f"{file}: not a JSON array of tasks: {exc}", param_hint="-f/--file"
        ) from None
    session = get_session()
    resp = session.client().submit_tasks(reqs)
    session.remember(tasks=[r.Ok.uuid for r in resp.results if isinstance(r, m.SubmitOk)])

    def human() -> None:
        for req, result in zip(reqs, resp.results, strict=False):
            if isinstance(result, m.SubmitOk):
                printer.line(
                    f"Task submitted with id {result.Ok.task_id} in group {req.group_name} "
                    f"and a global uuid {result.Ok.uuid}"
                )
            else:
                printer.line(f"Task for group {req.group_name} failed: {result.Err.msg}")

    printer.data(resp, human)


@tasks.command()
@click.argument("uuid", type=UUID_TYPE)
@output_options
def get(uuid: UUID, printer: Printer) -> None:
    """Show a task, its result and its artifacts."""
    resp = get_session().client().get_task(uuid)
    printer.data(resp, lambda: output.render_task(printer, resp))


@tasks.command()
@task_filter_options(reporter=True)
@click.option("--limit", type=LIMIT)
@click.option("--offset", type=LIMIT)
@click.option("-v", "--verbose", is_flag=True, help="Show every field, not only UUIDs.")
@click.option("--count", is_flag=True, help="Only print the number of matches.")
@output_options
def query(
    creators: tuple[str, ...],
    group: str | None,
    tags: tuple[str, ...],
    labels: tuple[str, ...],
    state: tuple[str, ...],
    exit_status: str | None,
    priority: str | None,
    reporter_uuid: UUID | None,
    limit: int | None,
    offset: int | None,
    verbose: bool,
    count: bool,
    printer: Printer,
) -> None:
    """Query tasks of a group."""
    req = m.TasksQueryReq(
        **filter_fields(creators, group, tags, labels, state, exit_status, priority),
        reporter_uuid=reporter_uuid,
        limit=limit,
        offset=offset,
        count=count,
    )
    session = get_session()
    client = session.client()
    # Without --limit, every match, read in pages: a coordinator answers at most max_query_rows.
    resp = client.query_tasks(req) if count or limit is not None else client.query_all_tasks(req)
    session.remember(tasks=[t.uuid for t in resp.tasks])
    printer.data(resp, lambda: output.render_tasks(printer, resp, verbose, count))


@tasks.command()
@click.argument("uuid", type=UUID_TYPE)
@pass_session
def cancel(session: Session, uuid: UUID) -> None:
    """Cancel a task that is Ready, Pending or Running (its worker stops a running task, keeps
    what it produced and records it as Cancelled)."""
    session.client().cancel_task(uuid)
    click.echo(f"Task {uuid} cancelled")


@tasks.command("cancel-many")
@task_filter_options(reporter=False)
@output_options
def cancel_many(
    creators: tuple[str, ...],
    group: str | None,
    tags: tuple[str, ...],
    labels: tuple[str, ...],
    state: tuple[str, ...],
    exit_status: str | None,
    priority: str | None,
    printer: Printer,
) -> None:
    """Cancel every Ready, Pending or Running task matching the filter (running ones are stopped
    by their workers)."""
    req = m.TasksCancelByFilterReq(
        **filter_fields(creators, group, tags, labels, state, exit_status, priority)
    )
    resp = get_session().client().cancel_tasks(req)
    printer.data(
        resp, lambda: printer.line(f"Cancelled {resp.cancelled_count} task(s) in group {resp.group_name}")
    )


@tasks.command("cancel-list")
@click.argument("uuids", nargs=-1, required=True, type=UUID_TYPE)
@output_options
def cancel_list(uuids: tuple[UUID, ...], printer: Printer) -> None:
    """Cancel the listed tasks."""
    resp = get_session().client().cancel_task_list(uuids)

    def human() -> None:
        printer.line(f"Cancelled {resp.cancelled_count} task(s)")
        for u in resp.failed_uuids:
            printer.line(f"  not cancelled: {u}")

    printer.data(resp, human)


@tasks.command("update-labels")
@click.argument("uuid", type=UUID_TYPE)
@click.argument("labels", nargs=-1)
@pass_session
def update_labels(session: Session, uuid: UUID, labels: tuple[str, ...]) -> None:
    """Replace the labels of a task (none given: clear them)."""
    session.client().update_task_labels(uuid, labels)
    click.echo(f"Labels of task {uuid} set to: {', '.join(dict.fromkeys(labels)) or '(none)'}")


@tasks.command()
@click.argument("uuid", type=UUID_TYPE)
@list_option("-t", "--tags", help="New tags (none: keep the tags)")
@click.option("--timeout", type=DURATION, help="New run time limit.")
@click.option("-p", "--priority", type=PRIORITY, help="New priority.")
@list_option("-e", "--envs", help="Environment variables KEY=VALUE of the new command")
@click.option("--terminal", is_flag=True, help="Capture stdout/stderr of the new command.")
@click.option("--watch", metavar="UUID,STATE", help="Watch setting of the new command.")
@click.argument("command", nargs=-1)
@pass_session
def change(
    session: Session,
    uuid: UUID,
    tags: tuple[str, ...],
    timeout: timedelta | None,
    priority: int | None,
    envs: tuple[str, ...],
    terminal: bool,
    watch: str | None,
    command: tuple[str, ...],
) -> None:
    """Change a task that has not started yet (a COMMAND after -- replaces its spec)."""
    spec = None
    if command:
        spec = m.TaskSpec(
            args=list(command), envs=parse_envs(envs), terminal_output=terminal, watch=parse_watch(watch)
        )
    req = m.ChangeTaskReq(tags=split_list(tags) or None, timeout=timeout, priority=priority, task_spec=spec)
    if req.tags is None and timeout is None and priority is None and spec is None:
        raise click.UsageError("nothing to change: give -t, --timeout, -p or a new command after --")
    session.client().change_task(uuid, req)
    click.echo(f"Task {uuid} changed")


@tasks.command("wait-many")
@task_filter_options(reporter=False)
@click.option("--timeout", type=DURATION, help="Give up after this long (exit 1).")
@click.option("--poll", type=DURATION, default="2s", show_default=True, help="Polling interval.")
@click.option("--pb", is_flag=True, help="Show the progress bar even without a terminal.")
@output_options
def wait_many(
    creators: tuple[str, ...],
    group: str | None,
    tags: tuple[str, ...],
    labels: tuple[str, ...],
    state: tuple[str, ...],
    exit_status: str | None,
    priority: str | None,
    timeout: timedelta | None,
    poll: timedelta,
    pb: bool,
    printer: Printer,
) -> None:
    """Wait until every task matching the filter (e.g. a sweep's label, -l) is Finished or
    Cancelled; exit 0 only if all of them exited 0."""
    if state or exit_status:
        raise click.UsageError("wait-many waits for every state and exit status: drop -s and -e")
    fields = filter_fields(creators, group, tags, labels, state, exit_status, priority)
    client = get_session().client()

    def count(**extra: Any) -> int:
        return client.query_tasks(m.TasksQueryReq(**{**fields, **extra}, count=True)).count

    total = count()
    if total == 0:
        raise NotFoundError("no task matches the filter (check -g and -l)")
    deadline = None if timeout is None else time.monotonic() + timeout.total_seconds()
    with sweeps.count_progress("finished", want_progress(pb), total) as progress:
        while True:
            # Done means committed: a task whose process ended is Finished at once, but its result
            # (and so its exit status) arrives with the worker's commit; only those match here.
            total = count()
            remaining = total - count(exit_status=ANY_EXIT_STATUS)
            if progress:
                progress(total - remaining, total)
            if not remaining:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"{remaining} of {total} task(s) still not finished after {timeout}")
            time.sleep(poll.total_seconds())
    finished = count(states=[TaskState.Finished], exit_status=ANY_EXIT_STATUS)
    ok = count(states=[TaskState.Finished], exit_status="0")
    cancelled = count(states=[TaskState.Cancelled], exit_status=ANY_EXIT_STATUS)
    summary = {
        "total": finished + cancelled,
        "succeeded": ok,
        "failed": finished - ok,
        "cancelled": cancelled,
    }
    printer.data(
        summary,
        lambda: printer.line(
            f"{summary['total']} task(s) done: {ok} exited 0, {finished - ok} failed, {cancelled} cancelled"
        ),
    )
    if finished - ok or cancelled:
        click.get_current_context().exit(EXIT_ERROR)


# ------------------------------------------------------------------------------------ artifacts


@tasks.group()
def artifacts() -> None:
    """Upload, download and delete task artifacts."""


@artifacts.command()
@click.argument("local_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("uuid", type=UUID_TYPE)
@click.argument("content_type", type=CONTENT_TYPE)
@click.option("--pb", is_flag=True, help="Show a progress bar even without a terminal.")
@pass_session
def upload(
    session: Session, local_file: Path, uuid: UUID, content_type: ArtifactContentType, pb: bool
) -> None:
    """Upload LOCAL_FILE as an artifact of a task."""
    with progress_bar(f"upload {content_type.file_name}", want_progress(pb)) as cb:
        session.client().upload_artifact_file(uuid, content_type, local_file, cb)
    click.echo(f"Uploaded {content_type.file_name} of task {uuid}")


@artifacts.command()
@click.argument("uuid", type=UUID_TYPE)
@click.argument("content_type", type=CONTENT_TYPE)
@click.option(
    "-o", "--output", "dest", type=click.Path(), help="Output file, or directory (existing or ending in /)."
)
@click.option("--no-download", is_flag=True, help="Only print the download URL.")
@click.option("--pb", is_flag=True, help="Show a progress bar even without a terminal.")
@pass_session
def download(
    session: Session,
    uuid: UUID,
    content_type: ArtifactContentType,
    dest: str | None,
    no_download: bool,
    pb: bool,
) -> None:
    """Download an artifact of a task."""
    client = session.client()
    resp = client.artifact_download_url(uuid, content_type)
    if no_download:
        print_urls([(f"{uuid}/{content_type.file_name}", resp.url, resp.size)])
        return
    target = output_target(dest, content_type.file_name)
    with progress_bar(f"download {content_type.file_name}", want_progress(pb)) as cb:
        client.download_to(resp.url, target, cb)
    click.echo(f"Downloaded {content_type.file_name} of task {uuid} to {target}")


@artifacts.command()
@click.argument("uuid", type=UUID_TYPE)
@click.argument("content_type", type=CONTENT_TYPE)
@pass_session
def delete(session: Session, uuid: UUID, content_type: ArtifactContentType) -> None:
    """Delete an artifact (not within an hour of its upload)."""
    session.client().delete_artifact(uuid, content_type)
    click.echo(f"Deleted {content_type.file_name} of task {uuid}")


def _artifact_jobs(items: list[m.ArtifactDownloadItem], dest: Path | None) -> list[Job]:
    base = dest or Path(".")
    return [Job(d.url, base / f"{d.uuid}.tar.gz", d.size, str(d.uuid)) for d in items]


def _batch_options(f: Any) -> Any:
    for opt in reversed(
        [
            click.option(
                "-o", "--output", "dest", type=click.Path(file_okay=False, path_type=Path), help="Directory."
            ),
            click.option("--no-download", is_flag=True, help="Only print the download URLs."),
            click.option("--pb", is_flag=True, help="Show a progress bar even without a terminal."),
            click.option(
                "--concurrent",
                type=click.IntRange(1, MAX_CONCURRENT),
                default=1,
                show_default=True,
                help="Downloads at once.",
            ),
            click.option(
                "-x",
                "--extract",
                is_flag=True,
                help="Unpack each archive into <DIR>/<uuid>/ (and delete the .tar.gz).",
            ),
        ]
    ):
        f = opt(f)
    return f


def _download_batch(
    session: Session,
    resp: m.ArtifactsDownloadListResp,
    dest: Path | None,
    no_download: bool,
    pb: bool,
    concurrent: int,
    extract: bool,
) -> None:
    if no_download:
        print_urls([(str(d.uuid), d.url, d.size) for d in resp.downloads])
        return
    jobs = _artifact_jobs(resp.downloads, dest)
    failure: MitoError | None = None
    try:
        download_many(session.client(), jobs, concurrent, pb)
    except MitoError as exc:
        failure = exc  # unpack what did arrive before reporting
    if extract:
        extract_archives([j.dest for j in jobs if j.dest.exists()])
    if failure is not None:
        raise failure


@artifacts.command("download-many")
@click.argument("content_type", type=CONTENT_TYPE)
@task_filter_options(reporter=True)
@_batch_options
@pass_session
def download_many_cmd(
    session: Session,
    content_type: ArtifactContentType,
    creators: tuple[str, ...],
    group: str | None,
    tags: tuple[str, ...],
    labels: tuple[str, ...],
    state: tuple[str, ...],
    exit_status: str | None,
    priority: str | None,
    reporter_uuid: UUID | None,
    dest: Path | None,
    no_download: bool,
    pb: bool,
    concurrent: int,
    extract: bool,
) -> None:
    """Download CONTENT_TYPE of every task matching the filter, as <DIR>/<uuid>.tar.gz
    (with -x: unpacked into <DIR>/<uuid>/). All results of a sweep: -l <its label>."""
    req = m.ArtifactsDownloadByFilterReq(
        **filter_fields(creators, group, tags, labels, state, exit_status, priority),
        reporter_uuid=reporter_uuid,
        content_type=content_type,
    )
    resp = session.client().download_artifacts_by_filter(req)
    _download_batch(session, resp, dest, no_download, pb, concurrent, extract)


@artifacts.command("download-list")
@click.argument("content_type", type=CONTENT_TYPE)
@click.argument("uuids", nargs=-1, required=True, type=UUID_TYPE)
@_batch_options
@pass_session
def download_list(
    session: Session,
    content_type: ArtifactContentType,
    uuids: tuple[UUID, ...],
    dest: Path | None,
    no_download: bool,
    pb: bool,
    concurrent: int,
    extract: bool,
) -> None:
    """Download CONTENT_TYPE of the listed tasks, as <DIR>/<uuid>.tar.gz (-x: unpacked)."""
    resp = session.client().download_artifacts_by_uuids(uuids, content_type)
    _download_batch(session, resp, dest, no_download, pb, concurrent, extract)


@artifacts.command("delete-many")
@click.argument("content_type", type=CONTENT_TYPE)
@task_filter_options(reporter=True)
@output_options
def delete_many(
    content_type: ArtifactContentType,
    creators: tuple[str, ...],
    group: str | None,
    tags: tuple[str, ...],
    labels: tuple[str, ...],
    state: tuple[str, ...],
    exit_status: str | None,
    priority: str | None,
    reporter_uuid: UUID | None,
    printer: Printer,
) -> None:
    """Delete CONTENT_TYPE of every task matching the filter (recent ones are skipped)."""
    req = m.ArtifactsDeleteByFilterReq(
        **filter_fields(creators, group, tags, labels, state, exit_status, priority),
        reporter_uuid=reporter_uuid,
        content_type=content_type,
    )
    resp = get_session().client().delete_artifacts_by_filter(req)
    printer.data(resp, lambda: printer.line(f"Deleted {resp.deleted_count} artifact(s)"))


@artifacts.command("delete-list")
@click.argument("content_type", type=CONTENT_TYPE)
@click.argument("uuids", nargs=-1, required=True, type=UUID_TYPE)
@output_options
def delete_list(content_type: ArtifactContentType, uuids: tuple[UUID, ...], printer: Printer) -> None:
    """Delete CONTENT_TYPE of the listed tasks."""
    resp = get_session().client().delete_artifacts_by_uuids(uuids, content_type)

    def human() -> None:
        printer.line(f"Deleted {resp.deleted_count} artifact(s)")
        for u in resp.failed_uuids:
            printer.line(f"  not deleted: {u}")

    printer.data(resp, human)


# ------------------------------------------------------------- live: logs, wait, watch (live.py)

tasks.add_command(live.logs)
tasks.add_command(live.wait)
tasks.add_command(live.watch)
