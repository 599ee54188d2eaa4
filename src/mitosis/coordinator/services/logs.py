"""Live logs of running tasks (our addition): workers upload stdout/stderr, users read or tail them.

Storage is the database (``task_log_chunks`` + ``task_log_streams``), so every coordinator sharing
it serves the same log. Each stream is append-only and addressed by byte offset: an upload whose
bytes are already stored is acknowledged without storing them again (retries are safe), one that
starts past the stored end is refused with the offset to resume from.

Memory and storage stay bounded: an upload carries at most ``live_log_max_request`` bytes, a
reader holds one chunk at a time, and a task keeps at most ``live_log_task_cap`` bytes. When an
upload would pass that cap, chunks every reader has already read are evicted; if the unread bytes
alone fill the cap the upload is refused with 429 and ``Retry-After`` (the worker keeps the output
in its std-log file and resends later), which paces the worker to its readers. Once a task is
archived its ``std-log`` artifact is the complete record; its chunks are deleted ``LOG_GRACE``
later by the pruning loop (long enough for a follower to read the tail).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import and_, delete, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mitosis.coordinator import errors
from mitosis.coordinator.auth import User, Worker
from mitosis.coordinator.db.tables import (
    active_tasks,
    archived_tasks,
    artifacts,
    groups,
    task_log_chunks,
    task_log_streams,
)
from mitosis.coordinator.events.notifier import EVENTS, LOGS, Notifier
from mitosis.coordinator.services.common import now, require_role
from mitosis.wire.enums import ArtifactContentType, Role, TaskState

STREAMS = ("stdout", "stderr")
LOG_GRACE = timedelta(minutes=5)
META_PAGE = 256
RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class AppendResult:
    """``stored``/``duplicate``: ``offset`` is the stream's stored end; ``gap``/``full``: resend from it."""

    status: Literal["stored", "duplicate", "gap", "full"]
    offset: int


def _upsert(dialect: str) -> Any:
    return pg_insert if dialect == "postgresql" else sqlite_insert


async def _assigned(conn: AsyncConnection, worker: Worker, task_ref: str) -> Any:
    if task_ref.isdigit():
        where = active_tasks.c.id == int(task_ref)
    else:
        try:
            where = active_tasks.c.uuid == uuid.UUID(task_ref)
        except ValueError:
            raise errors.invalid(f"{task_ref!r} is neither a task id nor a task uuid") from None
    row = (
        await conn.execute(
            select(active_tasks.c.id, active_tasks.c.uuid).where(
                where, active_tasks.c.assigned_worker == worker.id
            )
        )
    ).first()
    if row is None:
        raise errors.not_found(f"Task {task_ref} assigned to this worker")
    return row


async def _stream_row(conn: AsyncConnection, task_uuid: uuid.UUID, stream: str, worker: Worker) -> Any:
    """The stream's bookkeeping row, locked; a new producer (re-queued task) starts from zero."""
    others = (
        await conn.execute(
            select(task_log_streams.c.stream).where(
                task_log_streams.c.task_uuid == task_uuid, task_log_streams.c.worker_uuid != worker.worker_id
            )
        )
    ).first()
    if others is not None:
        await conn.execute(delete(task_log_chunks).where(task_log_chunks.c.task_uuid == task_uuid))
        await conn.execute(delete(task_log_streams).where(task_log_streams.c.task_uuid == task_uuid))
    ins = _upsert(conn.dialect.name)(task_log_streams).values(
        task_uuid=task_uuid,
        stream=stream,
        worker_uuid=worker.worker_id,
        size=0,
        stored=0,
        read_offset=0,
        updated_at=now(),
    )
    await conn.execute(ins.on_conflict_do_nothing(index_elements=["task_uuid", "stream"]))
    query = select(task_log_streams).where(
        task_log_streams.c.task_uuid == task_uuid, task_log_streams.c.stream == stream
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await conn.execute(query)).one()


async def _evict_read(conn: AsyncConnection, task_uuid: uuid.UUID) -> None:
    """Drop chunks that readers have read past, to make room under the task's cap."""
    for s in (
        await conn.execute(select(task_log_streams).where(task_log_streams.c.task_uuid == task_uuid))
    ).all():
        freed = (
            await conn.execute(
                delete(task_log_chunks)
                .where(
                    task_log_chunks.c.task_uuid == task_uuid,
                    task_log_chunks.c.stream == s.stream,
                    task_log_chunks.c.offset + task_log_chunks.c.size <= s.read_offset,
                )
                .returning(task_log_chunks.c.size)
            )
        ).all()
        if freed:
            await conn.execute(
                update(task_log_streams)
                .where(task_log_streams.c.task_uuid == task_uuid, task_log_streams.c.stream == s.stream)
                .values(stored=task_log_streams.c.stored - sum(r.size for r in freed))
            )


