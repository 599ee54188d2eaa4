"""Workers: registration, heartbeats, the fetch/report protocol, removal, and the user-side operations.

Removing a worker (heartbeat expiry, lifetime expiry, force shutdown, self-unregister) puts its
unfinished task back to Ready so another worker runs it (at-least-once, behavior.md §5.8) — unless a
user asked to cancel that task, in which case it is archived as Cancelled instead.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, false, func, insert, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mitosis.coordinator import errors
from mitosis.coordinator.auth import TokenService, User, Worker
from mitosis.coordinator.db import raw
from mitosis.coordinator.db.dialect import contains_all
from mitosis.coordinator.db.engine import read_only
from mitosis.coordinator.db.tables import (
    active_tasks,
    archived_tasks,
    group_worker,
    groups,
    user_group,
    users,
    workers,
)
from mitosis.coordinator.events import log as events
from mitosis.coordinator.events.notifier import SIGNALS, TASKS, Notifier, Parked
from mitosis.coordinator.services import bounds, scheduler
from mitosis.coordinator.services.common import effective_group, now, role_in_group
from mitosis.coordinator.services.tasks import (
    archive_cancelled,
    check_resources,
    find_task,
    insert_tasks,
    notify_signals,
    notify_tasks,
    task_response,
)
from mitosis.wire import models as m
from mitosis.wire.enums import Role, TaskState, UserState, WorkerShutdownOp, WorkerState

CHUNK = 1024
log = logging.getLogger(__name__)


def parse_group_spec(spec: str) -> tuple[str, Role] | None:
    """``name`` → Write, ``name:role`` → that role (unknown role text → Write), more colons → dropped."""
    parts = spec.split(":")
    if len(parts) == 1:
        return parts[0], Role.Write
    if len(parts) == 2:
        try:
            return parts[0], Role(parts[1])
        except ValueError:
            return parts[0], Role.Write
    return None


# ----------------------------------------------------------------------------------- registration


async def register(
    engine: AsyncEngine,
    tokens: TokenService,
    notifier: Notifier,
    caller: User,
    req: m.RegisterWorkerReq,
    default_ttl: timedelta,
    redis_url: str | None,
) -> m.RegisterWorkerResp:
    wanted: dict[str, Role] = {}
    for spec in req.groups:
        parsed = parse_group_spec(spec)
        if parsed is not None and parsed[0]:
            wanted[parsed[0]] = parsed[1]
    wanted[caller.username] = Role.Admin
    if req.lifetime is not None and req.lifetime.total_seconds() > 100 * 365 * 86400:
        raise errors.invalid(f"Invalid lifetime {req.lifetime}: at most 100 years")
    ts = now()
    worker_uuid = uuid.uuid4()
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(groups.c.id, groups.c.group_name).where(groups.c.group_name.in_(wanted))
            )
        ).all()
        found = {r.group_name: r.id for r in rows}
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise errors.invalid(f"Some groups do not exist: {', '.join(missing)}")
        for name, gid in found.items():
            if name == caller.username or caller.admin:
                continue
            role = await role_in_group(conn, caller.id, gid)
            if role is None or not role.at_least(Role.Write):
                # DECISIONS A2: only contributing members may lend a machine to a group.
                raise errors.permission_denied(
                    f"granting a worker a role in group {name} needs the Write role in that group"
                )
        wid = (
            await conn.execute(
                insert(workers)
                .values(
                    worker_id=worker_uuid,
                    creator_id=caller.id,
                    tags=req.tags,
                    labels=req.labels,
                    created_at=ts,
                    updated_at=ts,
                    state=WorkerState.Normal.code,
                    last_heartbeat=ts,
                    expires_at=None if req.lifetime is None else ts + req.lifetime,
                )
                .returning(workers.c.id)
            )
        ).scalar_one()
        await conn.execute(
            insert(group_worker),
            [{"group_id": found[name], "worker_id": wid, "role": role.code} for name, role in wanted.items()],
        )
        await events.worker_event(conn, wid, worker_uuid, "registered", sorted(found))
    ttl = req.lifetime or default_ttl
    token = tokens.issue(str(worker_uuid), ttl, 0, "worker")
    notifier.wake(TASKS)
    return m.RegisterWorkerResp(worker_id=worker_uuid, token=token, redis_url=redis_url)


async def heartbeat(engine: AsyncEngine, worker: Worker) -> None:
    if raw.available(engine):
        async with raw.connection(engine) as pg:
            await pg.execute("UPDATE workers SET last_heartbeat = $2 WHERE id = $1", worker.id, now())
        return
    async with engine.connect() as conn:
        # One statement: no transaction around it (saves the BEGIN and COMMIT round trips).
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(update(workers).where(workers.c.id == worker.id).values(last_heartbeat=now()))


# ---------------------------------------------------------------------------------------- removal


async def requeue_tasks(conn: AsyncConnection, assigned: ColumnElement[bool]) -> bool:
    """Put tasks matching ``assigned`` (a condition on tasks assigned to workers) back to Ready, or
    archive them as Cancelled when their user asked to cancel them. True when any was re-queued."""
    ts = now()
    # Tasks a user asked to cancel end now instead of running again elsewhere.
    await conn.execute(
        update(active_tasks)
        .where(assigned, active_tasks.c.cancel_requested)
        .values(state=TaskState.Ready.code, assigned_worker=None)
    )
    await archive_cancelled(
        conn, and_(active_tasks.c.cancel_requested, active_tasks.c.assigned_worker.is_(None))
    )
    requeued = (
        await conn.execute(
            update(active_tasks)
            .where(assigned)
            .values(
                state=TaskState.Ready.code, assigned_worker=None, updated_at=ts, downstream_task_uuid=None
            )
            .returning(active_tasks.c.id, active_tasks.c.uuid)
        )
    ).all()
    if requeued:
        # DECISIONS S10: a downstream task the lost run submitted is cancelled; the re-run submits
        # its own if it still wants one (otherwise it would be promoted by a run that never asked).
        await archive_cancelled(
            conn,
            and_(
                active_tasks.c.upstream_task_uuid.in_([r.uuid for r in requeued]),
                active_tasks.c.state == TaskState.Pending.code,
            ),
        )
        await events.task_event_for_ids(
            conn, active_tasks, [r.id for r in requeued], TaskState.Ready.value, requeued=True
        )
    return bool(requeued)


async def remove_workers(conn: AsyncConnection, worker_ids: Sequence[int]) -> int:
    """Delete workers, re-queue their unfinished tasks (or archive cancel-requested ones)."""
    if not worker_ids:
        return 0
    any_requeued = await requeue_tasks(conn, active_tasks.c.assigned_worker.in_(worker_ids))
    for w in (
        await conn.execute(select(workers.c.id, workers.c.worker_id).where(workers.c.id.in_(worker_ids)))
    ).all():
        await events.worker_event(conn, w.id, w.worker_id, "removed")
    await conn.execute(delete(group_worker).where(group_worker.c.worker_id.in_(worker_ids)))
    deleted = await conn.execute(delete(workers).where(workers.c.id.in_(worker_ids)))
    if any_requeued:
        await notify_tasks(conn)
    await notify_signals(conn)
    return deleted.rowcount or 0


async def unregister(engine: AsyncEngine, notifier: Notifier, worker: Worker) -> None:
    async with engine.begin() as conn:
        await remove_workers(conn, [worker.id])
    notifier.wake(TASKS)


# -------------------------------------------------------------------------------- worker protocol


async def fetch(
    engine: AsyncEngine,
    notifier: Notifier,
    worker: Worker,
    wait: float,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> m.WorkerTaskResp | None:
    """Claim a task now, or within ``wait`` seconds as soon as one becomes available.

    ``gone`` tells whether the caller hung up: a task claimed for a caller that is gone is put
    back at once rather than waiting for the heartbeat timeout.
    """
    claimed = await claim_waiting(
        engine, notifier, worker, 1, wait, gone, keep_assigned=False, requeue_held=True
    )
    return worker_task(claimed[0]) if claimed else None


async def requeue_forgotten(
    engine: AsyncEngine, notifier: Notifier, worker: Worker, keep: Sequence[int] = ()
) -> None:
    """A worker that fetches one task at a time runs nothing when it fetches: a task still assigned
    to it (but ``keep``, just claimed) is one whose claim never reached it (the coordinator was
    killed between the claim and the answer, or the answer was lost). It goes back to Ready now
    rather than waiting for the task-timeout backstop (0.6.8 left it Running)."""
    forgotten = active_tasks.c.assigned_worker == worker.id
    if keep:
        forgotten = and_(forgotten, active_tasks.c.id.not_in(keep))
    async with engine.begin() as conn:
        back = await requeue_tasks(conn, forgotten)
        if not keep:
            await conn.execute(update(workers).where(workers.c.id == worker.id).values(assigned_task_id=None))
        if back:
            await notify_tasks(conn)
    if back:
        log.warning("worker %s fetched while still holding tasks: they went back to Ready", worker.worker_id)
        notifier.wake(TASKS)


def worker_task(row: scheduler.Claimed) -> m.WorkerTaskResp:
    return m.WorkerTaskResp(
        id=row.id,
        uuid=row.uuid,
        timeout=timedelta(seconds=row.timeout),
        upstream_task_uuid=row.upstream_task_uuid,
        spec=m.TaskSpec.model_validate(row.spec),
    )


async def claim_waiting(
    engine: AsyncEngine,
    notifier: Notifier,
    worker: Worker,
    n: int,
    wait: float,
    gone: Callable[[], Awaitable[bool]] | None,
    *,
    keep_assigned: bool,
    requeue_held: bool = False,
) -> list[scheduler.Claimed]:
    """Claim up to ``n`` tasks now or, when there is none, as soon as one comes within ``wait``
    seconds. Claimed rows for a caller that hung up meanwhile are released again. With
    ``requeue_held`` (a worker that fetches only when it runs nothing), tasks the worker held
    before the claim go back to Ready (:func:`requeue_forgotten`)."""
    loop = asyncio.get_running_loop()
    loop_deadline = loop.time() + max(0.0, wait)
    turns: int | None = None
    while not notifier.closing:
        ticket = notifier.ticket()
        # The claim itself requires an Active creator; an empty answer says why it was empty.
        outcome = await scheduler.claim(engine, worker.id, n, keep_assigned=keep_assigned)
        rows = outcome.rows
        if not rows:
            _check_creator(outcome.creator_state)
        if requeue_held and outcome.held_before:
            await requeue_forgotten(engine, notifier, worker, keep=[r.id for r in rows])
            if not rows:
                notifier.leave(ticket)
                requeue_held = False
                continue  # what went back may be this worker's to run: claim again at once
        if rows:
            notifier.leave(ticket)
            if gone is not None and await gone():
                await release(engine, notifier, worker, [r.id for r in rows])
                return []
            return rows
        if turns:
            # Woken for a task this worker may not run (groups, tags): pass the turn on.
            notifier.offer(1, hops=turns - 1, skip=ticket)
        remaining = loop_deadline - loop.time()
        if remaining <= 0:
            notifier.leave(ticket)
            return []
        got = await notifier.wait_ticket(ticket, remaining, gone, Parked(worker.id, keep_assigned))
        if isinstance(got, scheduler.Claimed):
            # A submission assigned its task to this worker in its own statement (a hand-off).
            if gone is not None and await gone():
                await release(engine, notifier, worker, [got.id])
                return []
            return [got]
        turns = got
        if turns is None:
            notifier.leave(ticket)
        if gone is not None and await gone():
            if turns:
                notifier.offer(1, hops=turns - 1)
            return []
    return []


def _check_creator(creator_state: int | None) -> None:
    if creator_state is None:
        raise errors.wrong_credentials()
    if creator_state != UserState.Active.code:
        # DECISIONS A7: a locked or deleted user's workers get no new tasks.
        raise errors.permission_denied("the user who registered this worker is no longer active")


async def release(engine: AsyncEngine, notifier: Notifier, worker: Worker, task_ids: Sequence[int]) -> None:
    """Undo claims whose answer never reached the worker."""
    async with engine.begin() as conn:
        await release_in(conn, worker, task_ids)
    notifier.wake(TASKS)


async def release_in(conn: AsyncConnection, worker: Worker, task_ids: Sequence[int]) -> bool:
    """Put tasks the worker claimed but never started back to Ready (archived as Cancelled when
    their user asked to cancel them meanwhile); True when any went back to Ready."""
    if not task_ids:
        return False
    back = await requeue_tasks(
        conn,
        and_(
            active_tasks.c.id.in_(task_ids),
            active_tasks.c.assigned_worker == worker.id,
            active_tasks.c.state == TaskState.Running.code,
        ),
    )
    await conn.execute(
        update(workers)
        .where(workers.c.id == worker.id, workers.c.assigned_task_id.in_(task_ids))
        .values(assigned_task_id=None)
    )
    if back:
        await notify_tasks(conn)
    return back


async def signals(
    engine: AsyncEngine,
    notifier: Notifier,
    worker: Worker,
    wait: float,
    task_id: int | None,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> m.WorkerSignalsResp:
    """Tasks this worker must stop: cancel requested, or no longer assigned to it (reaped, timed out)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, wait)
    while True:
        event = notifier.current(SIGNALS)
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(active_tasks.c.id).where(
                    active_tasks.c.assigned_worker == worker.id, active_tasks.c.cancel_requested
                )
            )
            cancel = [r.id for r in rows]
            if task_id is not None and task_id not in cancel:
                still = (
                    await conn.execute(
                        select(active_tasks.c.id).where(
                            active_tasks.c.id == task_id, active_tasks.c.assigned_worker == worker.id
                        )
                    )
                ).first()
                if still is None:
                    cancel.append(task_id)
        remaining = deadline - loop.time()
        if cancel or remaining <= 0 or notifier.closing:
            return m.WorkerSignalsResp(cancel=cancel)
        await notifier.wait(event, remaining, gone)
        if gone is not None and await gone():
            return m.WorkerSignalsResp(cancel=cancel)


