"""Group attachments end to end (routes 12-20, 54, 62) on SQLite and PostgreSQL, fs and S3 backends.

Every test runs four times: {SQLite, PostgreSQL} x {directory store, S3 on a real SeaweedFS}. Bytes
go through the URLs the coordinator hands out, exactly as clients move them.
"""

from __future__ import annotations

import asyncio
import http.client
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update

from mitosis.coordinator.db.engine import make_engine
from mitosis.coordinator.db.tables import attachments, groups, upload_reservations
from tests.support.coordinator import ADMIN_USER, LiveCoordinator, inprocess_coordinator
from tests.support.seaweed import SeaweedS3, start_seaweed

G = ADMIN_USER  # the admin's personal group


@pytest.fixture(scope="module")
def seaweed() -> Iterator[SeaweedS3]:
    server = start_seaweed()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Env:
    coord: LiveCoordinator
    backend: str
    db_url: str

    def __post_init__(self) -> None:
        self.admin = self.coord.admin()

    @property
    def store(self) -> Any:
        return self.coord.extra["app"].state.ctx.blobs

    def user(self, name: str) -> httpx.Client:
        return self.coord.client(self.coord.create_user(name, "pw-" + name))

    def url_for(self, client: httpx.Client, key: str, length: int, group: str = G) -> dict[str, Any]:
        r = client.post(f"/groups/{group}/attachments", json={"key": key, "content_length": length})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert set(body) == {"exist", "url"}
        return body

    def upload(self, client: httpx.Client, key: str, data: bytes, group: str = G) -> bool:
        body = self.url_for(client, key, len(data), group)
        reply = put(body["url"], data)
        assert reply.status_code == 200, reply.text
        return bool(body["exist"])

    def used(self, group: str = G) -> int:
        # A listing settles pending uploads (S3 tells the coordinator nothing), then read the books.
        assert self.admin.post(f"/groups/{group}/attachments/query", json={"count": True}).status_code == 200
        return int(self.admin.get(f"/groups/{group}").json()["storage_used"])

    def db(self, statement: Any) -> Any:
        async def run() -> Any:
            engine = make_engine(self.db_url)
            try:
                async with engine.begin() as conn:
                    result = await conn.execute(statement)
                    return result.all() if result.returns_rows else None
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def age_attachments(self) -> None:
        """Make every attachment look two hours old, past the one-hour delete protection."""
        self.db(update(attachments).values(updated_at=datetime.now(UTC) - timedelta(hours=2)))

    def reservations(self) -> int:
        return int(self.db(select(func.count()).select_from(upload_reservations))[0][0])

    def rows_sum(self, group: str = G) -> int:
        q = (
            select(func.coalesce(func.sum(attachments.c.size), 0))
            .select_from(attachments.join(groups, groups.c.id == attachments.c.group_id))
            .where(groups.c.group_name == group)
        )
        return int(self.db(q)[0][0])


