"""The coordinator application: app factory and lifespan (database, keys, blobs, events, reaper)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from mitosis import __version__
from mitosis.config import CoordinatorSettings
from mitosis.coordinator import errors, metrics
from mitosis.coordinator.auth import TokenService, ensure_admin_password, load_or_create_keys
from mitosis.coordinator.blobs import BlobStore, FsBlobStore, S3BlobStore
from mitosis.coordinator.body_limit import BodyLimitMiddleware
from mitosis.coordinator.context import Context
from mitosis.coordinator.db.engine import make_engine, run_migrations
from mitosis.coordinator.events.notifier import Notifier
from mitosis.coordinator.events.redis_acl import start_redis
from mitosis.coordinator.routes import (
    admin,
    attachments,
    blobs,
    groups,
    logs,
    public,
    tasks,
    ui,
    worker_protocol,
    workers,
)
from mitosis.coordinator.routes import events as event_routes
from mitosis.coordinator.services import accounts, retention
from mitosis.coordinator.services import events as event_service
from mitosis.coordinator.services.throttle import LoginThrottle
from mitosis.coordinator.services.workers import reap
from mitosis.wire.codecs import md5_digest_list

log = logging.getLogger("mitosis.coordinator")


def _blob_store(settings: CoordinatorSettings, signing_secret: bytes) -> BlobStore:
    if settings.blob_store == "s3":
        return S3BlobStore(
            endpoint_url=settings.s3_url,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            region=settings.s3_region,
            artifacts_bucket=settings.artifacts_bucket,
            attachments_bucket=settings.attachments_bucket,
            force_path_style=settings.s3_force_path_style,
        )
    return FsBlobStore(settings.effective_blob_dir, settings.effective_public_url, signing_secret)


async def _reaper(ctx: Context) -> None:
    interval = ctx.settings.reaper_interval.total_seconds()
    started_at = datetime.now(UTC)
    while True:
        await asyncio.sleep(interval)
        try:
            done = await reap(
                ctx.engine,
                ctx.notifier,
                ctx.settings.heartbeat_timeout,
                ctx.settings.task_timeout_grace,
                started_at,
            )
            if any(done.values()):
                log.info(
                    "reaper: removed %(dead_workers)d silent workers, timed out %(timed_out_tasks)d tasks",
                    done,
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A database hiccup must not stop the backstops for good: log and try next round.
            log.warning("reaper pass failed: %s", exc)


async def _retention(ctx: Context) -> None:
    """Retention passes (services/retention.py); one coordinator at a time does the work."""
    interval = ctx.settings.retention_interval.total_seconds()
    while True:
        await asyncio.sleep(interval)
        try:
            done = await retention.purge(ctx.engine, ctx.blobs, ctx.settings.retention_days)
            if done["tasks"]:
                log.info("retention: deleted %(tasks)d archived tasks and %(artifacts)d artifacts", done)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("retention pass failed: %s", exc)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: CoordinatorSettings = app.state.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    private, public_key = load_or_create_keys(settings.private_key_path, settings.public_key_path)
    raw_private = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    # Blob URLs are signed with a key derived from the token key, so every replica agrees on it.
    blob_secret = hashlib.sha256(b"mitosis-blob-url:" + raw_private).digest()
    engine = make_engine(settings.effective_db_url, pool_size=settings.db_pool_size)
    await run_migrations(engine)
    password, generated = ensure_admin_password(settings.admin_password, settings.key_dir)
    if await accounts.bootstrap_admin(engine, settings.admin_user, bytes(md5_digest_list(password))):
        if generated:
            log.warning(
                "created admin user %r with a generated password (stored in %s): %s",
                settings.admin_user,
                settings.key_dir / "admin-password",
                password,
            )
        else:
            log.info("created admin user %r", settings.admin_user)
    store = _blob_store(settings, blob_secret)
    await store.start()
    notifier = Notifier()
    if engine.dialect.name == "postgresql":
        notifier.start_pg_listener(
            engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
    event_service.install_commit_wake(engine, notifier)
    redis = await start_redis(
        settings.redis_url,
        settings.data_dir,
        settings.redis_worker_password,
        settings.redis_client_password,
        settings.redis_skip_acl_rules,
    )
    secret = secrets.token_urlsafe(16)
    log.warning("Set random shutdown secret: %s", secret)
    ctx = Context(
        settings=settings,
        engine=engine,
        tokens=TokenService(private, public_key),
        blobs=store,
        notifier=notifier,
        shutdown_secret=secret,
        login_throttle=LoginThrottle(
            settings.login_failures_per_user,
            settings.login_failures_per_address,
            settings.login_window,
            settings.login_lockout,
        ),
    )
    if redis is not None:
        ctx.redis_worker_url, ctx.redis_client_url = redis.worker_url, redis.client_url
    app.state.ctx = ctx
    reaper = asyncio.create_task(_reaper(ctx), name="reaper")
    pruner = asyncio.create_task(
        event_service.prune_forever(engine, settings.event_retention), name="event-pruner"
    )
    retainer = asyncio.create_task(_retention(ctx), name="retention")
    log.info("coordinator ready on %s (database: %s)", settings.effective_public_url, engine.dialect.name)
    try:
        yield
    finally:
        reaper.cancel()
        pruner.cancel()
        retainer.cancel()
        for loop_task in (reaper, pruner, retainer):
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
        if redis is not None:
            await redis.close()
        await notifier.close()
        await store.close()
        await engine.dispose()


def create_app(settings: CoordinatorSettings) -> FastAPI:
    app = FastAPI(
        title="Mitosis coordinator",
        version=__version__,
        description="Wire-compatible with the Mitosis 0.6.8 HTTP API, plus long-poll fetch and worker signals.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics.Metrics()
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_body)
    app.add_middleware(metrics.MetricsMiddleware)
    errors.install_handlers(app)
    # Worker-protocol paths first: `/workers/tasks` must never be read as `/workers/{uuid}`. Then
    # the tasks, the busiest area for users: a request is matched against the routes in this order,
    # and each route tried costs a few microseconds (~0.17 ms for `POST /tasks` behind 45 others).
    # No other router has a path a tasks route would shadow.
    for module in (
        worker_protocol,
        tasks,
        public,
        logs,
        event_routes,
        workers,
        attachments,
        groups,
        admin,
        blobs,
        metrics,
    ):
        app.include_router(module.router)
    ui.install(app)
    return app
