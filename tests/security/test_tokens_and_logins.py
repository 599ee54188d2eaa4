"""Hostile tokens, stored password hashes, login throttling and request size bounds (issue 8).

One in-process coordinator on SQLite per module; each test uses its own user names so that the
login throttle of one test never counts another's failures.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.support import databases
from tests.support.cluster import create_group, submit
from tests.support.coordinator import LiveCoordinator, inprocess_coordinator, md5
from tests.support.tokens import claims_of, expired, foreign, real_key

USER_PATHS = [("GET", "/auth"), ("GET", "/users/groups"), ("POST", "/tasks/query")]
WORKER_PATHS = [("GET", "/workers/tasks"), ("POST", "/workers/heartbeat")]


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCoordinator]:
    tmp = tmp_path_factory.mktemp("sec")
    with inprocess_coordinator(
        tmp / "coord",
        databases.sqlite_url(tmp),
        login_lockout="3s",
        max_request_body=1 << 20,
    ) as c:
        yield c


@pytest.fixture(scope="module")
def tokens(coord: LiveCoordinator) -> dict[str, str]:
    user = coord.create_user("tokuser", "pw-tokuser")
    with coord.client(user) as c:
        create_group(c, "tokgroup")
        r = c.post("/workers", json={"tags": [], "labels": [], "groups": ["tokgroup"], "lifetime": None})
        assert r.status_code == 200, r.text
        worker = r.json()["token"]
    return {"user": user, "worker": worker}


def _call(coord: LiveCoordinator, token: str, method: str, path: str) -> httpx.Response:
    body: Any = {} if method == "POST" else None
    return httpx.request(
        method, coord.url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _alg_none(token: str) -> str:
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims_of(token)).encode())
    return base64.b64encode(f"{header}.{payload}.".encode()).decode()


def _hs256_with_public_key(token: str, data_dir: Path) -> str:
    """The classic key-confusion forgery: HMAC keyed with the (public) verification key's bytes."""
    public_pem = (data_dir / "keys" / "public.pem").read_bytes()
    raw_public = (
        real_key(data_dir)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    out = []
    for key in (public_pem, raw_public):
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(claims_of(token)).encode())
        import hashlib
        import hmac

        sig = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        out.append(base64.b64encode(f"{header}.{payload}.{_b64url(sig)}".encode()).decode())
    return out[0] + "|" + out[1]


def _forgeries(coord: LiveCoordinator, token: str) -> dict[str, str]:
    hs_pem, hs_raw = _hs256_with_public_key(token, coord.data_dir).split("|")
    return {
        "alg-none": _alg_none(token),
        "hs256-public-pem": hs_pem,
        "hs256-public-raw": hs_raw,
        "expired": expired(token, coord.data_dir),
        "another-key": foreign(token),
        "garbage": "not-a-token",
        "unpadded-jwt": jwt.encode(claims_of(token), real_key(coord.data_dir), algorithm="EdDSA")[:-4],
    }


@pytest.mark.parametrize("kind", ["user", "worker"])
def test_forged_tokens_are_refused(coord: LiveCoordinator, tokens: dict[str, str], kind: str) -> None:
    paths = USER_PATHS if kind == "user" else WORKER_PATHS
    forgeries = _forgeries(coord, tokens[kind])
    if kind == "worker":
        # DECISIONS S15: a worker token is valid while its worker row lives and its lifetime lasts;
        # its `exp` claim is not what ends it (see test_worker_token_ends_with_its_lifetime).
        del forgeries["expired"]
    for name, forged in forgeries.items():
        for method, path in paths:
            r = _call(coord, forged, method, path)
            assert r.status_code == 401, (name, path, r.status_code, r.text)
    # The genuine tokens work on their own paths (so the refusals above are about the forgery).
    assert _call(coord, tokens["user"], "GET", "/auth").status_code == 200


def test_worker_token_ends_with_its_lifetime(coord: LiveCoordinator, tokens: dict[str, str]) -> None:
    with coord.client(tokens["user"]) as c:
        body = {"tags": [], "labels": [], "groups": ["tokgroup"], "lifetime": "1s"}
        r = c.post("/workers", json=body)
        assert r.status_code == 200, r.text
        short = r.json()["token"]
    assert _call(coord, short, "POST", "/workers/heartbeat").status_code == 200
    time.sleep(2.5)
    for method, path in WORKER_PATHS:
        assert _call(coord, short, method, path).status_code == 401


