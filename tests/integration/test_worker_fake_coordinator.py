"""The real worker against a small fake coordinator served over loopback HTTP.

The fake implements only the worker's side of the protocol (login, registration, heartbeat, fetch,
report, signals) plus a plain PUT endpoint standing in for signed upload URLs, and records every
call so the tests can check what the worker said and uploaded.
"""

from __future__ import annotations

import asyncio
import io
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from mitosis.config import WorkerSettings
from mitosis.wire.codecs import md5_digest_list
from mitosis.worker.runner import Worker

USER, PASSWORD = "alice", "secret"


@dataclass
class FakeState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    queue: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    cancel: set[int] = field(default_factory=set)
    fetched: list[int] = field(default_factory=list)
    heartbeats: int = 0
    heartbeat_status: int = 200
    registered: list[dict[str, Any]] = field(default_factory=list)
    unregistered: int = 0
    worker_tokens: set[str] = field(default_factory=set)
    attachments: dict[str, bytes] = field(default_factory=dict)
    watched: dict[str, tuple[str, dict[str, Any] | None]] = field(default_factory=dict)
    data_status: dict[str, int] = field(default_factory=dict)  # key -> status its signed URL answers
    data_gets: list[str] = field(default_factory=list)

    def commits(self) -> dict[int, dict[str, Any]]:
        with self.lock:
            return {
                r["id"]: r["op"]["Commit"]
                for r in self.reports
                if isinstance(r["op"], dict) and "Commit" in r["op"]
            }

    def ops(self, task_id: int) -> list[Any]:
        with self.lock:
            return [r["op"] for r in self.reports if r["id"] == task_id]


