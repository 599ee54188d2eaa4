"""Semantics of accounts, tokens and groups (issue 2) against 0.6.8's behavior, on SQLite and PostgreSQL.

Login ``retain``, password changes, locked and deleted users, group quota, personal groups, member
lists, the last-Admin rule (DECISIONS A6), quota strings, the datetime format, token types
(DECISIONS A5) and the stored Argon2id hashes.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from tests.support import tokens
from tests.support.coordinator import LiveCoordinator, md5
from tests.support.databases import Names

WRONG_CREDENTIALS = {"msg": "Authentication error: Wrong credentials"}
INVALID_TOKEN = {"msg": "Authentication error: Invalid token"}
PERMISSION_DENIED = "Authentication error: Permission denied"
DATETIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{1,9} \+00:00:00$")


@dataclass
class Env:
    coord: LiveCoordinator
    names: Names
    admin: httpx.Client

    def user(self, prefix: str = "user") -> tuple[str, httpx.Client]:
        name = self.names(prefix)
        return name, self.coord.client(self.coord.create_user(name, f"pw-{name}"))

    def login(self, name: str, password: str | None = None, retain: bool = False) -> httpx.Response:
        body = {"username": name, "md5_password": md5(password or f"pw-{name}"), "retain": retain}
        return httpx.post(f"{self.coord.url}/login", json=body)

    def token(self, name: str, password: str | None = None, retain: bool = False) -> str:
        r = self.login(name, password, retain)
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    def auth(self, token: str) -> httpx.Response:
        return httpx.get(f"{self.coord.url}/auth", headers={"Authorization": f"Bearer {token}"})

    def group_quota(self, name: str, spec: str) -> httpx.Response:
        return self.admin.post(f"/admin/users/{name}/group-quota", json={"group_quota": spec})

    def storage_quota(self, group: str, spec: str) -> httpx.Response:
        return self.admin.post(f"/admin/groups/{group}/storage-quota", json={"storage_quota": spec})


@pytest.fixture(scope="module")
def env(module_coordinator: LiveCoordinator, names: Names) -> Iterator[Env]:
    with module_coordinator.admin() as admin:
        yield Env(module_coordinator, names, admin)


def denied(r: httpx.Response) -> bool:
    return r.status_code == 403 and r.json()["msg"].startswith(PERMISSION_DENIED)


# ------------------------------------------------------------------------------------- login, tokens


def test_login_without_retain_invalidates_older_tokens(env: Env) -> None:
    name, _ = env.user()
    first = env.token(name)
    assert env.auth(first).text == name
    second = env.token(name, retain=False)
    assert env.auth(second).text == name
    r = env.auth(first)
    assert (r.status_code, r.json()) == (401, WRONG_CREDENTIALS)
    assert tokens.claims_of(first)["sign"] != tokens.claims_of(second)["sign"]


def test_login_with_retain_keeps_older_tokens(env: Env) -> None:
    name, _ = env.user()
    first = env.token(name)
    second = env.token(name, retain=True)
    assert env.auth(first).text == name and env.auth(second).text == name
    assert tokens.claims_of(first)["sign"] == tokens.claims_of(second)["sign"]
    assert tokens.claims_of(second)["sub"] == name and tokens.claims_of(second)["typ"] == "user"


def test_login_token_lifetime_is_seven_days(env: Env) -> None:
    name, _ = env.user()
    exp = tokens.claims_of(env.token(name))["exp"]
    assert abs(exp - (time.time() + 7 * 86400)) < 60


def test_wrong_password_and_unknown_user(env: Env) -> None:
    name, c = env.user()
    assert (env.login(name, "nope").status_code, env.login(name, "nope").json()) == (401, WRONG_CREDENTIALS)
    assert env.login(env.names("ghost")).json() == WRONG_CREDENTIALS
    assert c.get("/auth").text == name, "a failed login touched the user's tokens"


def test_own_password_change_returns_new_token_and_kills_old_ones(env: Env) -> None:
    name, c = env.user()
    retained = env.token(name, retain=True)
    r = c.post(
        f"/users/{name}/password",
        json={"old_md5_password": md5(f"pw-{name}"), "new_md5_password": md5("new")},
    )
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["token"]
    new = r.json()["token"]
    assert env.auth(new).text == name
    for old in (retained, c.headers["authorization"].split()[1]):
        assert (env.auth(old).status_code, env.auth(old).json()) == (401, WRONG_CREDENTIALS)
    assert env.login(name).status_code == 401
    assert env.login(name, "new").status_code == 200


def test_own_password_change_needs_the_old_password(env: Env) -> None:
    name, c = env.user()
    r = c.post(
        f"/users/{name}/password", json={"old_md5_password": md5("wrong"), "new_md5_password": md5("new")}
    )
    assert (r.status_code, r.json()) == (401, WRONG_CREDENTIALS)
    assert c.get("/auth").text == name
    assert env.login(name).status_code == 200 and env.login(name, "new").status_code == 401


def test_own_password_change_of_someone_else_is_refused(env: Env) -> None:
    victim, _ = env.user("victim")
    name, c = env.user()
    pw = md5(f"pw-{name}")
    r = c.post(f"/users/{victim}/password", json={"old_md5_password": pw, "new_md5_password": md5("mine")})
    assert (r.status_code, r.json()) == (401, WRONG_CREDENTIALS)
    assert env.login(victim).status_code == 200 and env.login(victim, "mine").status_code == 401


def test_admin_password_change_kills_tokens(env: Env) -> None:
    name, c = env.user()
    retained = env.token(name, retain=True)
    r = env.admin.post(f"/admin/users/{name}/password", json={"new_md5_password": md5("reset")})
    assert (r.status_code, r.content) == (200, b"")
    for old in (retained, c.headers["authorization"].split()[1]):
        assert env.auth(old).json() == WRONG_CREDENTIALS
    assert env.login(name).status_code == 401
    assert env.auth(env.token(name, "reset")).text == name


@pytest.mark.parametrize("state", ["Locked", "Deleted"])
def test_locked_and_deleted_users_are_shut_out(env: Env, state: str) -> None:
    name, c = env.user()
    if state == "Deleted":
        r = env.admin.delete(f"/admin/users/{name}")
    else:
        r = env.admin.post(f"/admin/users/{name}/state", json={"state": state})
    assert (r.status_code, r.json()) == (200, {"state": state})
    assert denied(env.login(name))
    assert denied(env.login(name, "wrong password")), "0.6.8 checks the state before the password"
    for r in (c.get("/auth"), c.get("/users/groups"), c.post("/groups", json={"group_name": env.names("g")})):
        assert denied(r), r.text
    # The personal group and the name stay taken.
    assert env.admin.get(f"/groups/{name}").json()["creator_username"] == name
    again = env.admin.post("/admin/users", json={"username": name, "md5_password": md5("x"), "admin": False})
    assert again.status_code == 409
    # Reactivation restores the very same tokens (same sign), as 0.6.8.
    assert env.admin.post(f"/admin/users/{name}/state", json={"state": "Active"}).json() == {
        "state": "Active"
    }
    assert c.get("/auth").text == name


def test_admin_user_is_admin_and_plain_user_is_not(env: Env) -> None:
    name = env.names("newadmin")
    r = env.admin.post("/admin/users", json={"username": name, "md5_password": md5("pw"), "admin": True})
    assert r.status_code == 200
    with env.coord.client(env.token(name, "pw")) as c:
        assert c.post(f"/admin/users/{name}/group-quota", json={"group_quota": "+0"}).json() == {
            "group_quota": 8
        }
    plain, pc = env.user()
    assert denied(pc.post(f"/admin/users/{plain}/group-quota", json={"group_quota": "+0"}))


def test_expiry_and_leeway(env: Env) -> None:
    name, c = env.user()
    token = c.headers["authorization"].split()[1]
    key = tokens.real_key(env.coord.data_dir)
    now = int(time.time())
    assert env.auth(tokens.reissued(token, key, exp=now + 30)).text == name
    # Expired but inside the JWT library's 60 s leeway: the user check refuses it.
    assert env.auth(tokens.reissued(token, key, exp=now - 20)).json() == WRONG_CREDENTIALS
    # Past the leeway the token itself is invalid.
    assert env.auth(tokens.reissued(token, key, exp=now - 600)).json() == INVALID_TOKEN
    assert env.auth(tokens.reissued(token, key, exp=None)).json() == INVALID_TOKEN
    assert env.auth("not base64!").json() == INVALID_TOKEN
    assert env.auth(tokens.foreign(token)).json() == INVALID_TOKEN


def test_token_types(env: Env) -> None:
    """DECISIONS A5: typed tokens only on their own paths; 0.6.8 tokens (no typ) still verify."""
    name, c = env.user()
    token = c.headers["authorization"].split()[1]
    key = tokens.real_key(env.coord.data_dir)
    assert env.auth(tokens.reissued(token, key, typ=None)).text == name
    r = httpx.post(f"{env.coord.url}/workers/heartbeat", headers={"Authorization": f"Bearer {token}"})
    assert denied(r), r.text
    worker = c.post("/workers", json={"tags": [], "labels": [], "groups": []}).json()
    assert denied(env.auth(worker["token"]))
    # A 0.6.8 worker token carries no typ: on a user path it names no user.
    assert env.auth(tokens.reissued(worker["token"], key, typ=None)).json() == WRONG_CREDENTIALS


def test_missing_or_malformed_header(env: Env) -> None:
    r = httpx.get(f"{env.coord.url}/auth")
    assert (r.status_code, r.json()) == (400, {"msg": "Header of type `authorization` was missing"})
    r = httpx.get(f"{env.coord.url}/auth", headers={"Authorization": "Basic abc"})
    assert r.status_code == 400 and "authorization" in r.json()["msg"]


# --------------------------------------------------------------------------------------------- groups


def test_personal_group(env: Env) -> None:
    name, c = env.user()
    assert c.get("/users/groups").json() == {"groups": {name: "Admin"}}
    info = c.get(f"/groups/{name}").json()
    assert info["group_name"] == name and info["creator_username"] == name
    assert info["users_in_group"] == {name: "Admin"}
    assert (
        info["state"],
        info["task_count"],
        info["storage_quota"],
        info["storage_used"],
        info["worker_count"],
    ) == ("Active", 0, 16_000_000_000, 0, 0)


def test_datetimes_use_the_068_format(env: Env) -> None:
    name, c = env.user()
    group = env.names("grp")
    assert c.post("/groups", json={"group_name": group}).status_code == 200
    for g in (name, group):
        info = c.get(f"/groups/{g}").json()
        for key in ("created_at", "updated_at"):
            assert DATETIME.match(info[key]), info[key]
            fraction = info[key].split(".")[1].split(" ")[0]
            assert fraction == "0" or not fraction.endswith("0"), f"trailing zeros kept: {info[key]}"


def test_create_group_makes_caller_admin(env: Env) -> None:
    name, c = env.user()
    group = env.names("grp")
    r = c.post("/groups", json={"group_name": group})
    assert (r.status_code, r.content) == (200, b"")
    assert c.get("/users/groups").json() == {"groups": {name: "Admin", group: "Admin"}}
    info = c.get(f"/groups/{group}").json()
    assert info["creator_username"] == name and info["users_in_group"] == {name: "Admin"}


def test_group_quota_is_enforced(env: Env) -> None:
    name, c = env.user()
    assert env.group_quota(name, "=2").json() == {"group_quota": 2}
    first = env.names("grp")
    assert c.post("/groups", json={"group_name": first}).status_code == 200
    refused = env.names("grp")
    r = c.post("/groups", json={"group_name": refused})
    assert r.status_code == 403 and r.json()["msg"].startswith("Resource quota exceeded"), r.text
    assert env.admin.get(f"/groups/{refused}").status_code == 404
    assert set(c.get("/users/groups").json()["groups"]) == {name, first}
    assert env.group_quota(name, "+1").json() == {"group_quota": 3}
    assert c.post("/groups", json={"group_name": refused}).status_code == 200
    assert env.group_quota(name, "=1").json() == {"group_quota": 1}
    assert c.post("/groups", json={"group_name": env.names("grp")}).status_code == 403


def test_members_list_only_for_group_admins(env: Env) -> None:
    owner, oc = env.user("owner")
    reader, rc = env.user("reader")
    writer, wc = env.user("writer")
    admin2, ac = env.user("admin2")
    _, xc = env.user("outsider")
    relations = {reader: "Read", writer: "Write", admin2: "Admin"}
    assert oc.put(f"/groups/{owner}/users", json={"relations": relations}).status_code == 200
    everyone = {owner: "Admin", **relations}
    assert oc.get(f"/groups/{owner}").json()["users_in_group"] == everyone
    assert ac.get(f"/groups/{owner}").json()["users_in_group"] == everyone
    for c in (rc, wc):
        r = c.get(f"/groups/{owner}")
        assert r.status_code == 200 and r.json()["users_in_group"] is None
        assert "users_in_group" in r.json()
    assert denied(xc.get(f"/groups/{owner}"))
    assert rc.get("/users/groups").json() == {"groups": {reader: "Admin", owner: "Read"}}
    # A role change is an upsert.
    assert oc.put(f"/groups/{owner}/users", json={"relations": {reader: "Admin"}}).status_code == 200
    assert rc.get(f"/groups/{owner}").json()["users_in_group"] == {**everyone, reader: "Admin"}


def test_last_admin_is_protected(env: Env) -> None:
    """DECISIONS A6: a group keeps at least one Admin (409), whichever route would remove the last."""
    owner, oc = env.user("owner")
    other, otc = env.user("other")
    group = env.names("grp")
    assert oc.post("/groups", json={"group_name": group}).status_code == 200

    def conflict(r: httpx.Response) -> None:
        assert r.status_code == 409 and "at least one Admin" in r.json()["msg"], r.text

    conflict(oc.put(f"/groups/{group}/users", json={"relations": {owner: "Write"}}))
    conflict(oc.delete(f"/groups/{group}/users", params={"users": owner}))
    conflict(oc.post(f"/groups/{group}/users/remove", json={"users": [owner]}))
    conflict(oc.delete(f"/groups/{owner}/users", params={"users": owner}))
    assert oc.get(f"/groups/{group}").json()["users_in_group"] == {owner: "Admin"}

    assert oc.put(f"/groups/{group}/users", json={"relations": {other: "Admin"}}).status_code == 200
    conflict(oc.put(f"/groups/{group}/users", json={"relations": {owner: "Read", other: "Write"}}))
    conflict(oc.post(f"/groups/{group}/users/remove", json={"users": [owner, other]}))
    assert oc.get(f"/groups/{group}").json()["users_in_group"] == {owner: "Admin", other: "Admin"}

    # With two Admins one may step down; then the other is the last.
    assert oc.put(f"/groups/{group}/users", json={"relations": {owner: "Read"}}).status_code == 200
    conflict(otc.delete(f"/groups/{group}/users", params={"users": other}))
    assert otc.delete(f"/groups/{group}/users", params={"users": owner}).status_code == 200
    assert otc.get(f"/groups/{group}").json()["users_in_group"] == {other: "Admin"}
    assert denied(oc.get(f"/groups/{group}"))


def test_valid_names(env: Env) -> None:
    for name in ("A-b_9", "x", "-_-", "0123"):
        full = f"{name}{env.names('')}"
        r = env.admin.post("/admin/users", json={"username": full, "md5_password": md5("pw"), "admin": False})
        assert r.status_code == 200, r.text
        _, c = env.user()
        assert c.post("/groups", json={"group_name": f"g{full}"}).status_code == 200


# --------------------------------------------------------------------------------------- quota strings


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (["+2"], 10), (["-1"], 7), (["=5"], 5), (["7"], 7), (["-100"], 0), (["=0", "+3"], 3),
        (["++1"], 9), (["+-1"], 7), (["=2147483647"], 2147483647),
    ],
)  # fmt: skip
def test_group_quota_strings(env: Env, steps: list[str], expected: int) -> None:
    name, _ = env.user()
    for spec in steps:
        r = env.group_quota(name, spec)
        assert r.status_code == 200, r.text
    assert r.json() == {"group_quota": expected}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("10GiB", 10 * 2**30), ("10GB", 10 * 10**9), ("=5M", 5_000_000), ("1.5KB", 1500), ("7", 7),
        ("+1KiB", 16_000_000_000 + 1024), ("-2GB", 14_000_000_000), ("-100GB", 16_000_000_000 - 100 * 10**9),
        ("1 mib", 2**20), ("0", 0),
    ],
)  # fmt: skip
def test_storage_quota_strings(env: Env, spec: str, expected: int) -> None:
    name, c = env.user()
    r = env.storage_quota(name, spec)
    assert (r.status_code, r.json()) == (200, {"storage_quota": expected})
    assert c.get(f"/groups/{name}").json()["storage_quota"] == expected


# --------------------------------------------------------------------------------------- stored hashes


def _stored_hashes(coord: LiveCoordinator, names: list[str]) -> dict[str, str]:
    if coord.db_url.startswith("sqlite:///"):
        with sqlite3.connect(coord.db_url.removeprefix("sqlite:///")) as db:
            rows = db.execute(
                f"SELECT username, encrypted_password FROM users WHERE username IN ({','.join('?' * len(names))})",
                names,
            ).fetchall()
        return dict(rows)

    async def fetch() -> dict[str, str]:
        conn = await asyncpg.connect(coord.db_url)
        try:
            rows = await conn.fetch(
                "SELECT username, encrypted_password FROM users WHERE username = ANY($1)", names
            )
        finally:
            await conn.close()
        return {r["username"]: r["encrypted_password"] for r in rows}

    return asyncio.run(fetch())


def test_passwords_are_stored_as_argon2id(env: Env) -> None:
    name, _ = env.user()
    changed, cc = env.user()
    r = cc.post(
        f"/users/{changed}/password",
        json={"old_md5_password": md5(f"pw-{changed}"), "new_md5_password": md5("n")},
    )
    assert r.status_code == 200
    stored = _stored_hashes(env.coord, [name, changed, env.coord.admin_user])
    assert set(stored) == {name, changed, env.coord.admin_user}
    digests = {
        name: md5(f"pw-{name}"),
        changed: md5("n"),
        env.coord.admin_user: md5(env.coord.admin_password),
    }
    for user, phc in stored.items():
        assert phc.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), phc
        salt, digest = phc.split("$")[4:]
        assert len(salt) == 22 and len(digest) == 43, "16-byte salt and 32-byte hash, unpadded base64"
        raw = bytes(digests[user])
        assert raw.hex() not in phc and str(list(raw)) not in phc
    # The stored hash verifies the md5 bytes, as 0.6.8's argon2 does.
    from argon2 import PasswordHasher

    assert PasswordHasher().verify(stored[changed], bytes(md5("n")))
