"""Both blob stores against real servers: the filesystem store behind a real uvicorn serving
``routes.blobs``, and the S3 store against a real SeaweedFS. Clients use plain httpx the way
pynetmito does (PUT with only a Content-Length header)."""

from __future__ import annotations

import gc
import hashlib
import os
import secrets
import socket
import threading
import time
import types
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import psutil
import pytest
import uvicorn
from fastapi import FastAPI

from mitosis.coordinator.blobs import BlobStore, FsBlobStore, S3BlobStore
from mitosis.coordinator.routes.blobs import router
from tests.support.seaweed import SeaweedS3, start_seaweed

MiB = 1 << 20


@dataclass
class Backend:
    name: str
    store: BlobStore
    root: Path | None = None  # the filesystem store's directory
    port: int = 0


def _put(url: str, data: bytes) -> httpx.Response:
    return httpx.put(url, content=data, headers={"Content-Length": str(len(data))}, timeout=60)


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=60)


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


@pytest.fixture(scope="module")
async def fs_backend(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Backend]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    root = tmp_path_factory.mktemp("blobs")
    store = FsBlobStore(root=root, public_url=f"http://127.0.0.1:{port}", secret=secrets.token_bytes(32))
    await store.start()
    app = FastAPI()
    app.include_router(router)
    app.state.ctx = types.SimpleNamespace(blobs=store)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert _wait_for(lambda: server.started, 15), "uvicorn did not start"
    try:
        yield Backend("fs", store, root=root, port=port)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        await store.close()


@pytest.fixture(scope="module")
def seaweed() -> Iterator[SeaweedS3]:
    server = start_seaweed()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def s3_backend(seaweed: SeaweedS3) -> AsyncIterator[Backend]:
    suffix = secrets.token_hex(4)
    store = S3BlobStore(
        endpoint_url=seaweed.endpoint,
        access_key=seaweed.access_key,
        secret_key=seaweed.secret_key,
        region=seaweed.region,
        artifacts_bucket=f"mito-artifacts-{suffix}",
        attachments_bucket=f"mito-attachments-{suffix}",
        force_path_style=True,
    )
    await store.start()
    await store.start()  # idempotent: existing buckets are fine
    try:
        yield Backend("s3", store)
    finally:
        await store.close()


