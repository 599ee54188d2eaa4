"""Groups and memberships (routes 7-11)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from mitosis.coordinator.auth import User, current_user
from mitosis.coordinator.routes import ctx_of, empty
from mitosis.coordinator.services import accounts
from mitosis.wire import models as m

router = APIRouter()


@router.post("/groups", response_class=Response)
async def create_group(
    req: m.CreateGroupReq, request: Request, user: User = Depends(current_user)
) -> Response:
    await accounts.create_group(ctx_of(request).engine, user, req.group_name)
    return empty()


@router.get("/groups/{group_name}", response_model=m.GroupQueryInfo)
async def get_group(
    group_name: str, request: Request, user: User = Depends(current_user)
) -> m.GroupQueryInfo:
    ctx = ctx_of(request)
    return await accounts.get_group(ctx.engine, user, group_name, ctx.blobs)


@router.put("/groups/{group_name}/users", response_class=Response)
async def update_users(
    group_name: str, req: m.UpdateUserGroupRoleReq, request: Request, user: User = Depends(current_user)
) -> Response:
    await accounts.update_members(ctx_of(request).engine, user, group_name, req.relations)
    return empty()


@router.delete("/groups/{group_name}/users", response_class=Response)
async def remove_users_query(
    group_name: str,
    request: Request,
    users: list[str] = Query(default=[]),
    user: User = Depends(current_user),
) -> Response:
    await accounts.remove_members(ctx_of(request).engine, user, group_name, list(dict.fromkeys(users)))
    return empty()


@router.post("/groups/{group_name}/users/remove", response_class=Response)
async def remove_users_body(
    group_name: str, req: m.RemoveUserGroupRoleReq, request: Request, user: User = Depends(current_user)
) -> Response:
    await accounts.remove_members(ctx_of(request).engine, user, group_name, req.users)
    return empty()
