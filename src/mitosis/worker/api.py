"""The worker's HTTP client to the coordinator, and how it classifies failures.

Every call maps its outcome onto a few exceptions the runner acts on (behavior.md §6.12):

* :class:`ForcedExit` — a 401: the coordinator no longer knows this worker (forced shutdown, token
  expiry). The worker kills its task and exits.
* :class:`TransientError` — the coordinator could not be reached or answered 5xx / timed out. 0.6.8
  retried only failed connection attempts and stopped on a timeout; we retry all of these with
  exponential backoff and jitter, capped at ``polling_interval``, so a coordinator restart never
  costs a finished task's result.
* :class:`StatusError` — any other non-2xx status, with the coordinator's ``msg``.

Blob transfers (presigned S3 URLs, or the coordinator's own signed URLs) go through a second client
without the worker's ``Authorization`` header: S3 refuses requests that carry two credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
from pydantic import BaseModel, ValidationError

from mitosis.wire.codecs import format_duration
from mitosis.wire.enums import ArtifactContentType
from mitosis.wire.models import (
    RegisterWorkerReq,
    RegisterWorkerResp,
    RemoteResourceDownloadResp,
    ReportTaskOp,
    ReportTaskReq,
    ReportTaskResp,
    TaskQueryResp,
    UserLoginReq,
    UserLoginResp,
    WorkerBatchReq,
    WorkerBatchResp,
    WorkerSignalsResp,
    WorkerTaskResp,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
UNREGISTER_TIMEOUT = 3.0
_UPLOAD_CHUNK = 1 << 20

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class ApiError(Exception):
    """Base of everything a coordinator call can raise."""


class ForcedExit(ApiError):
    """401 from the coordinator: this worker must stop at once."""


class TransientError(ApiError):
    """Connection failure, timeout or 5xx: worth retrying."""


class StatusError(ApiError):
    """A non-2xx answer that retrying will not change."""

    def __init__(self, status: int, msg: str, *, has_msg: bool = True) -> None:
        super().__init__(f"HTTP {status}: {msg}")
        self.status = status
        self.msg = msg
        self.has_msg = has_msg
        """Whether the body was a coordinator error (``{"msg": ...}``), not an unknown route's."""


class ProtocolError(ApiError):
    """A 2xx answer whose body is not what the contract says."""


def _error_msg(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip() or resp.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("msg"), str):
        return str(body["msg"])
    return resp.text.strip()


def _has_msg(resp: httpx.Response) -> bool:
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "msg" in body


def classify(resp: httpx.Response) -> None:
    """Raise the exception matching a non-2xx response; return for a 2xx one."""
    if resp.is_success:
        return
    if resp.status_code == 401:
        raise ForcedExit(_error_msg(resp))
    if resp.status_code >= 500:
        raise TransientError(f"HTTP {resp.status_code}: {_error_msg(resp)}")
    raise StatusError(resp.status_code, _error_msg(resp), has_msg=_has_msg(resp))


class Backoff:
    """Exponential backoff with jitter, capped at ``cap`` seconds; the sleep ends early on ``stop``."""

    def __init__(self, cap: float, first: float = 0.5) -> None:
        self.cap = max(cap, 0.01)
        self._next = min(first, self.cap)

    def next_delay(self) -> float:
        delay = random.uniform(self._next / 2, self._next)
        self._next = min(self._next * 2, self.cap)
        return delay

    async def sleep(self, stop: asyncio.Event | None = None) -> None:
        delay = self.next_delay()
        if stop is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    cap: float,
    give_up: Callable[[], bool],
    deadline: float | None = None,
) -> T:
    """Run ``call`` until it succeeds, retrying :class:`TransientError` with backoff.

    Stops retrying (re-raising the last error) when ``give_up()`` turns true or the monotonic
    ``deadline`` passes. Everything else propagates at once.
    """
    backoff = Backoff(cap)
    while True:
        try:
            return await call()
        except TransientError as exc:
            if give_up() or (deadline is not None and time.monotonic() >= deadline):
                raise
            log.warning("%s failed (%s); retrying", what, exc)
        await backoff.sleep()


