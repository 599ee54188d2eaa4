"""Retention: archived tasks past their group's period go, with artifacts (blobs + rows) and events."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text, update

from mitosis.coordinator.blobs import FsBlobStore
from mitosis.coordinator.db.engine import make_engine, run_migrations
from mitosis.coordinator.db.tables import archived_tasks, artifacts, events, groups, users
from mitosis.coordinator.services import retention
from mitosis.coordinator.services.artifacts import artifact_key
from mitosis.coordinator.services.common import now
from mitosis.wire.enums import ArtifactContentType


async def _seed(engine: Any, blobs: FsBlobStore) -> dict[str, Any]:
    ts = now()
    async with engine.begin() as conn:
        uid = (
            await conn.execute(
                insert(users)
                .values(username="ret", encrypted_password="x", created_at=ts, updated_at=ts)
                .returning(users.c.id)
            )
        ).scalar_one()
        gids = {}
        for name in ("keep_default", "short"):
            gids[name] = (
                await conn.execute(
                    insert(groups)
                    .values(group_name=name, creator_id=uid, created_at=ts, updated_at=ts, storage_used=300)
                    .returning(groups.c.id)
                )
            ).scalar_one()
        await conn.execute(update(groups).where(groups.c.id == gids["short"]).values(retention_days=2))
        tasks: dict[str, uuid.UUID] = {}
        for i, (name, group, age) in enumerate(
            [
                ("old_default", "keep_default", 20),
                ("new_default", "keep_default", 1),
                ("old_short", "short", 3),
                ("new_short", "short", 1),
            ]
        ):
            tu = uuid.uuid4()
            tasks[name] = tu
            at = ts - timedelta(days=age)
            await conn.execute(
                insert(archived_tasks).values(
                    id=1000 + i,
                    creator_id=uid,
                    group_id=gids[group],
                    task_id=i + 1,
                    uuid=tu,
                    tags=[],
                    labels=[],
                    created_at=at,
                    updated_at=at,
                    state=3,
                    timeout=60,
                    priority=0,
                    spec={"args": ["true"]},
                    result={"exit_status": 0, "msg": None},
                )
            )
            await conn.execute(
                insert(artifacts).values(task_id=tu, content_type=0, size=100, created_at=at, updated_at=at)
            )
            await conn.execute(
                insert(events).values(
                    created_at=at, kind="task", groups=[group], task_uuid=tu, state="Finished", labels=[]
                )
            )
            path = blobs.path_for("artifacts", artifact_key(tu, ArtifactContentType.result))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * 100)
    return {"tasks": tasks, "groups": gids}


async def _exists(engine: Any, table: Any, col: Any, value: Any) -> bool:
    async with engine.connect() as conn:
        return bool(
            (await conn.execute(select(func.count()).select_from(table).where(col == value))).scalar()
        )


async def _scenario(db_url: str, tmp: Path) -> None:
    engine = make_engine(db_url)
    blobs = FsBlobStore(tmp / "blobs", "http://127.0.0.1:1", b"secret")
    await blobs.start()
    try:
        await run_migrations(engine)
        seeded = await _seed(engine, blobs)
        tasks = seeded["tasks"]

        # Default off: only the group with its own period ("short", 2 days) loses its old task.
        done = await retention.purge(engine, blobs, None)
        assert done == {"tasks": 1, "artifacts": 1, "skipped": False}
        gone = tasks["old_short"]
        assert not await _exists(engine, archived_tasks, archived_tasks.c.uuid, gone)
        assert not await _exists(engine, artifacts, artifacts.c.task_id, gone)
        assert not await _exists(engine, events, events.c.task_uuid, gone)
        assert not blobs.path_for("artifacts", artifact_key(gone, ArtifactContentType.result)).exists()
        for name in ("old_default", "new_default", "new_short"):
            assert await _exists(engine, archived_tasks, archived_tasks.c.uuid, tasks[name])
            assert blobs.path_for("artifacts", artifact_key(tasks[name], ArtifactContentType.result)).exists()
        async with engine.connect() as conn:
            used = (
                await conn.execute(
                    select(groups.c.storage_used).where(groups.c.id == seeded["groups"]["short"])
                )
            ).scalar()
        assert used == 200  # the deleted artifact's bytes went back to the group

        # A coordinator-wide default of 10 days reaches the other group's 20-day-old task only.
        done = await retention.purge(engine, blobs, 10)
        assert done["tasks"] == 1
        assert not await _exists(engine, archived_tasks, archived_tasks.c.uuid, tasks["old_default"])
        assert await _exists(engine, archived_tasks, archived_tasks.c.uuid, tasks["new_default"])

        if engine.dialect.name == "postgresql":
            # Another coordinator holds the lock: this one skips the pass.
            async with engine.connect() as other:
                await other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": retention.RETENTION_LOCK})
                assert (await retention.purge(engine, blobs, 0))["skipped"] is True
                await other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": retention.RETENTION_LOCK})
                await other.commit()
    finally:
        await blobs.close()
        await engine.dispose()


def test_effective_days() -> None:
    assert retention.effective_days(None, None) is None
    assert retention.effective_days(None, 30) == 30
    assert retention.effective_days(5, 30) == 5
    assert retention.effective_days(0, 30) is None  # a group may opt out of the default


def test_retention_deletes_expired_archived_tasks(db_url: str, tmp_path: Path) -> None:
    asyncio.run(_scenario(db_url, tmp_path))


def test_admins_set_and_read_a_groups_retention(tmp_path: Path, db_url: str) -> None:
    from tests.support.coordinator import inprocess_coordinator

    with inprocess_coordinator(tmp_path / "coord", db_url, retention_days=90) as coord:
        user_token = coord.create_user("carol", "pw-carol")
        with coord.admin() as admin, coord.client(user_token) as carol:
            url = "/admin/groups/carol/retention"
            assert admin.get(url).json() == {"retention_days": None, "effective_days": 90}
            assert admin.post(url, json={"retention_days": 7}).json() == {
                "retention_days": 7,
                "effective_days": 7,
            }
            assert admin.post(url, json={"retention_days": 0}).json() == {
                "retention_days": 0,
                "effective_days": None,
            }
            assert admin.get(url).json() == {"retention_days": 0, "effective_days": None}
            assert admin.post(url, json={"retention_days": None}).json()["effective_days"] == 90
            for bad in (-1, "a week", 10**6):
                r = admin.post(url, json={"retention_days": bad})
                assert r.status_code == 422 and "retention_days" in r.json()["msg"], r.text
            r = admin.post("/admin/groups/nobody-here/retention", json={"retention_days": 1})
            assert r.status_code == 404 and r.json()["msg"] == "Group nobody-here not found"
            r = carol.post(url, json={"retention_days": 1})
            assert r.status_code == 403 and "system administrator" in r.json()["msg"]
            assert admin.get(url).json()["retention_days"] is None  # nothing changed by the refusals


def test_the_cli_reads_periods_in_days() -> None:
    import click
    import pytest

    from mitosis.client.commands.admin import _retention_days

    assert _retention_days("30") == 30
    assert _retention_days("30d") == 30
    assert _retention_days("12w") == 84
    assert _retention_days("forever") == 0
    assert _retention_days("0") == 0
    assert _retention_days("default") is None
    for bad in ("36h", "soon", "-3"):
        with pytest.raises(click.BadParameter):
            _retention_days(bad)
