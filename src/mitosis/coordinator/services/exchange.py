"""The batched worker protocol (our addition, ``POST /workers/batch``): one round trip per batch.

A worker that runs many short tasks spends most of its time on the three requests of the 0.6.8
protocol per task (fetch, Finish, Commit). A batch carries, in this order:

1. ``done``: ended tasks, each committed as a ``Finish``/``Cancel`` report followed by a ``Commit``
   would be. The common case (the worker's own task, no downstream task to promote, no artifact
   upload still to book) is one statement for the whole batch; the rest take the per-task path;
2. ``release``: tasks claimed but not started, back to Ready (a worker gives back what it claimed
   ahead when the task it runs turns out to be long);
3. ``holding``: the worker's view of what it holds; a task assigned to it that it does not list
   (a claim whose answer was lost on the way) goes back to Ready instead of waiting for a timeout;
4. ``fetch``: claim up to that many tasks, long-polling up to ``wait`` when none is there.

The answer says which ``done`` entries were refused (with the status a single report would have
got), the claimed tasks, and which held tasks to stop (cancelled by their user) or drop (no longer
assigned). Every state change records its event exactly as the single-task routes do.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mitosis.coordinator import errors
from mitosis.coordinator.auth import Worker
from mitosis.coordinator.blobs.base import BlobStore
from mitosis.coordinator.db import raw
from mitosis.coordinator.db.tables import active_tasks, archived_tasks, upload_reservations, workers
from mitosis.coordinator.events import log as events
from mitosis.coordinator.events.notifier import SIGNALS, TASKS, Notifier
from mitosis.coordinator.services import artifacts
from mitosis.coordinator.services.common import now
from mitosis.coordinator.services.tasks import archive_cancelled, notify_tasks
from mitosis.coordinator.services.workers import (
    claim_waiting,
    commit_task,
    release_in,
    remove_workers,
    requeue_tasks,
    worker_task,
)
from mitosis.wire import models as m
from mitosis.wire.enums import TaskState, WorkerState

_FINAL = (TaskState.Finished.code, TaskState.Cancelled.code)
_ENDABLE = (TaskState.Running.code, *_FINAL)

_ARCHIVED_COLUMNS = [c.name for c in archived_tasks.c]
_FROM_MOVED = {
    "state": "final_state",
    "updated_at": "$5::timestamptz",
    "result": "final_result",
    "reporter_uuid": "$6::uuid",
}

# PostgreSQL: the common case of a whole batch in one statement (atomic on its own). It archives
# the worker's own ended tasks that have no downstream task and no artifact upload still to book,
# records their events, points the worker at its next running task, and reports what the worker
# still holds (with cancel requests), the worker's state, and whether a Pending task names a
# moved task as its upstream (DECISIONS S10: those end too).
_PG_COMMIT = f"""
    WITH input AS (
        SELECT * FROM unnest($2::bigint[], $3::int[], $4::json[]) AS i(id, op_state, result)),
    moved AS (
        DELETE FROM active_tasks a USING input i
        WHERE a.id = i.id AND a.assigned_worker = $1 AND a.state = ANY($7::int[])
          AND a.downstream_task_uuid IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM upload_reservations r WHERE r.task_uuid = a.uuid AND r.bucket = 'artifacts')
        RETURNING a.*, CASE WHEN a.state = ANY($8::int[]) THEN a.state ELSE i.op_state END AS final_state,
                  i.result AS final_result),
    archived AS (
        INSERT INTO archived_tasks ({", ".join(_ARCHIVED_COLUMNS)})
        SELECT {", ".join(_FROM_MOVED.get(c, c) for c in _ARCHIVED_COLUMNS)} FROM moved),
    logged AS (
        INSERT INTO events (created_at, kind, groups, task_uuid, worker_uuid, state, labels, data)
        SELECT $5::timestamptz, 'task', ARRAY[g.group_name], mv.uuid, NULL,
               CASE mv.final_state WHEN {TaskState.Finished.code} THEN 'Finished' ELSE 'Cancelled' END,
               mv.labels, json_build_object('committed', true, 'result', mv.final_result)
        FROM moved mv JOIN groups g ON g.id = mv.group_id),
    held AS (
        SELECT t.id, t.cancel_requested, t.state, t.priority FROM active_tasks t
        WHERE t.assigned_worker = $1 AND t.id NOT IN (SELECT id FROM moved)),
    wk AS (
        UPDATE workers SET updated_at = $5, assigned_task_id = (
            SELECT id FROM held WHERE state = {TaskState.Running.code} ORDER BY priority DESC, id LIMIT 1)
        WHERE id = $1 RETURNING state)
    SELECT ARRAY(SELECT id FROM moved) AS moved,
           ARRAY(SELECT id FROM held) AS held,
           ARRAY(SELECT id FROM held WHERE cancel_requested) AS cancel_requested,
           (SELECT state FROM wk) AS worker_state,
           EXISTS (SELECT 1 FROM active_tasks p
                   WHERE p.upstream_task_uuid IN (SELECT uuid FROM moved)
                     AND p.state = {TaskState.Pending.code}) AS orphans
