"""How the dashboard shows values: exit statuses, times, sizes, durations, commands.

Times are rendered as absolute UTC text inside ``<time datetime=...>``; the page script turns them
into "12 s ago" in the browser, so a live region's HTML only changes when its data does.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

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


class _Event(Protocol):
    @property
    def at(self) -> datetime: ...
    @property
    def state(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...


FINAL_STATES = frozenset({TaskState.Finished.value, TaskState.Cancelled.value})


@dataclass(frozen=True)
class TimelineEntry:
    label: str
    at: datetime
    kind: str
    """``created``, a task state in lower case, ``cancel``, ``committed``, ``labels`` or ``spec``."""
    detail: str = ""


@dataclass(frozen=True)
class Timeline:
    entries: list[TimelineEntry]
    started_at: datetime | None
    """The first change to Running (the task was handed to a worker)."""
    ended_at: datetime | None
    """The first change to Finished or Cancelled: when the run ended, whatever changed later."""
    partial: bool
    """Earlier changes may be missing: the event window no longer keeps them."""


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def timeline(created_at: datetime, events: Iterable[_Event], kept_since: datetime | None) -> Timeline:
    """A task's history from its recorded events (``services`` write one per change).

    Label and spec edits appear as their own entries and never move the end time, which is the time
    of the first Finished/Cancelled event (not the row's ``updated_at``, which any edit bumps).
    ``kept_since``: events older than this may have been pruned.
    """
    entries = [TimelineEntry("Created", created_at, "created")]
    started: datetime | None = None
    ended: datetime | None = None
    last_state = ""
    for ev in events:
        data = ev.data or {}
        change = data.get("change")
        if change == "labels":
            entries.append(TimelineEntry("Labels changed", ev.at, "labels"))
            continue
        if change == "task":
            entries.append(TimelineEntry("Spec changed", ev.at, "spec"))
            last_state = ev.state
            continue
        if data.get("cancel_requested"):
            entries.append(TimelineEntry("Cancel requested", ev.at, "cancel"))
            continue
        detail = ""
        if data.get("committed"):
            label, kind = "Result recorded", "committed"
            detail = result_text(data.get("result"))
        elif data.get("requeued"):
            label, kind = f"Re-queued ({ev.state})", ev.state.lower()
        elif ev.state == last_state and not data.get("msg"):
            continue
        else:
            label, kind = ev.state, ev.state.lower()
            detail = str(data.get("msg") or "")
        if ev.state == TaskState.Running.value and started is None:
            started = ev.at
        if ev.state in FINAL_STATES and ended is None:
            ended = ev.at
            if kind == "committed":
                # The end itself was not recorded apart from its result (a direct commit).
                label, kind = ev.state, ev.state.lower()
        entries.append(TimelineEntry(label, ev.at, kind, detail))
        last_state = ev.state
    partial = kept_since is not None and _aware(created_at) < _aware(kept_since)
    return Timeline(entries, started, ended, partial)


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
