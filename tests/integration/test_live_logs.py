"""Live logs against real coordinators: uploads driven with httpx exactly as a worker sends them.

Covers ordering of both streams, idempotent retries and overlapping resends, the gap reply, 413 for
an oversized upload, 429 back-pressure at the per-task cap (and relief once a reader has read),
`follow` ending when the task commits, the std-log hand-over (409) and authorization.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from mitosis.client import AsyncMitoClient, MitoClient
from tests.support.coordinator import LiveCoordinator, inprocess_coordinator


class Running:
    """A task claimed by a fresh worker: ``wc`` is the worker's client, ``id``/``uuid`` the task's."""

    def __init__(self, coord: LiveCoordinator, admin: httpx.Client) -> None:
        r = admin.post(
            "/tasks",
            json={
                "group_name": "mitosis_admin",
                "tags": [],
                "labels": [],
                "timeout": "1m",
                "priority": 0,
                "task_spec": {"args": ["true"], "terminal_output": True},
            },
        )
        assert r.status_code == 200, r.text
        w = admin.post("/workers", json={"tags": [], "labels": [], "groups": []}).json()
        self.wc = coord.client(w["token"])
        got = self.wc.get("/workers/tasks").json()
        assert got["uuid"] == r.json()["uuid"]
        self.id: int = got["id"]
        self.uuid: str = got["uuid"]

    def post(self, stream: str, offset: int, data: bytes) -> httpx.Response:
        body = {"stream": stream, "offset": offset, "data": base64.b64encode(data).decode()}
        return self.wc.post(f"/workers/tasks/{self.id}/logs", json=body)

    def post_raw(self, stream: str, offset: int, data: bytes) -> httpx.Response:
        return self.wc.post(
            f"/workers/tasks/{self.uuid}/logs",
            params={"stream": stream, "offset": offset},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def finish(self, exit_status: int = 0) -> None:
        assert self.wc.post("/workers/tasks", json={"id": self.id, "op": "Finish"}).status_code == 200
        r = self.wc.post(
            "/workers/tasks",
            json={"id": self.id, "op": {"Commit": {"exit_status": exit_status, "msg": None}}},
        )
        assert r.status_code == 200, r.text


def frames(c: httpx.Client, task: str, **params: Any) -> list[dict[str, Any]]:
    r = c.get(f"/tasks/{task}/logs", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def joined(fs: list[dict[str, Any]], stream: str) -> bytes:
    return b"".join(base64.b64decode(f["data"]) for f in fs if f.get("stream") == stream and "data" in f)


def test_ordering_and_idempotent_retries(live_coordinator: LiveCoordinator) -> None:
    with live_coordinator.admin() as admin:
        t = Running(live_coordinator, admin)
        assert t.post("stdout", 0, b"hello ").json() == {"stream": "stdout", "offset": 6}
        assert t.post("stderr", 0, b"oops\n").json() == {"stream": "stderr", "offset": 5}
        assert t.post_raw("stdout", 6, b"world\n").json()["offset"] == 12
        # A retry of stored bytes is acknowledged and not stored again; an overlap adds only its tail.
        assert t.post("stdout", 6, b"world\n").json()["offset"] == 12
        assert t.post("stdout", 0, b"hello world\nmore\n").json()["offset"] == 17
        gap = t.post("stdout", 40, b"x")
        assert gap.status_code == 409 and gap.json()["offset"] == 17
        assert t.post("stdin", 0, b"x").status_code == 400
        fs = frames(admin, t.uuid)
        assert joined(fs, "stdout") == b"hello world\nmore\n"
        assert joined(fs, "stderr") == b"oops\n"
        assert [f["stream"] for f in fs if "data" in f] == ["stdout", "stderr", "stdout", "stdout"]
        assert fs[-1] == {"end": True, "state": "Running", "result": None}
        only = frames(admin, t.uuid, stream="stdout", offset=8)
        assert joined(only, "stdout") == b"rld\nmore\n" and joined(only, "stderr") == b""


def test_oversized_upload_is_413(tmp_path: Path, db_url: str) -> None:
    with (
        inprocess_coordinator(tmp_path / "c", db_url, live_log_max_request=1024) as coord,
        coord.admin() as admin,
    ):
        t = Running(coord, admin)
        assert t.post_raw("stdout", 0, b"x" * 1025).status_code == 413
        assert t.post("stdout", 0, b"x" * 1025).status_code == 413
        assert t.post_raw("stdout", 0, b"x" * 1024).status_code == 200


def test_backpressure_429_until_read(tmp_path: Path, db_url: str) -> None:
    with (
        inprocess_coordinator(tmp_path / "c", db_url, live_log_task_cap=1000) as coord,
        coord.admin() as admin,
    ):
        t = Running(coord, admin)
        assert t.post_raw("stdout", 0, b"a" * 600).status_code == 200
        full = t.post_raw("stdout", 600, b"b" * 600)
        assert full.status_code == 429 and full.headers["Retry-After"] == "1"
        assert full.json()["offset"] == 600
        assert joined(frames(admin, t.uuid), "stdout") == b"a" * 600  # a reader reads it ...
        assert t.post_raw("stdout", 600, b"b" * 600).status_code == 200  # ... which makes room
        fs = frames(admin, t.uuid, stream="stdout")
        assert fs[0] == {"stream": "stdout", "offset": 0, "skipped": 600}
        assert joined(fs, "stdout") == b"b" * 600


def test_follow_ends_when_the_task_commits(live_coordinator: LiveCoordinator) -> None:
    with live_coordinator.admin() as admin:
        t = Running(live_coordinator, admin)
        got: list[dict[str, Any]] = []
        started = threading.Event()

        def follow() -> None:
            with admin.stream("GET", f"/tasks/{t.uuid}/logs", params={"follow": "true"}, timeout=60) as r:
                started.set()
                got.extend(json.loads(line) for line in r.iter_lines() if line.strip())

        reader = threading.Thread(target=follow)
        reader.start()
        assert started.wait(10)
        expected = b""
        for i in range(20):
            piece = f"line {i}\n".encode()
            assert t.post_raw("stdout", len(expected), piece).status_code == 200
            expected += piece
        t.finish(exit_status=768)
        reader.join(30)
        assert not reader.is_alive(), "follow did not end after the commit"
        assert joined(got, "stdout") == expected
        assert got[-1] == {"end": True, "state": "Finished", "result": {"exit_status": 768, "msg": None}}
        # Committed: uploads are refused, reads still serve the stored log (no std-log artifact here).
        assert t.post_raw("stdout", len(expected), b"late").status_code == 404
        assert joined(frames(admin, t.uuid), "stdout") == expected


def _feed(t: Running, first_read: threading.Event) -> tuple[bytes, bytes]:
    """Upload a line, wait until the reader has it (so what follows is read live), upload 20 lines
    to each stream, then commit with exit 3."""
    out, err = b"out -\n", b""
    assert t.post_raw("stdout", 0, out).status_code == 200
    assert first_read.wait(20), "the follower did not get the first line while the task ran"
    for i in range(20):
        piece = f"out {i}\n".encode()
        assert t.post_raw("stdout", len(out), piece).status_code == 200
        out += piece
        piece = f"err {i}\n".encode()
        assert t.post_raw("stderr", len(err), piece).status_code == 200
        err += piece
    t.finish(exit_status=3 << 8)
    return out, err


@pytest.mark.parametrize("face", ["sync", "async"])
def test_sdk_follow(live_coordinator: LiveCoordinator, face: str) -> None:
    """Both SDK faces read the log while it is written and end with the task's exit code."""
    token = live_coordinator.login()
    with live_coordinator.admin() as admin:
        t = Running(live_coordinator, admin)
        got: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        first_read = threading.Event()
        first_chunk_before_commit: list[bool] = []
        ends: list[Any] = []

        def note(stream: str, data: bytes) -> None:
            if not first_chunk_before_commit:
                state = admin.get(f"/tasks/{t.uuid}").json()["info"]["state"]
                first_chunk_before_commit.append(state == "Running")
            got[stream] += data
            first_read.set()

        def read_sync() -> None:
            with MitoClient(live_coordinator.url, token) as sdk:
                reader = sdk.logs(t.uuid, follow=True)
                for chunk in reader:
                    note(chunk.stream, chunk.data)
                ends.append(reader.end)

        async def read_async() -> None:
            async with AsyncMitoClient(live_coordinator.url, token) as sdk:
                reader = sdk.logs(t.uuid, follow=True)
                async for chunk in reader:
                    note(chunk.stream, chunk.data)
                ends.append(reader.end)

        thread = threading.Thread(
            target=read_sync if face == "sync" else (lambda: asyncio.run(read_async())), daemon=True
        )
        thread.start()
        out, err = _feed(t, first_read)
        thread.join(30)
        assert not thread.is_alive(), "follow did not end after the commit"
        assert (got["stdout"], got["stderr"]) == (out, err)
        assert first_chunk_before_commit == [True], "the first bytes came only after the end"
        assert len(ends) == 1 and ends[0] is not None
        assert ends[0].state == "Finished" and ends[0].exit_code == 3