async def _assigned_task(conn: AsyncConnection, worker: Worker, task_id: int) -> Any:
    row = (
        await conn.execute(
            select(active_tasks).where(
                active_tasks.c.id == task_id, active_tasks.c.assigned_worker == worker.id
            )
        )
    ).first()
    if row is None:
        raise errors.not_found(f"Task {task_id}")
    return row


async def report(
    engine: AsyncEngine, notifier: Notifier, worker: Worker, req: m.ReportTaskReq, upload: Any
) -> m.ReportTaskResp:
    """Apply one report op. ``upload(conn, task_row, content_type, length)`` presigns an artifact PUT."""
    op = req.op
    if op in ("Finish", "Cancel") and engine.dialect.name == "postgresql":
        # One statement (state change + event), atomic on its own: no BEGIN/COMMIT round trips.
        state = TaskState.Finished if op == "Finish" else TaskState.Cancelled
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            params = scheduler.finish_params(req.id, worker.id, state.code, state.value)
            done = (await conn.execute(scheduler.finish_statement(), params)).first()
        if done is None:
            raise errors.not_found(f"Task {req.id}")
        return m.ReportTaskResp(url=None)
    async with engine.begin() as conn:
        if op in ("Finish", "Cancel"):
            state = TaskState.Finished if op == "Finish" else TaskState.Cancelled
            done = (
                await conn.execute(
                    update(active_tasks)
                    .where(active_tasks.c.id == req.id, active_tasks.c.assigned_worker == worker.id)
                    .values(state=state.code, updated_at=now())
                    .returning(active_tasks.c.uuid, active_tasks.c.group_id, active_tasks.c.labels)
                )
            ).first()
            if done is None:
                raise errors.not_found(f"Task {req.id}")
            await events.task_event(conn, done.uuid, done.group_id, done.labels, state.value)
            return m.ReportTaskResp(url=None)
        moved = None
        if isinstance(op, m.CommitOp):
            # The usual commit finds the row and takes it out of active_tasks in one statement; the
            # slow path below only tells why it could not (404 or a task not yet Finished/Cancelled).
            moved = (
                await conn.execute(
                    delete(active_tasks)
                    .where(
                        active_tasks.c.id == req.id,
                        active_tasks.c.assigned_worker == worker.id,
                        active_tasks.c.state.in_([TaskState.Finished.code, TaskState.Cancelled.code]),
                    )
                    .returning(*active_tasks.c)
                )
            ).first()
            if moved is not None:
                graceful = await commit_task(conn, worker, moved, op.Commit, deleted=True)
        task = None if moved is not None else await _assigned_task(conn, worker, req.id)
        if isinstance(op, m.UploadOp):
            url = await upload(conn, task, op.Upload.content_type, op.Upload.content_length)
            return m.ReportTaskResp(url=url)
        if isinstance(op, m.SubmitOp):
            await _submit_downstream(conn, worker, task, op.Submit)
            await notify_tasks(conn)
            return m.ReportTaskResp(url=None)
        assert isinstance(op, m.CommitOp)
        if moved is None:
            graceful = await commit_task(conn, worker, task, op.Commit)
    # A commit frees at most one task (a promoted downstream task): one waiter looks.
    notifier.offer(1)
    if graceful:
        notifier.wake(SIGNALS)
    return m.ReportTaskResp(url=None)