"""


@dataclass
class _Applied:
    """What the fast commit did and saw."""

    moved: set[int] = field(default_factory=set)
    held: set[int] = field(default_factory=set)
    cancel_requested: set[int] = field(default_factory=set)
    worker_state: int | None = None
    orphans: bool = False


async def exchange(
    engine: AsyncEngine,
    blobs: BlobStore,
    notifier: Notifier,
    worker: Worker,
    req: m.WorkerBatchReq,
    max_wait: float,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> m.WorkerBatchResp:
    done_ids = [d.id for d in req.done]
    if len(set(done_ids)) != len(done_ids):
        raise errors.invalid("a task appears twice in done")
    ts = now()
    if raw.available(engine):
        applied = await _commit_pg(engine, worker, req.done, ts)
    else:
        async with engine.begin() as conn:
            applied = await _commit_generic(conn, worker, req.done, ts)
    if applied.worker_state is None:
        raise errors.wrong_credentials()  # the worker was removed meanwhile
    refused: list[m.WorkerBatchRefusal] = []
    leftovers = [d for d in req.done if d.id not in applied.moved]
    if leftovers or applied.orphans:
        refused = await _commit_slowly(engine, blobs, worker, leftovers, applied)
    graceful = applied.worker_state == WorkerState.GracefulShutdown.code
    released = set(req.release)
    holding = None if req.holding is None else set(req.holding)
    unknown = [] if holding is None else sorted(applied.held - holding - set(done_ids) - released)
    requeued = False
    if graceful or released or unknown:
        async with engine.begin() as conn:
            if graceful:
                # 0.6.8 removes a gracefully stopping worker at its commit; tasks it claimed ahead go back.
                await remove_workers(conn, [worker.id])
            else:
                requeued = await release_in(conn, worker, req.release)
                if unknown:
                    requeued = await _requeue(conn, worker, unknown) or requeued
    if req.done:
        notifier.offer(1)  # a commit may have promoted a downstream task: one waiter looks
    if requeued:
        notifier.wake(TASKS)
    if graceful:
        notifier.wake(SIGNALS)
        return m.WorkerBatchResp(refused=refused)
    if holding is None:
        cancel, lost = sorted(applied.cancel_requested), []
    else:
        cancel = sorted(applied.cancel_requested & holding)
        lost = sorted(holding - applied.held - applied.moved - set(done_ids))
    wait = 0.0
    if req.wait is not None and not (cancel or lost):
        wait = min(req.wait.total_seconds(), max_wait)
    claimed = []
    if req.fetch:
        claimed = await claim_waiting(
            engine, notifier, worker, req.fetch, wait, gone, keep_assigned=bool(holding)
        )
    return m.WorkerBatchResp(
        refused=refused, tasks=[worker_task(r) for r in claimed], cancel=cancel, lost=lost
    )


async def commit_report(
    engine: AsyncEngine, notifier: Notifier, worker: Worker, task_id: int, result: m.TaskResultSpec
) -> bool:
    """The 0.6.8 ``Commit`` report through the one-statement commit (PostgreSQL): True when it was
    applied; False leaves the task untouched for the per-op path (a downstream task to promote, an
    upload to book, or an error to explain)."""
    if not raw.available(engine):
        return False
    done = [m.WorkerTaskDone(id=task_id, op="Finish", result=result)]
    applied = await _commit_pg(engine, worker, done, now(), endable=_FINAL)
    if not applied.moved:
        return False
    if applied.orphans:
        async with engine.begin() as conn:
            await _end_orphans(conn, applied)
    if applied.worker_state == WorkerState.GracefulShutdown.code:
        async with engine.begin() as conn:
            await remove_workers(conn, [worker.id])
        notifier.wake(SIGNALS)
    return True


async def _commit_pg(
    engine: AsyncEngine,
    worker: Worker,
    done: Sequence[m.WorkerTaskDone],
    ts: datetime,
    endable: Sequence[int] = _ENDABLE,
) -> _Applied:
    ops = [TaskState.Finished.code if d.op == "Finish" else TaskState.Cancelled.code for d in done]
    results = [json.dumps(d.result.model_dump(mode="json")) for d in done]
    async with raw.connection(engine) as pg:
        row = await pg.fetchrow(
            _PG_COMMIT,
            worker.id,
            [d.id for d in done],
            ops,
            results,
            ts,
            worker.worker_id,
            list(endable),
            list(_FINAL),
        )
    return _Applied(
        moved=set(row["moved"]),
        held=set(row["held"]),
        cancel_requested=set(row["cancel_requested"]),
        worker_state=row["worker_state"],
        orphans=row["orphans"],
    )


async def _commit_generic(
    conn: AsyncConnection, worker: Worker, done: Sequence[m.WorkerTaskDone], ts: datetime
) -> _Applied:
    """The same as :data:`_PG_COMMIT`, statement by statement (SQLite)."""
    by_id = {d.id: d for d in done}
    moved: Sequence[Any] = []
    if by_id:
        pending_upload = exists().where(
            upload_reservations.c.task_uuid == active_tasks.c.uuid,
            upload_reservations.c.bucket == "artifacts",
        )
        moved = (
            await conn.execute(
                delete(active_tasks)
                .where(
                    active_tasks.c.id.in_(by_id),
                    active_tasks.c.assigned_worker == worker.id,
                    active_tasks.c.state.in_(_ENDABLE),
                    active_tasks.c.downstream_task_uuid.is_(None),
                    ~pending_upload,
                )
                .returning(*active_tasks.c)
            )
        ).all()
    archived: list[dict[str, Any]] = []
    logged: list[dict[str, Any]] = []
    for row in moved:
        item = by_id[row.id]
        final = _final_state(row.state, item.op)
        result = item.result.model_dump(mode="json")
        values = {c: getattr(row, c) for c in _ARCHIVED_COLUMNS if c != "reporter_uuid"}
        values.update(state=final.code, updated_at=ts, result=result, reporter_uuid=worker.worker_id)
        archived.append(values)
        logged.append(
            {
                "uuid": row.uuid,
                "group": await events.group_name(conn, row.group_id),
                "state": final.value,
                "labels": row.labels,
                "data": {"committed": True, "result": result},
            }
        )
    if archived:
        await conn.execute(insert(archived_tasks), archived)
        await events.task_events(conn, logged)
    held = (
        await conn.execute(
            select(active_tasks.c.id, active_tasks.c.cancel_requested).where(
                active_tasks.c.assigned_worker == worker.id
            )
        )
    ).all()
    state = await _point_at_next(conn, worker, ts)
    orphans = False
    if moved:
        orphans = (
            await conn.execute(
                select(active_tasks.c.id)
                .where(
                    active_tasks.c.upstream_task_uuid.in_([r.uuid for r in moved]),
                    active_tasks.c.state == TaskState.Pending.code,
                )
                .limit(1)
            )
        ).first() is not None
    return _Applied(
        moved={r.id for r in moved},
        held={r.id for r in held},
        cancel_requested={r.id for r in held if r.cancel_requested},
        worker_state=state,
        orphans=orphans,
    )


async def _point_at_next(conn: AsyncConnection, worker: Worker, ts: datetime) -> int | None:
    """Point the worker at its next running task (the first it holds, in claim order: the order
    it runs them in); its state, or None when the worker is gone."""
    following = (
        select(active_tasks.c.id)
        .where(active_tasks.c.assigned_worker == worker.id, active_tasks.c.state == TaskState.Running.code)
        .order_by(active_tasks.c.priority.desc(), active_tasks.c.id)
        .limit(1)
        .scalar_subquery()
    )
    state: int | None = (
        await conn.execute(
            update(workers)
            .where(workers.c.id == worker.id)
            .values(assigned_task_id=following, updated_at=ts)
            .returning(workers.c.state)
        )
    ).scalar()
    return state


def _final_state(current: int, op: str) -> TaskState:
    """The state a task ends in: the one a separate Finish/Cancel report set, else the op's."""
    if current in _FINAL:
        return TaskState.from_code(current)
    return TaskState.Finished if op == "Finish" else TaskState.Cancelled


