"""Small look-ups every service needs: clock, users, groups and roles."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from mitosis.coordinator import errors
from mitosis.coordinator.db.tables import groups, user_group, users
from mitosis.wire.enums import Role

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def now() -> datetime:
    return datetime.now(UTC)


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


async def user_by_name(conn: AsyncConnection, username: str) -> Any:
    return (await conn.execute(select(users).where(users.c.username == username))).first()


async def group_by_name(conn: AsyncConnection, group_name: str) -> Any:
    return (await conn.execute(select(groups).where(groups.c.group_name == group_name))).first()


async def role_in_group(conn: AsyncConnection, user_id: int, group_id: int) -> Role | None:
    code = (
        await conn.execute(
            select(user_group.c.role).where(
                user_group.c.user_id == user_id, user_group.c.group_id == group_id
            )
        )
    ).scalar()
    return None if code is None else Role.from_code(code)


async def require_role(
    conn: AsyncConnection,
    user: Any,
    group_id: int,
    group_name: str,
    needed: Role,
    *,
    missing_status: int = 403,
) -> Role | None:
    """Raise unless ``user`` holds ``needed`` in the group; system admins always pass."""
    role = await role_in_group(conn, user.id, group_id)
    if user.admin:
        return role
    if role is None:
        if missing_status == 400:
            raise errors.invalid("User is not in the group")
        raise errors.permission_denied(f"you are not a member of group {group_name}")
    if not role.at_least(needed):
        raise errors.permission_denied(
            f"this needs the {needed.value} role in group {group_name}, you have {role.value}"
        )
    return role


async def effective_group(
    conn: AsyncConnection, caller: Any, group_name: str | None, needed: Role, *, outsider: int = 400
) -> Any:
    """The group a query or batch filter applies to: the named one, or the caller's personal group.

    0.6.8 answers an outsider with 400 on task filters and 403 on worker filters (``outsider``).
    """
    name = group_name or caller.username
    # The group and the caller's role in it in one statement: every filtered query and batch
    # operation starts here.
    role_code = (
        select(user_group.c.role)
        .where(user_group.c.user_id == caller.id, user_group.c.group_id == groups.c.id)
        .scalar_subquery()
    )
    g = (
        await conn.execute(select(groups, role_code.label("caller_role")).where(groups.c.group_name == name))
    ).first()
    role = None if g is None or g.caller_role is None else Role.from_code(g.caller_role)
    if g is None or (role is None and not caller.admin):
        if outsider == 400:
            raise errors.invalid(f"Group with name {name} not found or user is not in the group")
        raise errors.permission_denied(f"you are not a member of group {name}")
    if not caller.admin and role is not None and not role.at_least(needed):
        raise errors.permission_denied(f"this needs the {needed.value} role in group {name}")
    return g
