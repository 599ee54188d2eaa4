"""How the CLI shows results: Rich tables for people, JSON or YAML for scripts.

Owns the human formatting rules: datetimes in local time with a relative hint ("3 min ago"), sizes
in binary units, and ``exit_status`` decoded from 0.6.8's raw wait status ("exit 3", "killed by
SIGKILL") as DECISIONS.md ("exit status") requires. JSON/YAML output is the wire model unchanged,
so scripts see the same field names as the HTTP API.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from mitosis.wire import models as m
from mitosis.wire.codecs import describe_exit_status, format_duration, format_size

Format = Literal["table", "json", "yaml"]
FORMATS: tuple[Format, ...] = ("table", "json", "yaml")


# ----------------------------------------------------------------------------------- exit status


def exit_code_of(status: int) -> int:
    """The process exit code a shell would report for the raw wait status (128 + N for a signal)."""
    low = status & 0x7F
    if low == 0:
        return (status >> 8) & 0xFF
    if low == 0x7F:
        return 128 + ((status >> 8) & 0xFF)
    return 128 + low


# ------------------------------------------------------------------------------- time and sizes


def relative_time(when: datetime, now: datetime | None = None) -> str:
    """``just now``, ``3 min ago``, ``in 2 h``, ``5 days ago``."""
    now = now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (now - when).total_seconds()
    future = delta < 0
    secs = abs(delta)
    if secs < 5:
        return "just now"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if secs >= size:
            n = int(secs // size)
            text = f"{n} {unit}{'s' if unit == 'day' and n > 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "just now"


def local_time(when: datetime | None, now: datetime | None = None) -> str:
    """Local wall-clock time plus a relative hint, e.g. ``2025-03-04 09:57:59 (3 min ago)``."""
    if when is None:
        return "-"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{when.astimezone().strftime('%Y-%m-%d %H:%M:%S')} ({relative_time(when, now)})"


def human_size(n: int) -> str:
    return format_size(n)


# -------------------------------------------------------------------------------------- printer


def to_data(obj: Any) -> Any:
    """The JSON-ready form of a wire model (or a list/dict of them)."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, Mapping):
        return {str(k): to_data(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_data(v) for v in obj]
    return obj


class Printer:
    """Writes results to stdout in the chosen format; tables are rendered only for ``table``."""

    def __init__(self, fmt: Format = "table") -> None:
        self.fmt = fmt
        # Without a terminal Rich would wrap at 80 columns and cut UUIDs; pipes get wide lines.
        self.console = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=False)

    def data(self, obj: Any, human: Callable[[], None]) -> None:
        if self.fmt == "json":
            sys.stdout.write(json.dumps(to_data(obj), indent=2, ensure_ascii=False) + "\n")
        elif self.fmt == "yaml":
            sys.stdout.write(yaml.safe_dump(to_data(obj), sort_keys=False, allow_unicode=True))
        else:
            human()
        sys.stdout.flush()

    def item(self, obj: Any) -> None:
        """One record of a stream of them: a JSON line (JSON Lines) or a YAML document."""
        if self.fmt == "yaml":
            sys.stdout.write("---\n" + yaml.safe_dump(to_data(obj), sort_keys=False, allow_unicode=True))
        else:
            sys.stdout.write(json.dumps(to_data(obj), ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def line(self, text: str) -> None:
        """A plain message (never styled, so scripts can parse it)."""
        self.console.print(text, markup=False, highlight=False)

    def table(self, table: Table) -> None:
        self.console.print(table)

    def fields(self, rows: Sequence[tuple[str, Any]], title: str | None = None) -> None:
        t = Table(show_header=False, title=title, box=None, pad_edge=False)
        t.add_column(style="bold")
        t.add_column(overflow="fold")
        for name, value in rows:
            t.add_row(name, "-" if value is None or value == "" else str(value))
        self.console.print(t)


def _join(values: Sequence[str]) -> str:
    return ", ".join(values) if values else "-"


def _result_text(result: Any) -> str:
    if result is None:
        return "-"
    status: Any
    msg: Any
    if isinstance(result, m.TaskResultSpec):
        status, msg = result.exit_status, (result.msg.value if result.msg else None)
    elif isinstance(result, Mapping):
        status, msg = result.get("exit_status"), result.get("msg")
    else:
        return str(result)
    text = describe_exit_status(status if isinstance(status, int) else None)
    return f"{text} ({msg})" if msg else text


def render_task(p: Printer, resp: m.TaskQueryResp) -> None:
    info = resp.info
    spec = info.spec
    p.fields(
        [
            ("uuid", info.uuid),
            ("task id", info.task_id),
            ("group", info.group_name),
            ("creator", info.creator_username),
            ("state", info.state.value),
            ("result", _result_text(info.result)),
            ("command", " ".join(spec.args)),
            ("envs", _join([f"{k}={v}" for k, v in spec.envs.items()])),
            ("tags", _join(info.tags)),
            ("labels", _join(info.labels)),
            ("priority", info.priority),
            ("timeout", format_duration(info.timeout) if info.timeout >= 0 else f"{info.timeout} s"),
            ("terminal output", "yes" if spec.terminal_output else "no"),
            ("watch", f"{spec.watch[0]} {spec.watch[1].value}" if spec.watch else None),
            ("created", local_time(info.created_at)),
            ("updated", local_time(info.updated_at)),
            ("upstream", info.upstream_task_uuid),
            ("downstream", info.downstream_task_uuid),
            ("reporter", info.reporter_uuid),
        ]
    )
    if resp.artifacts:
        t = Table(title="artifacts")
        for col in ("content type", "size", "updated"):
            t.add_column(col)
        for a in resp.artifacts:
            t.add_row(a.content_type.value, human_size(a.size), local_time(a.updated_at))
        p.table(t)


def render_tasks(p: Printer, resp: m.TasksQueryResp, verbose: bool, count: bool) -> None:
    if count:
        p.line(str(resp.count))
        return
    if not verbose:
        for task in resp.tasks:
            p.line(str(task.uuid))
        return
    t = Table(title=f"{resp.count} task(s) in group {resp.group_name}")
    for col in (
        "uuid",
        "id",
        "state",
        "result",
        "creator",
        "tags",
        "labels",
        "priority",
        "command",
        "updated",
    ):
        t.add_column(col, overflow="fold")
    for task in resp.tasks:
        args = task.spec.get("args", []) if isinstance(task.spec, Mapping) else []
        t.add_row(
            str(task.uuid),
            str(task.task_id),
            task.state.value,
            _result_text(task.result),
            task.creator_username,
            _join(task.tags),
            _join(task.labels),
            str(task.priority),
            " ".join(str(a) for a in args),
            local_time(task.updated_at),
        )
    p.table(t)


def render_worker(p: Printer, resp: m.WorkerQueryResp) -> None:
    info = resp.info
    p.fields(
        [
            ("worker id", info.worker_id),
            ("creator", info.creator_username),
            ("state", info.state.value),
            ("tags", _join(info.tags)),
            ("labels", _join(info.labels)),
            ("groups", _join([f"{g}:{r.value}" for g, r in resp.groups.items()])),
            ("running task", info.assigned_task_id),
            ("last heartbeat", local_time(info.last_heartbeat)),
            ("created", local_time(info.created_at)),
            ("updated", local_time(info.updated_at)),
        ]
    )


def render_workers(p: Printer, resp: m.WorkersQueryResp, verbose: bool, count: bool) -> None:
    if count:
        p.line(str(resp.count))
        return
    if not verbose:
        for w in resp.workers:
            p.line(str(w.worker_id))
        return
    t = Table(title=f"{resp.count} worker(s) in group {resp.group_name}")
    for col in ("worker id", "creator", "state", "tags", "labels", "running task", "last heartbeat"):
        t.add_column(col, overflow="fold")
    for w in resp.workers:
        t.add_row(
            str(w.worker_id),
            w.creator_username,
            w.state.value,
            _join(w.tags),
            _join(w.labels),
            str(w.assigned_task_id or "-"),
            local_time(w.last_heartbeat),
        )
    p.table(t)


def render_group(p: Printer, g: m.GroupQueryInfo) -> None:
    p.fields(
        [
            ("group", g.group_name),
            ("creator", g.creator_username),
            ("state", g.state.value),
            ("tasks", g.task_count),
            ("workers", g.worker_count),
            ("storage", f"{human_size(g.storage_used)} used of {human_size(g.storage_quota)}"),
            ("created", local_time(g.created_at)),
            ("updated", local_time(g.updated_at)),
        ]
    )
    if g.users_in_group is not None:
        t = Table(title="members")
        t.add_column("user")
        t.add_column("role")
        for user, role in sorted(g.users_in_group.items()):
            t.add_row(user, role.value)
        p.table(t)


def render_roles(p: Printer, roles: Mapping[str, Any], what: str) -> None:
    t = Table()
    t.add_column(what)
    t.add_column("role")
    for name, role in sorted(roles.items()):
        t.add_row(name, str(getattr(role, "value", role)))
    p.table(t)


def render_attachment(p: Printer, key: str, meta: m.AttachmentMetadata) -> None:
    p.fields(
        [
            ("key", key),
            ("size", human_size(meta.size)),
            ("created", local_time(meta.created_at)),
            ("updated", local_time(meta.updated_at)),
        ]
    )


def render_attachments(p: Printer, resp: m.AttachmentsQueryResp, count: bool) -> None:
    if count:
        p.line(str(resp.count))
        return
    t = Table(title=f"{resp.count} attachment(s) in group {resp.group_name}")
    for col in ("key", "size", "updated"):
        t.add_column(col, overflow="fold")
    for a in resp.attachments:
        t.add_row(a.key, human_size(a.size), local_time(a.updated_at))
    p.table(t)