@dataclass(frozen=True)
class LogReply:
    """Answer to a live-log upload: ``status`` 200 (stored up to ``offset``), 409 (resend from
    ``offset``) or 429 (at the cap: resend from ``offset`` after ``retry_after`` seconds)."""

    status: int
    offset: int
    retry_after: float


def _parse(model: type[M], resp: httpx.Response) -> M:
    try:
        return model.model_validate_json(resp.content)
    except ValidationError as exc:
        raise ProtocolError(f"unexpected answer to {resp.request.url.path}: {exc}") from None


class CoordinatorApi:
    """One connection pool to the coordinator; ``token`` is the bearer sent with every call."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        parsed = httpx.URL(base_url)
        # 0.6.8 ignores any path in the coordinator address.
        self.base_url = str(parsed.copy_with(path="/", query=None, fragment=None)).rstrip("/")
        self.token: str | None = None
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=DEFAULT_TIMEOUT, transport=transport)
        self._blobs = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._blobs.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        bearer = token if token is not None else self.token
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        try:
            resp = await self._http.request(
                method,
                path,
                headers=headers,
                timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
                **kwargs,
            )
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise TransientError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        classify(resp)
        return resp

    # --------------------------------------------------------------------------- user session

    async def auth(self, user_token: str) -> str:
        """The username a user token belongs to (``GET /auth``, plain text body)."""
        resp = await self._request("GET", "/auth", token=user_token)
        return resp.text.strip().strip('"')

    async def login(self, username: str, md5_password: list[int]) -> str:
        req = UserLoginReq(username=username, md5_password=md5_password, retain=False)
        resp = await self._request("POST", "/login", token="", json=req.model_dump(mode="json"))
        return _parse(UserLoginResp, resp).token

    async def register(self, user_token: str, req: RegisterWorkerReq) -> RegisterWorkerResp:
        body = req.model_dump(mode="json", exclude_none=True)
        resp = await self._request("POST", "/workers", token=user_token, json=body)
        return _parse(RegisterWorkerResp, resp)

    # -------------------------------------------------------------------------- worker protocol

    async def unregister(self) -> None:
        await self._request("DELETE", "/workers", timeout=UNREGISTER_TIMEOUT)

    async def heartbeat(self) -> None:
        await self._request("POST", "/workers/heartbeat")

    async def fetch_task(self, wait: timedelta | None) -> WorkerTaskResp | None:
        """``GET /workers/tasks``; with ``wait`` the coordinator may hold the request that long."""
        params = {"wait": format_duration(wait)} if wait else None
        timeout = DEFAULT_TIMEOUT + (wait.total_seconds() if wait else 0.0)
        resp = await self._request("GET", "/workers/tasks", params=params, timeout=timeout)
        if resp.content.strip() in (b"", b"null"):
            return None
        return _parse(WorkerTaskResp, resp)

    async def report(self, task_id: int, op: ReportTaskOp) -> ReportTaskResp:
        req = ReportTaskReq(id=task_id, op=op)
        resp = await self._request("POST", "/workers/tasks", json=req.model_dump(mode="json"))
        if resp.content.strip() in (b"", b"null"):
            return ReportTaskResp()
        return _parse(ReportTaskResp, resp)

    async def exchange(self, req: WorkerBatchReq) -> WorkerBatchResp | None:
        """Our addition ``POST /workers/batch``; None when the coordinator does not have it."""
        wait = req.wait.total_seconds() if req.wait is not None else 0.0
        try:
            resp = await self._request(
                "POST",
                "/workers/batch",
                json=req.model_dump(mode="json", exclude_defaults=True),
                timeout=DEFAULT_TIMEOUT + wait,
            )
        except StatusError as exc:
            if exc.status == 405 or (exc.status == 404 and not exc.has_msg):
                return None
            raise
        return _parse(WorkerBatchResp, resp)

    async def signals(self, wait: timedelta, task_id: int | None = None) -> WorkerSignalsResp | None:
        """Our addition ``GET /workers/signals``; None when the coordinator does not have it (404).

        With ``task_id`` the coordinator also lists that task when it is no longer ours (reaped).
        """
        params: dict[str, str | int] = {"wait": format_duration(wait)}
        if task_id is not None:
            params["task"] = task_id
        try:
            resp = await self._request(
                "GET",
                "/workers/signals",
                params=params,
                timeout=DEFAULT_TIMEOUT + wait.total_seconds(),
            )
        except StatusError as exc:
            if exc.status in (404, 405):
                return None
            raise
        return _parse(WorkerSignalsResp, resp)

    async def upload_log(self, task_id: int, stream: str, offset: int, data: bytes) -> LogReply:
        """Our addition ``POST /workers/tasks/{id}/logs``: ``data`` found at ``offset`` of ``stream``.

        200, 409 (gap) and 429 (unread log at its cap) come back as a :class:`LogReply`; 401 raises
        :class:`ForcedExit`, 5xx and failed connections :class:`TransientError`, anything else
        :class:`StatusError` (404: the task is no longer ours, or the coordinator lacks the route).
        """
        path = f"/workers/tasks/{task_id}/logs"
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/octet-stream"}
        try:
            resp = await self._http.post(
                path, params={"stream": stream, "offset": offset}, content=data, headers=headers
            )
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise TransientError(f"POST {path}: {type(exc).__name__}: {exc}") from None
        if resp.status_code in (200, 409, 429):
            try:
                body = resp.json()
                stored = int(body["offset"])
            except (ValueError, KeyError, TypeError):
                raise ProtocolError(f"unexpected answer to POST {path}: {resp.text[:200]}") from None
            retry_after = resp.headers.get("Retry-After", "")
            wait = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 1.0
            return LogReply(resp.status_code, stored, wait)
        if resp.status_code == 405 or (resp.status_code == 404 and not _has_msg(resp)):
            # Our 404 for a task no longer assigned carries {"msg"}; an unknown route does not.
            raise StatusError(405, "the coordinator has no live-log endpoint")
        classify(resp)
        raise ProtocolError(f"unexpected status {resp.status_code} from POST {path}")

    async def task_info(self, uuid: UUID) -> TaskQueryResp:
        resp = await self._request("GET", f"/workers/tasks/{uuid}")
        return _parse(TaskQueryResp, resp)

    async def artifact_url(self, uuid: UUID, content_type: ArtifactContentType) -> RemoteResourceDownloadResp:
        resp = await self._request("GET", f"/workers/tasks/{uuid}/artifacts/{content_type.value}")
        return _parse(RemoteResourceDownloadResp, resp)

    async def attachment_url(self, task_uuid: UUID, key: str) -> RemoteResourceDownloadResp:
        path = f"/workers/tasks/{task_uuid}/attachments/{quote(key, safe='/')}"
        resp = await self._request("GET", path)
        return _parse(RemoteResourceDownloadResp, resp)

    # ---------------------------------------------------------------------------------- blobs

    def blob_url(self, url: str) -> str:
        """Signed URLs are absolute; a relative one is taken against the coordinator address."""
        if url.startswith(("http://", "https://")):
            return url
        return self.base_url + ("" if url.startswith("/") else "/") + url

    async def put_file(self, url: str, path: Path, *, timeout: float) -> None:
        """PUT ``path`` to a signed URL, streamed, with an exact Content-Length."""
        size = path.stat().st_size

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as fh:
                while chunk := await asyncio.to_thread(fh.read, _UPLOAD_CHUNK):
                    yield chunk

        try:
            resp = await self._blobs.put(
                self.blob_url(url),
                content=chunks(),
                headers={"Content-Length": str(size)},
                timeout=timeout,
            )
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise TransientError(f"upload of {path.name}: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 500:
            raise TransientError(f"upload of {path.name}: HTTP {resp.status_code}")
        if not resp.is_success:
            raise StatusError(resp.status_code, _error_msg(resp))

    def stream_blob(self, url: str, *, timeout: httpx.Timeout) -> AbstractAsyncContextManager[httpx.Response]:
        """A streaming GET of a signed URL (``async with api.stream_blob(...) as resp``)."""
        return self._blobs.stream("GET", self.blob_url(url), timeout=timeout)
