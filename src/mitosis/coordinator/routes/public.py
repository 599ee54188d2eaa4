"""Public and session endpoints: health, login, auth, redis (routes 1-6)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse

from mitosis.coordinator.auth import User, current_user
from mitosis.coordinator.routes import ctx_of, peer_of
from mitosis.coordinator.services import accounts
from mitosis.wire import models as m

router = APIRouter()


@router.get("/health", response_model=m.HealthResp)
async def health() -> m.HealthResp:
    return m.HealthResp(status="ok")


@router.post("/login", response_model=m.UserLoginResp)
async def login(req: m.UserLoginReq, request: Request) -> m.UserLoginResp:
    ctx = ctx_of(request)
    token = await accounts.login(
        ctx.engine,
        ctx.tokens,
        ctx.settings.access_token_expires_in,
        req,
        peer_of(request),
        ctx.login_throttle,
    )
    return m.UserLoginResp(token=token)


@router.get("/auth", response_class=PlainTextResponse)
async def auth(user: User = Depends(current_user)) -> Response:
    return PlainTextResponse(user.username)


@router.get("/redis", response_model=m.RedisConnectionInfo)
async def redis_info(request: Request, _: User = Depends(current_user)) -> m.RedisConnectionInfo:
    return m.RedisConnectionInfo(url=ctx_of(request).redis_client_url)


@router.post("/users/{username}/password", response_model=m.UserChangePasswordResp)
async def change_password(
    username: str, req: m.UserChangePasswordReq, request: Request, user: User = Depends(current_user)
) -> m.UserChangePasswordResp:
    ctx = ctx_of(request)
    token = await accounts.change_own_password(
        ctx.engine, ctx.tokens, ctx.settings.access_token_expires_in, user, username, req, peer_of(request)
    )
    return m.UserChangePasswordResp(token=token)


@router.get("/users/groups", response_model=m.GroupsQueryResp)
async def my_groups(request: Request, user: User = Depends(current_user)) -> m.GroupsQueryResp:
    return m.GroupsQueryResp(groups=await accounts.my_groups(ctx_of(request).engine, user))
