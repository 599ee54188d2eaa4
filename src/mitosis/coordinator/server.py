"""The HTTP server of a coordinator process: uvicorn, plus a prompt end to long-polls at shutdown.

uvicorn drains in-flight requests before it stops; a worker's long-poll would hold that drain for
its whole wait. On the first exit signal (or :meth:`request_shutdown`) every waiting long-poll is
answered at once, then uvicorn's normal graceful shutdown runs.
"""

from __future__ import annotations

import asyncio
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from mitosis.config import CoordinatorSettings
from mitosis.coordinator.app import create_app


class CoordinatorServer(uvicorn.Server):
    def __init__(self, settings: CoordinatorSettings, *, log_level: str = "warning") -> None:
        self.app: FastAPI = create_app(settings)
        super().__init__(
            uvicorn.Config(
                self.app,
                host=settings.bind_host,
                port=settings.bind_port,
                log_level=log_level,
                access_log=False,
                timeout_graceful_shutdown=30,
                lifespan="on",
            )
        )
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def _close_waiters(self) -> None:
        ctx = getattr(self.app.state, "ctx", None)
        if ctx is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(ctx.notifier.close_waiters)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._close_waiters()
        super().handle_exit(sig, frame)

    def request_shutdown(self) -> None:
        """Thread-safe graceful stop (used by tests and embedding code)."""
        self._close_waiters()
        self.should_exit = True
