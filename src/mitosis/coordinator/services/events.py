"""The event stream (our addition): who may see which events, filters, replay, and the SSE format.

Events are rows of the ``events`` table (written by ``events/log.py`` in the transaction of the
change they record), so a stream is "read the rows after my cursor, in id order", woken when rows
are added: in-process by a hook on the engine (any commit that inserted an event wakes the
``EVENTS`` channel once its connection is back in the pool, i.e. after the commit), and across
coordinators by the PostgreSQL NOTIFY ``mitosis_events`` that the same transaction sends.

Ids are assigned at insert but become visible at commit, so on PostgreSQL two concurrent
transactions can commit out of id order. A reader that meets a hole in the ids waits for it: it
notes the transactions running at that moment (the ``xmax`` of a snapshot) and goes past the hole
only once all of them have ended (the ``xmin`` of a later snapshot has reached that ``xmax``) and
the hole is still there, i.e. the insert was rolled back. However long a transaction takes, its
events are not skipped; only a hole that outlives ``HOLE_LIMIT`` (a transaction left open for
minutes) is given up on, with a warning. SQLite has one writer, so commits come in id order and a
hole can only be a rolled-back insert: the reader waits ``GAP_GRACE`` there. Hence every id a
stream has sent is a safe ``Last-Event-ID``: all lower ids were either sent or never committed. A
stream without ``Last-Event-ID`` starts after the newest event, or, while transactions are running
on PostgreSQL, just before the first hole among the events of the last few seconds, so a change
committed a moment after the stream opened is not lost because its id was taken a moment before
(the stream may then begin with a few events from just before it opened).

A stream opens with the comment ``: connected``; once it has sent every committed event after the
client's ``Last-Event-ID`` (or at once, without one) it sends ``: live <id>`` a single time, so a
client can tell the replayed history from what happens next.

Authorization follows the task and worker queries (DECISIONS A3/A4): a user sees the events of
groups where they hold any role (Read is the lowest), a system admin sees all; naming a group or a
task the caller cannot read is refused with 403 before the stream starts. Group membership is
re-read at every heartbeat, so a user removed from a group stops seeing its events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mitosis.coordinator import errors
from mitosis.coordinator.auth import User
from mitosis.coordinator.db.tables import events, groups, user_group
from mitosis.coordinator.events.notifier import EVENTS, Notifier
from mitosis.coordinator.services import logs
from mitosis.coordinator.services.common import group_by_name, now, require_role
from mitosis.coordinator.services.tasks import find_task
from mitosis.wire.codecs import format_datetime
from mitosis.wire.enums import Role

log = logging.getLogger(__name__)

PAGE = 256
GAP_GRACE = 3.0
HOLE_LIMIT = 120.0
HOLE_POLL = 0.2
START_LOOKBACK = timedelta(seconds=10)
KINDS = ("task", "worker")
_WROTE_EVENT = "mitosis_wrote_event"


def install_commit_wake(engine: AsyncEngine, notifier: Notifier) -> None:
    """Wake this process's streams after any transaction that inserted into ``events`` commits.

    The engine's ``commit`` hook runs before the commit reaches the database, so it only marks the
    connection; the wake happens when the connection returns to the pool, after the commit, so a
    woken reader always finds the new rows.
    """
    loop = asyncio.get_running_loop()
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _mark(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO events"):
            conn.info[_WROTE_EVENT] = True

    @event.listens_for(sync_engine.pool, "checkin")
    def _wake(_dbapi_conn: Any, record: Any) -> None:
        if record is not None and record.info.pop(_WROTE_EVENT, False):
            loop.call_soon_threadsafe(notifier.wake, EVENTS)


@dataclass(frozen=True)
class EventFilter:
    """What a stream asked for; every given criterion must match (labels: all of them)."""

    groups: frozenset[str] = frozenset()
    tasks: frozenset[uuid.UUID] = frozenset()
    labels: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()
    kind: str | None = None

    def matches(self, row: Any) -> bool:
        if self.kind is not None and row.kind != self.kind:
            return False
        if self.groups and not self.groups.intersection(row.groups):
            return False
        if self.tasks and row.task_uuid not in self.tasks:
            return False
        if self.labels and not self.labels.issubset(row.labels):
            return False
        return not self.states or (row.state or "").lower() in self.states


def make_filter(
    group: Sequence[str], task: Sequence[str], labels: Sequence[str], state: Sequence[str], kind: str | None
) -> EventFilter:
    """Validate query parameters (400 with the reason on bad input)."""
    if kind is not None and kind not in KINDS:
        raise errors.invalid(f"kind must be task or worker, not {kind!r}")
    tasks = set()
    for value in task:
        try:
            tasks.add(uuid.UUID(value))
        except ValueError:
            raise errors.invalid(f"task {value!r} is not a UUID") from None
    return EventFilter(
        groups=frozenset(group),
        tasks=frozenset(tasks),
        labels=frozenset(labels),
        states=frozenset(s.lower() for s in state),
        kind=kind,
    )


async def readable_groups(engine: AsyncEngine, user: User) -> frozenset[str] | None:
    """Names of the groups the user may read; None means all (system admin)."""
    if user.admin:
        return None
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(groups.c.group_name)
            .join(user_group, user_group.c.group_id == groups.c.id)
            .where(user_group.c.user_id == user.id)
        )
        return frozenset(r.group_name for r in rows)


async def authorize(engine: AsyncEngine, user: User, flt: EventFilter) -> None:
    """Refuse (before any event is sent) a filter naming a group or task the caller cannot read."""
    async with engine.connect() as conn:
        for name in sorted(flt.groups):
            g = await group_by_name(conn, name)
            if g is None:
                if user.admin:
                    raise errors.not_found(f"Group {name}")
                # Outsiders learn nothing about which groups exist.
                raise errors.permission_denied(f"you cannot read group {name}")
            await require_role(conn, user, g.id, name, Role.Read)
        for task_uuid in sorted(flt.tasks):
            row = await find_task(conn, task_uuid)
            if row is None:
                raise errors.not_found(f"Task with uuid {task_uuid}")
            await require_role(conn, user, row.group_id, row.group_name, Role.Read)


def visible(row: Any, readable: frozenset[str] | None) -> bool:
    return readable is None or bool(readable.intersection(row.groups))


def event_json(row: Any) -> dict[str, Any]:
    """The ``data:`` of one SSE message."""
    is_task = row.kind == "task"
    subject = row.task_uuid if is_task else row.worker_uuid
    return {
        "id": row.id,
        "kind": row.kind,
        "uuid": None if subject is None else str(subject),
        "group": row.groups[0] if is_task and row.groups else None,
        "groups": list(row.groups),
        "state": row.state,
        "labels": list(row.labels),
        "worker": None if row.worker_uuid is None else str(row.worker_uuid),
        "time": format_datetime(row.created_at),
        "data": row.data,
    }


def sse_message(event_id: int, kind: str, data: dict[str, Any]) -> bytes:
    body = json.dumps(data, separators=(",", ":"))
    return f"id: {event_id}\nevent: {kind}\ndata: {body}\n\n".encode()


async def _bounds(engine: AsyncEngine) -> tuple[int | None, int | None]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(func.min(events.c.id), func.max(events.c.id)))).one()
    return row[0], row[1]


def _is_pg(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


async def _snapshot(engine: AsyncEngine) -> tuple[int, int]:
    """PostgreSQL: ``xmin`` (every older transaction has ended) and ``xmax`` (every transaction
    that has started is older) of a snapshot taken now."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint "
                    "FROM pg_current_snapshot() AS s"
                )
            )
        ).one()
    return int(row[0]), int(row[1])


