"""Event rows carry the group's name; the name cache must not mix up two databases in one process.

The test suite runs several coordinators in one process (and an embedding application could too):
group id 1 is a different group in each database, so a process-wide id → name cache would record
events under another database's group name, and readers of the real group would never see them.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from mitosis.coordinator.db.engine import make_engine, run_migrations
from mitosis.coordinator.db.tables import events, groups, users
from mitosis.coordinator.events import log
from mitosis.coordinator.services.common import now


async def _database(path: Path, group: str) -> tuple[AsyncEngine, int]:
    engine = make_engine(f"sqlite:///{path}")
    await run_migrations(engine)
    ts = now()
    async with engine.begin() as conn:
        uid = (
            await conn.execute(
                insert(users)
                .values(username="u", encrypted_password="x", created_at=ts, updated_at=ts)
                .returning(users.c.id)
            )
        ).scalar_one()
        gid = (
            await conn.execute(
                insert(groups)
                .values(group_name=group, creator_id=uid, created_at=ts, updated_at=ts)
                .returning(groups.c.id)
            )
        ).scalar_one()
    return engine, gid


async def _scenario(tmp: Path) -> None:
    first, gid_a = await _database(tmp / "a.db", "alpha")
    second, gid_b = await _database(tmp / "b.db", "beta")
    try:
        assert gid_a == gid_b  # the point: the same id names different groups
        for engine, gid in ((first, gid_a), (second, gid_b)):
            async with engine.begin() as conn:
                await log.task_event(conn, uuid.uuid4(), gid, ["l"], "Running")
        recorded = []
        for engine in (first, second):
            async with engine.connect() as conn:
                recorded.append([list(r.groups) for r in await conn.execute(select(events.c.groups))])
        assert recorded == [[["alpha"]], [["beta"]]]
    finally:
        await first.dispose()
        await second.dispose()


def test_group_names_are_cached_per_database(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