@pytest.fixture(params=["fs", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest) -> Backend:
    value = request.getfixturevalue(f"{request.param}_backend")
    assert isinstance(value, Backend)
    return value


def _swap_key(url: str, old: str, new: str) -> str:
    parts = urlsplit(url)
    assert parts.path.endswith("/" + quote(old, safe="/"))
    path = parts.path.removesuffix(quote(old, safe="/")) + quote(new, safe="/")
    return parts._replace(path=path).geturl()


async def test_put_get_round_trip(backend: Backend) -> None:
    data = os.urandom(5 * MiB)
    key = f"{secrets.token_hex(8)}/result.tar.gz"
    reply = _put(await backend.store.presign_put("artifacts", key, len(data), 3600), data)
    assert reply.status_code == 200, reply.text
    assert await backend.store.stat("artifacts", key) == len(data)
    fetched = _get(await backend.store.presign_get("artifacts", key, 3600))
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert await backend.store.stat("attachments", key) is None
    assert await backend.store.stat("artifacts", key + ".missing") is None


async def test_odd_key_characters(backend: Backend) -> None:
    key = f"grp-{secrets.token_hex(4)}/dir with space/ü+%&=#?.txt"
    data = b"odd key\n"
    assert _put(await backend.store.presign_put("attachments", key, len(data), 600), data).status_code == 200
    assert await backend.store.stat("attachments", key) == len(data)
    assert _get(await backend.store.presign_get("attachments", key, 600)).content == data


async def test_expired_urls_refused(backend: Backend) -> None:
    key = f"{secrets.token_hex(8)}/exec-log.tar.gz"
    data = b"x" * 1000
    assert _put(await backend.store.presign_put("artifacts", key, len(data), 600), data).status_code == 200
    get_url = await backend.store.presign_get("artifacts", key, 1)
    put_url = await backend.store.presign_put("artifacts", key, len(data), 1)
    time.sleep(2.5)
    for reply in (_get(get_url), _put(put_url, data)):
        assert reply.status_code == 403, reply.text
        if backend.name == "fs":
            assert reply.json() == {"msg": "Signed URL has expired"}


async def test_url_bound_to_method_and_key(backend: Backend) -> None:
    prefix = secrets.token_hex(8)
    key_a, key_b = f"{prefix}/a.bin", f"{prefix}/b.bin"
    data_a, data_b = b"A" * 100, b"B" * 100
    put_a = await backend.store.presign_put("artifacts", key_a, len(data_a), 600)
    assert _put(put_a, data_a).status_code == 200
    assert (
        _put(await backend.store.presign_put("artifacts", key_b, len(data_b), 600), data_b).status_code == 200
    )

    refused = [
        _get(put_a),  # a PUT URL used for GET
        _get(_swap_key(await backend.store.presign_get("artifacts", key_a, 600), key_a, key_b)),
        _put(_swap_key(put_a, key_a, key_b), data_a),  # overwrite B with A's URL
    ]
    for reply in refused:
        assert reply.status_code == 403, reply.text
        if backend.name == "fs":
            assert reply.json() == {"msg": "Signed URL is not valid for this request"}
    assert _get(await backend.store.presign_get("artifacts", key_b, 600)).content == data_b


async def test_delete_and_delete_many(backend: Backend) -> None:
    prefix = secrets.token_hex(8)
    keys = [f"{prefix}/{name}" for name in ("one", "two", "three")]
    for key in keys:
        assert _put(await backend.store.presign_put("attachments", key, 3, 600), b"abc").status_code == 200
        assert await backend.store.stat("attachments", key) == 3
    await backend.store.delete("attachments", keys[0])
    assert await backend.store.stat("attachments", keys[0]) is None
    await backend.store.delete("attachments", keys[0])  # already gone: not an error
    await backend.store.delete_many("attachments", [*keys[1:], f"{prefix}/never-existed"])
    for key in keys:
        assert await backend.store.stat("attachments", key) is None
    await backend.store.delete_many("attachments", [])
    if backend.root is not None:  # emptied directories are pruned
        assert not (backend.root / "attachments" / prefix).exists()


# Filesystem store only: what the coordinator's own routes must get right.


def _temp_files(root: Path) -> list[Path]:
    return list(root.rglob(".mito-upload-*"))


async def test_fs_streams_100_mib_with_flat_memory(fs_backend: Backend) -> None:
    store = fs_backend.store
    key = "big/object.bin"
    block = os.urandom(MiB)
    blocks = 100
    size = blocks * MiB
    # Warm up every code path first so lazy imports and caches are not counted.
    assert _put(await store.presign_put("artifacts", "big/warm", len(block), 600), block).status_code == 200
    assert _get(await store.presign_get("artifacts", "big/warm", 600)).content == block

    process = psutil.Process()
    gc.collect()
    baseline = process.memory_info().rss
    peak = baseline
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        expected = hashlib.sha256()

        def body() -> Iterator[bytes]:
            for _ in range(blocks):
                expected.update(block)
                yield block

        put_url = await store.presign_put("artifacts", key, size, 600)
        reply = httpx.put(put_url, content=body(), headers={"Content-Length": str(size)}, timeout=120)
        assert reply.status_code == 200, reply.text
        got = hashlib.sha256()
        received = 0
        with httpx.stream("GET", await store.presign_get("artifacts", key, 600), timeout=120) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-length"] == str(size)
            for chunk in stream.iter_bytes():
                received += len(chunk)
                got.update(chunk)
    finally:
        stop.set()
        sampler.join(5)
    assert received == size
    assert got.hexdigest() == expected.hexdigest()
    growth = peak - baseline
    print(f"RSS growth while streaming 100 MiB up and down: {growth / MiB:.1f} MiB")
    assert growth < 20 * MiB, f"RSS grew by {growth / MiB:.1f} MiB while streaming 100 MiB"
    await store.delete_many("artifacts", [key, "big/warm"])


async def test_fs_interrupted_upload_leaves_nothing(fs_backend: Backend) -> None:
    store, root = fs_backend.store, fs_backend.root
    assert root is not None
    size = 4 * MiB
    original = b"original bytes"
    for key, existing in (("short/new.bin", None), ("short/existing.bin", original)):
        if existing is not None:
            url = await store.presign_put("artifacts", key, len(existing), 600)
            assert _put(url, existing).status_code == 200
        parts = urlsplit(await store.presign_put("artifacts", key, size, 600))
        head = (
            f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: 127.0.0.1:{fs_backend.port}\r\n"
            f"Content-Length: {size}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", fs_backend.port), timeout=10) as conn:
            conn.sendall(head + b"z" * (size // 2))
            assert _wait_for(lambda: bool(_temp_files(root)), 10), "upload never started"
        # The client hung up halfway: the temporary file goes and no object appears (or changes).
        assert _wait_for(lambda: not _temp_files(root), 10), _temp_files(root)
        if existing is None:
            assert await store.stat("artifacts", key) is None
        else:
            assert _get(await store.presign_get("artifacts", key, 600)).content == existing


async def test_fs_content_length_rules(fs_backend: Backend) -> None:
    store = fs_backend.store
    url = await store.presign_put("artifacts", "cl/x", 10, 600)
    wrong = httpx.put(url, content=b"y" * 11, timeout=10)
    assert wrong.status_code == 400
    assert "does not match the signed length 10" in wrong.json()["msg"]

    def chunked() -> Iterator[bytes]:
        yield b"y" * 10

    missing = httpx.put(url, content=chunked(), timeout=10)  # no Content-Length: chunked encoding
    assert missing.status_code == 411
    assert "Content-Length" in missing.json()["msg"]
    assert await store.stat("artifacts", "cl/x") is None
    assert _put(url, b"y" * 10).status_code == 200
    head = httpx.head(await store.presign_get("artifacts", "cl/x", 600), timeout=10)
    assert head.status_code == 200 and head.headers["content-length"] == "10"


async def test_fs_missing_object_and_store(fs_backend: Backend) -> None:
    store = fs_backend.store
    assert isinstance(store, FsBlobStore)
    missing = _get(await store.presign_get("artifacts", "nothing/here", 600))
    assert missing.status_code == 404
    assert "not found" in missing.json()["msg"]
    unsigned = httpx.get(f"{store.public_url}/blobs/artifacts/nothing/here", timeout=10)
    assert unsigned.status_code == 403
    traversal = httpx.get(f"{store.public_url}/blobs/artifacts/%2E%2E/escape", timeout=10)
    assert traversal.status_code in (403, 404)


async def test_fs_concurrent_uploads_end_consistent(fs_backend: Backend) -> None:
    store = fs_backend.store
    assert fs_backend.root is not None
    key = "race/object.bin"
    bodies = [os.urandom(8 * MiB) for _ in range(4)]
    urls = [await store.presign_put("artifacts", key, len(b), 600) for b in bodies]
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda u=u, b=b: statuses.append(_put(u, b).status_code))
        for u, b in zip(urls, bodies, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * len(bodies)
    final = _get(await store.presign_get("artifacts", key, 600)).content
    assert hashlib.sha256(final).digest() in {hashlib.sha256(b).digest() for b in bodies}
    assert not _temp_files(fs_backend.root)
