"""Read-only listings the dashboard shows and the 0.6.8 API has no call for.

Each one answers only what its caller may already see through the API: the admin lists are
called for system administrators only, the groups of a worker are shown to people who can
read the worker (DECISIONS A3), as ``GET /workers/{uuid}`` shows them, the events of a task to
people who can read the task (as ``GET /events?task=`` streams them), and the group of a worker's
current task and a user's own group quota only decide what the page links or offers.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from mitosis.coordinator.db.tables import active_tasks, events, group_worker, groups, users, workers
from mitosis.wire.enums import GroupState, Role, UserState


@dataclass(frozen=True)
class UserRow:
    username: str
    admin: bool
    state: UserState
    group_quota: int
    group_count: int


@dataclass(frozen=True)
class GroupRow:
    group_name: str
    state: GroupState
    task_count: int
    storage_quota: int
    storage_used: int


async def all_users(engine: AsyncEngine) -> list[UserRow]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                users.c.username, users.c.admin, users.c.state, users.c.group_quota, users.c.group_count
            ).order_by(users.c.username)
        )
        return [
            UserRow(r.username, r.admin, UserState.from_code(r.state), r.group_quota, r.group_count)
            for r in rows
        ]


async def all_groups(engine: AsyncEngine) -> list[GroupRow]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                groups.c.group_name,
                groups.c.state,
                groups.c.task_count,
                groups.c.storage_quota,
                groups.c.storage_used,
            ).order_by(groups.c.group_name)
        )
        return [
            GroupRow(
                r.group_name, GroupState.from_code(r.state), r.task_count, r.storage_quota, r.storage_used
            )
            for r in rows
        ]


async def worker_groups(
    engine: AsyncEngine, worker_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Role]]:
    """The groups (and the worker's role in each) of the listed workers, in one query."""
    out: dict[uuid.UUID, dict[str, Role]] = {w: {} for w in worker_ids}
    if not worker_ids:
        return out
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(workers.c.worker_id, groups.c.group_name, group_worker.c.role)
            .join(group_worker, group_worker.c.worker_id == workers.c.id)
            .join(groups, groups.c.id == group_worker.c.group_id)
            .where(workers.c.worker_id.in_(list(worker_ids)))
            .order_by(groups.c.group_name)
        )
        for r in rows:
            out[r.worker_id][r.group_name] = Role.from_code(r.role)
    return out


@dataclass(frozen=True)
class TaskEvent:
    """One row of the ``events`` table about a task: what it changed to, and when."""

    at: datetime
    state: str
    data: dict[str, Any]


TIMELINE_LIMIT = 200
"""At most this many events of one task are read for its timeline (the newest ones)."""


async def task_events(engine: AsyncEngine, task_uuid: uuid.UUID) -> list[TaskEvent]:
    """The recorded changes of one task, oldest first (only what the event window still keeps).

    The caller must already have checked that the viewer may read the task.
    """
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(events.c.created_at, events.c.state, events.c.data)
                .where(events.c.task_uuid == task_uuid, events.c.kind == "task")
                .order_by(events.c.id.desc())
                .limit(TIMELINE_LIMIT)
            )
        ).all()
    return [
        TaskEvent(r.created_at, r.state or "", r.data if isinstance(r.data, dict) else {})
        for r in reversed(rows)
    ]


async def task_groups(engine: AsyncEngine, task_uuids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The group of each listed *active* task (a worker's current task is always active)."""
    if not task_uuids:
        return {}
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(active_tasks.c.uuid, groups.c.group_name)
            .join(groups, groups.c.id == active_tasks.c.group_id)
            .where(active_tasks.c.uuid.in_(list(task_uuids)))
        )
        return {r.uuid: r.group_name for r in rows}


async def group_quota_left(engine: AsyncEngine, user_id: int) -> int:
    """How many more groups the user may create (the check of ``services.accounts.create_group``)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(users.c.group_count, users.c.group_quota).where(users.c.id == user_id))
        ).one()
    return max(0, int(row.group_quota) - int(row.group_count))


async def user_state(engine: AsyncEngine, username: str) -> UserState | None:
    async with engine.connect() as conn:
        code = (await conn.execute(select(users.c.state).where(users.c.username == username))).scalar()
    return None if code is None else UserState.from_code(code)