async def _commit_slowly(
    engine: AsyncEngine,
    blobs: BlobStore,
    worker: Worker,
    leftovers: Sequence[m.WorkerTaskDone],
    applied: _Applied,
) -> list[m.WorkerBatchRefusal]:
    """The entries the fast commit left (a downstream task to promote, an upload to book, or a
    refusal to explain) one by one, and the Pending tasks of upstreams that ended without them."""
    refused: list[m.WorkerBatchRefusal] = []
    for item in leftovers:
        # Book artifacts uploaded straight to S3 before the task is archived with them.
        row = await _own_task(engine, worker, item.id)
        if row is not None:
            await artifacts.settle_artifact(engine, blobs, row.uuid)
    async with engine.begin() as conn:
        for item in leftovers:
            failure = await _commit_one(conn, worker, item)
            if failure is not None:
                refused.append(failure)
        if applied.orphans:
            await _end_orphans(conn, applied)
        if leftovers:
            state = await _point_at_next(conn, worker, now())
            applied.worker_state = WorkerState.GracefulShutdown.code if state is None else state
    return refused


async def _end_orphans(conn: AsyncConnection, applied: _Applied) -> None:
    """DECISIONS S10: Pending tasks of an upstream that ended without submitting them end too."""
    uuids = select(archived_tasks.c.uuid).where(archived_tasks.c.id.in_(applied.moved))
    await archive_cancelled(
        conn,
        and_(active_tasks.c.upstream_task_uuid.in_(uuids), active_tasks.c.state == TaskState.Pending.code),
    )


