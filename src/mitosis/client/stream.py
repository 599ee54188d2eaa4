"""Live views of the coordinator for the SDK: the event stream and task logs, sync and async.

* :class:`EventStream` / :class:`AsyncEventStream` read ``GET /events`` (Server-Sent Events). They
  reconnect by themselves when the connection drops or the coordinator restarts, sending
  ``Last-Event-ID`` so no event of the kept window is lost, and hand ``reset`` messages (the id fell
  out of the window) to the caller, who re-queries. Opening the stream (``with`` / ``async with``,
  or the first iteration) raises the SDK's typed errors; :class:`EventsUnavailable` means the
  coordinator has no event stream (a 0.6.8 coordinator).
* :class:`LogStream` / :class:`AsyncLogStream` read ``GET /tasks/{uuid}/logs`` and yield
  :class:`LogChunk` ``(stream, bytes)`` pairs; ``follow`` tails until the task is committed. A task
  that has ended is read from its ``std-log`` artifact (the coordinator answers 409) from the same
  offsets, so a follower interrupted at the very end still gets exactly the rest. When iteration
  ends, :attr:`LogStream.end` holds the task's final state and result.
* :func:`wait_for_task` / :func:`async_wait_for_task`: subscribe to the task's events, check its
  state once (an event may precede the subscription), then wait for its commit; they poll only
  when the coordinator has no event stream.

The SSE parser (:class:`SseParser`) and the reconnect and offset bookkeeping are sans-IO, shared by
both faces.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Self
from uuid import UUID

import httpx

from mitosis.client import core
from mitosis.client.errors import ConnectionFailed, MitoError, NotFoundError, ServerError, WaitTimeout
from mitosis.client.output import exit_code_of
from mitosis.wire import models as m
from mitosis.wire.enums import ArtifactContentType, TaskState

if TYPE_CHECKING:
    from mitosis.client.sdk import AsyncMitoClient, MitoClient

READ_TIMEOUT = 45.0
"""Longest silence on a stream before it counts as dead (the coordinator sends keep-alives every 15 s)."""
MAX_RECONNECT_DELAY = 10.0
LOG_RECONNECTS = 30
"""Consecutive failed attempts after which a log read gives up."""
ARTIFACT_CHUNK = 1 << 16
FINAL = (TaskState.Finished.value, TaskState.Cancelled.value)
EXIT_ERROR = 1

Notice = Callable[[str], None]


class EventsUnavailable(NotFoundError):
    """The coordinator has no ``GET /events`` (e.g. a 0.6.8 coordinator)."""


# ------------------------------------------------------------------------------------ SSE parsing


@dataclass(frozen=True)
class SseMessage:
    """One dispatched Server-Sent Events message."""

    id: str | None
    event: str
    data: str


class SseParser:
    """The SSE line protocol (WHATWG): feed lines without their line ending, get messages."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.retry: int | None = None
        self._data: list[str] = []
        self._event = ""

    def feed(self, line: str) -> SseMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SseMessage | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SseMessage(self.last_id, event or "message", "\n".join(data))


@dataclass(frozen=True)
class Event:
    """A task or worker state change (``type`` ``task``/``worker``), or ``reset``: events were lost
    (the ``Last-Event-ID`` is outside the coordinator's window), re-query what you show."""

    id: int | None
    type: str
    data: dict[str, Any]

    @property
    def uuid(self) -> str | None:
        value = self.data.get("uuid")
        return None if value is None else str(value)

    @property
    def state(self) -> str | None:
        value = self.data.get("state")
        return None if value is None else str(value)

    @property
    def detail(self) -> dict[str, Any]:
        value = self.data.get("data")
        return value if isinstance(value, dict) else {}

    @property
    def committed(self) -> bool:
        """The task's result is recorded (a worker's commit, or a cancel before it ran)."""
        return self.state in FINAL and bool(self.detail.get("committed") or self.detail.get("msg"))


