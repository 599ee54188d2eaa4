"""HTTP routers, one per API area. Thin: parse, authorize, call a service, shape the reply."""

from __future__ import annotations

import uuid

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from mitosis.coordinator import errors
from mitosis.coordinator.context import Context
from mitosis.wire.codecs import parse_uuid
from mitosis.wire.enums import ArtifactContentType


def ctx_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def empty() -> Response:
    """0.6.8 answers many calls with 200 and an empty body."""
    return Response(status_code=200)


def null() -> Response:
    return JSONResponse(None)


def path_uuid(value: str) -> uuid.UUID:
    try:
        return parse_uuid(value)
    except ValueError:
        raise errors.ApiError(400, f"Invalid URL: {value!r} is not a UUID") from None


def path_content_type(value: str) -> ArtifactContentType:
    try:
        return ArtifactContentType(value)
    except ValueError:
        raise errors.ApiError(
            400, f"Invalid URL: unknown artifact content type {value!r}; use result, exec-log or std-log"
        ) from None


def peer_of(request: Request) -> str | None:
    return request.client.host if request.client else None
