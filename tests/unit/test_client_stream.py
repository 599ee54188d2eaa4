"""The SDK's SSE parser, event-stream reconnects (Last-Event-ID, reset, retry) and live-log offsets.

Reconnects are driven by an ``httpx.MockTransport`` whose responses end mid-stream: a dropped
connection is the one fault a unit test cannot cause for real.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from mitosis.client.errors import ForbiddenError, NotFoundError, WaitTimeout
from mitosis.client.sdk import MitoClient
from mitosis.client.stream import (
    EventStream,
    EventsUnavailable,
    LogChunk,
    SseMessage,
    SseParser,
    _LogCursor,
    _Reconnect,
    decode_event,
    event_params,
    task_exit_code,
)


def parse(lines: list[str]) -> tuple[list[SseMessage], SseParser]:
    p = SseParser()
    out = [msg for line in lines if (msg := p.feed(line)) is not None]
    return out, p


def test_parser_messages_comments_and_fields() -> None:
    msgs, p = parse(
        [
            "retry: 1000",
            ": connected",
            "",
            "id: 7",
            "event: task",
            'data: {"a":',
            "data:1}",
            "",
            ": keep-alive",
            "",
            "data",
            "",
        ]
    )
    assert msgs == [SseMessage("7", "task", '{"a":\n1}'), SseMessage("7", "message", "")]
    assert p.retry == 1000 and p.last_id == "7"


def test_parser_id_without_data_moves_the_cursor_only() -> None:
    msgs, p = parse(["id: 3", "", "id: 4", "event: task", "data: x", "", "event: worker", ""])
    assert [m.id for m in msgs] == ["4"] and msgs[0].event == "task"
    assert p.last_id == "4"
    # An event type without data is dropped, and does not leak into the next message.
    msgs2 = [m for line in ["data: y", ""] if (m := p.feed(line))]
    assert msgs2[0].event == "message"


def test_decoded_event_properties() -> None:
    data = {"uuid": "u", "state": "Finished", "data": {"committed": True, "result": {"exit_status": 0}}}
    ev = decode_event(SseMessage("12", "task", json.dumps(data)))
    assert ev.id == 12 and ev.uuid == "u" and ev.state == "Finished" and ev.committed
    assert not decode_event(SseMessage("13", "task", json.dumps({**data, "data": None}))).committed
    cancelled = {"state": "Cancelled", "data": {"msg": "UserCancellation"}}
    assert decode_event(SseMessage(None, "task", json.dumps(cancelled))).committed


def test_event_params_repeat_keys() -> None:
    assert event_params(group="g", task=["a", "b"], labels=["x", "y"], state="Running", kind="task") == [
        ("group", "g"),
        ("task", "a"),
        ("task", "b"),
        ("labels", "x"),
        ("labels", "y"),
        ("state", "Running"),
        ("kind", "task"),
    ]


def test_reconnect_bookkeeping() -> None:
    r = _Reconnect(None, None)
    assert "Last-Event-ID" not in r.headers("tok")
    for line in ["retry: 50", "id: 5", "event: task", "data: {}", ""]:
        r.line(line)
    assert r.headers("tok")["Last-Event-ID"] == "5" and r.retry == 0.05
    assert [r.delay(), r.delay(), r.delay()] == [0.05, 0.1, 0.2]
    r.opened()
    assert r.delay() == 0.05
    got = [r.line(line) for line in ["id: 99", "event: reset", 'data: {"last_event_id": 5}', ""]]
    assert got[-1] is not None and got[-1].type == "reset" and r.last_event_id == 99
    late = _Reconnect(None, 0.0)
    with pytest.raises(WaitTimeout):
        late.delay()


def _sse(*messages: tuple[int, str, dict[str, object]], retry: int = 10) -> bytes:
    body = f"retry: {retry}\n: connected\n\n"
    for i, kind, data in messages:
        body += f"id: {i}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"
    return body.encode()


class Server:
    """Answers each GET /events with the next canned response; records the request headers."""

    def __init__(self, responses: list[httpx.Response]) -> None:
        self.responses = responses
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if not self.responses:
            return httpx.Response(200, content=_sse())
        return self.responses.pop(0)


def stream(server: Server, timeout: float | None = 5.0, last: int | None = None) -> EventStream:
    client = MitoClient("http://coord.test", token="tok")
    return EventStream(
        client, event_params(task="t1"), last, timeout=timeout, transport=httpx.MockTransport(server)
    )


def take(events: Iterator[object], n: int) -> list[object]:
    return [next(events) for _ in range(n)]


def test_reconnects_with_last_event_id_without_loss() -> None:
    server = Server(
        [
            httpx.Response(
                200, content=_sse((1, "task", {"state": "Ready"}), (2, "task", {"state": "Running"}))
            ),
            httpx.Response(503, json={"msg": "restarting"}),
            httpx.Response(200, content=_sse((3, "task", {"state": "Finished"}))),
        ]
    )
    with stream(server) as events:
        got = take(iter(events), 3)
    assert [e.id for e in got] == [1, 2, 3]  # type: ignore[attr-defined]
    assert [r.headers.get("Last-Event-ID") for r in server.seen] == [None, "2", "2"]
    assert all(r.headers["Authorization"] == "Bearer tok" for r in server.seen)
    assert server.seen[0].url.params.get_list("task") == ["t1"]


def test_reset_is_handed_to_the_caller_and_moves_the_cursor() -> None:
    reset = (40, "reset", {"last_event_id": 2, "reason": "pruned"})
    server = Server([httpx.Response(200, content=_sse(reset, (41, "task", {"state": "Ready"})))])
    with stream(server, last=2) as events:
        got = take(iter(events), 2)
        assert events.last_event_id == 41
    assert [(e.type, e.id) for e in got] == [("reset", 40), ("task", 41)]  # type: ignore[attr-defined]
    assert server.seen[0].headers["Last-Event-ID"] == "2"


def test_refusals_are_typed() -> None:
    for response, error in (
        (httpx.Response(404, json={"detail": "Not Found"}), EventsUnavailable),
        (httpx.Response(404, text=""), EventsUnavailable),
        (httpx.Response(403, json={"msg": "you cannot read group g"}), ForbiddenError),
    ):
        with pytest.raises(error), stream(Server([response])):
            pass
    with pytest.raises(NotFoundError) as info, stream(Server([httpx.Response(404, json={"msg": "no task"})])):
        pass
    assert not isinstance(info.value, EventsUnavailable)


def test_timeout_bounds_the_iteration() -> None:
    server = Server([])  # every connection: retry 10 ms, then the stream ends
    started = time.monotonic()
    with pytest.raises(WaitTimeout), stream(server, timeout=0.3) as events:
        for _ in events:
            pass
    assert time.monotonic() - started < 3


def frame(stream: str, offset: int, data: bytes) -> str:
    return json.dumps({"stream": stream, "offset": offset, "data": base64.b64encode(data).decode()})


def test_log_cursor_trims_resent_bytes_and_follows_restarts() -> None:
    notices: list[str] = []
    cur = _LogCursor(("stdout", "stderr"), 0, notices.append)
    assert cur.frame(frame("stdout", 0, b"hello ")) == LogChunk("stdout", b"hello ")
    assert cur.frame(frame("stderr", 0, b"e")) == LogChunk("stderr", b"e")
    # Reconnected at the lower of the two offsets: stdout bytes already delivered are dropped.
    assert cur.params(True) == [("stream", "both"), ("offset", "1"), ("follow", "true")]
    assert cur.frame(frame("stdout", 1, b"ello world")) == LogChunk("stdout", b"world")
    assert cur.frame(frame("stdout", 3, b"lo")) is None
    assert cur.frame("") is None
    assert cur.frame(json.dumps({"stream": "stdout", "offset": 11, "skipped": 5})) is None
    assert cur.next["stdout"] == 16 and "skipped" in notices[-1]
    assert cur.frame(json.dumps({"restart": True, "worker": "w2"})) is None
    assert cur.next == {"stdout": 0, "stderr": 0} and "restarted" in notices[-1]
    assert cur.frame(frame("stdout", 0, b"again")) == LogChunk("stdout", b"again")
    cur.frame(json.dumps({"end": True, "state": "Finished", "result": {"exit_status": 768, "msg": None}}))
    assert cur.end is not None and cur.end.exit_code == 3


def test_task_exit_codes() -> None:
    assert task_exit_code("Finished", {"exit_status": 0}) == 0
    assert task_exit_code("Finished", {"exit_status": 3 << 8}) == 3
    assert task_exit_code("Finished", {"exit_status": 9}) == 137
    assert task_exit_code("Cancelled", {"exit_status": 0, "msg": "UserCancellation"}) == 1
    assert task_exit_code("Finished", None) == 1
