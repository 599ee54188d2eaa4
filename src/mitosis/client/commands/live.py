"""``tasks logs``, ``tasks wait`` and ``tasks watch``: commands that follow tasks as they change.

They read the coordinator's event stream and live logs through :mod:`mitosis.client.stream`;
``tasks wait`` polls only when the coordinator has no event stream (a 0.6.8 coordinator).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import IO, Any
from uuid import UUID

import click
from rich.live import Live
from rich.table import Table

from mitosis.client import output, stream
from mitosis.client.commands import EXIT_INTERRUPTED, get_session, output_options
from mitosis.client.commands.params import DURATION, UUID_TYPE, filter_fields, task_filter_options
from mitosis.client.output import Printer
from mitosis.client.sdk import MitoClient
from mitosis.wire import models as m
from mitosis.wire.codecs import describe_exit_status
from mitosis.wire.models import I64_MAX


def _exit(code: int) -> None:
    if code:
        click.get_current_context().exit(code)


@click.command()
@click.argument("uuid", type=UUID_TYPE)
@click.option(
    "--stream",
    "which",
    type=click.Choice(["stdout", "stderr", "both"]),
    default="both",
    show_default=True,
    help="Which output to print (stdout goes to stdout, stderr to stderr).",
)
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing until the task ends; exit with its exit code."
)
def logs(uuid: UUID, which: str, follow: bool) -> None:
    """Print the output of a task (terminal output on): live while it runs, its std-log artifact
    after it ended. With --follow, exit with the task's exit code (128 + N if killed by signal N,
    1 if cancelled)."""
    client = get_session().client()
    sinks: dict[str, IO[bytes]] = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    reader = client.logs(
        uuid, stream=which, follow=follow, on_notice=lambda text: click.echo(f"mito: {text}", err=True)
    )
    try:
        for chunk in reader:
            sink = sinks[chunk.stream]
            sink.write(chunk.data)
            sink.flush()
    except KeyboardInterrupt:
        _exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        return  # the reader of our output (e.g. `head`) has seen enough
    if follow and reader.end is not None:
        _exit(reader.end.exit_code)


@click.command()
@click.argument("uuid", type=UUID_TYPE)
@click.option("--timeout", type=DURATION, help="Give up after this long (exit 1).")
@click.option(
    "--poll",
    type=DURATION,
    default="1s",
    show_default=True,
    help="Polling interval, used only with a coordinator without an event stream.",
)
@output_options
def wait(uuid: UUID, timeout: timedelta | None, poll: timedelta, printer: Printer) -> None:
    """Wait until a task has ended; exit with its exit code (1 if it was cancelled)."""
    client = get_session().client()
    limit = None if timeout is None else timeout.total_seconds()
    try:
        resp = stream.wait_for_task(client, uuid, limit, poll.total_seconds())
    except KeyboardInterrupt:
        _exit(EXIT_INTERRUPTED)
        return
    info = resp.info
    result = info.result
    printer.data(
        resp,
        lambda: printer.line(
            f"Task {info.uuid} {info.state.value}: "
            + (describe_exit_status(result.exit_status) if result else "no result")
            + (f" ({result.msg.value})" if result and result.msg else "")
        ),
    )
    raw = result.model_dump(mode="json") if result is not None else None
    _exit(stream.task_exit_code(info.state.value, raw))


# ----------------------------------------------------------------------------------------- watch


def _result_text(result: Any) -> str:
    if not isinstance(result, dict):
        return "-"
    text = describe_exit_status(result.get("exit_status"))
    return f"{text} ({result['msg']})" if result.get("msg") else text


class _Board:
    """The watched tasks: their rows, updated from events."""

    def __init__(self, resp: m.TasksQueryResp, req: m.TasksQueryReq | None = None) -> None:
        self.group = resp.group_name
        self.req = req
        self.limit = req.limit if req is not None and req.limit is not None else None
        self.rows: dict[str, dict[str, Any]] = {}
        # Tasks a query showed not to match the filter, with the (state, labels) they had then:
        # asked about again only when one of those changes.
        self.outside: dict[str, tuple[str | None, tuple[str, ...]]] = {}
        self.merge(resp)

    def merge(self, resp: m.TasksQueryResp) -> list[str]:
        """Take the rows of a query; return the uuids that are new or whose state or result changed.
        New tasks are added only while the board holds fewer than ``--limit`` rows."""
        changed = []
        for task in resp.tasks:
            args = task.spec.get("args", []) if isinstance(task.spec, dict) else []
            uuid = str(task.uuid)
            old = self.rows.get(uuid)
            if old is None and self.limit is not None and len(self.rows) >= self.limit:
                continue
            self.outside.pop(uuid, None)
            row = {
                "state": task.state.value,
                "result": task.result if isinstance(task.result, dict) else None,
                "labels": list(task.labels),
                "command": " ".join(str(a) for a in args),
                "updated_at": task.updated_at,
            }
            if old is None or (old["state"], old["result"]) != (row["state"], row["result"]):
                changed.append(uuid)
            self.rows[uuid] = row
        return changed

    def _may_match(self, ev: stream.Event) -> bool:
        """Whether a task not on the board may now match the filter, judged from the event alone
        (state and labels); the other filter fields need a query."""
        req = self.req
        if req is None or ev.type != "task" or not ev.uuid or ev.state is None:
            return False
        if self.limit is not None and len(self.rows) >= self.limit:
            return False
        if req.states and ev.state not in {s.value for s in req.states}:
            return False
        labels = ev.data.get("labels")
        have = tuple(sorted(str(x) for x in labels)) if isinstance(labels, list) else ()
        if req.labels and not set(req.labels) <= set(have):
            return False
        return self.outside.get(ev.uuid) != (ev.state, have)

    def newcomers(self, ev: stream.Event, client: MitoClient) -> list[str]:
        """A task the board does not show changed: if it may have started to match the filter (a
        new submission, a state or labels change), query again and add what now matches. Returns
        the uuids added or changed."""
        if ev.uuid in self.rows or not self._may_match(ev):
            return []
        assert self.req is not None and ev.uuid is not None
        changed = self.merge(client.query_tasks(self.req))
        if ev.uuid not in self.rows:
            labels = ev.data.get("labels")
            have = tuple(sorted(str(x) for x in labels)) if isinstance(labels, list) else ()
            self.outside[ev.uuid] = (ev.state, have)
        return changed

    def apply(self, ev: stream.Event, client: MitoClient) -> bool:
        """Apply one event; True when it changed a watched row."""
        row = self.rows.get(ev.uuid or "")
        if row is None or ev.state is None or self.ended(row):
            return False  # a stale event (sent before the initial query) never reopens a task
        row["state"] = ev.state
        row["updated_at"] = datetime.now(UTC)
        if ev.state in stream.FINAL:
            info = client.get_task(ev.uuid or "").info
            row["state"] = info.state.value
            row["result"] = info.result.model_dump(mode="json") if info.result else None
            row["updated_at"] = info.updated_at
        return True

    @staticmethod
    def ended(row: dict[str, Any]) -> bool:
        return row["state"] in stream.FINAL and row["result"] is not None

    def all_ended(self) -> bool:
        return all(self.ended(row) for row in self.rows.values())

    def record(self, uuid: str) -> dict[str, Any]:
        """One row for scripts (``--json``/``--output yaml`` of the live view)."""
        row = self.rows[uuid]
        when = row["updated_at"]
        return {
            "uuid": uuid,
            "group_name": self.group,
            "state": row["state"],
            "result": row["result"],
            "labels": row["labels"],
            "command": row["command"],
            "updated_at": when.isoformat() if when is not None else None,
        }

    def table(self) -> Table:
        done = sum(self.ended(r) for r in self.rows.values())
        t = Table(title=f"{len(self.rows)} task(s) in group {self.group}: {done} ended")
        for col in ("uuid", "state", "result", "labels", "command", "updated"):
            t.add_column(col, overflow="fold")
        for uuid, row in self.rows.items():
            t.add_row(
                uuid,
                row["state"],
                _result_text(row["result"]),
                ", ".join(row["labels"]) or "-",
                row["command"],
                output.local_time(row["updated_at"]),
            )
        return t


def _follow_table(
    board: _Board, events: stream.EventStream, client: MitoClient, req: m.TasksQueryReq, printer: Printer
) -> None:
    with Live(board.table(), console=printer.console, refresh_per_second=4) as live:
        if board.all_ended():
            return
        for ev in events:
            if ev.type == "reset":
                board.merge(client.query_tasks(req))
            elif not board.apply(ev, client) and not board.newcomers(ev, client):
                continue
            live.update(board.table())
            if board.all_ended():
                return


def _follow_records(
    board: _Board, events: stream.EventStream, client: MitoClient, req: m.TasksQueryReq, printer: Printer
) -> None:
    for uuid in board.rows:
        printer.item(board.record(uuid))
    if board.all_ended():
        return
    for ev in events:
        if ev.type == "reset":
            changed = board.merge(client.query_tasks(req))
        elif board.apply(ev, client):
            changed = [ev.uuid or ""]
        else:
            changed = board.newcomers(ev, client)
            if not changed:
                continue
        for uuid in changed:
            printer.item(board.record(uuid))
        if board.all_ended():
            return


@click.command()
@task_filter_options(reporter=False)
@click.option(
    "--limit", type=click.IntRange(1, I64_MAX), default=200, show_default=True, help="Tasks to show."
)
@click.option("--once", is_flag=True, help="Print the tasks once and exit.")
@output_options
def watch(
    creators: tuple[str, ...],
    group: str | None,
    tags: tuple[str, ...],
    labels: tuple[str, ...],
    state: tuple[str, ...],
    exit_status: str | None,
    priority: str | None,
    limit: int,
    once: bool,
    printer: Printer,
) -> None:
    """A live table of the tasks matching the filter, updated as they change, until all of them
    have ended (or Ctrl-C: exit 130). Tasks that start to match while it runs (a new submission,
    a labels change) join the table, up to --limit rows.

    \b
    For scripts: --once --json (or --output yaml) prints the query result, as `tasks query --json`;
    without --once, --json prints one JSON object per line (JSON Lines) for every task, then one
    more each time a task changes, and --output yaml one YAML document per change. Each has uuid,
    group_name, state, result, labels, command and updated_at.
    """
    client = get_session().client()
    req = m.TasksQueryReq(
        **filter_fields(creators, group, tags, labels, state, exit_status, priority), limit=limit
    )
    if once:
        resp = client.query_tasks(req)
        printer.data(resp, lambda: printer.table(_Board(resp).table()))
        return
    follow = _follow_table if printer.fmt == "table" else _follow_records
    try:
        # Subscribed before the query, so no change between the two is missed.
        with client.events(group=req.group_name or client.username, kind="task") as events:
            follow(_Board(client.query_tasks(req), req), events, client, req, printer)
    except KeyboardInterrupt:
        _exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        return  # the reader of our output (e.g. `head -n 3`) has seen enough
