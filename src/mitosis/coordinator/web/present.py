"""How the dashboard shows values: exit statuses, times, sizes, durations, commands.

Times are rendered as absolute UTC text inside ``<time datetime=...>``; the page script turns them
into "12 s ago" in the browser, so a live region's HTML only changes when its data does.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from mitosis.wire.codecs import describe_exit_status, format_duration, format_size
from mitosis.wire.enums import TaskState


def result_text(result: Any) -> str:
    """The result column: decoded exit status, plus the coordinator's message when there is one."""
    if not result:
        return ""
    data = result if isinstance(result, dict) else result.model_dump(mode="json")
    msg = data.get("msg")
    if msg:
        return str(msg)
    return describe_exit_status(data.get("exit_status"))


def result_ok(result: Any) -> bool:
    if not result:
        return False
    data = result if isinstance(result, dict) else result.model_dump(mode="json")
    return not data.get("msg") and data.get("exit_status") == 0


def utc_text(when: datetime | None) -> str:
    if when is None:
        return "-"
    utc = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S UTC")


def time_tag(when: datetime | None, *, age: bool = True) -> Markup:
    """``<time>`` with an ISO timestamp; ``data-age`` asks the page script for "… ago" text."""
    if when is None:
        return Markup("-")
    utc = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    attr = Markup(" data-age") if age else Markup("")
    iso = utc.isoformat(timespec="seconds").replace("+00:00", "Z")
    return Markup('<time datetime="{}" title="{}"{}>{}</time>').format(
        iso, utc_text(utc), attr, utc_text(utc)
    )


def span_text(start: datetime, end: datetime) -> str:
    seconds = max(0, int((end - start).total_seconds()))
    return format_duration(seconds)


def command_text(spec: Any) -> str:
    data = spec if isinstance(spec, dict) else spec.model_dump(mode="json")
    args = data.get("args") or []
    return shlex.join(str(a) for a in args)


def state_badge(state: TaskState | str) -> Markup:
    name = state.value if isinstance(state, TaskState) else str(state)
    return Markup('<span class="badge state-{}">{}</span>').format(name.lower(), name)


def chips(values: list[str] | None) -> Markup:
    if not values:
        return Markup('<span class="muted">-</span>')
    return Markup(" ").join(Markup('<span class="chip">{}</span>').format(v) for v in values)


def size_text(n: int) -> str:
    return format_size(n)


def duration_text(seconds: int) -> str:
    return format_duration(seconds)


def csv(values: list[str] | None) -> str:
    return ", ".join(values or [])


FILTERS = {
    "describe_exit_status": describe_exit_status,
    "result_text": result_text,
    "result_ok": result_ok,
    "utc": utc_text,
    "time_tag": time_tag,
    "command": command_text,
    "state_badge": state_badge,
    "chips": chips,
    "size": size_text,
    "duration": duration_text,
    "csv": csv,
    "span_text": span_text,
}