async def _submit_downstream(conn: AsyncConnection, worker: Worker, task: Any, req: m.SubmitTaskReq) -> None:
    if TaskState.from_code(task.state) not in (TaskState.Finished, TaskState.Cancelled):
        raise errors.invalid("Task can not spawn new tasks")
    creator = (await conn.execute(select(users).where(users.c.id == task.creator_id))).first()
    if creator is None or creator.state != UserState.Active.code:
        # 0.6.8 answers 500 here; a 401 would make a 0.6.8 worker think it was force-stopped (Q14).
        raise errors.ApiError(500, "Internal server error")
    group = (await conn.execute(select(groups).where(groups.c.id == task.group_id))).first()
    if group is None:
        raise errors.not_found("Group")
    if req.group_name != group.group_name:
        raise errors.invalid(f"Group name mismatch: expected '{group.group_name}', got '{req.group_name}'")
    role = (
        await conn.execute(
            select(group_worker.c.role).where(
                group_worker.c.group_id == group.id, group_worker.c.worker_id == worker.id
            )
        )
    ).scalar()
    if role is None or role < Role.Write.code:
        raise errors.permission_denied(f"this worker may not submit to group {group.group_name}")
    check_resources(req.task_spec)
    if task.downstream_task_uuid is not None:
        # A second Submit replaces the first downstream task rather than orphaning it (S10).
        await archive_cancelled(conn, active_tasks.c.uuid == task.downstream_task_uuid)
    [created] = await insert_tasks(
        conn, group, task.creator_id, [req], state=TaskState.Pending, upstream=task.uuid
    )
    await conn.execute(
        update(active_tasks)
        .where(active_tasks.c.id == task.id)
        .values(downstream_task_uuid=created.uuid, updated_at=now())
    )