def _bearer(request: Request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ")


def make_app(current: Callable[[], FakeState], base: Callable[[], str]) -> FastAPI:
    """Each request binds to the state of the test that is current when the request arrives."""
    app = FastAPI()
    unauthorized = JSONResponse({"msg": "Authentication error: Invalid token"}, status_code=401)

    def worker_ok(request: Request, state: FakeState) -> bool:
        return _bearer(request) in state.worker_tokens

    @app.get("/auth")
    async def auth(request: Request) -> Response:
        return PlainTextResponse(USER) if _bearer(request) == "user-token" else unauthorized

    @app.post("/login")
    async def login(body: dict[str, Any]) -> Response:
        if body["username"] == USER and body["md5_password"] == md5_digest_list(PASSWORD):
            return JSONResponse({"token": "user-token"})
        return JSONResponse({"msg": "Authentication error: Wrong credentials"}, status_code=401)

    @app.post("/workers")
    async def register(request: Request, body: dict[str, Any]) -> Response:
        state = current()
        if _bearer(request) != "user-token":
            return unauthorized
        token = f"worker-{uuid.uuid4()}"
        with state.lock:
            state.registered.append(body)
            state.worker_tokens.add(token)
        return JSONResponse({"worker_id": str(uuid.uuid4()), "token": token, "redis_url": None})

    @app.delete("/workers")
    async def unregister(request: Request) -> Response:
        state = current()
        with state.lock:
            state.unregistered += 1
        return JSONResponse(None)

    @app.post("/workers/heartbeat")
    async def heartbeat(request: Request) -> Response:
        state = current()
        if not worker_ok(request, state):
            return unauthorized
        with state.lock:
            state.heartbeats += 1
            if state.heartbeat_status == 401:
                return unauthorized
        return JSONResponse(None)

    @app.get("/workers/tasks")
    async def fetch(request: Request, wait: str | None = None) -> Response:
        state = current()
        if not worker_ok(request, state):
            return unauthorized
        deadline = time.monotonic() + (1.0 if wait else 0.0)
        while True:
            if await request.is_disconnected():
                return JSONResponse(None)
            with state.lock:
                if state.queue:
                    task = state.queue.pop(0)
                    state.fetched.append(task["id"])
                    return JSONResponse(task)
            if time.monotonic() >= deadline:
                return JSONResponse(None)
            await asyncio.sleep(0.02)

    @app.post("/workers/tasks")
    async def report(request: Request, body: dict[str, Any]) -> Response:
        state = current()
        if not worker_ok(request, state):
            return unauthorized
        with state.lock:
            state.reports.append(body)
        op = body["op"]
        if isinstance(op, dict) and "Upload" in op:
            url = f"{base()}/blob/{body['id']}/{op['Upload']['content_type']}"
            return JSONResponse({"url": url})
        return JSONResponse({"url": None})

    @app.get("/workers/signals")
    async def signals(request: Request, wait: str = "0s") -> Response:
        state = current()
        if not worker_ok(request, state):
            return unauthorized
        deadline = time.monotonic() + 2  # shorter than asked: keeps server shutdown quick
        while time.monotonic() < deadline:
            with state.lock:
                if state.cancel:
                    return JSONResponse({"cancel": sorted(state.cancel)})
            await asyncio.sleep(0.02)
        return JSONResponse({"cancel": []})

    @app.get("/workers/tasks/{task_uuid}/attachments/{key:path}")
    async def attachment_url(request: Request, task_uuid: str, key: str) -> Response:
        state = current()
        if not worker_ok(request, state):
            return unauthorized
        if key not in state.attachments:
            return JSONResponse({"msg": f"Attachment of group g1 and key {key} not found"}, status_code=404)
        return JSONResponse({"url": f"{base()}/data/{key}", "size": len(state.attachments[key])})

    @app.get("/data/{key:path}")
    async def attachment_data(key: str) -> Response:
        state = current()
        with state.lock:
            state.data_gets.append(key)
            status = state.data_status.get(key)
        if status is not None:
            return Response(b"refused", status_code=status)
        return Response(state.attachments[key]) if key in state.attachments else Response(status_code=404)

    @app.get("/workers/tasks/{task_uuid}")
    async def task_info(request: Request, task_uuid: str) -> Response:
        state = current()
        if not worker_ok(request, state):
            return unauthorized
        if task_uuid not in state.watched:
            return JSONResponse({"msg": f"Task with uuid {task_uuid} not found"}, status_code=404)
        task_state, result = state.watched[task_uuid]
        now = "2026-01-01 00:00:00.0 +00:00:00"
        info = {
            "uuid": task_uuid,
            "creator_username": USER,
            "group_name": USER,
            "task_id": 99,
            "tags": [],
            "labels": [],
            "created_at": now,
            "updated_at": now,
            "state": task_state,
            "timeout": 60,
            "priority": 0,
            "spec": {"args": ["true"]},
            "result": result,
            "upstream_task_uuid": None,
            "downstream_task_uuid": None,
            "reporter_uuid": None,
        }
        return JSONResponse({"info": info, "artifacts": []})

    @app.put("/blob/{task_id}/{content_type}")
    async def put_blob(task_id: int, content_type: str, request: Request) -> Response:
        state = current()
        data = await request.body()
        assert int(request.headers["content-length"]) == len(data)
        with state.lock:
            state.blobs[f"{task_id}/{content_type}"] = data
        return Response(status_code=200)

    return app


@dataclass
class FakeCoordinator:
    url: str
    state: FakeState


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[str, list[FakeState]]]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    holder = [FakeState()]

    app = make_app(lambda: holder[0], lambda: url)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", loop="asyncio")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "fake coordinator did not start"
        time.sleep(0.02)
    yield url, holder
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def fake(fake_server: tuple[str, list[FakeState]]) -> FakeCoordinator:
    url, holder = fake_server
    holder[0] = FakeState()
    return FakeCoordinator(url, holder[0])


def _settings(url: str, tmp_path: Path, **extra: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        "coordinator_addr": url,
        "polling_interval": timedelta(seconds=1),
        "heartbeat_interval": timedelta(seconds=30),
        "long_poll": timedelta(seconds=1),
        "credential_path": tmp_path / "credentials",
        "user": USER,
        "password": PASSWORD,
        "groups": ["g1", "g2:write"],
        "tags": ["t"],
        "skip_redis": True,
        "work_dir": tmp_path / "work",
    }
    values.update(extra)
    return WorkerSettings(**values)