async def _task_stored(conn: AsyncConnection, task_uuid: uuid.UUID) -> int:
    total = (
        await conn.execute(
            select(func.coalesce(func.sum(task_log_streams.c.stored), 0)).where(
                task_log_streams.c.task_uuid == task_uuid
            )
        )
    ).scalar()
    return int(total or 0)


async def append(
    engine: AsyncEngine,
    notifier: Notifier,
    worker: Worker,
    task_ref: str,
    stream: str,
    offset: int,
    data: bytes,
    cap: int,
) -> AppendResult:
    """Store ``data`` found at ``offset`` of the task's ``stream`` (only the bytes not yet stored)."""
    if stream not in STREAMS:
        raise errors.invalid(f"stream must be stdout or stderr, not {stream!r}")
    if offset < 0:
        raise errors.invalid("offset must not be negative")
    async with engine.begin() as conn:
        task = await _assigned(conn, worker, task_ref)
        srow = await _stream_row(conn, task.uuid, stream, worker)
        size = int(srow.size)
        if offset > size:
            return AppendResult("gap", size)
        if offset + len(data) <= size:
            return AppendResult("duplicate", size)
        tail = data[size - offset :]
        stored = await _task_stored(conn, task.uuid)
        if stored + len(tail) > cap:
            await _evict_read(conn, task.uuid)
            stored = await _task_stored(conn, task.uuid)
            # An empty buffer always takes one upload, so a cap below the upload size cannot wedge.
            if stored and stored + len(tail) > cap:
                return AppendResult("full", size)
        ts = now()
        await conn.execute(
            task_log_chunks.insert().values(
                task_uuid=task.uuid, stream=stream, offset=size, size=len(tail), data=tail, created_at=ts
            )
        )
        await conn.execute(
            update(task_log_streams)
            .where(task_log_streams.c.task_uuid == task.uuid, task_log_streams.c.stream == stream)
            .values(size=size + len(tail), stored=task_log_streams.c.stored + len(tail), updated_at=ts)
        )
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_notify(:c, '')"), {"c": LOGS})
    notifier.wake(LOGS)
    return AppendResult("stored", size + len(tail))


# ------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TaskLogInfo:
    uuid: uuid.UUID
    archived: bool
    state: str
    result: Any
    has_std_log: bool


async def _task_info(conn: AsyncConnection, task_uuid: uuid.UUID) -> tuple[Any, TaskLogInfo] | None:
    for table, archived in ((active_tasks, False), (archived_tasks, True)):
        row = (
            await conn.execute(
                select(table.c.uuid, table.c.group_id, table.c.state, table.c.result, groups.c.group_name)
                .join(groups, groups.c.id == table.c.group_id)
                .where(table.c.uuid == task_uuid)
            )
        ).first()
        if row is None:
            continue
        has_std_log = (
            archived
            and (
                await conn.execute(
                    select(
                        exists().where(
                            artifacts.c.task_id == task_uuid,
                            artifacts.c.content_type == ArtifactContentType.std_log.code,
                        )
                    )
                )
            ).scalar()
            is True
        )
        info = TaskLogInfo(
            uuid=task_uuid,
            archived=archived,
            state=TaskState.from_code(row.state).value,
            result=row.result,
            has_std_log=bool(has_std_log),
        )
        return row, info
    return None


async def authorize_read(engine: AsyncEngine, user: User, task_uuid: uuid.UUID) -> TaskLogInfo:
    """The task's log status for a reader with the Read role in its group (404/403 otherwise)."""
    async with engine.connect() as conn:
        found = await _task_info(conn, task_uuid)
        if found is None:
            raise errors.not_found(f"Task with uuid {task_uuid}")
        row, info = found
        await require_role(conn, user, row.group_id, row.group_name, Role.Read)
        return info