async def commit_task(
    conn: AsyncConnection, worker: Worker, task: Any, result: m.TaskResultSpec, *, deleted: bool = False
) -> bool:
    """Archive the task; ``deleted``: the caller already removed its active_tasks row."""
    if TaskState.from_code(task.state) not in (TaskState.Finished, TaskState.Cancelled):
        raise errors.invalid("Task can not be marked as done")
    ts = now()
    values = {c.name: getattr(task, c.name) for c in active_tasks.c if c.name != "cancel_requested"}
    values.update(updated_at=ts, result=result.model_dump(mode="json"), reporter_uuid=worker.worker_id)
    await conn.execute(insert(archived_tasks).values(**values))
    if not deleted:
        await conn.execute(delete(active_tasks).where(active_tasks.c.id == task.id))
    await events.task_event(
        conn,
        task.uuid,
        task.group_id,
        task.labels,
        TaskState.from_code(task.state).value,
        committed=True,
        result=values["result"],
    )
    w = (
        await conn.execute(
            update(workers)
            .where(workers.c.id == worker.id)
            .values(assigned_task_id=None, updated_at=ts)
            .returning(workers.c.state)
        )
    ).scalar()
    if task.downstream_task_uuid is not None:
        promoted = (
            await conn.execute(
                update(active_tasks)
                .where(
                    active_tasks.c.uuid == task.downstream_task_uuid,
                    active_tasks.c.state == TaskState.Pending.code,
                )
                .values(state=TaskState.Ready.code, updated_at=ts)
                .returning(active_tasks.c.id)
            )
        ).all()
        await events.task_event_for_ids(conn, active_tasks, [r.id for r in promoted], TaskState.Ready.value)
        await notify_tasks(conn)
    else:
        await _cancel_orphan_downstream(conn, task)
    graceful = bool(w == WorkerState.GracefulShutdown.code)
    if graceful:
        await remove_workers(conn, [worker.id])
    return graceful