def test_std_log_artifact_takes_over(live_coordinator: LiveCoordinator) -> None:
    with live_coordinator.admin() as admin:
        t = Running(live_coordinator, admin)
        assert t.post_raw("stdout", 0, b"out\n").status_code == 200
        assert t.wc.post("/workers/tasks", json={"id": t.id, "op": "Finish"}).status_code == 200
        up = t.wc.post(
            "/workers/tasks",
            json={"id": t.id, "op": {"Upload": {"content_type": "std-log", "content_length": 4}}},
        )
        assert up.status_code == 200, up.text
        assert httpx.put(up.json()["url"], content=b"out\n").status_code in (200, 201, 204)
        r = t.wc.post("/workers/tasks", json={"id": t.id, "op": {"Commit": {"exit_status": 0, "msg": None}}})
        assert r.status_code == 200, r.text
        gone = admin.get(f"/tasks/{t.uuid}/logs")
        assert gone.status_code == 409
        assert gone.json()["artifact"] == "std-log" and gone.json()["state"] == "Finished"


def test_authorization(live_coordinator: LiveCoordinator) -> None:
    coord = live_coordinator
    outsider = coord.create_user("eve", "eve-password")
    with coord.admin() as admin:
        t = Running(coord, admin)
        assert t.post_raw("stdout", 0, b"secret").status_code == 200
        with coord.client(outsider) as eve:
            assert eve.get(f"/tasks/{t.uuid}/logs").status_code == 403
            # A user token on the worker path, and another worker, are refused.
            assert (
                eve.post(
                    f"/workers/tasks/{t.id}/logs", json={"stream": "stdout", "offset": 0, "data": ""}
                ).status_code
                == 403
            )
        other = admin.post("/workers", json={"tags": [], "labels": [], "groups": []}).json()
        with coord.client(other["token"]) as wc2:
            r = wc2.post(
                f"/workers/tasks/{t.id}/logs", json={"stream": "stdout", "offset": 6, "data": "eA=="}
            )
            assert r.status_code == 404
        assert admin.get("/tasks/00000000-0000-4000-8000-000000000000/logs").status_code == 404


@pytest.mark.parametrize("bad", [b"not json", b'{"stream": "stdout", "offset": 0, "data": "***"}'])
def test_bad_bodies_are_400(sqlite_coordinator: LiveCoordinator, bad: bytes) -> None:
    with sqlite_coordinator.admin() as admin:
        t = Running(sqlite_coordinator, admin)
        r = t.wc.post(
            f"/workers/tasks/{t.id}/logs", content=bad, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400 and "log upload body" in r.json()["msg"]