def decode_event(msg: SseMessage) -> Event:
    try:
        data = json.loads(msg.data)
    except ValueError:
        data = {"raw": msg.data}
    event_id = int(msg.id) if msg.id is not None and msg.id.isdigit() else None
    return Event(event_id, msg.event, data if isinstance(data, dict) else {"value": data})


def _many(value: str | UUID | Iterable[str | UUID] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | UUID):
        return [str(value)]
    return [str(v) for v in value]


def event_params(
    *,
    group: str | Iterable[str] | None = None,
    task: str | UUID | Iterable[str | UUID] | None = None,
    labels: str | Iterable[str] | None = None,
    state: str | Iterable[str] | None = None,
    kind: str | None = None,
) -> list[tuple[str, str]]:
    """The query of ``GET /events`` (repeated keys, as the coordinator expects)."""
    params = [("group", g) for g in _many(group)]
    params += [("task", t) for t in _many(task)]
    params += [("labels", label) for label in _many(labels)]
    params += [("state", s) for s in _many(state)]
    if kind is not None:
        params.append(("kind", kind))
    return params


class _Reconnect:
    """Where to resume and how long to wait before the next attempt (sans-IO)."""

    def __init__(self, last_event_id: int | None, timeout: float | None) -> None:
        self.last_event_id = last_event_id
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.retry = 1.0
        self.failures = 0
        self.connected = False
        self.parser = SseParser()

    def headers(self, token: str | None) -> dict[str, str]:
        out = {"Accept": "text/event-stream"}
        if token:
            out["Authorization"] = f"Bearer {token}"
        if self.last_event_id is not None:
            out["Last-Event-ID"] = str(self.last_event_id)
        return out

    def read_timeout(self) -> float:
        if self.deadline is None:
            return READ_TIMEOUT
        return max(min(READ_TIMEOUT, self.deadline - time.monotonic()), 0.01)

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise WaitTimeout("no matching event before the timeout")

    def opened(self) -> None:
        self.connected = True
        self.failures = 0
        self.parser = SseParser()

    def line(self, line: str) -> Event | None:
        msg = self.parser.feed(line)
        if self.parser.retry is not None:
            self.retry = self.parser.retry / 1000
        if msg is None:
            return None
        ev = decode_event(msg)
        if ev.type == "reset":
            # The stream restarted at the coordinator's newest event: continue from there.
            self.last_event_id = ev.id
        elif ev.id is not None:
            self.last_event_id = ev.id
        return ev

    def delay(self) -> float:
        """Seconds to wait before reconnecting; raises :class:`WaitTimeout` past the deadline."""
        self.check_deadline()
        self.failures += 1
        wait = min(self.retry * 2.0 ** (self.failures - 1), MAX_RECONNECT_DELAY)
        if self.deadline is not None:
            wait = min(wait, max(self.deadline - time.monotonic(), 0.0))
        return wait


def _reply_error(resp: httpx.Response, content: bytes, username: str | None) -> MitoError:
    return core.decode_error(
        resp.status_code,
        content,
        content_type=resp.headers.get("content-type"),
        url=str(resp.url.copy_with(query=None)),
        with_token="authorization" in resp.request.headers,
        username=username,
    )


def _open_error(base: str, resp: httpx.Response, content: bytes, username: str | None) -> MitoError:
    status = resp.status_code
    if status in (404, 405):
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        if not (isinstance(body, dict) and "msg" in body):
            return EventsUnavailable(f"the coordinator at {base} has no event stream (GET /events)", status)
    return _reply_error(resp, content, username)


def _transport_failed(base: str, exc: httpx.TransportError) -> ConnectionFailed:
    return ConnectionFailed(f"Fail to connect to {base}: {type(exc).__name__}: {exc}")