async def _cancel_orphan_downstream(conn: AsyncConnection, task: Any) -> None:
    """DECISIONS S10: Pending tasks of an upstream that ended without submitting them are cancelled."""
    await archive_cancelled(
        conn,
        and_(active_tasks.c.upstream_task_uuid == task.uuid, active_tasks.c.state == TaskState.Pending.code),
    )


async def worker_get_task(engine: AsyncEngine, worker: Worker, task_uuid: uuid.UUID) -> m.TaskQueryResp:
    async with read_only(engine).connect() as conn:
        row = await find_task(conn, task_uuid)
        if row is None:
            raise errors.not_found(f"Task with uuid {task_uuid}")
        await require_worker_serves(conn, worker, row.group_id, row.group_name)
        return await task_response(conn, row)


async def require_worker_serves(
    conn: AsyncConnection, worker: Worker, group_id: int, group_name: str
) -> None:
    """DECISIONS A4: a worker reads tasks and artifacts only of groups it serves."""
    served = (
        await conn.execute(
            select(group_worker.c.id).where(
                group_worker.c.worker_id == worker.id, group_worker.c.group_id == group_id
            )
        )
    ).first()
    if served is None:
        raise errors.permission_denied(f"this worker does not serve group {group_name}")


# ------------------------------------------------------------------------------------- user side


def _info(row: Any) -> m.WorkerQueryInfo:
    return m.WorkerQueryInfo(
        worker_id=row.worker_id,
        creator_username=row.creator_username,
        tags=row.tags,
        labels=row.labels,
        created_at=row.created_at,
        updated_at=row.updated_at,
        state=WorkerState.from_code(row.state),
        last_heartbeat=row.last_heartbeat,
        assigned_task_id=row.task_uuid,
    )


