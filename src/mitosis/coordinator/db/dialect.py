"""The few SQL expressions that differ between PostgreSQL and SQLite: array containment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, cast, exists, func, literal, select, true
from sqlalchemy.dialects import postgresql


def contains_all(column: Any, values: Sequence[str], dialect: str) -> ColumnElement[bool]:
    """``column`` (a string array) holds every one of ``values``."""
    if not values:
        return true()
    if dialect == "postgresql":
        # asyncpg binds str as varchar: cast the array so `text[] @> text[]` resolves.
        wanted = cast(postgresql.array([literal(v, Text) for v in values]), postgresql.ARRAY(Text))
        return column.op("@>")(wanted)  # type: ignore[no-any-return]
    checks = []
    for value in values:
        each = func.json_each(column).table_valued("value")
        checks.append(exists(select(literal(1)).select_from(each).where(each.c.value == value)))
    return and_(*checks)
