"""Throwaway databases: a SQLite file, or a fresh PostgreSQL database per test.

PostgreSQL comes from ``MITO_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``,
the trust-auth server CI pre-starts or `.ci/run` starts). Each test gets its own database, created
from a template that already holds the migrated schema, and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get("MITO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_TEMPLATE = f"mito_tmpl_{os.getpid()}"
_template_ready = False


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh loop in its own thread.

    Fixtures call this from sync code, but a loop may already be running in this thread (pytest-asyncio,
    Playwright's sync API), where ``asyncio.run`` refuses to start.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def _admin_exec(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_available() -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return _run(probe())


def _ensure_template() -> None:
    global _template_ready
    if _template_ready:
        return
    from mitosis.coordinator.db.engine import make_engine, run_migrations

    async def build() -> None:
        await _admin_exec(f'DROP DATABASE IF EXISTS "{_TEMPLATE}"')
        await _admin_exec(f'CREATE DATABASE "{_TEMPLATE}"')
        engine = make_engine(_with_db(PG_ADMIN_URL, _TEMPLATE))
        try:
            await run_migrations(engine)
        finally:
            await engine.dispose()

    _run(build())
    _template_ready = True


def create_pg_database() -> str:
    _ensure_template()
    name = f"mito_t_{uuid.uuid4().hex[:12]}"
    _run(_admin_exec(f'CREATE DATABASE "{name}" TEMPLATE "{_TEMPLATE}"'))
    return _with_db(PG_ADMIN_URL, name)


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    _run(_admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def drop_template() -> None:
    if _template_ready:
        _run(_admin_exec(f'DROP DATABASE IF EXISTS "{_TEMPLATE}" WITH (FORCE)'))


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'mitosis.db'}"


_pg_ok: bool | None = None


def require_pg() -> None:
    """Fail (never skip, unless MITO_TEST_ALLOW_NO_PG=1) when PostgreSQL is unreachable."""
    global _pg_ok
    if _pg_ok is None:
        _pg_ok = pg_available()
    if not _pg_ok:
        if os.environ.get("MITO_TEST_ALLOW_NO_PG") == "1":
            pytest.skip("PostgreSQL not reachable and MITO_TEST_ALLOW_NO_PG=1")
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; start it (see .ci/run)")


@contextmanager
def fresh_database(kind: str, directory: Path) -> Iterator[str]:
    """A new empty database: ``kind`` "sqlite" (a file in ``directory``) or "postgres" (dropped after)."""
    if kind == "sqlite":
        yield sqlite_url(directory)
        return
    require_pg()
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


class Names:
    """Fresh user and group names, so tests sharing a coordinator never collide."""

    def __init__(self) -> None:
        self._n = itertools.count(1)

    def __call__(self, prefix: str) -> str:
        return f"{prefix}_{next(self._n)}"