def _worker_select() -> Any:
    return (
        select(
            workers,
            users.c.username.label("creator_username"),
            active_tasks.c.uuid.label("task_uuid"),
        )
        .join(users, users.c.id == workers.c.creator_id)
        .outerjoin(active_tasks, active_tasks.c.id == workers.c.assigned_task_id)
    )


async def _worker_groups(conn: AsyncConnection, worker_db_id: int) -> dict[str, Role]:
    rows = await conn.execute(
        select(groups.c.group_name, group_worker.c.role)
        .join(group_worker, group_worker.c.group_id == groups.c.id)
        .where(group_worker.c.worker_id == worker_db_id)
    )
    return {r.group_name: Role.from_code(r.role) for r in rows}


async def _worker_row(conn: AsyncConnection, worker_uuid: uuid.UUID) -> Any:
    row = (await conn.execute(_worker_select().where(workers.c.worker_id == worker_uuid))).first()
    if row is None:
        raise errors.not_found(f"Worker {worker_uuid}")
    return row


async def _may_manage(
    conn: AsyncConnection, caller: User, worker_db_id: int, worker_roles: set[Role], caller_roles: set[Role]
) -> bool:
    if caller.admin:
        return True
    row = (
        await conn.execute(
            select(group_worker.c.id)
            .join(user_group, user_group.c.group_id == group_worker.c.group_id)
            .where(
                group_worker.c.worker_id == worker_db_id,
                group_worker.c.role.in_([r.code for r in worker_roles]),
                user_group.c.user_id == caller.id,
                user_group.c.role.in_([r.code for r in caller_roles]),
            )
            .limit(1)
        )
    ).first()
    return row is not None


ADMIN_ONLY = {Role.Admin}
WRITERS = {Role.Write, Role.Admin}
ANY_ROLE = {Role.Read, Role.Write, Role.Admin}


async def get_worker(engine: AsyncEngine, caller: User, worker_uuid: uuid.UUID) -> m.WorkerQueryResp:
    async with read_only(engine).connect() as conn:
        row = await _worker_row(conn, worker_uuid)
        if not await _may_manage(conn, caller, row.id, ANY_ROLE, ANY_ROLE) and row.creator_id != caller.id:
            # DECISIONS A3: reading a worker needs a role in one of its groups.
            raise errors.permission_denied("reading this worker needs a role in one of its groups")
        return m.WorkerQueryResp(info=_info(row), groups=await _worker_groups(conn, row.id))


async def _shutdown(conn: AsyncConnection, rows: Sequence[Any], op: WorkerShutdownOp) -> int:
    remove = [r.id for r in rows if op == WorkerShutdownOp.Force or r.assigned_task_id is None]
    mark = [r.id for r in rows if r.id not in remove]
    await remove_workers(conn, remove)
    if mark:
        await conn.execute(
            update(workers)
            .where(workers.c.id.in_(mark))
            .values(state=WorkerState.GracefulShutdown.code, updated_at=now())
        )
        for w in (
            await conn.execute(select(workers.c.id, workers.c.worker_id).where(workers.c.id.in_(mark)))
        ).all():
            await events.worker_event(conn, w.id, w.worker_id, WorkerState.GracefulShutdown.value)
    return len(remove) + len(mark)


async def cancel_worker(
    engine: AsyncEngine, notifier: Notifier, caller: User, worker_uuid: uuid.UUID, op: WorkerShutdownOp
) -> None:
    async with engine.begin() as conn:
        row = await _worker_row(conn, worker_uuid)
        if not await _may_manage(conn, caller, row.id, ADMIN_ONLY, ADMIN_ONLY):
            raise errors.permission_denied(
                "shutting a worker down needs Admin on a group where the worker is Admin"
            )
        await _shutdown(conn, [row], op)
    notifier.wake(TASKS)
    notifier.wake(SIGNALS)


async def replace_tags_or_labels(
    engine: AsyncEngine,
    notifier: Notifier,
    caller: User,
    worker_uuid: uuid.UUID,
    field: str,
    values: list[str],
) -> None:
    if not values:
        raise errors.invalid(f"Empty {field}")
    async with engine.begin() as conn:
        row = await _worker_row(conn, worker_uuid)
        if not await _may_manage(conn, caller, row.id, WRITERS, WRITERS):
            raise errors.permission_denied(f"changing this worker's {field} needs Write on one of its groups")
        await conn.execute(
            update(workers).where(workers.c.id == row.id).values(**{field: values, "updated_at": now()})
        )
        await notify_tasks(conn)
    notifier.wake(TASKS)