async def _live_start(engine: AsyncEngine, high: int) -> int:
    """Where a stream without ``Last-Event-ID`` starts: after ``high``, the newest committed event,
    unless transactions running now may still commit lower ids (PostgreSQL): then just before the
    first hole among the events of the last ``START_LOOKBACK``, so the stream waits for it."""
    if not _is_pg(engine):
        return high
    xmin, xmax = await _snapshot(engine)
    if xmin >= xmax:
        return high  # nothing is running: no lower id can still appear
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(events.c.id, events.c.created_at)
                .where(events.c.id > high - PAGE, events.c.id <= high)
                .order_by(events.c.id)
            )
        ).all()
    recent = now() - START_LOOKBACK
    expected = max(high - PAGE + 1, 1)
    for row in rows:
        if row.id > expected and row.created_at >= recent:
            return expected - 1
        expected = row.id + 1
    return high


async def start_cursor(engine: AsyncEngine, last_id: int | None) -> tuple[int, bool]:
    """Where a stream starts, and whether the client must be told to re-query (``reset``).

    Without ``last_id`` the stream starts after the newest event. With it, events after it are
    replayed unless some of them may have been pruned (``last_id`` below the retained window), or
    ``last_id`` is unknown here (beyond the newest event; the newest row is never pruned).
    """
    low, high = await _bounds(engine)
    if high is None:
        return 0, bool(last_id)
    if last_id is None:
        return await _live_start(engine, high), False
    if last_id > high or (low is not None and last_id < low - 1):
        return high, True
    return last_id, False


async def _page(engine: AsyncEngine, cursor: int) -> list[Any]:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(events).where(events.c.id > cursor).order_by(events.c.id).limit(PAGE)
        )
        return list(result)


async def open_stream(
    engine: AsyncEngine,
    notifier: Notifier,
    user: User,
    flt: EventFilter,
    last_id: int | None,
    heartbeat: float,
) -> AsyncIterator[bytes]:
    """The SSE body: replay after ``last_id``, then live events; a comment line every heartbeat.

    Where the stream starts is fixed here, before the caller sends the response's status line: a
    client that has its 200 and then acts sees every event its action causes.
    """
    readable = await readable_groups(engine, user)
    cursor, reset = await start_cursor(engine, last_id)
    return _stream(engine, notifier, user, flt, heartbeat, readable, cursor, last_id if reset else None)