def test_token_types_are_not_interchangeable(coord: LiveCoordinator, tokens: dict[str, str]) -> None:
    for method, path in USER_PATHS:
        r = _call(coord, tokens["worker"], method, path)
        assert r.status_code in (401, 403), (path, r.status_code, r.text)
    for method, path in WORKER_PATHS:
        r = _call(coord, tokens["user"], method, path)
        assert r.status_code in (401, 403), (path, r.status_code, r.text)
    assert _call(coord, tokens["worker"], "POST", "/workers/heartbeat").status_code == 200


def test_passwords_are_argon2id_at_rest(coord: LiveCoordinator) -> None:
    coord.create_user("hashcheck", "a secret password")
    db = coord.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select username, encrypted_password from users").fetchall()
    assert rows
    for username, stored in rows:
        assert stored.startswith("$argon2id$v=19$"), (username, stored[:20])
        assert "a secret password" not in stored
        assert bytes(md5("a secret password")).hex() not in stored


def _login(coord: LiveCoordinator, user: str, password: str, ip: str | None = None) -> httpx.Response:
    body = {"username": user, "md5_password": md5(password), "retain": True}
    return httpx.post(f"{coord.url}/login", json=body, timeout=10)


def test_login_throttled_per_user(coord: LiveCoordinator) -> None:
    coord.create_user("victim", "right")
    codes = [_login(coord, "victim", f"wrong{i}").status_code for i in range(5)]
    assert codes == [401] * 5
    r = _login(coord, "victim", "right")  # even the right password waits out the lockout
    assert r.status_code == 429, r.text
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= 3
    msg = r.json()["msg"]
    assert "Too many failed logins for user 'victim'" in msg and "try again in" in msg
    # Another user from the same address is not affected (per-address limit is higher).
    coord.create_user("bystander", "pw")
    assert _login(coord, "bystander", "pw").status_code == 200
    time.sleep(retry + 0.2)
    assert _login(coord, "victim", "right").status_code == 200
    # A success clears the user's count.
    assert _login(coord, "victim", "wrong").status_code == 401
    assert _login(coord, "victim", "right").status_code == 200


def test_login_throttled_per_address(tmp_path: Path) -> None:
    with inprocess_coordinator(
        tmp_path / "coord", databases.sqlite_url(tmp_path), login_failures_per_address=8, login_lockout="2s"
    ) as c:
        # A spray over many user names (2 failures each, under the per-user limit) from one address.
        codes = [_login(c, f"sprayed{i}", "guess").status_code for i in range(4) for _ in range(2)]
        assert codes == [401] * 8
        r = _login(c, c.admin_user, c.admin_password)
        assert r.status_code == 429, r.text
        assert "address 127.0.0.1" in r.json()["msg"]
        assert "Retry-After" in r.headers


def test_request_body_is_bounded(coord: LiveCoordinator, tokens: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {tokens['user']}", "Content-Type": "application/json"}
    big = b'{"group_name": "tokgroup", "pad": "' + b"x" * (1 << 20) + b'"}'
    r = httpx.post(f"{coord.url}/tasks/query", content=big, headers=headers, timeout=10)
    assert r.status_code == 413, r.text
    assert "exceeds the limit of 1 MiB" in r.json()["msg"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"group_name": "tokgroup", "pad": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    r = httpx.post(f"{coord.url}/tasks/query", content=chunks(), headers=headers, timeout=10)
    assert r.status_code == 413, r.text
    # Under the limit still works.
    r = httpx.post(f"{coord.url}/tasks/query", json={"group_name": "tokgroup"}, headers=headers)
    assert r.status_code == 200, r.text


def test_batch_lists_are_capped(coord: LiveCoordinator, tokens: dict[str, str]) -> None:
    with coord.client(tokens["user"]) as c:
        uuid = submit(c, "tokgroup", ["true"], tags=["nobody"])
        too_many = [uuid] * 10_001
        for path, body in (
            ("/tasks/cancel/list", {"uuids": too_many}),
            ("/tasks/download/artifacts/list", {"uuids": too_many, "content_type": "result"}),
        ):
            r = c.post(path, json=body)
            assert r.status_code in (400, 422), (path, r.status_code)
            assert "at most 10000" in r.json()["msg"], r.text
        task = {"group_name": "tokgroup", "tags": ["nobody"], "labels": [], "timeout": "1s", "priority": 0,
                "task_spec": {"args": ["true"]}}  # fmt: skip
        r = c.post("/tasks/submit", json={"tasks": [task] * 10_001})
        # 1.1 MB: over this coordinator's 1 MiB body limit, or else over the batch cap.
        assert r.status_code in (413, 422), r.text
        assert "1 MiB" in r.json()["msg"] or "at most 10000" in r.json()["msg"], r.text