async def update_groups(
    engine: AsyncEngine, notifier: Notifier, caller: User, worker_uuid: uuid.UUID, relations: dict[str, Role]
) -> None:
    if not relations:
        raise errors.invalid("Empty group relations")
    async with engine.begin() as conn:
        row = await _worker_row(conn, worker_uuid)
        if not await _may_manage(conn, caller, row.id, ADMIN_ONLY, ADMIN_ONLY):
            raise errors.permission_denied(
                "changing this worker's groups needs Admin on a group where it is Admin"
            )
        found = {
            r.group_name: r.id
            for r in await conn.execute(
                select(groups.c.id, groups.c.group_name).where(groups.c.group_name.in_(relations))
            )
        }
        if len(found) != len(relations):
            raise errors.invalid(
                f"Some groups do not exist: {', '.join(sorted(set(relations) - set(found)))}"
            )
        for name, gid in found.items():
            if caller.admin:
                continue
            role = await role_in_group(conn, caller.id, gid)
            if role is None or not role.at_least(Role.Write):
                raise errors.permission_denied(
                    f"granting a worker a role in group {name} needs Write in that group"
                )
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        for name, role in relations.items():
            stmt = dialect.insert(group_worker).values(group_id=found[name], worker_id=row.id, role=role.code)
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["group_id", "worker_id"], set_={"role": role.code})
            )
        await notify_tasks(conn)
    notifier.wake(TASKS)


async def remove_groups(engine: AsyncEngine, caller: User, worker_uuid: uuid.UUID, names: list[str]) -> None:
    if not names:
        raise errors.invalid("Empty group names")
    async with engine.begin() as conn:
        row = await _worker_row(conn, worker_uuid)
        if not await _may_manage(conn, caller, row.id, ADMIN_ONLY, ADMIN_ONLY):
            raise errors.permission_denied(
                "changing this worker's groups needs Admin on a group where it is Admin"
            )
        found = (await conn.execute(select(groups.c.id).where(groups.c.group_name.in_(names)))).all()
        if len(found) != len(set(names)):
            raise errors.invalid("Some groups do not exist")
        await conn.execute(
            delete(group_worker).where(
                group_worker.c.worker_id == row.id, group_worker.c.group_id.in_([r.id for r in found])
            )
        )


def _filter_clauses(f: m.WorkerFilter, group_id: int, dialect: str) -> list[Any]:
    clauses = [group_worker.c.group_id == group_id]
    if f.tags:
        clauses.append(contains_all(workers.c.tags, f.tags, dialect))
    if f.labels:
        clauses.append(contains_all(workers.c.labels, f.labels, dialect))
    if f.creator_username is not None:
        clauses.append(users.c.username == f.creator_username)
    if f.role is not None:
        clauses.append(group_worker.c.role.in_([r.code for r in f.role]))
    return clauses


WORKER_HINT = "narrow the filter (tags, labels, role, creator_username), or ask only for the count"


async def query(
    engine: AsyncEngine, caller: User, req: m.WorkersQueryReq, max_rows: int | None = None
) -> m.WorkersQueryResp:
    """Route 45. 0.6.8's worker query has no limit/offset: with ``max_rows`` (the API's
    ``max_query_rows``) more matches than that is a 400 asking for a narrower filter."""
    async with read_only(engine).connect() as conn:
        g = await effective_group(conn, caller, req.group_name, Role.Read, outsider=403)
        base = _worker_select().join(group_worker, group_worker.c.worker_id == workers.c.id)
        clauses = _filter_clauses(req, g.id, conn.dialect.name)
        if req.count:
            n = (
                await conn.execute(select(func.count()).select_from(base.where(*clauses).subquery()))
            ).scalar_one()
            return m.WorkersQueryResp(count=n, workers=[], group_name=g.group_name)
        stmt = base.where(*clauses).order_by(workers.c.id)
        if max_rows is not None:
            stmt = stmt.limit(max_rows + 1)
        rows = (await conn.execute(stmt)).all()
        if max_rows is not None and len(rows) > max_rows:
            n = (
                await conn.execute(select(func.count()).select_from(base.where(*clauses).subquery()))
            ).scalar_one()
            raise bounds.too_many("workers", n, max_rows, WORKER_HINT)
    infos = [_info(r) for r in rows]
    return m.WorkersQueryResp(count=len(infos), workers=infos, group_name=g.group_name)


async def shutdown_by_filter(
    engine: AsyncEngine, notifier: Notifier, caller: User, req: m.WorkersShutdownByFilterReq
) -> m.WorkersShutdownByFilterResp:
    async with engine.begin() as conn:
        g = await effective_group(conn, caller, req.group_name, Role.Admin, outsider=403)
        rows = (
            await conn.execute(
                select(workers.c.id, workers.c.assigned_task_id)
                .join(group_worker, group_worker.c.worker_id == workers.c.id)
                .join(users, users.c.id == workers.c.creator_id)
                .where(*_filter_clauses(req, g.id, conn.dialect.name), group_worker.c.role == Role.Admin.code)
            )
        ).all()
        count = await _shutdown(conn, rows, req.op)
    notifier.wake(TASKS)
    notifier.wake(SIGNALS)
    return m.WorkersShutdownByFilterResp(shutdown_count=count, group_name=g.group_name)


