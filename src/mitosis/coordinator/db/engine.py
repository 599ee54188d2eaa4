"""Engine creation for both databases and the migration runner.

PostgreSQL runs through asyncpg with a connection pool. SQLite runs through aiosqlite in WAL mode;
every SQLite transaction starts with ``BEGIN IMMEDIATE`` so there is exactly one writer at a time
and a read-then-write transaction can never fail half way with a busy snapshot.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Any constant works; it only has to be the same for every coordinator sharing a database.
_MIGRATION_LOCK = 0x6D69746F


def normalize_url(url: str) -> str:
    """Accept the user-facing spellings (``postgres://``, ``sqlite:///``) and pick the async driver."""
    if url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


def make_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """An engine for ``url``. On PostgreSQL ``pool_size`` connections are kept for reuse and up to
    half as many more are opened under load; those extra ones are closed after each use, and a
    connection costs milliseconds to open (a PostgreSQL process, TLS negotiation), so the kept pool
    is sized for the usual concurrency: with 10 kept and 20 extra, 8 s of heartbeats from 64
    connections opened 34 PostgreSQL sessions; with 20 and 10, 13 (docs/performance.md, fix 30)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 60})
        _configure_sqlite(engine)
        return engine
    # No pool_pre_ping: it cost one round trip per checkout (two per request, benchmarks/sql_count.py).
    # A connection PostgreSQL dropped fails one statement, SQLAlchemy invalidates the whole pool on
    # that disconnect error, and callers retry 5xx answers (the worker does, with backoff).
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        pool_recycle=1800,
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how transactions start (see below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Autocommit connections (single reads, e.g. token checks) take no write lock, and
        # read-only transactions (see read_only) a plain snapshot that never blocks the writer.
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        conn.exec_driver_sql("BEGIN" if options.get("mitosis_read_only") else "BEGIN IMMEDIATE")


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """The same engine for transactions that only read: on SQLite they run beside the writer."""
    return engine.execution_options(mitosis_read_only=True)


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "heads")


def _current(connection: Connection) -> str:
    from alembic.runtime.migration import MigrationContext

    return ",".join(sorted(MigrationContext.configure(connection).get_current_heads()))


async def run_migrations(engine: AsyncEngine) -> None:
    """Apply pending migrations; several coordinators may start at once on one PostgreSQL."""
    async with engine.connect() as conn:
        if is_postgres(engine):
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
        try:
            before = await conn.run_sync(_current)
            await conn.run_sync(_upgrade)
            await conn.commit()
            after = await conn.run_sync(_current)
            if before != after:
                log.info("database migrated from %s to %s", before or "empty", after)
        finally:
            if is_postgres(engine):
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                await conn.commit()
