"""Users, personal groups, memberships, login and the admin operations on users and groups."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mitosis.coordinator import errors
from mitosis.coordinator.auth import TokenService, User, hash_password, new_sign, verify_password
from mitosis.coordinator.blobs import BlobStore
from mitosis.coordinator.db.engine import read_only
from mitosis.coordinator.db.tables import group_worker, groups, user_group, users
from mitosis.coordinator.services import storage
from mitosis.coordinator.services.common import (
    group_by_name,
    now,
    require_role,
    role_in_group,
    user_by_name,
    valid_name,
)
from mitosis.coordinator.services.throttle import LoginThrottle
from mitosis.wire import models as m
from mitosis.wire.codecs import apply_quota_change, validate_md5_list
from mitosis.wire.enums import GroupState, Role, UserState


async def create_user(conn: AsyncConnection, username: str, md5: bytes, admin: bool) -> int:
    """Insert the user, their personal group and the Admin membership (one transaction: ``conn``)."""
    taken_user = (await conn.execute(select(users.c.id).where(users.c.username == username))).first()
    taken_group = (await conn.execute(select(groups.c.id).where(groups.c.group_name == username))).first()
    if taken_user or taken_group:
        raise errors.already_exists(username)
    ts = now()
    user_id = (
        await conn.execute(
            insert(users)
            .values(
                username=username,
                encrypted_password=await hash_password(md5),
                created_at=ts,
                updated_at=ts,
                admin=admin,
                state=UserState.Active.code,
                group_quota=8,
                group_count=1,
            )
            .returning(users.c.id)
        )
    ).scalar_one()
    group_id = (
        await conn.execute(
            insert(groups)
            .values(group_name=username, creator_id=user_id, created_at=ts, updated_at=ts, state=0)
            .returning(groups.c.id)
        )
    ).scalar_one()
    await conn.execute(insert(user_group).values(user_id=user_id, group_id=group_id, role=Role.Admin.code))
    return int(user_id)


async def bootstrap_admin(engine: AsyncEngine, username: str, password_md5: bytes) -> bool:
    """Create the configured admin unless a user or group of that name exists. True if created."""
    async with engine.begin() as conn:
        if await user_by_name(conn, username) or await group_by_name(conn, username):
            return False
        await create_user(conn, username, password_md5, admin=True)
        return True


async def login(
    engine: AsyncEngine,
    tokens: TokenService,
    ttl: timedelta,
    req: m.UserLoginReq,
    peer: str | None,
    throttle: LoginThrottle | None = None,
) -> str:
    """Check the password and issue a user token; ``throttle`` refuses (429) after repeated failures."""
    md5 = validate_md5_list(req.md5_password)
    if throttle is not None:
        throttle.check(req.username, peer)
    async with engine.begin() as conn:
        row = await user_by_name(conn, req.username)
        if row is not None and row.state != UserState.Active.code:
            raise errors.permission_denied(
                f"user {row.username} is {UserState.from_code(row.state).value.lower()}"
            )
        if row is None or not await verify_password(row.encrypted_password, md5):
            if throttle is not None:
                throttle.failed(req.username, peer)
            raise errors.wrong_credentials()
        sign = row.auth_signature if req.retain and row.auth_signature is not None else new_sign()
        await _record_sign_in(conn, row, sign, peer)
    if throttle is not None:
        throttle.succeeded(req.username)
    return tokens.issue(row.username, ttl, sign, "user")


async def _record_sign_in(conn: AsyncConnection, row: Any, sign: int, peer: str | None, **extra: Any) -> None:
    ts = now()
    await conn.execute(
        update(users)
        .where(users.c.id == row.id)
        .values(
            auth_signature=sign,
            last_sign_in_at=row.current_sign_in_at,
            current_sign_in_at=ts,
            last_sign_in_ip=row.current_sign_in_ip,
            current_sign_in_ip=peer,
            updated_at=ts,
            **extra,
        )
    )


async def change_own_password(
    engine: AsyncEngine,
    tokens: TokenService,
    ttl: timedelta,
    caller: User,
    username: str,
    req: m.UserChangePasswordReq,
    peer: str | None,
) -> str:
    old = validate_md5_list(req.old_md5_password)
    new = validate_md5_list(req.new_md5_password)
    async with engine.begin() as conn:
        row = await user_by_name(conn, caller.username)
        if row is None:
            raise errors.not_found("User")
        if username != caller.username:
            raise errors.wrong_credentials()
        if row.state != UserState.Active.code:
            raise errors.permission_denied()
        if not await verify_password(row.encrypted_password, old):
            raise errors.wrong_credentials()
        sign = new_sign()
        await _record_sign_in(conn, row, sign, peer, encrypted_password=await hash_password(new))
    return tokens.issue(caller.username, ttl, sign, "user")


async def my_groups(engine: AsyncEngine, caller: User) -> dict[str, Role]:
    async with read_only(engine).connect() as conn:
        rows = await conn.execute(
            select(groups.c.group_name, user_group.c.role)
            .join(user_group, user_group.c.group_id == groups.c.id)
            .where(user_group.c.user_id == caller.id)
            .order_by(groups.c.group_name)
        )
        return {r.group_name: Role.from_code(r.role) for r in rows}


async def create_group(engine: AsyncEngine, caller: User, name: str) -> None:
    if not valid_name(name):
        raise errors.invalid("Invalid group name (use 1-255 ASCII letters, digits, '-' or '_')")
    async with engine.begin() as conn:
        if await user_by_name(conn, name) or await group_by_name(conn, name):
            raise errors.already_exists(name)
        me = (await conn.execute(select(users).where(users.c.id == caller.id))).one()
        if me.group_count >= me.group_quota:
            raise errors.quota_exceeded(
                f"you have created {me.group_count} of the {me.group_quota} groups your quota allows"
            )
        ts = now()
        await conn.execute(
            update(users)
            .where(users.c.id == caller.id)
            .values(group_count=users.c.group_count + 1, updated_at=ts)
        )
        gid = (
            await conn.execute(
                insert(groups)
                .values(group_name=name, creator_id=caller.id, created_at=ts, updated_at=ts, state=0)
                .returning(groups.c.id)
            )
        ).scalar_one()
        await conn.execute(insert(user_group).values(user_id=caller.id, group_id=gid, role=Role.Admin.code))


async def get_group(
    engine: AsyncEngine, caller: User, name: str, blobs: BlobStore | None = None
) -> m.GroupQueryInfo:
    if blobs is not None:
        async with engine.connect() as conn:
            found = await group_by_name(conn, name)
            readable = found is not None and (caller.admin or await role_in_group(conn, caller.id, found.id))
        if readable:
            # S3 reports no completed uploads: book them so storage_used is the real figure. (Outside
            # the look-up's connection: on SQLite every transaction holds the one write lock.)
            await storage.settle_group(engine, blobs, None, found.id)
    async with read_only(engine).connect() as conn:
        g = await group_by_name(conn, name)
        if g is None:
            raise errors.not_found(f"Group {name}")
        role = await require_role(conn, caller, g.id, name, Role.Read)
        creator = (await conn.execute(select(users.c.username).where(users.c.id == g.creator_id))).scalar()
        worker_count = (
            await conn.execute(
                select(func.count()).select_from(group_worker).where(group_worker.c.group_id == g.id)
            )
        ).scalar_one()
        members = None
        if role == Role.Admin or caller.admin:
            rows = await conn.execute(
                select(users.c.username, user_group.c.role)
                .join(user_group, user_group.c.user_id == users.c.id)
                .where(user_group.c.group_id == g.id)
            )
            members = {r.username: Role.from_code(r.role) for r in rows}
    return m.GroupQueryInfo(
        group_name=g.group_name,
        creator_username=creator or "",
        created_at=g.created_at,
        updated_at=g.updated_at,
        state=GroupState.from_code(g.state),
        task_count=g.task_count,
        storage_quota=g.storage_quota,
        storage_used=g.storage_used,
        worker_count=worker_count,
        users_in_group=members,
    )


async def _admin_count_after(conn: AsyncConnection, group_id: int, changes: dict[int, Role | None]) -> int:
    rows = await conn.execute(
        select(user_group.c.user_id, user_group.c.role).where(user_group.c.group_id == group_id)
    )
    roles: dict[int, Role | None] = {r.user_id: Role.from_code(r.role) for r in rows}
    roles.update(changes)
    return sum(1 for r in roles.values() if r == Role.Admin)


async def update_members(engine: AsyncEngine, caller: User, name: str, relations: dict[str, Role]) -> None:
    if not relations:
        raise errors.invalid("Empty group relations")
    async with engine.begin() as conn:
        g = await group_by_name(conn, name)
        if g is None:
            raise errors.not_found(f"Group {name}")
        await require_role(conn, caller, g.id, name, Role.Admin)
        rows = (
            await conn.execute(select(users.c.id, users.c.username).where(users.c.username.in_(relations)))
        ).all()
        if len(rows) != len(relations):
            missing = sorted(set(relations) - {r.username for r in rows})
            raise errors.invalid(f"Some users do not exist: {', '.join(missing)}")
        ids = {r.username: r.id for r in rows}
        if await _admin_count_after(conn, g.id, {ids[u]: role for u, role in relations.items()}) == 0:
            raise errors.conflict(f"group {name} must keep at least one Admin; promote another member first")
        for username, role in relations.items():
            await _upsert_role(conn, ids[username], g.id, role)


async def _upsert_role(conn: AsyncConnection, user_id: int, group_id: int, role: Role) -> None:
    values = {"user_id": user_id, "group_id": group_id, "role": role.code}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(user_group).values(**values)
    await conn.execute(
        stmt.on_conflict_do_update(index_elements=["user_id", "group_id"], set_={"role": role.code})
    )


async def remove_members(engine: AsyncEngine, caller: User, name: str, usernames: list[str]) -> None:
    if not usernames:
        raise errors.invalid("Empty group relations")
    async with engine.begin() as conn:
        g = await group_by_name(conn, name)
        if g is None:
            raise errors.not_found(f"Group {name}")
        await require_role(conn, caller, g.id, name, Role.Admin)
        rows = (
            await conn.execute(select(users.c.id, users.c.username).where(users.c.username.in_(usernames)))
        ).all()
        if len(rows) != len(set(usernames)):
            missing = sorted(set(usernames) - {r.username for r in rows})
            raise errors.invalid(f"Some users do not exist: {', '.join(missing)}")
        if await _admin_count_after(conn, g.id, {r.id: None for r in rows}) == 0:
            raise errors.conflict(f"group {name} must keep at least one Admin; promote another member first")
        await conn.execute(
            delete(user_group).where(
                user_group.c.group_id == g.id, user_group.c.user_id.in_([r.id for r in rows])
            )
        )


# ------------------------------------------------------------------------------------------ admin


async def admin_create_user(engine: AsyncEngine, req: m.CreateUserReq) -> None:
    if not valid_name(req.username):
        raise errors.invalid("Invalid username (use 1-255 ASCII letters, digits, '-' or '_')")
    md5 = validate_md5_list(req.md5_password)
    async with engine.begin() as conn:
        await create_user(conn, req.username, md5, req.admin)


async def admin_set_state(engine: AsyncEngine, username: str, state: UserState) -> UserState:
    async with engine.begin() as conn:
        result = await conn.execute(
            update(users).where(users.c.username == username).values(state=state.code)
        )
        if result.rowcount == 0:
            raise errors.not_found(f"User or group with name {username}")
    return state


async def admin_change_password(engine: AsyncEngine, username: str, req: m.AdminChangePasswordReq) -> None:
    md5 = validate_md5_list(req.new_md5_password)
    hashed = await hash_password(md5)
    async with engine.begin() as conn:
        result = await conn.execute(
            update(users)
            .where(users.c.username == username)
            .values(encrypted_password=hashed, auth_signature=new_sign(), updated_at=now())
        )
        if result.rowcount == 0:
            raise errors.not_found(f"User {username}")


async def admin_group_quota(engine: AsyncEngine, username: str, spec: str) -> int:
    async with engine.begin() as conn:
        row = await user_by_name(conn, username)
        if row is None:
            raise errors.not_found(f"User {username}")
        try:
            value = apply_quota_change(row.group_quota, spec, sizes=False)
        except ValueError as exc:
            raise errors.invalid(str(exc)) from None
        await conn.execute(
            update(users).where(users.c.id == row.id).values(group_quota=value, updated_at=now())
        )
    return value


async def admin_storage_quota(engine: AsyncEngine, group_name: str, spec: str) -> int:
    async with engine.begin() as conn:
        g = await group_by_name(conn, group_name)
        if g is None:
            raise errors.not_found(f"Group {group_name}")
        try:
            value = apply_quota_change(g.storage_quota, spec, sizes=True)
        except ValueError as exc:
            raise errors.invalid(str(exc)) from None
        await conn.execute(
            update(groups).where(groups.c.id == g.id).values(storage_quota=value, updated_at=now())
        )
    return value


async def admin_group_retention(engine: AsyncEngine, group_name: str, days: int | None) -> int | None:
    """Set (or clear, with None) a group's own retention period, in days; the stored value."""
    async with engine.begin() as conn:
        changed = (
            await conn.execute(
                update(groups)
                .where(groups.c.group_name == group_name)
                .values(retention_days=days, updated_at=now())
                .returning(groups.c.retention_days)
            )
        ).first()
    if changed is None:
        raise errors.not_found(f"Group {group_name}")
    stored: int | None = changed.retention_days
    return stored


async def group_retention(engine: AsyncEngine, group_name: str) -> int | None:
    """A group's own retention period in days (None: the coordinator's default applies)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(groups.c.retention_days).where(groups.c.group_name == group_name))
        ).first()
    if row is None:
        raise errors.not_found(f"Group {group_name}")
    days: int | None = row.retention_days
    return days