class EventStream:
    """``GET /events`` as a blocking iterator of :class:`Event`, reconnecting by itself.

    ``with client.events(task=uuid) as events: ...`` opens the stream first (then look at the
    current state, then iterate); ``timeout`` bounds the whole iteration (:class:`WaitTimeout`).
    """

    def __init__(
        self,
        client: MitoClient,
        params: Sequence[tuple[str, str]],
        last_event_id: int | None = None,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = client
        self._params = list(params)
        self._state = _Reconnect(last_event_id, timeout)
        self._http = httpx.Client(base_url=client.base_url, transport=transport)
        self._resp: httpx.Response | None = None

    @property
    def last_event_id(self) -> int | None:
        return self._state.last_event_id

    def open(self) -> None:
        """Connect (if not connected); raises the typed error of a refused stream."""
        if self._resp is not None:
            return
        st = self._state
        request = self._http.build_request(
            "GET",
            "/events",
            params=httpx.QueryParams(tuple(self._params)),
            headers=st.headers(self._client.token),
            timeout=httpx.Timeout(10.0, read=st.read_timeout()),
        )
        try:
            resp = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _transport_failed(self._client.base_url, exc) from exc
        if resp.status_code != 200:
            content = resp.read()
            resp.close()
            raise _open_error(self._client.base_url, resp, content, self._client.username)
        self._resp = resp
        st.opened()

    def __iter__(self) -> Iterator[Event]:
        st = self._state
        while True:
            try:
                self.open()
                assert self._resp is not None
                for line in self._resp.iter_lines():
                    ev = st.line(line)
                    if ev is not None:
                        yield ev
                    st.check_deadline()
            except (httpx.TransportError, ConnectionFailed, ServerError) as exc:
                if not st.connected:
                    raise exc if isinstance(exc, MitoError) else _transport_failed(self._client.base_url, exc)
            self._drop()
            time.sleep(st.delay())

    def _drop(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def close(self) -> None:
        self._drop()
        self._http.close()

    def __enter__(self) -> Self:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncEventStream:
    """The asyncio face of :class:`EventStream` (``async with`` / ``async for``)."""

    def __init__(
        self,
        client: AsyncMitoClient,
        params: Sequence[tuple[str, str]],
        last_event_id: int | None = None,
        timeout: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = client
        self._params = list(params)
        self._state = _Reconnect(last_event_id, timeout)
        self._http = httpx.AsyncClient(base_url=client.base_url, transport=transport)
        self._resp: httpx.Response | None = None

    @property
    def last_event_id(self) -> int | None:
        return self._state.last_event_id

    async def open(self) -> None:
        if self._resp is not None:
            return
        st = self._state
        request = self._http.build_request(
            "GET",
            "/events",
            params=httpx.QueryParams(tuple(self._params)),
            headers=st.headers(self._client.token),
            timeout=httpx.Timeout(10.0, read=st.read_timeout()),
        )
        try:
            resp = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _transport_failed(self._client.base_url, exc) from exc
        if resp.status_code != 200:
            content = await resp.aread()
            await resp.aclose()
            raise _open_error(self._client.base_url, resp, content, self._client.username)
        self._resp = resp
        st.opened()

    async def __aiter__(self) -> AsyncIterator[Event]:
        st = self._state
        while True:
            try:
                await self.open()
                assert self._resp is not None
                async for line in self._resp.aiter_lines():
                    ev = st.line(line)
                    if ev is not None:
                        yield ev
                    st.check_deadline()
            except (httpx.TransportError, ConnectionFailed, ServerError) as exc:
                if not st.connected:
                    raise exc if isinstance(exc, MitoError) else _transport_failed(self._client.base_url, exc)
            await self._drop()
            await asyncio.sleep(st.delay())

    async def _drop(self) -> None:
        if self._resp is not None:
            await self._resp.aclose()
            self._resp = None

    async def aclose(self) -> None:
        await self._drop()
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        try:
            await self.open()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


# ------------------------------------------------------------------------------------ task logs


class LogChunk(NamedTuple):
    stream: str
    data: bytes


def task_exit_code(state: str | None, result: Any) -> int:
    """The exit code a command reports for a task: its own (128 + N for signal N), 1 if cancelled."""
    if state == TaskState.Cancelled.value or not isinstance(result, dict):
        return EXIT_ERROR
    status = result.get("exit_status")
    return exit_code_of(status) if isinstance(status, int) else EXIT_ERROR


@dataclass(frozen=True)
class LogEnd:
    """How a log read ended: the task's state and result (None while it has not been committed)."""

    state: str | None
    result: dict[str, Any] | None

    @property
    def exit_code(self) -> int:
        return task_exit_code(self.state, self.result)


@dataclass
class _LogCursor:
    """Offsets already delivered per stream, and the decoding of NDJSON frames (sans-IO)."""

    streams: tuple[str, ...]
    offset: int
    on_notice: Notice | None
    next: dict[str, int] = field(default_factory=dict)
    end: LogEnd | None = None
    failures: int = 0

    def __post_init__(self) -> None:
        self.next = dict.fromkeys(self.streams, self.offset)

    def params(self, follow: bool) -> list[tuple[str, str]]:
        which = self.streams[0] if len(self.streams) == 1 else "both"
        start = min(self.next.values())
        return [("stream", which), ("offset", str(start)), ("follow", "true" if follow else "false")]

    def notice(self, text: str) -> None:
        if self.on_notice is not None:
            self.on_notice(text)

    def frame(self, line: str) -> LogChunk | None:
        if not line.strip():
            return None
        obj = json.loads(line)
        if obj.get("end"):
            self.end = LogEnd(obj.get("state"), obj.get("result"))
            return None
        if obj.get("restart"):
            self.next = dict.fromkeys(self.streams, 0)
            self.notice(f"the task was restarted on worker {obj.get('worker')}; its output starts again")
            return None
        stream, offset = str(obj["stream"]), int(obj["offset"])
        if stream not in self.next:
            return None
        if "skipped" in obj:
            skipped = int(obj["skipped"])
            self.next[stream] = max(self.next[stream], offset + skipped)
            self.notice(f"{skipped} bytes of {stream} are no longer kept live and were skipped")
            return None
        data = base64.b64decode(obj["data"])
        already = self.next[stream] - offset
        self.next[stream] = max(self.next[stream], offset + len(data))
        if already >= len(data):
            return None
        return LogChunk(stream, data[max(already, 0) :])

    def ended_from_artifact(self, body: dict[str, Any]) -> None:
        result = body.get("result")
        self.end = LogEnd(body.get("state"), result if isinstance(result, dict) else None)

    def artifact_chunks(self, archive: Path) -> Iterator[LogChunk]:
        """The rest of each stream (past the delivered offsets) from a std-log archive."""
        with tarfile.open(archive, "r:gz") as tar:
            for stream in self.streams:
                try:
                    fh = tar.extractfile(f"std-log/{stream}.log")
                except KeyError:
                    continue
                if fh is None:
                    continue
                with fh:
                    yield from self._read_from(stream, fh)

    def _read_from(self, stream: str, fh: IO[bytes]) -> Iterator[LogChunk]:
        fh.seek(self.next[stream])
        while chunk := fh.read(ARTIFACT_CHUNK):
            self.next[stream] += len(chunk)
            yield LogChunk(stream, chunk)

    def retry_delay(self, exc: Exception) -> float:
        self.failures += 1
        if self.failures > LOG_RECONNECTS:
            raise exc
        return float(min(0.2 * 2 ** (self.failures - 1), MAX_RECONNECT_DELAY))


def _streams(stream: str) -> tuple[str, ...]:
    if stream == "both":
        return ("stdout", "stderr")
    if stream in ("stdout", "stderr"):
        return (stream,)
    raise ValueError(f"stream must be stdout, stderr or both, not {stream!r}")


def _log_timeout(follow: bool) -> httpx.Timeout:
    return httpx.Timeout(30.0, connect=10.0, read=READ_TIMEOUT if follow else 60.0)


def _handover(status: int, content: bytes) -> dict[str, Any] | None:
    """The 409 body that hands a finished task's log over to its std-log artifact, if it is one."""
    if status != 409:
        return None
    try:
        body = json.loads(content)
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("artifact") == "std-log" else None


class LogStream:
    """``GET /tasks/{uuid}/logs`` as a blocking iterator of :class:`LogChunk`; see the module doc."""

    def __init__(
        self,
        client: MitoClient,
        uuid: UUID | str,
        *,
        stream: str = "both",
        follow: bool = False,
        offset: int = 0,
        on_notice: Notice | None = None,
    ) -> None:
        self._client = client
        self.uuid = core.as_uuid(uuid)
        self.follow = follow
        self._cursor = _LogCursor(_streams(stream), offset, on_notice)

    @property
    def end(self) -> LogEnd | None:
        return self._cursor.end

    @property
    def offsets(self) -> dict[str, int]:
        return dict(self._cursor.next)

    def __iter__(self) -> Iterator[LogChunk]:
        cur = self._cursor
        path = f"/tasks/{self.uuid}/logs"
        with httpx.Client(base_url=self._client.base_url, timeout=_log_timeout(self.follow)) as http:
            while True:
                headers = {"Authorization": f"Bearer {self._client.token}"} if self._client.token else {}
                try:
                    with http.stream(
                        "GET", path, params=httpx.QueryParams(tuple(cur.params(self.follow))), headers=headers
                    ) as r:
                        if r.status_code != 200:
                            content = r.read()
                            body = _handover(r.status_code, content)
                            if body is None:
                                raise _reply_error(r, content, self._client.username)
                            cur.ended_from_artifact(body)
                            yield from self._from_artifact()
                            return
                        for line in r.iter_lines():
                            chunk = cur.frame(line)
                            cur.failures = 0
                            if chunk is not None:
                                yield chunk
                        if cur.end is not None:
                            return
                except (httpx.TransportError, ServerError) as exc:
                    failure: Exception = exc
                else:
                    failure = ConnectionFailed("the log stream ended early")
                # Dropped (coordinator restart, network): resume from the delivered offsets.
                time.sleep(cur.retry_delay(failure))

    def _from_artifact(self) -> Iterator[LogChunk]:
        url = self._client.artifact_download_url(self.uuid, ArtifactContentType.std_log).url
        with tempfile.TemporaryDirectory(prefix="mito-log-") as tmp:
            archive = self._client.download_to(url, Path(tmp) / "std-log.tar.gz")
            yield from self._cursor.artifact_chunks(archive)


class AsyncLogStream:
    """The asyncio face of :class:`LogStream` (``async for stream, data in client.logs(...)``)."""

    def __init__(
        self,
        client: AsyncMitoClient,
        uuid: UUID | str,
        *,
        stream: str = "both",
        follow: bool = False,
        offset: int = 0,
        on_notice: Notice | None = None,
    ) -> None:
        self._client = client
        self.uuid = core.as_uuid(uuid)
        self.follow = follow
        self._cursor = _LogCursor(_streams(stream), offset, on_notice)

    @property
    def end(self) -> LogEnd | None:
        return self._cursor.end

    @property
    def offsets(self) -> dict[str, int]:
        return dict(self._cursor.next)

    async def __aiter__(self) -> AsyncIterator[LogChunk]:
        cur = self._cursor
        path = f"/tasks/{self.uuid}/logs"
        async with httpx.AsyncClient(
            base_url=self._client.base_url, timeout=_log_timeout(self.follow)
        ) as http:
            while True:
                headers = {"Authorization": f"Bearer {self._client.token}"} if self._client.token else {}
                try:
                    async with http.stream(
                        "GET", path, params=httpx.QueryParams(tuple(cur.params(self.follow))), headers=headers
                    ) as r:
                        if r.status_code != 200:
                            content = await r.aread()
                            body = _handover(r.status_code, content)
                            if body is None:
                                raise _reply_error(r, content, self._client.username)
                            cur.ended_from_artifact(body)
                            async for chunk in self._from_artifact():
                                yield chunk
                            return
                        async for line in r.aiter_lines():
                            got = cur.frame(line)
                            cur.failures = 0
                            if got is not None:
                                yield got
                        if cur.end is not None:
                            return
                except (httpx.TransportError, ServerError) as exc:
                    failure: Exception = exc
                else:
                    failure = ConnectionFailed("the log stream ended early")
                await asyncio.sleep(cur.retry_delay(failure))

    async def _from_artifact(self) -> AsyncIterator[LogChunk]:
        url = (await self._client.artifact_download_url(self.uuid, ArtifactContentType.std_log)).url
        with tempfile.TemporaryDirectory(prefix="mito-log-") as tmp:
            archive = await self._client.download_to(url, Path(tmp) / "std-log.tar.gz")
            chunks = self._cursor.artifact_chunks(archive)
            while (piece := await asyncio.to_thread(next, chunks, None)) is not None:
                yield piece


# ------------------------------------------------------------------------------------- waiting


def committed(resp: m.TaskQueryResp) -> bool:
    """Whether the task is over for good: in a final state with its result recorded."""
    return resp.info.state.value in FINAL and resp.info.result is not None


def pending_state(resp: m.TaskQueryResp) -> str:
    """What an uncommitted task is doing, for a timeout message: its state, or that its worker has
    not reported the result of a process that has ended."""
    state = resp.info.state.value
    return f"{state}, result not yet reported" if state in FINAL else f"still {state}"


def wait_for_task(
    client: MitoClient, uuid: UUID | str, timeout: float | None = None, poll: float = 1.0
) -> m.TaskQueryResp:
    """Wait until the task is committed, woken by its events (polling ``GET /tasks/{uuid}`` every
    ``poll`` seconds only when the coordinator has no event stream)."""
    task = core.as_uuid(uuid)
    started = time.monotonic()
    try:
        with EventStream(client, event_params(task=task), timeout=timeout) as events:
            resp = client.get_task(task)
            if committed(resp):
                return resp
            for ev in events:
                if ev.type == "reset" or ev.state in FINAL:
                    resp = client.get_task(task)
                    if committed(resp):
                        return resp
    except EventsUnavailable:
        left = None if timeout is None else max(timeout - (time.monotonic() - started), 0.0)
        return client.wait_task(task, left, poll)
    except WaitTimeout:
        raise WaitTimeout(f"task {task} has not ended after {timeout:g} s") from None
    raise AssertionError("the event stream never ends")  # pragma: no cover


async def async_wait_for_task(
    client: AsyncMitoClient, uuid: UUID | str, timeout: float | None = None, poll: float = 1.0
) -> m.TaskQueryResp:
    """See :func:`wait_for_task`."""
    task = core.as_uuid(uuid)
    started = time.monotonic()
    try:
        async with AsyncEventStream(client, event_params(task=task), timeout=timeout) as events:
            resp = await client.get_task(task)
            if committed(resp):
                return resp
            async for ev in events:
                if ev.type == "reset" or ev.state in FINAL:
                    resp = await client.get_task(task)
                    if committed(resp):
                        return resp
    except EventsUnavailable:
        left = None if timeout is None else max(timeout - (time.monotonic() - started), 0.0)
        return await client.wait_task(task, left, poll)
    except WaitTimeout:
        raise WaitTimeout(f"task {task} has not ended after {timeout:g} s") from None
    raise AssertionError("the event stream never ends")  # pragma: no cover