@pytest.fixture(params=["fs", pytest.param("s3", marks=pytest.mark.s3)])
def env(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[Env]:
    extra: dict[str, Any] = {}
    if request.param == "s3":
        server: SeaweedS3 = request.getfixturevalue("seaweed")
        suffix = secrets.token_hex(4)
        extra = {
            "blob_store": "s3",
            "s3_url": server.endpoint,
            "s3_access_key": server.access_key,
            "s3_secret_key": server.secret_key,
            "s3_region": server.region,
            "s3_force_path_style": True,
            "artifacts_bucket": f"mito-art-{suffix}",
            "attachments_bucket": f"mito-att-{suffix}",
        }
    with inprocess_coordinator(tmp_path / "coord", db_url, **extra) as coord:
        e = Env(coord, request.param, db_url)
        try:
            yield e
        finally:
            e.admin.close()


def put(url: str, data: bytes) -> httpx.Response:
    return httpx.put(url, content=data, headers={"Content-Length": str(len(data))}, timeout=60)


def swap_key(url: str, old: str, new: str) -> str:
    parts = urlsplit(url)
    encoded = quote(old, safe="/")
    assert parts.path.endswith(encoded), parts.path
    return parts._replace(path=parts.path.removesuffix(encoded) + quote(new, safe="/")).geturl()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# ------------------------------------------------------------------------------ single objects


def test_upload_metadata_download_and_overwrite(env: Env) -> None:
    c = env.admin
    body = env.url_for(c, "data/a.txt", 5)
    assert body["exist"] is False
    # No row before the bytes arrive: an upload that never happens leaves nothing behind.
    r = c.get(f"/groups/{G}/attachments/data/a.txt")
    assert r.status_code == 404 and r.json() == {
        "msg": f"Attachment of group {G} and key data/a.txt not found"
    }
    assert put(body["url"], b"hello").status_code == 200

    meta = c.get(f"/groups/{G}/attachments/data/a.txt")
    assert meta.status_code == 200, meta.text
    m = meta.json()
    assert set(m) == {"content_type", "size", "created_at", "updated_at"}
    assert m["content_type"] == "NoSet" and m["size"] == 5
    dl = c.get(f"/groups/{G}/download/attachments/data/a.txt").json()
    assert set(dl) == {"url", "size"} and dl["size"] == 5
    assert httpx.get(dl["url"]).content == b"hello"

    assert env.upload(c, "data/a.txt", b"hi") is True  # exist: a row for the key already existed
    assert c.get(f"/groups/{G}/attachments/data/a.txt").json()["size"] == 2
    assert httpx.get(c.get(f"/groups/{G}/download/attachments/data/a.txt").json()["url"]).content == b"hi"
    assert env.used() == 2 == env.rows_sum()


def test_query_and_keys_named_query_or_list(env: Env) -> None:
    c = env.admin
    for key, data in (("data/a.txt", b"a"), ("data/b.bin", b"bb"), ("query", b"ccc"), ("list", b"dddd")):
        env.upload(c, key, data)

    r = c.post(f"/groups/{G}/attachments/query", json={})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["group_name"] == G and body["count"] == 4
    assert [a["key"] for a in body["attachments"]] == ["data/a.txt", "data/b.bin", "list", "query"]
    assert {a["key"]: a["size"] for a in body["attachments"]}["query"] == 3
    assert all(a["content_type"] == "NoSet" for a in body["attachments"])
    assert set(body["attachments"][0]) == {"key", "content_type", "size", "created_at", "updated_at"}

    sub = c.post(f"/groups/{G}/attachments/query", json={"key": "data/"}).json()
    assert [a["key"] for a in sub["attachments"]] == ["data/a.txt", "data/b.bin"] and sub["count"] == 2
    assert c.post(f"/groups/{G}/attachments/query", json={"count": True}).json() == {
        "count": 4,
        "attachments": [],
        "group_name": G,
    }
    page = c.post(f"/groups/{G}/attachments/query", json={"limit": 1, "offset": 1}).json()
    assert [a["key"] for a in page["attachments"]] == ["data/b.bin"] and page["count"] == 1

    # 0.6.8 answered 405 here (§11 Q7): the static POST routes no longer hide these keys.
    assert c.get(f"/groups/{G}/attachments/query").json()["size"] == 3
    assert c.get(f"/groups/{G}/attachments/list").json()["size"] == 4
    dl = c.get(f"/groups/{G}/download/attachments/list")
    assert dl.status_code == 200 and httpx.get(dl.json()["url"]).content == b"dddd"
    r = c.delete(f"/groups/{G}/attachments/query")
    assert r.status_code == 400
    assert r.json() == {
        "msg": "Process request error: Cannot delete attachment that has been updated in the last hour"
    }
    r = c.delete(f"/admin/groups/{G}/attachments/query")  # route 62: no one-hour rule
    assert r.status_code == 200 and r.content == b""
    assert c.get(f"/groups/{G}/attachments/query").status_code == 404
    env.age_attachments()
    assert c.delete(f"/groups/{G}/attachments/list").status_code == 200
    assert env.used() == 3 == env.rows_sum()


def test_bad_keys_are_400_with_the_reason(env: Env) -> None:
    c = env.admin
    cases = {
        "": "the key is empty",
        "/abs/path": "absolute path",
        "a//b": "contains '//'",
        "dir/": "ends with '/'",
        "../up": "'..' segment",
        "a/..": "'..' segment",
        "./a": "'.' segment",
        "a\x00b": "U+0000",
        "line\nbreak": "U+000A",
        "k" * (1023 - len(G)): "is 1024 bytes in UTF-8, it must be shorter than 1024",
    }
    for key, reason in cases.items():
        r = c.post(f"/groups/{G}/attachments", json={"key": key, "content_length": 1})
        assert r.status_code == 400, (key, r.text)
        msg = r.json()["msg"]
        assert msg.startswith(f"Process request error: Invalid attachment key {key!r}: "), msg
        assert reason in msg, msg
    # On read routes a key that cannot exist explains the miss instead of a bare 404.
    r = c.get(f"/groups/{G}/attachments/a%01b")
    assert r.status_code == 400 and "U+0001" in r.json()["msg"]
    r = c.get(f"/groups/{G}/download/attachments/dir/")
    assert r.status_code == 400 and "ends with '/'" in r.json()["msg"]
    assert env.reservations() == 0 and env.used() == 0


def test_permissions_and_missing_things(env: Env) -> None:
    alice, bob = env.user("alice"), env.user("bob")
    env.upload(alice, "f.txt", b"alice's", "alice")
    for r in (
        bob.get("/groups/alice/attachments/f.txt"),
        bob.get("/groups/alice/download/attachments/f.txt"),
        bob.delete("/groups/alice/attachments/f.txt"),
        bob.post("/groups/alice/attachments", json={"key": "x", "content_length": 1}),
    ):
        assert r.status_code == 403, r.text
        assert r.json()["msg"].startswith("Authentication error: Permission denied")
    not_member = {"msg": "Process request error: Group with name alice not found or user is not in the group"}
    for path, payload in (
        ("/groups/alice/attachments/query", {}),
        ("/groups/alice/download/attachments", {}),
        ("/groups/alice/download/attachments/list", {"keys": ["f.txt"]}),
        ("/groups/alice/delete/attachments", {}),
        ("/groups/alice/delete/attachments/list", {"keys": ["f.txt"]}),
    ):
        r = bob.post(path, json=payload)
        assert (r.status_code, r.json()) == (400, not_member), path

    assert alice.put("/groups/alice/users", json={"relations": {"bob": "Read"}}).status_code == 200
    assert bob.get("/groups/alice/attachments/f.txt").json()["size"] == 7
    assert bob.post("/groups/alice/attachments/query", json={}).json()["count"] == 1
    assert bob.post("/groups/alice/attachments", json={"key": "x", "content_length": 1}).status_code == 403
    assert bob.delete("/groups/alice/attachments/f.txt").status_code == 403
    assert bob.post("/groups/alice/delete/attachments/list", json={"keys": ["f.txt"]}).status_code == 403
    assert bob.delete("/admin/groups/alice/attachments/f.txt").status_code == 403  # not a system admin

    r = alice.get("/groups/nope/attachments/x")
    assert (r.status_code, r.json()) == (404, {"msg": "Attachment of group nope and key x not found"})
    r = alice.post("/groups/nope/attachments", json={"key": "x", "content_length": 1})
    assert (r.status_code, r.json()) == (404, {"msg": "Group nope not found"})
    r = alice.post("/groups/alice/download/attachments/list", json={"keys": []})
    assert (r.status_code, r.json()) == (400, {"msg": "Process request error: Keys list cannot be empty"})
    r = alice.post("/groups/alice/delete/attachments/list", json={"keys": []})
    assert r.status_code == 400
    assert alice.get("/groups/alice/attachments/f.txt", headers={"Authorization": ""}).status_code == 400


# ----------------------------------------------------------------------------------- batches


def test_batch_download_and_delete(env: Env) -> None:
    c = env.admin
    data = {"batch/1": b"one", "batch/2": b"two2", "batch/3": b"three", "other": b"keep me"}
    for key, payload in data.items():
        env.upload(c, key, payload)

    r = c.post(f"/groups/{G}/download/attachments", json={"key": "batch/"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["group_name"] == G
    assert sorted(d["key"] for d in body["downloads"]) == ["batch/1", "batch/2", "batch/3"]
    for item in body["downloads"]:
        assert item["size"] == len(data[item["key"]])
        assert httpx.get(item["url"]).content == data[item["key"]]
    urls = {d["key"]: d["url"] for d in body["downloads"]}

    r = c.post(f"/groups/{G}/download/attachments/list", json={"keys": ["batch/1", "missing"]})
    assert [(d["key"], d["size"]) for d in r.json()["downloads"]] == [("batch/1", 3)]

    listed = {"keys": ["batch/1", "missing"]}
    r = c.post(f"/groups/{G}/delete/attachments/list", json=listed)
    assert r.json() == {"deleted_count": 0, "failed_keys": ["batch/1", "missing"], "group_name": G}
    env.age_attachments()
    r = c.post(f"/groups/{G}/delete/attachments/list", json=listed)
    assert r.json() == {"deleted_count": 1, "failed_keys": ["missing"], "group_name": G}
    r = c.post(f"/groups/{G}/delete/attachments", json={"key": "batch/"})
    assert r.json() == {"deleted_count": 2, "group_name": G}
    assert c.post(f"/groups/{G}/attachments/query", json={}).json()["count"] == 1
    for url in urls.values():
        assert httpx.get(url).status_code in (403, 404)  # the bytes are gone too
    assert env.used() == len(data["other"]) == env.rows_sum()
    r = c.post(f"/groups/{G}/delete/attachments/list", json={"keys": ["k"] * 10_001})
    assert r.status_code == 400 and "at most 10000" in r.json()["msg"]


# ---------------------------------------------------------------------------------- route 54


def test_worker_attachment_url(env: Env) -> None:
    c = env.admin
    env.upload(c, "inputs/x.csv", b"1,2,3\n")
    task = c.post(
        "/tasks",
        json={
            "group_name": G,
            "tags": [],
            "labels": [],
            "timeout": "1m",
            "priority": 0,
            "task_spec": {"args": ["true"]},
        },
    ).json()
    worker = c.post("/workers", json={"tags": [], "labels": [], "groups": []}).json()
    w = env.coord.client(worker["token"])
    path = f"/workers/tasks/{task['uuid']}/attachments/inputs/x.csv"
    r = w.get(path)
    assert r.status_code == 200, r.text
    assert r.json()["size"] == 6 and httpx.get(r.json()["url"]).content == b"1,2,3\n"
    r = w.get(f"/workers/tasks/{task['uuid']}/attachments/nope")
    assert (r.status_code, r.json()) == (404, {"msg": f"Attachment of group {G} and key nope not found"})
    ghost = "00000000-0000-4000-8000-000000000000"
    r = w.get(f"/workers/tasks/{ghost}/attachments/inputs/x.csv")
    assert (r.status_code, r.json()) == (404, {"msg": f"Task with uuid {ghost} not found"})
    assert c.get(path).status_code == 403  # a user token on a worker path (A5)

    # A worker of another group may not read this group's attachments (A4).
    other = env.coord.client(
        env.user("carol").post("/workers", json={"tags": [], "labels": [], "groups": []}).json()["token"]
    )
    r = other.get(path)
    assert r.status_code == 403 and "does not serve group" in r.json()["msg"]

    # Archived tasks work too (0.6.8 answered 500, §11 Q8).
    got = w.get("/workers/tasks").json()
    assert got["uuid"] == task["uuid"]
    assert w.post("/workers/tasks", json={"id": got["id"], "op": "Finish"}).status_code == 200
    r = w.post("/workers/tasks", json={"id": got["id"], "op": {"Commit": {"exit_status": 0, "msg": None}}})
    assert r.status_code == 200, r.text
    assert w.get(path).json()["size"] == 6


# -------------------------------------------------------------------------- URLs and accounting


def test_expired_url_and_url_for_another_key_are_refused(env: Env) -> None:
    c = env.admin
    body = env.url_for(c, "u/a", 3)
    r = put(swap_key(body["url"], f"{G}/u/a", f"{G}/u/b"), b"abc")
    assert r.status_code == 403, r.text
    env.upload(c, "u/real", b"xyz")
    dl = c.get(f"/groups/{G}/download/attachments/u/real").json()["url"]
    assert httpx.get(swap_key(dl, f"{G}/u/real", f"{G}/u/a")).status_code == 403

    short = asyncio.run(env.store.presign_put("attachments", f"{G}/u/late", 3, 1))
    short_get = asyncio.run(env.store.presign_get("attachments", f"{G}/u/real", 1))
    time.sleep(2.5)
    assert put(short, b"abc").status_code == 403
    assert httpx.get(short_get).status_code == 403
    for key in ("u/a", "u/b", "u/late"):
        assert c.get(f"/groups/{G}/attachments/{key}").status_code == 404
    assert env.used() == 3 == env.rows_sum()


def test_storage_used_equals_bytes_stored(env: Env) -> None:
    alice = env.user("alice")
    r = env.admin.post("/admin/groups/alice/storage-quota", json={"storage_quota": "1KiB"})
    assert r.json() == {"storage_quota": 1024}

    env.upload(alice, "big.bin", b"x" * 600, "alice")
    assert env.used("alice") == 600
    # A smaller overwrite shrinks the books (0.6.8 kept 600).
    env.upload(alice, "big.bin", b"y" * 100, "alice")
    assert env.used("alice") == 100

    r = alice.post("/groups/alice/attachments", json={"key": "huge.bin", "content_length": 1000})
    assert r.status_code == 403
    assert r.json()["msg"].startswith("Resource quota exceeded: group alice uses 100 B of 1 KiB; ")
    pending = env.url_for(alice, "c.bin", 800, "alice")  # 100 + 800 reserved: 124 bytes left
    r = alice.post("/groups/alice/attachments", json={"key": "d.bin", "content_length": 200})
    assert r.status_code == 403 and "800 B more are reserved by uploads in progress" in r.json()["msg"]
    assert env.used("alice") == 100  # a reservation is not usage
    assert put(pending["url"], b"c" * 800).status_code == 200
    assert env.used("alice") == 900 == env.rows_sum("alice")

    env.age_attachments()
    assert alice.delete("/groups/alice/attachments/big.bin").status_code == 200
    assert env.used("alice") == 800
    assert env.admin.delete("/admin/groups/alice/attachments/c.bin").status_code == 200
    assert env.used("alice") == 0 == env.rows_sum("alice")
    r = alice.get("/groups/alice/attachments/c.bin")
    assert r.status_code == 404


def test_interrupted_upload_leaves_no_row_and_no_charge(env: Env) -> None:
    c = env.admin
    env.upload(c, "kept.bin", b"original")
    size = 4 << 20
    for key in ("new.bin", "kept.bin"):
        url = urlsplit(env.url_for(c, key, size)["url"])
        assert url.hostname == "127.0.0.1" and url.port is not None
        head = (
            f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: {size}\r\n\r\n"
        ).encode()
        with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
            conn.sendall(head + b"z" * (size // 2))
            time.sleep(0.3)  # let the server start receiving before the client "dies"
    if env.backend == "fs":
        # The PUT handler releases the reservation of a failed upload.
        assert wait_for(lambda: env.reservations() == 0), env.reservations()
    else:
        time.sleep(0.5)
    r = c.get(f"/groups/{G}/attachments/new.bin")
    assert r.status_code == 404, r.text
    kept = c.get(f"/groups/{G}/download/attachments/kept.bin").json()
    assert kept["size"] == 8 and httpx.get(kept["url"]).content == b"original"
    assert env.used() == 8 == env.rows_sum()


def test_concurrent_uploads_to_one_key(env: Env) -> None:
    c = env.admin
    sizes = [1000 + 7919 * i for i in range(6)]
    urls = [env.url_for(c, "race.bin", n)["url"] for n in sizes]
    barrier = threading.Barrier(len(urls))
    results: list[int] = [0] * len(urls)

    def run(i: int) -> None:
        barrier.wait(timeout=10)
        results[i] = put(urls[i], bytes([65 + i]) * sizes[i]).status_code

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [200] * len(urls)

    meta = c.get(f"/groups/{G}/attachments/race.bin").json()
    content = httpx.get(c.get(f"/groups/{G}/download/attachments/race.bin").json()["url"]).content
    assert len(content) == meta["size"] and meta["size"] in sizes
    winner = sizes.index(meta["size"])
    assert content == bytes([65 + winner]) * sizes[winner]  # one whole upload, never a mix
    assert env.used() == meta["size"] == env.rows_sum()
    assert c.post(f"/groups/{G}/attachments/query", json={}).json()["count"] == 1
    if env.backend == "fs":
        assert env.reservations() == 0


def test_pynetmito_uploads_with_only_content_length(env: Env, tmp_path: Path) -> None:
    from pynetmito.client import MitoHttpClient

    client = MitoHttpClient(env.coord.url)
    client.credential = env.coord.login()
    source = tmp_path / "payload.bin"
    source.write_bytes(b"from pynetmito\n" * 100)
    client.upload_attachment(source, G, "sdk/payload.bin")
    resp = client.get_attachment_download_resp(G, "sdk/payload.bin")
    assert resp.size == 1500
    target = tmp_path / "back.bin"
    client.download_file(resp, target)
    assert target.read_bytes() == source.read_bytes()

    # The barest PUT there is: request line, Host and Content-Length, nothing else.
    url = urlsplit(env.url_for(env.admin, "bare.bin", 4)["url"])
    conn = http.client.HTTPConnection(url.netloc, timeout=10)
    conn.putrequest("PUT", f"{url.path}?{url.query}", skip_accept_encoding=True)
    conn.putheader("Content-Length", "4")
    conn.endheaders(b"bare")
    assert conn.getresponse().status == 200
    conn.close()
    assert env.admin.get(f"/groups/{G}/attachments/bare.bin").json()["size"] == 4
    assert env.used() == 1504 == env.rows_sum()


def test_expired_reservation_is_settled_from_the_store(env: Env) -> None:
    c = env.admin
    body = env.url_for(c, "late.bin", 10)
    assert put(body["url"], b"0123456789").status_code == 200
    before = env.reservations()
    assert before == (0 if env.backend == "fs" else 1)  # S3 uploads are only seen when looked for
    env.db(update(upload_reservations).values(expires_at=datetime.now(UTC) - timedelta(hours=2)))
    # Asking for another URL settles the group's expired reservations first.
    env.url_for(c, "next.bin", 1)
    assert int(c.get(f"/groups/{G}").json()["storage_used"]) == 10
    assert c.get(f"/groups/{G}/attachments/late.bin").json()["size"] == 10
    assert env.reservations() == 1  # only next.bin's


def test_artifact_accounting_follows_real_bytes(env: Env) -> None:
    """Artifacts share the scheme: no row before the bytes, smaller overwrites shrink, deletes give back."""
    c = env.admin
    task = c.post(
        "/tasks",
        json={
            "group_name": G,
            "tags": [],
            "labels": [],
            "timeout": "1m",
            "priority": 0,
            "task_spec": {"args": ["true"]},
        },
    ).json()
    uuid = task["uuid"]

    def artifact_url(length: int) -> dict[str, Any]:
        r = c.post(f"/tasks/{uuid}/artifacts", json={"content_type": "result", "content_length": length})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    first = artifact_url(300)
    assert first["exist"] is False
    r = c.get(f"/tasks/{uuid}/download/artifacts/result")
    assert r.status_code == 404  # nothing stored yet, nothing recorded
    assert put(first["url"], b"r" * 300).status_code == 200
    dl = c.get(f"/tasks/{uuid}/download/artifacts/result").json()
    assert dl["size"] == 300 and len(httpx.get(dl["url"]).content) == 300
    assert int(c.get(f"/groups/{G}").json()["storage_used"]) == 300

    second = artifact_url(50)
    assert second["exist"] is True
    assert put(second["url"], b"s" * 50).status_code == 200
    assert c.get(f"/tasks/{uuid}/download/artifacts/result").json()["size"] == 50
    assert int(c.get(f"/groups/{G}").json()["storage_used"]) == 50

    abandoned = artifact_url(70)
    assert put(swap_key(abandoned["url"], "result.tar.gz", "std-log.tar.gz"), b"t" * 70).status_code == 403
    assert c.delete(f"/admin/tasks/{uuid}/artifacts/result").status_code == 200
    assert int(c.get(f"/groups/{G}").json()["storage_used"]) == 0


def test_batch_requests_are_bounded(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Key lists above MAX_BATCH are a 400 naming the bound; filters answer at most MAX_BATCH rows."""
    c = env.admin
    too_many = {"keys": [f"k{i}" for i in range(10_001)]}
    for path in (f"/groups/{G}/download/attachments/list", f"/groups/{G}/delete/attachments/list"):
        r = c.post(path, json=too_many)
        assert r.status_code == 400, (path, r.text)
        assert r.json() == {
            "msg": "Process request error: Too many keys: 10001 in one request, at most 10000; split the list"
        }

    # The real bound is 10,000 rows; a bound of 3 shows the same rules without 10,000 uploads.
    monkeypatch.setattr("mitosis.coordinator.services.attachments.MAX_BATCH", 3)
    keys = [f"many/{i}" for i in range(5)]
    for key in keys:
        env.upload(c, key, key.encode())
    r = c.post(f"/groups/{G}/download/attachments/list", json={"keys": keys[:3]})
    assert sorted(d["key"] for d in r.json()["downloads"]) == keys[:3]
    r = c.post(f"/groups/{G}/download/attachments/list", json={"keys": keys[:4]})
    assert r.status_code == 400 and "Too many keys: 4 in one request, at most 3" in r.json()["msg"]
    r = c.post(f"/groups/{G}/delete/attachments/list", json={"keys": keys[:4]})
    assert r.status_code == 400 and "at most 3" in r.json()["msg"]

    first = c.post(f"/groups/{G}/download/attachments", json={"key": "many/"}).json()["downloads"]
    assert [d["key"] for d in first] == keys[:3]  # at most the bound, in key order
    big_limit = {"key": "many/", "limit": 100, "offset": 3}
    rest = c.post(f"/groups/{G}/download/attachments", json=big_limit).json()["downloads"]
    assert [d["key"] for d in rest] == keys[3:]  # the rest, by paging
    for d in first + rest:
        assert httpx.get(d["url"]).content == d["key"].encode()

    env.age_attachments()
    r = c.post(f"/groups/{G}/delete/attachments", json={"key": "many/", "limit": 100})
    assert r.json() == {"deleted_count": 3, "group_name": G}  # one request deletes at most the bound
    r = c.post(f"/groups/{G}/delete/attachments", json={"key": "many/"})
    assert r.json() == {"deleted_count": 2, "group_name": G}
    assert c.post(f"/groups/{G}/attachments/query", json={"count": True}).json()["count"] == 0
    assert env.used() == 0 == env.rows_sum()
