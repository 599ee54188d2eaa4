"""Secrets never reach the logs (issue 8): a full run with every secret given on the command line.

A coordinator process on an S3 store (SeaweedFS, keys on the command line) with the admin password
on the command line; a worker that logs in with ``--password``; a user who logs in, submits, gets
the artifact, changes the password; a failed login; a worker registered over the API that
heartbeats, fetches and unregisters with its token; then every line the coordinator and the worker
wrote is searched for each password (plain and as its md5 hex), each user and worker token and the
S3 secret key.

The ``mito worker`` process keeps its token (issued at registration) in memory only. Ed25519
signatures are deterministic, so the test rebuilds it from the coordinator's key: the claims are the
worker's uuid, ``sign`` 0, ``typ`` worker and an ``exp`` of registration time plus the token
lifetime, one candidate per second of the registration window. That the rebuild is byte-exact is
checked on the API-registered worker, whose real token the test holds.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import databases, tokens
from tests.support.cluster import create_group, sh, submit, wait_task, worker_pool
from tests.support.coordinator import ADMIN_PASSWORD, coordinator_process, md5
from tests.support.seaweed import seaweed_server

pytestmark = [pytest.mark.e2e, pytest.mark.s3]

USER_PASSWORD = "user-pw-Zq81xLm0"
NEW_PASSWORD = "new-pw-Hh3kd92P"
S3_SECRET = "s3-secret-Pq0zXv77k"


def worker_token(data_dir: Path, worker_uuid: str, exp: int) -> str:
    """The token the coordinator issues to a worker whose token expires at ``exp`` (services.workers)."""
    claims = {"sub": worker_uuid, "exp": exp, "sign": 0, "typ": "worker"}
    return tokens.sign_token(claims, tokens.real_key(data_dir))


def test_no_secret_in_any_log(tmp_path: Path) -> None:
    with seaweed_server(tmp_path / "s3", secret_key=S3_SECRET) as s3, coordinator_process(
        tmp_path / "coord",
        databases.sqlite_url(tmp_path),
        "--blob-store", "s3", "--s3", s3.endpoint, "--s3-access-key", s3.access_key,
        "--s3-secret-key", S3_SECRET, "--s3-region", s3.region, "--s3-force-path-style", "--file-log",
    ) as coord, worker_pool(tmp_path / "workers") as pool:  # fmt: skip
        admin_token = coord.login()
        user_token = coord.create_user("alice", USER_PASSWORD)
        alice = coord.client(user_token)
        create_group(alice, "lab")
        # The worker's cached token is unusable, so it logs in with the password on its command line.
        spawned_at = time.time()
        worker = pool.spawn(coord, "alice", "not-a-valid-token", groups=["lab"], extra=["-p", USER_PASSWORD])
        pool.wait_registered([worker])
        registered_at = time.time()
        alice.close()  # the worker's login rotated alice's signature (0.6.8): log in again
        user_token = coord.login("alice", USER_PASSWORD)
        alice = coord.client(user_token)
        # A worker over the API (serving only alice's own group): its token is used on worker paths.
        asked_at = int(time.time())
        r = alice.post("/workers", json={"tags": [], "labels": [], "groups": []})
        assert r.status_code == 200, r.text
        api_worker_token = r.json()["token"]
        api_claims = tokens.claims_of(api_worker_token)
        assert worker_token(coord.data_dir, api_claims["sub"], api_claims["exp"]) == api_worker_token
        lifetime = api_claims["exp"] - asked_at  # no --lifetime: the coordinator's default, as below
        with coord.client(api_worker_token) as api_worker:
            assert api_worker.post("/workers/heartbeat").status_code == 200
            assert api_worker.get("/workers/tasks").json() is None
            assert api_worker.delete("/workers").status_code == 200
        worker_uuid = worker.worker_uuid()
        assert worker_uuid is not None
        worker_tokens = {
            f"worker token (exp {exp})": worker_token(coord.data_dir, worker_uuid, exp)
            for exp in range(int(spawned_at) + lifetime - 1, int(registered_at) + lifetime + 2)
        }
        uuid = submit(alice, "lab", sh('echo result > "$MITO_RESULT_DIR/out.txt"; echo to-stdout'))
        info = wait_task(alice, uuid, pool=pool)
        assert info["info"]["result"] == {"exit_status": 0, "msg": None}, pool.logs()
        r = alice.get(f"/tasks/{uuid}/download/artifacts/result")
        assert r.status_code == 200, r.text
        assert httpx.get(r.json()["url"]).status_code == 200
        assert (
            httpx.post(
                f"{coord.url}/login", json={"username": "alice", "md5_password": md5("bad")}
            ).status_code
            == 401
        )
        r = alice.post(
            "/users/alice/password",
            json={"old_md5_password": md5(USER_PASSWORD), "new_md5_password": md5(NEW_PASSWORD)},
        )
        assert r.status_code == 200, r.text
        new_token = r.json()["token"]
        # The client CLI with the password on its command line.
        cli = subprocess.run(
            [sys.executable, "-m", "mitosis.cli.main", "client", "-c", coord.url, "--credential-path",
             str(tmp_path / "cli-cred"), "login", "alice", NEW_PASSWORD],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        alice.close()
        pool.close()
        logs = {w.log: w.log_text() for w in pool.workers}
    logs[coord.data_dir / "coordinator.log"] = (coord.data_dir / "coordinator.log").read_text(
        errors="replace"
    )
    for extra in (coord.data_dir / "logs").glob("*.log"):
        logs[extra] = extra.read_text(errors="replace")
    logs[Path("client-cli")] = cli.stdout + cli.stderr
    secrets = {
        "admin password": ADMIN_PASSWORD,
        "user password": USER_PASSWORD,
        "new password": NEW_PASSWORD,
        "s3 secret": S3_SECRET,
        "admin token": admin_token,
        "user token": user_token,
        "new token": new_token,
        "token signature": user_token[-40:],
        "api worker token": api_worker_token,
        "api worker token signature": api_worker_token[-40:],
        **worker_tokens,
    }
    for name in ("user password", "new password", "admin password"):
        secrets[f"{name} md5"] = hashlib.md5(secrets[name].encode()).hexdigest()
    total = sum(len(text) for text in logs.values())
    assert total > 1000 and "registered" in "".join(logs.values()), "the logs are (nearly) empty"
    leaks = [(name, str(path)) for path, text in logs.items() for name, s in secrets.items() if s in text]
    assert not leaks, f"secrets found in logs: {leaks}"
    print(
        f"RESULT secrets-in-logs files={len(logs)} bytes={total} secrets={len(secrets)} "
        f"(worker token candidates {len(worker_tokens)}) leaks=0"
    )