def _task(
    task_id: int,
    args: list[str],
    *,
    timeout: str = "30s",
    terminal_output: bool = False,
    resources: list[dict[str, Any]] | None = None,
    watch: list[str] | None = None,
) -> dict[str, Any]:
    spec = {
        "args": args,
        "envs": {},
        "resources": resources or [],
        "terminal_output": terminal_output,
        "watch": watch,
    }
    return {
        "id": task_id,
        "uuid": str(uuid.uuid4()),
        "timeout": timeout,
        "upstream_task_uuid": None,
        "spec": spec,
    }


def _attachment(key: str, local_path: str) -> dict[str, Any]:
    return {"remote_file": {"Attachment": {"key": key}}, "local_path": local_path}


async def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _stop(worker: Worker, run: asyncio.Task[int]) -> int:
    worker.request_stop()
    return await asyncio.wait_for(run, timeout=15)


def _tar_members(data: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        out: dict[str, bytes | None] = {}
        for member in tar.getmembers():
            fh = tar.extractfile(member) if member.isreg() else None
            out[member.name] = fh.read() if fh else None
        return out


async def test_task_runs_uploads_and_commits(fake: FakeCoordinator, tmp_path: Path) -> None:
    fake.state.queue.append(
        _task(1, ["sh", "-c", "echo hi; echo out > $MITO_RESULT_DIR/x"], terminal_output=True)
    )
    worker = Worker(_settings(fake.url, tmp_path))
    run = asyncio.create_task(worker.run())
    await _until(lambda: 1 in fake.state.commits(), 20, "commit of task 1")
    assert await _stop(worker, run) == 0

    assert fake.state.registered[0]["groups"] == ["g1", "g2:write"]
    assert (tmp_path / "credentials").read_text() == f"{USER}:user-token"
    ops = fake.state.ops(1)
    assert ops[0] == "Finish"
    uploads = [op["Upload"] for op in ops if isinstance(op, dict) and "Upload" in op]
    assert [u["content_type"] for u in uploads] == ["result", "std-log"]
    assert ops[-1] == {"Commit": {"exit_status": 0, "msg": None}}
    result = _tar_members(fake.state.blobs["1/result"])
    assert result == {"result": None, "result/x": b"out\n"}
    assert uploads[0]["content_length"] == len(fake.state.blobs["1/result"])
    std = _tar_members(fake.state.blobs["1/std-log"])
    assert std == {"std-log/stdout.log": b"hi\n", "std-log/stderr.log": b""}
    assert fake.state.unregistered == 1
    assert not (tmp_path / "work").exists()  # per-task dirs removed, then the empty work dir


async def test_cached_token_skips_login_and_exit_status_raw(fake: FakeCoordinator, tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text(f"{USER}:user-token")
    fake.state.queue.append(_task(2, ["sh", "-c", "exit 3"]))
    worker = Worker(_settings(fake.url, tmp_path, password=None))
    run = asyncio.create_task(worker.run())
    await _until(lambda: 2 in fake.state.commits(), 20, "commit of task 2")
    await _stop(worker, run)
    assert fake.state.commits()[2] == {"exit_status": 768, "msg": None}
    assert not any(isinstance(op, dict) and "Upload" in op for op in fake.state.ops(2))


async def test_timeout_commits_exec_timeout(fake: FakeCoordinator, tmp_path: Path) -> None:
    fake.state.queue.append(
        _task(3, ["sh", "-c", "echo before; sleep 60"], timeout="1s", terminal_output=True)
    )
    worker = Worker(_settings(fake.url, tmp_path))
    run = asyncio.create_task(worker.run())
    await _until(lambda: 3 in fake.state.commits(), 20, "commit of task 3")
    await _stop(worker, run)
    ops = fake.state.ops(3)
    assert ops[0] == "Cancel"
    assert fake.state.commits()[3] == {"exit_status": 15, "msg": "ExecTimeout"}
    std = _tar_members(fake.state.blobs["3/std-log"])
    assert std["std-log/stdout.log"] == b"before\n"  # kept despite the timeout


async def test_cancel_signal_kills_running_task(fake: FakeCoordinator, tmp_path: Path) -> None:
    fake.state.queue.append(_task(4, ["sleep", "60"]))
    worker = Worker(_settings(fake.url, tmp_path))
    run = asyncio.create_task(worker.run())
    await _until(lambda: 4 in fake.state.fetched, 10, "fetch of task 4")
    await asyncio.sleep(0.5)  # let it spawn
    with fake.state.lock:
        fake.state.cancel.add(4)
    cancelled_at = time.monotonic()
    await _until(lambda: 4 in fake.state.commits(), 10, "commit of task 4")
    assert time.monotonic() - cancelled_at < 2.5
    await _stop(worker, run)
    assert fake.state.ops(4)[0] == "Cancel"
    assert fake.state.commits()[4] == {"exit_status": 15, "msg": "UserCancellation"}


async def test_heartbeat_401_stops_worker(fake: FakeCoordinator, tmp_path: Path) -> None:
    fake.state.heartbeat_status = 401
    fake.state.queue.append(_task(5, ["sleep", "60"]))
    worker = Worker(_settings(fake.url, tmp_path, heartbeat_interval=timedelta(seconds=0.5)))
    started = time.monotonic()
    code = await asyncio.wait_for(worker.run(), timeout=15)
    assert code == 0 and worker.forced_exit
    assert time.monotonic() - started < 10
    assert 5 not in fake.state.commits()  # killed, nothing reported: the coordinator re-queues it
    assert fake.state.heartbeats >= 1


async def test_resources_downloaded_or_task_failed(fake: FakeCoordinator, tmp_path: Path) -> None:
    fake.state.attachments["data/in.txt"] = b"payload"
    copy = "cp $MITO_RESOURCE_DIR/sub/in.txt $MITO_RESULT_DIR/copy.txt"
    fake.state.queue += [
        _task(6, ["sh", "-c", copy], resources=[_attachment("data/in.txt", "sub/in.txt")]),
        _task(7, ["true"], resources=[_attachment("data/missing", "m")]),
        _task(8, ["true"], resources=[_attachment("data/in.txt", "../../escape.txt")]),
        # A later task must not see an earlier task's files (0.6.8 leaked them, S22).
        _task(9, ["sh", "-c", "test ! -e $MITO_RESOURCE_DIR/sub/in.txt && test -d $MITO_RESOURCE_DIR"]),
    ]
    worker = Worker(_settings(fake.url, tmp_path))
    run = asyncio.create_task(worker.run())
    await _until(lambda: {6, 7, 8, 9} <= set(fake.state.commits()), 20, "commits of tasks 6-9")
    await _stop(worker, run)
    commits = fake.state.commits()
    assert commits[6] == {"exit_status": 0, "msg": None}
    assert _tar_members(fake.state.blobs["6/result"])["result/copy.txt"] == b"payload"
    assert fake.state.ops(7) == ["Cancel", {"Commit": {"exit_status": 0, "msg": "ResourceNotFound"}}]
    assert fake.state.ops(8) == ["Cancel", {"Commit": {"exit_status": 0, "msg": "ResourceForbidden"}}]
    assert not (tmp_path / "escape.txt").exists()
    assert commits[9] == {"exit_status": 0, "msg": None}


async def test_a_resource_that_cannot_be_written_fails_its_task_not_the_worker(
    fake: FakeCoordinator, tmp_path: Path
) -> None:
    """'.' names no file, and 'a' after 'a/b' is a directory: each task fails, the worker goes on."""
    fake.state.attachments["data/in.txt"] = b"payload"
    fake.state.queue += [
        _task(21, ["true"], resources=[_attachment("data/in.txt", ".")]),
        _task(22, ["true"], resources=[_attachment("data/in.txt", "a/b"), _attachment("data/in.txt", "a")]),
        _task(
            23, ["sh", "-c", "test -f $MITO_RESOURCE_DIR/ok"], resources=[_attachment("data/in.txt", "ok")]
        ),
    ]
    worker = Worker(_settings(fake.url, tmp_path))
    run = asyncio.create_task(worker.run())
    await _until(lambda: {21, 22, 23} <= set(fake.state.commits()), 20, "commits of tasks 21-23")
    code = await _stop(worker, run)
    assert code == 0 and not worker.forced_exit
    assert fake.state.ops(21) == ["Cancel", {"Commit": {"exit_status": 0, "msg": "ResourceForbidden"}}]
    assert fake.state.ops(22) == ["Cancel", {"Commit": {"exit_status": 0, "msg": "ResourceForbidden"}}]
    assert fake.state.commits()[23] == {"exit_status": 0, "msg": None}


async def test_resource_download_failures_end_the_task_with_their_message(
    fake: FakeCoordinator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signed URL answers 5xx until the phase deadline (FetchResourceTimeout, after retries),
    403 (ResourceForbidden, no retry) or 404 (ResourceNotFound); the worker then runs the next task."""
    monkeypatch.setattr("mitosis.worker.runner.RESOURCE_PHASE_SECONDS", 3.0)
    for key in ("flaky", "denied", "gone", "ok"):
        fake.state.attachments[key] = b"bytes of " + key.encode()
    fake.state.data_status.update(flaky=503, denied=403, gone=404)
    fake.state.queue += [
        _task(31, ["true"], resources=[_attachment("flaky", "f")]),
        _task(32, ["true"], resources=[_attachment("denied", "d")]),
        _task(33, ["true"], resources=[_attachment("gone", "g")]),
        _task(34, ["sh", "-c", 'test "$(cat $MITO_RESOURCE_DIR/ok)" = "bytes of ok"'],
              resources=[_attachment("ok", "ok")]),
    ]  # fmt: skip
    worker = Worker(_settings(fake.url, tmp_path))
    run = asyncio.create_task(worker.run())
    started = time.monotonic()
    await _until(lambda: 31 in fake.state.commits(), 20, "commit of task 31")
    timed_out_after = time.monotonic() - started
    await _until(lambda: {32, 33, 34} <= set(fake.state.commits()), 20, "commits of tasks 32-34")
    code = await _stop(worker, run)
    assert code == 0 and not worker.forced_exit

    assert fake.state.ops(31) == ["Cancel", {"Commit": {"exit_status": 0, "msg": "FetchResourceTimeout"}}]
    assert timed_out_after > 2.5, timed_out_after  # held until the (shortened) 3 s deadline
    gets = fake.state.data_gets
    assert gets.count("flaky") >= 3, gets  # 5xx is retried until the deadline
    assert fake.state.ops(32) == ["Cancel", {"Commit": {"exit_status": 0, "msg": "ResourceForbidden"}}]
    assert fake.state.ops(33) == ["Cancel", {"Commit": {"exit_status": 0, "msg": "ResourceNotFound"}}]
    assert gets.count("denied") == 1 and gets.count("gone") == 1  # neither is retried
    assert fake.state.commits()[34] == {"exit_status": 0, "msg": None}


async def test_watch_without_redis_polls_coordinator(fake: FakeCoordinator, tmp_path: Path) -> None:
    watched = str(uuid.uuid4())
    fake.state.watched[watched] = ("Running", None)
    fake.state.queue.append(_task(10, ["true"], watch=[watched, "TaskCommitted"]))
    worker = Worker(_settings(fake.url, tmp_path))
    run = asyncio.create_task(worker.run())
    await _until(lambda: 10 in fake.state.fetched, 10, "fetch of task 10")
    await asyncio.sleep(1.5)
    assert 10 not in fake.state.commits()  # still held back by the watch
    with fake.state.lock:
        fake.state.watched[watched] = ("Finished", {"exit_status": 0, "msg": None})
    await _until(lambda: 10 in fake.state.commits(), 10, "commit of task 10")
    await _stop(worker, run)
    assert fake.state.commits()[10] == {"exit_status": 0, "msg": None}
