"""Redis as in 0.6.8 (behavior.md §8) against real Redis servers.

The ACL user names are fixed by 0.6.8, so every test of this module runs serially in one module and
the users are deleted from the shared server at the end. The outage test starts its own throwaway
``redis-server`` on a free port and never touches the shared server's process.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from mitosis.coordinator.events.redis_acl import PASSWORD_FILE, handed_out_url
from tests.support import databases
from tests.support.coordinator import free_port, inprocess_coordinator

pytestmark = [pytest.mark.redis, pytest.mark.xdist_group("redis_acl")]

REDIS_URL = os.environ.get("MITO_TEST_REDIS", "redis://127.0.0.1:6379/0")


def connect(url: str) -> Any:
    """redis-py does not read 0.6.8's ``?protocol=resp3``; take the rest of the URL as it is."""
    return redis.Redis.from_url(url.split("?", 1)[0], protocol=3, socket_timeout=5)


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[str]:
    admin: Any = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        admin.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}); start one or set MITO_TEST_REDIS")
    try:
        yield REDIS_URL
    finally:
        admin.execute_command("ACL", "DELUSER", "mitosis_worker", "mitosis_client")
        admin.close()


def wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_urls_keep_scheme_and_db_index() -> None:
    assert (
        handed_out_url("redis://:pw@localhost:6379", "u", "p") == "redis://u:p@localhost:6379/?protocol=resp3"
    )
    assert handed_out_url("rediss://h:6380/3", "u", "p/q") == "rediss://u:p%2Fq@h:6380/3?protocol=resp3"
    assert handed_out_url("redis://[::1]", "u", "p") == "redis://u:p@[::1]:6379/?protocol=resp3"


def test_acl_users_and_handed_out_urls(shared_redis: str, tmp_path: Path) -> None:
    db = databases.sqlite_url(tmp_path)
    with inprocess_coordinator(tmp_path / "c", db, redis_url=shared_redis) as coord, coord.admin() as admin:
        client_url = admin.get("/redis").json()["url"]
        parts = urlsplit(client_url)
        assert parts.username == "mitosis_client" and parts.path == "/0" and parts.query == "protocol=resp3"
        worker_url = admin.post("/workers", json={"tags": [], "labels": [], "groups": []}).json()["redis_url"]
        assert urlsplit(worker_url).username == "mitosis_worker"
        saved = tmp_path / "c" / PASSWORD_FILE
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600

        worker: Any = connect(worker_url)
        client: Any = connect(client_url)
        wait_for(lambda: client.ping())
        sub = client.pubsub()
        sub.subscribe("task:abc")
        assert sub.get_message(timeout=5)["type"] == "subscribe"
        worker.set("task:abc", 11, ex=60)
        assert worker.publish("task:abc", 11) >= 1
        msg = sub.get_message(timeout=5)
        assert msg is not None and msg["data"] == b"11"
        assert client.get("task:abc") == b"11"
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("task:abc", 1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.set("other:abc", 1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.execute_command("FLUSHALL")
        sub.close()
        worker.close()
        client.close()

    # A restart keeps the generated passwords, so registered workers' URLs stay valid (Q11).
    with inprocess_coordinator(tmp_path / "c", db, redis_url=shared_redis) as again, again.admin() as admin:
        assert admin.get("/redis").json()["url"] == client_url
    # Configured passwords are used as they are.
    with (
        inprocess_coordinator(
            tmp_path / "d",
            databases.sqlite_url(tmp_path / "d"),
            redis_url=shared_redis,
            redis_client_password="c-pw",
        ) as conf,
        conf.admin() as admin,
    ):
        url = admin.get("/redis").json()["url"]
        assert urlsplit(url).password == "c-pw"
        wait_for(lambda: connect(url).ping())


def test_redis_outage_is_logged_once_and_recovered(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server_bin = shutil.which("redis-server")
    assert server_bin, "redis-server is needed for this test"
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [server_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: redis.Redis(port=port).ping())
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        proc.wait(10)

    caplog.set_level(logging.INFO, logger="mitosis.coordinator.events.redis_acl")
    db = databases.sqlite_url(tmp_path)
    with inprocess_coordinator(tmp_path / "c", db, redis_url=url) as coord, coord.admin() as admin:
        # Redis is down: the coordinator serves and hands out the URL anyway.
        client_url = admin.get("/redis").json()["url"]
        assert client_url.startswith("redis://mitosis_client:") and f":{port}/0?" in client_url
        r = admin.post(
            "/tasks",
            json={
                "group_name": "mitosis_admin",
                "tags": [],
                "labels": [],
                "timeout": "1m",
                "priority": 0,
                "task_spec": {"args": ["true"]},
            },
        )
        assert r.status_code == 200
        time.sleep(4)  # several reconnect attempts
        down = [rec for rec in caplog.records if "unreachable" in rec.getMessage()]
        assert len(down) == 1, [rec.getMessage() for rec in down]

        proc = start()
        try:
            wait_for(lambda: connect(client_url).ping())  # the ACL users were set on reconnect
            stop(proc)
            proc = start()  # a fresh server has no ACL users; the coordinator sets them again
            wait_for(lambda: connect(client_url).ping())
        finally:
            stop(proc)
        assert any("is back" in rec.getMessage() for rec in caplog.records)
