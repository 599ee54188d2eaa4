"""The worker's live-log streamer against a scripted coordinator (``httpx.MockTransport``).

The coordinator side of these replies is tested against real servers in
``tests/integration/test_live_logs.py``; here each reply the streamer can meet (stored, 409 gap,
429 back-pressure, 413 too large, 404 gone, a coordinator without the route, 5xx) is forced, and
what the streamer sends next is checked byte for byte: the bytes the coordinator ends up holding
must be exactly the file's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mitosis.worker import livelog
from mitosis.worker.api import CoordinatorApi
from mitosis.worker.livelog import LogStreamer

Rule = Callable[["FakeLogs", str, int, bytes], httpx.Response | None]


class FakeLogs:
    """Stores uploads per stream as the coordinator does (append-only, by offset); ``rule`` may
    answer a request instead (return a response), e.g. to refuse it."""

    def __init__(self, rule: Rule | None = None) -> None:
        self.stored: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.requests: list[tuple[str, int, int]] = []  # (stream, offset, size)
        self.rule = rule

    def handler(self, request: httpx.Request) -> httpx.Response:
        stream = request.url.params["stream"]
        offset = int(request.url.params["offset"])
        data = request.content
        self.requests.append((stream, offset, len(data)))
        if self.rule is not None:
            answer = self.rule(self, stream, offset, data)
            if answer is not None:
                return answer
        return self.store(stream, offset, data)

    def store(self, stream: str, offset: int, data: bytes) -> httpx.Response:
        held = self.stored[stream]
        if offset > len(held):
            return httpx.Response(409, json={"msg": "gap", "offset": len(held)})
        held[offset:] = data if offset + len(data) > len(held) else held[offset:]
        return httpx.Response(200, json={"stream": stream, "offset": len(held)})


def _api(fake: FakeLogs) -> CoordinatorApi:
    api = CoordinatorApi("http://coordinator.test", transport=httpx.MockTransport(fake.handler))
    api.token = "worker-token"
    return api


def _files(tmp_path: Path, stdout: bytes, stderr: bytes = b"") -> dict[str, Path]:
    files = {"stdout": tmp_path / "stdout.log", "stderr": tmp_path / "stderr.log"}
    files["stdout"].write_bytes(stdout)
    files["stderr"].write_bytes(stderr)
    return files


async def _stream(fake: FakeLogs, files: dict[str, Path], **kwargs: object) -> LogStreamer:
    """Stream ``files`` as if the task had already exited, and wait for the tail to be sent."""
    api = _api(fake)
    streamer = LogStreamer(api, 7, files, interval=0.01, retry_cap=0.05, **kwargs)  # type: ignore[arg-type]
    streamer.start()
    await streamer.finish(timeout=20)
    await api.aclose()
    return streamer


async def test_output_written_while_running_arrives_whole_and_in_order(tmp_path: Path) -> None:
    files = _files(tmp_path, b"")
    fake = FakeLogs()
    api = _api(fake)
    streamer = LogStreamer(api, 7, files, interval=0.01)
    streamer.start()
    expected = bytearray()
    with files["stdout"].open("ab") as out:
        for i in range(50):
            line = f"line {i}\n".encode() * (i + 1)
            out.write(line)
            out.flush()
            expected += line
            await asyncio.sleep(0.005)
    files["stderr"].write_bytes(b"oops\n")
    await streamer.finish(timeout=20)
    await api.aclose()
    assert bytes(fake.stored["stdout"]) == bytes(expected)
    assert bytes(fake.stored["stderr"]) == b"oops\n"
    assert streamer.offsets == {"stdout": len(expected), "stderr": 5}
    # Each request starts where the stored stream ends: nothing sent twice, nothing skipped.
    ends = {"stdout": 0, "stderr": 0}
    for stream, offset, size in fake.requests:
        assert offset == ends[stream]
        ends[stream] += size


async def test_a_large_backlog_goes_out_in_bounded_requests(tmp_path: Path) -> None:
    body = bytes(range(256)) * 20_000  # 5 MB
    fake = FakeLogs()
    await _stream(fake, _files(tmp_path, body), max_request=1 << 20)
    assert bytes(fake.stored["stdout"]) == body
    assert max(size for _, _, size in fake.requests) == 1 << 20
    assert len(fake.requests) == 5


async def test_429_pauses_for_retry_after_then_resends_the_same_bytes(tmp_path: Path) -> None:
    refused: list[float] = []

    def full_twice(fake: FakeLogs, stream: str, offset: int, data: bytes) -> httpx.Response | None:
        if len(refused) < 2:
            refused.append(asyncio.get_running_loop().time())
            return httpx.Response(429, json={"msg": "full", "offset": offset}, headers={"Retry-After": "0.2"})
        return None

    fake = FakeLogs(full_twice)
    started = asyncio.get_running_loop().time()
    await _stream(fake, _files(tmp_path, b"held back\n"))
    assert bytes(fake.stored["stdout"]) == b"held back\n"
    assert [r[:2] for r in fake.requests] == [("stdout", 0)] * 3
    assert refused[1] - refused[0] >= 0.19
    assert asyncio.get_running_loop().time() - started >= 0.38


async def test_429_after_exit_is_waited_out_only_within_the_flush_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(livelog, "FLUSH_BACKPRESSURE_SECONDS", 0.3)

    def always_full(fake: FakeLogs, stream: str, offset: int, data: bytes) -> httpx.Response:
        return httpx.Response(429, json={"msg": "full", "offset": offset}, headers={"Retry-After": "0.1"})

    fake = FakeLogs(always_full)
    started = asyncio.get_running_loop().time()
    streamer = await _stream(fake, _files(tmp_path, b"nobody reads this\n"))
    # Gave up after ~0.3 s of back-pressure instead of holding the task's commit back.
    assert asyncio.get_running_loop().time() - started < 5
    assert 3 <= len(fake.requests) <= 5
    assert streamer.offsets["stdout"] == 0 and not streamer.unsupported


async def test_409_moves_to_the_coordinator_s_stored_end(tmp_path: Path) -> None:
    body = b"0123456789" * 10

    def already_has_40(fake: FakeLogs, stream: str, offset: int, data: bytes) -> httpx.Response | None:
        if not fake.stored["stdout"]:
            fake.stored["stdout"] += body[:40]  # e.g. stored by a request whose reply was lost
            return httpx.Response(409, json={"msg": "gap", "offset": 40})
        return None

    fake = FakeLogs(already_has_40)
    streamer = await _stream(fake, _files(tmp_path, body))
    assert bytes(fake.stored["stdout"]) == body
    assert fake.requests[:2] == [("stdout", 0, 100), ("stdout", 40, 60)]
    assert streamer.offsets["stdout"] == 100


async def test_413_halves_the_request_until_it_fits(tmp_path: Path) -> None:
    body = b"x" * 100_000

    def at_most_20k(fake: FakeLogs, stream: str, offset: int, data: bytes) -> httpx.Response | None:
        if len(data) > 20_000:
            return httpx.Response(413, json={"msg": "log upload larger than 20000 bytes"})
        return None

    fake = FakeLogs(at_most_20k)
    await _stream(fake, _files(tmp_path, body), max_request=64_000)
    assert bytes(fake.stored["stdout"]) == body
    sizes = [size for _, _, size in fake.requests]
    assert sizes[:3] == [64_000, 32_000, 16_000]
    assert max(size for _, offset, size in fake.requests if offset > 0) <= 16_000


async def test_404_with_our_body_stops_streaming_for_this_task_only(tmp_path: Path) -> None:
    def gone(fake: FakeLogs, stream: str, offset: int, data: bytes) -> httpx.Response:
        return httpx.Response(404, json={"msg": "task is not assigned to this worker"})

    fake = FakeLogs(gone)
    streamer = await _stream(fake, _files(tmp_path, b"a\n", b"b\n"))
    assert len(fake.requests) == 1 and not streamer.unsupported


@pytest.mark.parametrize("reply", [httpx.Response(405), httpx.Response(404, text="Not Found")])
async def test_a_coordinator_without_the_route_marks_it_unsupported(
    tmp_path: Path, reply: httpx.Response
) -> None:
    fake = FakeLogs(lambda *_: reply)
    streamer = await _stream(fake, _files(tmp_path, b"a\n"))
    assert streamer.unsupported and len(fake.requests) == 1


async def test_server_errors_are_retried_and_lose_nothing(tmp_path: Path) -> None:
    failures = iter([503, 500, 502])

    def flaky(fake: FakeLogs, stream: str, offset: int, data: bytes) -> httpx.Response | None:
        status = next(failures, None)
        return None if status is None else httpx.Response(status, json={"msg": "busy"})

    fake = FakeLogs(flaky)
    await _stream(fake, _files(tmp_path, b"survives\n"))
    assert bytes(fake.stored["stdout"]) == b"survives\n"
    assert len(fake.requests) == 4
