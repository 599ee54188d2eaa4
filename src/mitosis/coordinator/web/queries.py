"""Read-only listings the dashboard shows and the 0.6.8 API has no call for.

Each one answers only what its caller may already see through the API: the admin lists are
called for system administrators only, and the groups of a worker are shown to people who can
read the worker (DECISIONS A3), as ``GET /workers/{uuid}`` shows them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from mitosis.coordinator.db.tables import group_worker, groups, users, workers
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