async def _stream(
    engine: AsyncEngine,
    notifier: Notifier,
    user: User,
    flt: EventFilter,
    heartbeat: float,
    readable: frozenset[str] | None,
    cursor: int,
    reset_from: int | None,
) -> AsyncIterator[bytes]:
    # Sent at once, so a client knows the stream is established before it acts.
    yield b"retry: 1000\n: connected\n\n"
    if reset_from is not None:
        yield sse_message(
            cursor, "reset", {"last_event_id": reset_from, "reason": "events since then were pruned"}
        )
    loop = asyncio.get_running_loop()
    next_beat = loop.time() + heartbeat
    caught_up = False
    holes = _Holes(engine)
    while True:
        wake = notifier.current(EVENTS)
        # Decided before the read: a transaction that ended before it has its rows in it.
        passable = await holes.passable(cursor + 1)
        rows = await _page(engine, cursor)
        hole_wait = 0.0
        for row in rows:
            if row.id != cursor + 1:
                hole_wait = await holes.wait_for(cursor + 1, row, passable)
                if hole_wait > 0:
                    break
            cursor = row.id
            hole_wait = 0.0
            if visible(row, readable) and flt.matches(row):
                yield sse_message(row.id, row.kind, event_json(row))
        if hole_wait <= 0 and len(rows) == PAGE:
            continue
        if not caught_up and hole_wait <= 0:
            # Once, when the replay has reached the newest committed event: from here on the
            # stream is live, so a client can tell "history so far" from "what happens next".
            caught_up = True
            yield f": live {cursor}\n\n".encode()
        timeout = next_beat - loop.time()
        if hole_wait > 0:
            timeout = min(timeout, hole_wait)
        await notifier.wait(wake, max(timeout, 0.01))
        if notifier.closing:
            return  # shutting down: end the stream so the server can drain; clients reconnect
        if loop.time() >= next_beat:
            yield b": keep-alive\n\n"
            next_beat = loop.time() + heartbeat
            readable = await readable_groups(engine, user)


class _Holes:
    """When a stream may go past a missing id (see the module docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pg = _is_pg(engine)
        self._id: int | None = None  # the hole being waited for
        self._xmax = 0  # PostgreSQL: transactions below this were running when it was seen
        self._since = 0.0

    async def passable(self, hole: int) -> bool:
        """Whether a hole at ``hole``, if the next read still finds it, was rolled back."""
        if not self._pg or self._id != hole:
            return False
        xmin, _ = await _snapshot(self._engine)
        return xmin >= self._xmax

    async def wait_for(self, hole: int, after: Any, passable: bool) -> float:
        """Seconds to wait before looking again (0: go past the hole now); ``after`` is the first
        row beyond it."""
        if not self._pg:
            # One writer: the hole is a rolled-back insert, unless its transaction (which took
            # the lower id first) has not committed yet; it has once ``after`` is GAP_GRACE old.
            return float(GAP_GRACE - (now() - after.created_at).total_seconds())
        loop = asyncio.get_running_loop()
        if self._id != hole:
            xmin, self._xmax = await _snapshot(self._engine)
            self._id, self._since = hole, loop.time()
            # Nothing running any more: look once again (the insert may have committed since the
            # read), then go past it. Otherwise wait for a commit, or poll for a rollback.
            return 0.001 if xmin >= self._xmax else HOLE_POLL
        if passable:
            return 0.0
        if loop.time() - self._since > HOLE_LIMIT:
            log.warning(
                "event stream: going past event id %d, missing for %.0f s; a transaction has been open that "
                "long (its events, if it ever commits, reach only streams that start after it)",
                hole,
                HOLE_LIMIT,
            )
            return 0.0
        return HOLE_POLL


async def prune(engine: AsyncEngine, retention: timedelta) -> int:
    """Delete events older than the retention window, never the newest row.

    Keeping the newest row keeps ids growing on SQLite (which reuses the highest id + 1 of an empty
    table), so a client's Last-Event-ID can never name a later, different event.
    """
    cutoff = now() - retention
    async with engine.begin() as conn:
        newest = (await conn.execute(select(func.max(events.c.id)))).scalar()
        if newest is None:
            return 0
        result = await conn.execute(delete(events).where(events.c.created_at < cutoff, events.c.id < newest))
        return int(result.rowcount or 0)


async def prune_forever(engine: AsyncEngine, retention: timedelta) -> None:
    """Background loop: keep the event window and the live-log store bounded."""
    interval = min(max(retention.total_seconds() / 4, 0.5), 60.0)
    while True:
        await asyncio.sleep(interval)
        try:
            await prune(engine, retention)
            await logs.prune(engine)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A database hiccup must not stop pruning for good: log and try next round.
            log.warning("event/log pruning failed: %s", exc)