async def _wait_any(wake_events: Sequence[asyncio.Event], timeout: float) -> None:
    waits = [asyncio.ensure_future(ev.wait()) for ev in wake_events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


async def read(
    engine: AsyncEngine,
    notifier: Notifier,
    task_uuid: uuid.UUID,
    streams: Sequence[str],
    offsets: dict[str, int],
    follow: bool,
    heartbeat: float,
) -> AsyncIterator[bytes]:
    """NDJSON frames of the stored log from ``offsets``; with ``follow``, until the task is archived.

    Frames: ``{"stream", "offset", "data"}`` (base64 bytes), ``{"stream", "offset", "skipped"}``
    (bytes no longer stored), ``{"restart": true, "worker"}`` (the task was re-queued and its output
    starts again at offset 0), and last ``{"end": true, "state", "result"}``. Empty lines are
    keep-alives.
    """
    nxt = {s: offsets.get(s, 0) for s in streams}
    last_id = 0
    producer: uuid.UUID | None = None
    loop = asyncio.get_running_loop()
    next_beat = loop.time() + heartbeat
    draining = False
    while True:
        # Take the wake-ups before looking, so an upload between the look and the wait is not missed.
        wake_events = (notifier.current(LOGS), notifier.current(EVENTS))
        async with engine.connect() as conn:
            found = await _task_info(conn, task_uuid)
            srows = (
                await conn.execute(select(task_log_streams).where(task_log_streams.c.task_uuid == task_uuid))
            ).all()
            workers_seen = {r.worker_uuid for r in srows}
            if producer is not None and workers_seen and producer not in workers_seen:
                producer = next(iter(workers_seen))
                nxt = dict.fromkeys(streams, 0)
                last_id = 0
                yield _line({"restart": True, "worker": str(producer)})
            elif producer is None and workers_seen:
                producer = next(iter(workers_seen))
            metas = (
                await conn.execute(
                    select(
                        task_log_chunks.c.id,
                        task_log_chunks.c.stream,
                        task_log_chunks.c.offset,
                        task_log_chunks.c.size,
                    )
                    .where(
                        task_log_chunks.c.task_uuid == task_uuid,
                        task_log_chunks.c.stream.in_(list(streams)),
                        task_log_chunks.c.id > last_id,
                    )
                    .order_by(task_log_chunks.c.id)
                    .limit(META_PAGE)
                )
            ).all()
        advanced: set[str] = set()
        for meta in metas:
            last_id = meta.id
            want = nxt[meta.stream]
            if meta.offset + meta.size <= want:
                continue
            if meta.offset > want:
                yield _line({"stream": meta.stream, "offset": want, "skipped": meta.offset - want})
                want = meta.offset
            # One chunk in memory at a time: data is fetched per chunk, not per page.
            async with engine.connect() as conn:
                data = (
                    await conn.execute(select(task_log_chunks.c.data).where(task_log_chunks.c.id == meta.id))
                ).scalar()
            if data is None:
                continue  # evicted between the two reads; the next chunk reports the skip
            piece = bytes(data)[want - meta.offset :]
            yield _line({"stream": meta.stream, "offset": want, "data": base64.b64encode(piece).decode()})
            nxt[meta.stream] = meta.offset + meta.size
            advanced.add(meta.stream)
        if advanced:
            await _mark_read(engine, task_uuid, {s: nxt[s] for s in advanced})
        if len(metas) == META_PAGE:
            continue
        info = None if found is None else found[1]
        if not follow or info is None or info.archived:
            if follow and not draining and info is not None:
                # Archived just now: one more pass picks up chunks sent right before the commit.
                draining = True
                continue
            yield _line(
                {
                    "end": True,
                    "state": None if info is None else info.state,
                    "result": None if info is None else info.result,
                }
            )
            return
        await _wait_any(wake_events, max(next_beat - loop.time(), 0.01))
        if notifier.closing:
            return  # shutting down: the client resumes from its offsets on another coordinator
        if loop.time() >= next_beat:
            yield b"\n"
            next_beat = loop.time() + heartbeat


async def _mark_read(engine: AsyncEngine, task_uuid: uuid.UUID, positions: dict[str, int]) -> None:
    async with engine.begin() as conn:
        for stream, pos in positions.items():
            await conn.execute(
                update(task_log_streams)
                .where(
                    task_log_streams.c.task_uuid == task_uuid,
                    task_log_streams.c.stream == stream,
                    task_log_streams.c.read_offset < pos,
                )
                .values(read_offset=pos)
            )


async def prune(engine: AsyncEngine) -> int:
    """Delete the chunks of tasks archived more than ``LOG_GRACE`` ago (or gone); how many tasks."""
    cutoff = now() - LOG_GRACE
    async with engine.begin() as conn:
        done = (
            await conn.execute(
                select(task_log_streams.c.task_uuid)
                .distinct()
                .where(
                    ~exists().where(active_tasks.c.uuid == task_log_streams.c.task_uuid),
                    ~exists().where(
                        and_(
                            archived_tasks.c.uuid == task_log_streams.c.task_uuid,
                            archived_tasks.c.updated_at >= cutoff,
                        )
                    ),
                )
            )
        ).all()
        uuids = [r.task_uuid for r in done]
        if uuids:
            await conn.execute(delete(task_log_chunks).where(task_log_chunks.c.task_uuid.in_(uuids)))
            await conn.execute(delete(task_log_streams).where(task_log_streams.c.task_uuid.in_(uuids)))
        return len(uuids)