async def _own_task(engine: AsyncEngine, worker: Worker, task_id: int) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(active_tasks.c.uuid).where(
                    active_tasks.c.id == task_id, active_tasks.c.assigned_worker == worker.id
                )
            )
        ).first()


async def _commit_one(
    conn: AsyncConnection, worker: Worker, item: m.WorkerTaskDone
) -> m.WorkerBatchRefusal | None:
    """One ``done`` entry as a Finish/Cancel report and a Commit, in a savepoint so that a refusal
    undoes only its own changes."""
    try:
        async with conn.begin_nested():
            row = (
                await conn.execute(
                    select(active_tasks).where(
                        active_tasks.c.id == item.id, active_tasks.c.assigned_worker == worker.id
                    )
                )
            ).first()
            if row is None:
                raise errors.not_found(f"Task {item.id}")
            if row.state == TaskState.Running.code:
                state = _final_state(row.state, item.op)
                await conn.execute(
                    update(active_tasks)
                    .where(active_tasks.c.id == row.id)
                    .values(state=state.code, updated_at=now())
                )
                await events.task_event(conn, row.uuid, row.group_id, row.labels, state.value)
                row = (await conn.execute(select(active_tasks).where(active_tasks.c.id == row.id))).one()
            await commit_task(conn, worker, row, item.result)
    except errors.ApiError as exc:
        return m.WorkerBatchRefusal(id=item.id, status=exc.status, msg=exc.msg)
    return None


async def _requeue(conn: AsyncConnection, worker: Worker, task_ids: Sequence[int]) -> bool:
    """Tasks assigned to the worker that it says it does not hold: back to Ready."""
    back = await requeue_tasks(
        conn, and_(active_tasks.c.id.in_(task_ids), active_tasks.c.assigned_worker == worker.id)
    )
    if back:
        await notify_tasks(conn)
    return back
