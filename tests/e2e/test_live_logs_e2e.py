"""Live logs, the event stream and Redis announcements end to end: a `mito coordinator` process, real
`mito worker` processes running real commands, and the `mito client` CLI or the SDK reading them.

* a task printing 50 MB to stdout is streamed while it runs, and what the SDK's follower received
  is byte-identical to the std-log artifact (and to what the command printed);
* ``tasks logs --follow`` prints both streams and exits with the task's exit code; after the task
  ended the same command reads the std-log artifact;
* ``tasks wait`` returns through the event stream (with a 30 s poll interval it could not return
  in time by polling);
* ``tasks watch`` (once, and live until every task ended);
* with Redis, the worker announces exec states that a client subscribed with the client ACL sees.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from mitosis.client.sdk import MitoClient
from mitosis.client.stream import LogEnd
from tests.e2e.clientcli import client_argv, client_env
from tests.support import databases
from tests.support.cluster import (
    WorkerPool,
    create_group,
    kill_processes_mentioning,
    setup_user,
    sh,
    submit,
    wait_for,
    wait_task,
)
from tests.support.coordinator import LiveCoordinator, inprocess_coordinator
from tests.support.databases import Names

pytestmark = pytest.mark.e2e

LINES = 6_500_000  # `seq 1 LINES` prints 52.9 MB, every line different (reordering would show)


def expected_seq(n: int) -> bytes:
    return b"".join(b"%d\n" % i for i in range(1, n + 1))


def std_log(client: MitoClient, uuid: str) -> dict[str, bytes]:
    url = client.artifact_download_url(uuid, "std-log").url
    with httpx.Client(base_url=client.base_url, timeout=60) as http:
        r = http.get(url)
        assert r.status_code == 200, r.text[:200]
    out = {}
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        for name in ("stdout", "stderr"):
            fh = tar.extractfile(f"std-log/{name}.log")
            assert fh is not None
            out[name] = fh.read()
    return out


class Cli:
    """The CLI with a credential file holding the test's token: a password login would rotate the
    user's signature and invalidate the token the test and the worker use."""

    def __init__(self, coord: LiveCoordinator, home: Path, user: str, token: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "cred").write_text(f"{user}:{token}")
        self.base = [*client_argv(), "-c", coord.url, "--credential-path", str(home / "cred"), "-u", user]
        self.env = client_env(home)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*self.base, *args],
            env=self.env,
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def lab(coord: LiveCoordinator, names: Names, pool: WorkerPool, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A user with a group of their own served by one worker, an SDK client and a CLI."""
    user, group = names("live"), names("livelab")
    token, http = setup_user(coord, user, "pw")
    create_group(http, group)
    pool.start_workers(coord, user, token, 1, groups=[group])
    client = MitoClient(coord.url, token=token, username=user)
    try:
        yield {
            "user": user,
            "group": group,
            "http": http,
            "client": client,
            "cli": Cli(coord, tmp_path / "cli", user, token),
        }
    finally:
        client.close()
        http.close()


def test_50mb_streamed_live_matches_artifact(lab: dict[str, Any], pool: WorkerPool) -> None:
    client: MitoClient = lab["client"]
    uuid = submit(
        lab["http"],
        lab["group"],
        sh(f"seq 1 {LINES}; echo done >&2"),
        terminal_output=True,
        timeout="5m",
    )
    digests = {"stdout": hashlib.sha256(), "stderr": hashlib.sha256()}
    sizes = {"stdout": 0, "stderr": 0}
    reader = client.logs(uuid, follow=True)
    for stream, data in reader:
        digests[stream].update(data)
        sizes[stream] += len(data)
    assert isinstance(reader.end, LogEnd), pool.logs()
    assert reader.end.state == "Finished" and reader.end.exit_code == 0

    expected = expected_seq(LINES)
    assert len(expected) > 50_000_000
    assert sizes["stdout"] == len(expected), pool.logs()
    assert digests["stdout"].hexdigest() == hashlib.sha256(expected).hexdigest()
    assert sizes["stderr"] == 5
    artifact = std_log(client, uuid)
    assert hashlib.sha256(artifact["stdout"]).hexdigest() == digests["stdout"].hexdigest()
    assert artifact["stderr"] == b"done\n"
    assert "Traceback" not in pool.logs()


def test_logs_follow_exits_with_the_task_exit_code(lab: dict[str, Any], pool: WorkerPool) -> None:
    cli: Cli = lab["cli"]
    uuid = submit(
        lab["http"],
        lab["group"],
        sh("echo out-1; echo err-1 >&2; sleep 1; echo out-2; exit 3"),
        terminal_output=True,
    )
    live = cli.run("tasks", "logs", uuid, "--follow")
    assert live.returncode == 3, live.stderr.decode()
    assert live.stdout == b"out-1\nout-2\n"
    assert b"err-1\n" in live.stderr
    wait_task(lab["http"], uuid, pool=pool)

    # Ended: the same command reads the std-log artifact (exit 0 without --follow).
    again = cli.run("tasks", "logs", uuid, "--stream", "stdout")
    assert again.returncode == 0 and again.stdout == b"out-1\nout-2\n" and b"err-1" not in again.stderr
    followed = cli.run("tasks", "logs", uuid, "-f", "--stream", "stderr")
    assert followed.returncode == 3 and followed.stderr.endswith(b"err-1\n") and followed.stdout == b""

    killed = submit(lab["http"], lab["group"], sh("echo bye; kill -9 $$"), terminal_output=True)
    res = cli.run("tasks", "logs", killed, "--follow")
    assert res.returncode == 128 + 9 and res.stdout == b"bye\n", res.stderr.decode()


def test_wait_returns_through_events(lab: dict[str, Any], pool: WorkerPool) -> None:
    cli: Cli = lab["cli"]
    uuid = submit(lab["http"], lab["group"], sh("sleep 2; exit 4"))
    started = time.monotonic()
    # Polling every 30 s could not end before the timeout; only the event stream can.
    res = cli.run("tasks", "wait", uuid, "--poll", "30s", timeout=25)
    elapsed = time.monotonic() - started
    assert res.returncode == 4, res.stderr.decode() + pool.logs()
    assert f"Task {uuid} Finished: exit 4".encode() in res.stdout
    assert elapsed < 20

    # Already ended: the state check after subscribing answers at once.
    res = cli.run("tasks", "wait", uuid, "--poll", "30s", timeout=25)
    assert res.returncode == 4
    # A task that never runs: the timeout ends the wait with exit 1.
    stuck = submit(lab["http"], lab["group"], ["true"], tags=["nowhere"])
    res = cli.run("tasks", "wait", stuck, "--timeout", "1s", timeout=25)
    assert res.returncode == 1 and b"has not ended" in res.stderr


def test_watch_once_and_live(lab: dict[str, Any], pool: WorkerPool) -> None:
    cli: Cli = lab["cli"]
    uuids = [submit(lab["http"], lab["group"], sh(f"sleep 1; exit {i}"), labels=["w"]) for i in range(2)]
    res = cli.run("tasks", "watch", "-g", lab["group"], "-l", "w", "--once")
    assert res.returncode == 0, res.stderr.decode()
    text = res.stdout.decode()
    assert all(u in text for u in uuids) and "2 task(s)" in text

    live = cli.run("tasks", "watch", "-g", lab["group"], "-l", "w", timeout=60)
    assert live.returncode == 0, live.stderr.decode() + pool.logs()
    final = live.stdout.decode()
    assert "2 ended" in final and "exit 1" in final and "exit 0" in final


# -------------------------------------------------------------------------------------- Redis

REDIS_URL = os.environ.get("MITO_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _spawn_worker(coord: LiveCoordinator, home: Path, user: str, token: str, group: str) -> Any:
    """A `mito worker` that connects to Redis (the pool's workers run with --skip-redis)."""
    (home / "cache").mkdir(parents=True)
    (home / "config").mkdir(parents=True)
    cred = home / "credentials"
    cred.write_text(f"{user}:{token}")
    argv = [sys.executable, "-m", "mitosis.cli.main", "worker", "-c", coord.url, "--credential-path"]
    argv += [str(cred), "-u", user, "-g", group, "--polling-interval", "1s", "--heartbeat-interval", "1s"]
    argv += ["--long-poll", "10s", "--work-dir", str(home / "work")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MITO_")}
    env.update(XDG_CACHE_HOME=str(home / "cache"), XDG_CONFIG_HOME=str(home / "config"))
    with (home / "worker.log").open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.redis
@pytest.mark.xdist_group("redis_acl")
def test_worker_announces_exec_states_through_redis(tmp_path: Path) -> None:
    """The ACL users are fixed names shared with test_redis_acl.py: run with ``--dist loadgroup``."""
    admin: Any = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        admin.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}); start one or set MITO_TEST_REDIS")
    extra = {
        "redis_url": REDIS_URL,
        "redis_worker_password": "live-w-pw",
        "redis_client_password": "live-c-pw",
    }
    worker = None
    try:
        with inprocess_coordinator(tmp_path / "coord", databases.sqlite_url(tmp_path), **extra) as coord:
            token, http = setup_user(coord, "redisuser", "pw")
            with http:
                create_group(http, "redislab")
                client_url = http.get("/redis").json()["url"]
                sub: Any = redis.Redis.from_url(client_url.split("?", 1)[0], protocol=3, socket_timeout=10)
                pubsub = sub.pubsub()
                pubsub.psubscribe("task:*")
                assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
                worker = _spawn_worker(coord, tmp_path / "worker", "redisuser", token, "redislab")
                uuid = submit(http, "redislab", sh("echo hi"), terminal_output=True)
                codes: list[int] = []

                def collect() -> bool:
                    msg = pubsub.get_message(timeout=0.2)
                    if msg and msg["type"] == "pmessage" and msg["channel"] == f"task:{uuid}".encode():
                        codes.append(int(msg["data"]))
                    return 19 in codes  # TaskCommitted

                log = tmp_path / "worker" / "worker.log"
                try:
                    wait_for(collect, 60, "TaskCommitted on Redis", interval=0)
                except TimeoutError:
                    raise AssertionError(f"codes {codes}; worker log:\n{log.read_text()}") from None
                assert 11 in codes and codes.index(11) < codes.index(19)  # ExecSpawned … TaskCommitted
                assert int(sub.get(f"task:{uuid}")) == 19
                pubsub.close()
                sub.close()
                assert "cannot connect to redis" not in log.read_text()
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        kill_processes_mentioning(str(tmp_path / "worker"))
        admin.execute_command("ACL", "DELUSER", "mitosis_worker", "mitosis_client")
        admin.close()
