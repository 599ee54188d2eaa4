"""The migrated schema holds the indexes ``db/tables.py`` declares, on SQLite and PostgreSQL.

Migration 0007 replaced the plain ``group_id`` indexes of both task tables with ``(group_id, state)``
(counts by state read only the index) and dropped PostgreSQL's duplicate GIN index on
``active_tasks.tags``; its downgrade restores the 0006 schema and a second upgrade applies it again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from mitosis.coordinator.db.engine import _alembic_config, make_engine, run_migrations
from mitosis.coordinator.db.tables import active_tasks, archived_tasks
from tests.support import databases

TASK_TABLES = (active_tasks, archived_tasks)


def _indexes(sync: Connection) -> dict[str, dict[str, list[Any]]]:
    insp = inspect(sync)
    return {
        t.name: {str(i["name"]): i["column_names"] for i in insp.get_indexes(t.name)} for t in TASK_TABLES
    }


def _downgrade(sync: Connection, target: str) -> None:
    command.downgrade(_alembic_config(sync), target)


async def _schema_round_trip(url: str) -> list[dict[str, dict[str, list[Any]]]]:
    engine = make_engine(url)
    try:
        await run_migrations(engine)
        seen = []
        async with engine.connect() as conn:
            seen.append(await conn.run_sync(_indexes))
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, "0006")
        async with engine.connect() as conn:
            seen.append(await conn.run_sync(_indexes))
        await run_migrations(engine)
        async with engine.connect() as conn:
            seen.append(await conn.run_sync(_indexes))
        return seen
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_task_table_indexes_after_each_migration(kind: str, tmp_path: Path) -> None:
    with databases.fresh_database(kind, tmp_path) as url:
        head, at_0006, again = asyncio.run(_schema_round_trip(url))
    for table in TASK_TABLES:
        declared = {i.name for i in table.indexes}
        assert declared <= set(head[table.name]), (table.name, declared - set(head[table.name]))
        assert head[table.name][f"idx_{table.name}-group_id-state"] == ["group_id", "state"]
        assert f"idx_{table.name}-group_id" not in head[table.name]
        assert at_0006[table.name][f"idx_{table.name}-group_id"] == ["group_id"]
        assert f"idx_{table.name}-group_id-state" not in at_0006[table.name]
    assert again == head
    if kind == "postgres":
        # One GIN index per array column: 0001's idx_active_tasks-tags_gin duplicated 0005's.
        gin = sorted(n for n in head["active_tasks"] if n.endswith("gin"))
        assert gin == ["idx_active_tasks-labels-gin", "idx_active_tasks-tags-gin"]
        assert "idx_active_tasks-tags_gin" in at_0006["active_tasks"]
