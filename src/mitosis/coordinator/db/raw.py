"""The hot path's connector on PostgreSQL: statements run straight on the pooled asyncpg connection.

Going through SQLAlchemy costs about three times the CPU of asyncpg for the one-statement requests
that dominate a busy coordinator (worker authentication, heartbeats, claims, batch commits). Those
few statements are written as plain SQL and run here, on a connection checked out of the same pool;
everything else keeps using SQLAlchemy. The connection is used outside any transaction, so each
statement commits on its own (each is written to be atomic on its own).

A lost connection becomes SQLAlchemy's ``DisconnectionError`` (the coordinator answers 503 and the
pool drops the connection), exactly as on the SQLAlchemy path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

_LOST = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError, OSError)


def available(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


observers: list[Callable[[str, tuple[Any, ...]], None]] = []
"""Called with every statement sent here and its parameters (the benchmarks count and EXPLAIN
them); empty in use."""


class _Observed:
    """An asyncpg connection that reports each statement to :data:`observers` first."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._conn, name)
        if name not in ("execute", "fetch", "fetchrow", "fetchval"):
            return method

        def observed(sql: str, *args: Any, **kwargs: Any) -> Any:
            for observe in observers:
                observe(sql, args)
            return method(sql, *args, **kwargs)

        return observed


@asynccontextmanager
async def connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """An asyncpg connection from the engine's pool, returned to it afterwards (PostgreSQL only)."""
    async with engine.connect() as conn:
        fairy = await conn.get_raw_connection()
        try:
            yield _Observed(fairy.driver_connection) if observers else fairy.driver_connection
        except _LOST as exc:
            await conn.invalidate()
            raise sa_exc.DisconnectionError(f"database connection lost: {exc}") from exc