async def shutdown_by_uuids(
    engine: AsyncEngine, notifier: Notifier, caller: User, req: m.WorkersShutdownByUuidsReq
) -> m.WorkersShutdownByUuidsResp:
    if not req.uuids:
        raise errors.invalid("UUIDs list cannot be empty")
    done: set[uuid.UUID] = set()
    for start in range(0, len(req.uuids), CHUNK):
        chunk = req.uuids[start : start + CHUNK]
        async with engine.begin() as conn:
            stmt = select(workers.c.id, workers.c.worker_id, workers.c.assigned_task_id).where(
                workers.c.worker_id.in_(chunk)
            )
            if not caller.admin:
                manageable = (
                    select(group_worker.c.worker_id)
                    .join(user_group, user_group.c.group_id == group_worker.c.group_id)
                    .where(
                        group_worker.c.role == Role.Admin.code,
                        user_group.c.user_id == caller.id,
                        user_group.c.role == Role.Admin.code,
                    )
                )
                stmt = stmt.where(workers.c.id.in_(manageable))
            rows = (await conn.execute(stmt)).all()
            await _shutdown(conn, rows, req.op)
            done.update(r.worker_id for r in rows)
    notifier.wake(TASKS)
    notifier.wake(SIGNALS)
    return m.WorkersShutdownByUuidsResp(
        shutdown_count=len(done), failed_uuids=[u for u in req.uuids if u not in done]
    )


# ------------------------------------------------------------------------------------------ reaper


async def reap(
    engine: AsyncEngine,
    notifier: Notifier,
    heartbeat_timeout: timedelta,
    grace: timedelta,
    started_at: datetime | None = None,
) -> dict[str, int]:
    """One pass of the coordinator's backstops (DECISIONS S4, S15). Safe to run on every coordinator.

    A coordinator that started less than ``heartbeat_timeout`` ago does not judge silence yet:
    workers could not heartbeat while it was down (0.6.8 also restarts every deadline at start).
    """
    ts = now()
    out = {"dead_workers": 0, "timed_out_tasks": 0}
    silent_cutoff = ts - heartbeat_timeout
    judge_silence = started_at is None or started_at < silent_cutoff
    async with engine.begin() as conn:
        dead = (
            await conn.execute(
                select(workers.c.id).where(
                    or_(
                        and_(workers.c.last_heartbeat < silent_cutoff, true() if judge_silence else false()),
                        and_(workers.c.expires_at.is_not(None), workers.c.expires_at < ts),
                    )
                )
            )
        ).all()
        out["dead_workers"] = await remove_workers(conn, [r.id for r in dead])
    async with engine.begin() as conn:
        # A Running task past timeout + grace on a live worker: cancel it with ExecTimeout.
        running = (
            await conn.execute(select(active_tasks).where(active_tasks.c.state == TaskState.Running.code))
        ).all()
        overdue = [r for r in running if r.updated_at + timedelta(seconds=r.timeout) + grace < ts]
        for task in overdue:
            values = {c.name: getattr(task, c.name) for c in active_tasks.c if c.name != "cancel_requested"}
            values.update(
                state=TaskState.Cancelled.code,
                updated_at=ts,
                result={"exit_status": 0, "msg": "ExecTimeout"},
                reporter_uuid=None,
            )
            await conn.execute(insert(archived_tasks).values(**values))
            await conn.execute(delete(active_tasks).where(active_tasks.c.id == task.id))
            await conn.execute(
                update(workers).where(workers.c.assigned_task_id == task.id).values(assigned_task_id=None)
            )
            await events.task_event_for_ids(
                conn,
                archived_tasks,
                [task.id],
                TaskState.Cancelled.value,
                committed=True,
                result=values["result"],
            )
        if overdue:
            # The timed-out runs will never commit: their Pending downstream tasks end too (S10).
            await archive_cancelled(
                conn,
                and_(
                    active_tasks.c.upstream_task_uuid.in_([t.uuid for t in overdue]),
                    active_tasks.c.state == TaskState.Pending.code,
                ),
            )
        out["timed_out_tasks"] = len(overdue)
        if overdue:
            await notify_signals(conn)
    if any(out.values()):
        notifier.wake(TASKS)
        notifier.wake(SIGNALS)
    return out
