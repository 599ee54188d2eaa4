"""The event stream (our addition): ``GET /events``, Server-Sent Events of task and worker changes.

Query parameters (all optional, repeatable ones may be given several times):
``group`` (events of these groups), ``task`` (these task uuids), ``labels`` (events carrying all of
these labels), ``state`` (these states, case-insensitive), ``kind`` (``task`` or ``worker``),
``last_event_id`` (same as the ``Last-Event-ID`` header: replay the events after it). Authorization
and the message format are described in ``services/events.py``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from mitosis.coordinator import errors
from mitosis.coordinator.auth import User, current_user
from mitosis.coordinator.routes import ctx_of
from mitosis.coordinator.services import events

router = APIRouter()

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _last_id(header: str | None, query: int | None) -> int | None:
    if query is not None:
        return query
    if header is None or not header.strip():
        return None
    try:
        return int(header.strip())
    except ValueError:
        raise errors.invalid(f"Last-Event-ID {header!r} is not an event id") from None


@router.get("/events", response_class=StreamingResponse)
async def event_stream(
    request: Request,
    group: list[str] = Query(default=[]),
    task: list[str] = Query(default=[]),
    labels: list[str] = Query(default=[]),
    state: list[str] = Query(default=[]),
    kind: str | None = Query(default=None),
    last_event_id: int | None = Query(default=None, ge=0),
    last_event_id_header: str | None = Header(default=None, alias="Last-Event-ID"),
    user: User = Depends(current_user),
) -> StreamingResponse:
    ctx = ctx_of(request)
    flt = events.make_filter(group, task, labels, state, kind)
    await events.authorize(ctx.engine, user, flt)
    body = await events.open_stream(
        ctx.engine,
        ctx.notifier,
        user,
        flt,
        _last_id(last_event_id_header, last_event_id),
        ctx.settings.event_heartbeat.total_seconds(),
    )
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)
