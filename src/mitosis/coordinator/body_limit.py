"""A bound on request bodies: anything larger than ``max_request_body`` is refused with 413.

A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked body is
counted while the application reads it and cut off with the same 413 once it passes the limit.
Blob transfers (``/blobs/...``, the file store's signed upload URLs) are exempt: their size is
settled by the upload reservation, and they stream to disk instead of into memory.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

EXEMPT_PREFIXES = ("/blobs/",)


class BodyTooLarge(Exception):
    pass


def _human(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.0f} {unit}"
        size //= 1024
    return str(size)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _message(self, declared: int | None) -> bytes:
        got = f"of {declared} bytes " if declared is not None else ""
        msg = (
            f"request body {got}exceeds the limit of {_human(self.limit)} (max_request_body); "
            "send smaller batches, or upload large data as an attachment"
        )
        return json.dumps({"msg": msg}).encode()

    async def _refuse(self, send: Send, declared: int | None) -> None:
        body = self._message(declared)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                if declared is not None and declared > self.limit:
                    await self._refuse(send, declared)
                    return
        seen = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # The framework turned the aborted read into its own error: answer the 413 instead.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send, None)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, None)
