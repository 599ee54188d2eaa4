"""Errors of the API and how they are rendered: 0.6.8 status codes and ``{"msg": ...}`` bodies."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from mitosis.coordinator.blobs.base import BlobError, InvalidBlobKey

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg


def invalid(reason: str) -> ApiError:
    return ApiError(400, f"Process request error: {reason}")


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def already_exists(name: str) -> ApiError:
    return ApiError(409, f"User or group with same name {name} already exists")


def conflict(msg: str) -> ApiError:
    return ApiError(409, msg)


def invalid_token() -> ApiError:
    return ApiError(401, "Authentication error: Invalid token")


def wrong_credentials() -> ApiError:
    return ApiError(401, "Authentication error: Wrong credentials")


def permission_denied(detail: str | None = None) -> ApiError:
    # 0.6.8 clients match the fixed text; our detail follows it so people learn why.
    base = "Authentication error: Permission denied"
    return ApiError(403, f"{base}: {detail}" if detail else base)


def quota_exceeded(detail: str | None = None) -> ApiError:
    base = "Resource quota exceeded"
    return ApiError(403, f"{base}: {detail}" if detail else base)


def _describe_validation(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "body"
        if err.get("type") == "json_invalid":
            return f"request body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}"
        if err.get("type") == "missing":
            parts.append(f"{where}: field required")
        else:
            parts.append(f"{where}: {err.get('msg')}")
    return "invalid request: " + "; ".join(parts)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"msg": exc.msg}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        bad_json = any(e.get("type") == "json_invalid" for e in errors)
        in_path = any(e.get("loc", ("",))[0] in ("path", "query") for e in errors)
        status = 400 if bad_json or in_path else 422
        return JSONResponse({"msg": _describe_validation(errors)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse({"msg": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(sa_exc.TimeoutError)
    async def _pool_exhausted(_: Request, exc: sa_exc.TimeoutError) -> JSONResponse:
        # Every database connection is busy: the caller should come back, not give up.
        log.warning("database connection pool exhausted: %s", exc)
        return JSONResponse(
            {"msg": "Coordinator busy: no database connection free; retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(sa_exc.DisconnectionError)
    async def _db_down(_: Request, exc: sa_exc.DisconnectionError) -> JSONResponse:
        log.warning("database unreachable: %s", exc)
        return JSONResponse(
            {"msg": "Coordinator cannot reach its database; retry shortly"},
            status_code=503,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(BlobError)
    async def _store_down(_: Request, exc: BlobError) -> JSONResponse:
        # Routes handle the store's answers they expect; what reaches here is the store failing
        # (unreachable, refusing the coordinator's credentials): say so instead of a bare 500.
        if isinstance(exc, InvalidBlobKey):
            return JSONResponse({"msg": str(exc)}, status_code=400)
        log.warning("blob store failure: %s", exc)
        return JSONResponse(
            {"msg": f"Coordinator cannot use its blob store ({exc}); retry shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=exc)
        return JSONResponse({"msg": "Internal server error"}, status_code=500)
