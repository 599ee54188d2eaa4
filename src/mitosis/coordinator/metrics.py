"""Prometheus metrics at ``GET /metrics``: HTTP traffic per route, and tasks and workers by state.

Request counts and latencies are recorded by a small ASGI middleware keyed by the route *template*
(``/tasks/{task_uuid}``), never the raw path, so label cardinality stays bounded. Task and worker
gauges are read from the database when scraped; the endpoint needs no token (it exposes counts,
not content) — put it behind the load balancer's access rules in production.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import func, select
from starlette.types import ASGIApp, Receive, Scope, Send

from mitosis.coordinator.db.engine import read_only
from mitosis.coordinator.db.tables import active_tasks, workers
from mitosis.wire.enums import TaskState, WorkerState


class Metrics:
    """One coordinator app's metrics (a registry per app, so embedded or test apps stay apart)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mitosis_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mitosis_http_request_seconds",
            "Time to answer an HTTP request (long-polls included)",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.active_tasks = Gauge(
            "mitosis_active_tasks", "Tasks not yet archived, by state", ["state"], registry=self.registry
        )
        self.workers = Gauge(
            "mitosis_workers", "Registered workers, by state", ["state"], registry=self.registry
        )


router = APIRouter()


def _route_of(scope: Scope) -> str:
    """The template of the route that answered (Starlette leaves it in the scope after routing)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def record(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            found: Metrics = scope["app"].state.metrics
            route = _route_of(scope)
            method = scope.get("method", "")
            found.requests.labels(method, route, str(status["code"])).inc()
            found.latency.labels(method, route).observe(time.perf_counter() - started)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    engine = request.app.state.ctx.engine
    async with read_only(engine).connect() as conn:
        tasks: dict[int, int] = dict(
            (
                await conn.execute(select(active_tasks.c.state, func.count()).group_by(active_tasks.c.state))
            ).all()
        )
        live: dict[int, int] = dict(
            (await conn.execute(select(workers.c.state, func.count()).group_by(workers.c.state))).all()
        )
    found: Metrics = request.app.state.metrics
    for state in (
        TaskState.Pending,
        TaskState.Ready,
        TaskState.Running,
        TaskState.Finished,
        TaskState.Cancelled,
    ):
        found.active_tasks.labels(state.value).set(tasks.get(state.code, 0))
    for wstate in WorkerState:
        found.workers.labels(wstate.value).set(live.get(wstate.code, 0))
    return Response(generate_latest(found.registry), media_type=CONTENT_TYPE_LATEST)
