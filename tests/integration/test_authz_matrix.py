"""Authorization matrix of the account and group endpoints (issue 2), on SQLite and PostgreSQL.

Every endpoint is called by every identity; each call must give exactly the status in the table, the
0.6.8 body (the ``msg`` text on errors, the JSON shape on success) and the matching effect: a
successful call changed what it should, a refused call changed nothing.

Identities: anonymous (no header: 400, as 0.6.8's extractor), a plain user who is not a member of
the group ``team``, Read / Write / Admin members of ``team``, the system admin, a locked user (a
Write member), a Write member's token re-signed with an ``exp`` an hour ago, the same token signed by
a key the coordinator never saw, and a worker token on a user path (403, DECISIONS A5).

Deliberate choice checked here: system admins pass the group-role checks (they read any group with
its member list and manage members), in line with DECISIONS A1-A3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support import tokens
from tests.support.coordinator import ADMIN_PASSWORD, ADMIN_USER, LiveCoordinator, md5
from tests.support.databases import Names

ANON, OUTSIDER, READER, WRITER, GADMIN, SYSADMIN = (
    "anonymous",
    "outsider",
    "reader",
    "writer",
    "gadmin",
    "sysadmin",
)
LOCKED, EXPIRED, FOREIGN, WORKER = "locked", "expired", "foreign-key", "worker-token"
IDENTITIES = [ANON, OUTSIDER, READER, WRITER, GADMIN, SYSADMIN, LOCKED, EXPIRED, FOREIGN, WORKER]
ACTIVE_USERS = [OUTSIDER, READER, WRITER, GADMIN, SYSADMIN]
TEAM = "team"

MISSING_HEADER = "Header of type `authorization` was missing"
INVALID_TOKEN = "Authentication error: Invalid token"
WRONG_CREDENTIALS = "Authentication error: Wrong credentials"
PERMISSION_DENIED = "Authentication error: Permission denied"

# Expected status for the identities holding a valid token of an active user.
#                                              outsider reader writer gadmin sysadmin
MEMBER_STATUS: dict[str, tuple[int, int, int, int, int]] = {
    "POST /login":                               (200, 200, 200, 200, 200),
    "GET /auth":                                 (200, 200, 200, 200, 200),
    "GET /redis":                                (200, 200, 200, 200, 200),
    "POST /users/{self}/password":               (200, 200, 200, 200, 200),
    "GET /users/groups":                         (200, 200, 200, 200, 200),
    "POST /groups":                              (200, 200, 200, 200, 200),
    "GET /groups/team":                          (403, 200, 200, 200, 200),
    "PUT /groups/team/users":                    (403, 403, 403, 200, 200),
    "DELETE /groups/team/users?users=":          (403, 403, 403, 200, 200),
    "POST /groups/team/users/remove":            (403, 403, 403, 200, 200),
    "POST /admin/users":                         (403, 403, 403, 403, 200),
    "DELETE /admin/users/{u}":                   (403, 403, 403, 403, 200),
    "POST /admin/users/{u}/password":            (403, 403, 403, 403, 200),
    "POST /admin/users/{u}/group-quota":         (403, 403, 403, 403, 200),
    "POST /admin/users/{u}/state":               (403, 403, 403, 403, 200),
    "POST /admin/groups/{g}/storage-quota":      (403, 403, 403, 403, 200),
    "GET /admin/groups/{g}/retention":           (403, 403, 403, 403, 200),
    "POST /admin/groups/{g}/retention":          (403, 403, 403, 403, 200),
}  # fmt: skip

# Every endpoint but /login needs a user token: these identities never get through.
REFUSED_STATUS = {ANON: 400, LOCKED: 403, EXPIRED: 401, FOREIGN: 401, WORKER: 403}
# /login needs no token (a header is ignored); only the locked user is refused.
LOGIN_STATUS = {ANON: 200, LOCKED: 403, EXPIRED: 200, FOREIGN: 200, WORKER: 200}


def expected_status(endpoint: str, who: str) -> int:
    if who in ACTIVE_USERS:
        return MEMBER_STATUS[endpoint][ACTIVE_USERS.index(who)]
    return (LOGIN_STATUS if endpoint == "POST /login" else REFUSED_STATUS)[who]


# ------------------------------------------------------------------------------------------- world


@dataclass
class World:
    coord: LiveCoordinator
    names: Names
    tokens: dict[str, str] = field(default_factory=dict)
    worker_token: str = ""
    created_groups: dict[str, list[str]] = field(default_factory=dict)

    @staticmethod
    def username(who: str) -> str:
        return ADMIN_USER if who == SYSADMIN else who

    @staticmethod
    def password(username: str) -> str:
        return ADMIN_PASSWORD if username == ADMIN_USER else f"pw-{username}"

    def headers(self, who: str) -> dict[str, str]:
        if who == ANON:
            return {}
        if who == WORKER:
            token = self.worker_token
        elif who == EXPIRED:
            token = tokens.expired(self.tokens[WRITER], self.coord.data_dir)
        elif who == FOREIGN:
            token = tokens.foreign(self.tokens[WRITER])
        else:
            token = self.tokens[who]
        return {"Authorization": f"Bearer {token}"}

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=self.coord.url, headers=self.headers(who), timeout=30)

    def as_token(self, token: str) -> httpx.Client:
        return self.coord.client(token)

    def login(self, username: str, password: str | None = None) -> httpx.Response:
        body = {
            "username": username,
            "md5_password": md5(password or self.password(username)),
            "retain": True,
        }
        return httpx.post(f"{self.coord.url}/login", json=body)

    def new_user(self, prefix: str) -> str:
        name = self.names(prefix)
        with self.client(SYSADMIN) as c:
            r = c.post(
                "/admin/users",
                json={"username": name, "md5_password": md5(self.password(name)), "admin": False},
            )
        assert r.status_code == 200, r.text
        return name

    def members(self, group: str) -> dict[str, str]:
        with self.client(GADMIN) as c:
            r = c.get(f"/groups/{group}")
        assert r.status_code == 200, r.text
        members: dict[str, str] = r.json()["users_in_group"]
        return members

    def set_roles(self, relations: dict[str, str]) -> None:
        with self.client(GADMIN) as c:
            r = c.put(f"/groups/{TEAM}/users", json={"relations": relations})
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def world(module_coordinator: LiveCoordinator, names: Names) -> Iterator[World]:
    w = World(coord=module_coordinator, names=names)
    w.tokens[SYSADMIN] = module_coordinator.login()
    for who in (OUTSIDER, READER, WRITER, GADMIN, LOCKED):
        w.tokens[who] = module_coordinator.create_user(who, w.password(who))
    with w.client(GADMIN) as c:
        assert c.post("/groups", json={"group_name": TEAM}).status_code == 200
    w.set_roles({READER: "Read", WRITER: "Write", LOCKED: "Write"})
    with w.client(SYSADMIN) as c:
        assert c.post(f"/admin/users/{LOCKED}/state", json={"state": "Locked"}).json() == {"state": "Locked"}
        r = c.post("/workers", json={"tags": [], "labels": [], "groups": []})
        assert r.status_code == 200, r.text
        w.worker_token = r.json()["token"]
    yield w


# --------------------------------------------------------------------------------------- endpoints

# An endpoint makes its call as ``who`` and returns the reply plus a check of the effect, which is
# given whether the call succeeded: it asserts the change happened, or that nothing changed.
Effect = Callable[[bool], None]
Endpoint = Callable[[World, str, httpx.Client], tuple[httpx.Response, Effect]]


def _login(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    username = w.username(who if who in [*ACTIVE_USERS, LOCKED] else OUTSIDER)
    body = {"username": username, "md5_password": md5(w.password(username)), "retain": True}
    r = c.post("/login", json=body)

    def effect(ok: bool) -> None:
        if ok:
            assert list(r.json()) == ["token"]
            with w.as_token(r.json()["token"]) as fresh:
                assert fresh.get("/auth").text == username

    return r, effect


def _auth(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    r = c.get("/auth")

    def effect(ok: bool) -> None:
        if ok:
            assert r.headers["content-type"].startswith("text/plain")
            assert r.text == w.username(who)

    return r, effect


def _redis(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    r = c.get("/redis")

    def effect(ok: bool) -> None:
        if ok:
            assert r.json() == {"url": None}

    return r, effect


def _own_password(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    # Token-only identities carry the writer's claims, so they aim at the writer's account.
    target = w.username(who if who in [*ACTIVE_USERS, LOCKED] else WRITER)
    pw = md5(w.password(target))
    r = c.post(f"/users/{target}/password", json={"old_md5_password": pw, "new_md5_password": pw})

    def effect(ok: bool) -> None:
        if ok:
            assert list(r.json()) == ["token"]
            old, new = w.tokens[who], r.json()["token"]
            w.tokens[who] = new
            with w.as_token(new) as fresh:
                assert fresh.get("/auth").text == target
            with w.as_token(old) as stale:
                assert stale.get("/auth").json() == {"msg": WRONG_CREDENTIALS}
        elif target != LOCKED:
            with w.client(WRITER if target == WRITER else who) as same:
                assert same.get("/auth").status_code == 200, "a refused password change killed the tokens"

    return r, effect


def _my_groups(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    r = c.get("/users/groups")
    base = {
        OUTSIDER: {OUTSIDER: "Admin"},
        READER: {READER: "Admin", TEAM: "Read"},
        WRITER: {WRITER: "Admin", TEAM: "Write"},
        GADMIN: {GADMIN: "Admin", TEAM: "Admin"},
        SYSADMIN: {ADMIN_USER: "Admin"},
    }

    def effect(ok: bool) -> None:
        if ok:
            expected = {**base[who], **{g: "Admin" for g in w.created_groups.get(who, [])}}
            assert r.json() == {"groups": expected}

    return r, effect


def _create_group(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    name = w.names("grp")
    r = c.post("/groups", json={"group_name": name})

    def effect(ok: bool) -> None:
        with w.client(SYSADMIN) as admin:
            info = admin.get(f"/groups/{name}")
        if ok:
            assert r.content == b""
            w.created_groups.setdefault(who, []).append(name)
            assert info.status_code == 200, info.text
            assert info.json()["creator_username"] == w.username(who)
            assert info.json()["users_in_group"] == {w.username(who): "Admin"}
        else:
            assert (info.status_code, info.json()) == (404, {"msg": f"Group {name} not found"})

    return r, effect


GROUP_FIELDS = [
    "group_name", "creator_username", "created_at", "updated_at", "state", "task_count",
    "storage_quota", "storage_used", "worker_count", "users_in_group",
]  # fmt: skip


def _get_group(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    r = c.get(f"/groups/{TEAM}")

    def effect(ok: bool) -> None:
        if ok:
            body = r.json()
            assert list(body) == GROUP_FIELDS
            assert (body["group_name"], body["creator_username"], body["state"]) == (TEAM, GADMIN, "Active")
            assert (body["storage_quota"], body["storage_used"], body["worker_count"]) == (
                16_000_000_000,
                0,
                0,
            )
            if who in (GADMIN, SYSADMIN):
                expected = {GADMIN: "Admin", READER: "Read", WRITER: "Write", LOCKED: "Write"}
                assert expected.items() <= body["users_in_group"].items()
            else:
                assert body["users_in_group"] is None

    return r, effect


def _put_members(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    target = w.new_user("member")
    r = c.put(f"/groups/{TEAM}/users", json={"relations": {target: "Write"}})

    def effect(ok: bool) -> None:
        if ok:
            assert r.content == b""
            assert w.members(TEAM)[target] == "Write"
        else:
            assert target not in w.members(TEAM)

    return r, effect


def _removal(via_body: bool) -> Endpoint:
    def call(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
        target = w.new_user("member")
        w.set_roles({target: "Read"})
        if via_body:
            r = c.post(f"/groups/{TEAM}/users/remove", json={"users": [target]})
        else:
            r = c.delete(f"/groups/{TEAM}/users", params={"users": target})

        def effect(ok: bool) -> None:
            if ok:
                assert r.content == b""
                assert target not in w.members(TEAM)
            else:
                assert w.members(TEAM)[target] == "Read"

        return r, effect

    return call


def _admin_create_user(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    name = w.names("created")
    r = c.post("/admin/users", json={"username": name, "md5_password": md5(w.password(name)), "admin": False})

    def effect(ok: bool) -> None:
        login = w.login(name)
        if ok:
            assert r.content == b""
            assert login.status_code == 200, login.text
        else:
            assert (login.status_code, login.json()) == (401, {"msg": WRONG_CREDENTIALS})

    return r, effect


def _admin_delete_user(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    victim = w.new_user("victim")
    r = c.delete(f"/admin/users/{victim}")

    def effect(ok: bool) -> None:
        login = w.login(victim)
        if ok:
            assert r.json() == {"state": "Deleted"}
            assert login.status_code == 403 and login.json()["msg"].startswith(PERMISSION_DENIED)
        else:
            assert login.status_code == 200, login.text

    return r, effect


def _admin_password(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    victim = w.new_user("victim")
    r = c.post(f"/admin/users/{victim}/password", json={"new_md5_password": md5("brand-new")})

    def effect(ok: bool) -> None:
        if ok:
            assert r.content == b""
            assert w.login(victim, "brand-new").status_code == 200
            assert w.login(victim).status_code == 401
        else:
            assert w.login(victim).status_code == 200
            assert w.login(victim, "brand-new").status_code == 401

    return r, effect


def _admin_group_quota(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    victim = w.new_user("victim")
    r = c.post(f"/admin/users/{victim}/group-quota", json={"group_quota": "+2"})

    def effect(ok: bool) -> None:
        if ok:
            assert r.json() == {"group_quota": 10}
        with w.client(SYSADMIN) as admin:
            now = admin.post(f"/admin/users/{victim}/group-quota", json={"group_quota": "+0"}).json()
        assert now == {"group_quota": 10 if ok else 8}

    return r, effect


def _admin_state(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    victim = w.new_user("victim")
    r = c.post(f"/admin/users/{victim}/state", json={"state": "Locked"})

    def effect(ok: bool) -> None:
        login = w.login(victim)
        if ok:
            assert r.json() == {"state": "Locked"}
            assert login.status_code == 403 and login.json()["msg"].startswith(PERMISSION_DENIED)
        else:
            assert login.status_code == 200, login.text

    return r, effect


def _admin_storage_quota(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    victim = w.new_user("victim")
    r = c.post(f"/admin/groups/{victim}/storage-quota", json={"storage_quota": "10GiB"})

    def effect(ok: bool) -> None:
        if ok:
            assert r.json() == {"storage_quota": 10 * 2**30}
        with w.as_token(w.login(victim).json()["token"]) as own:
            assert own.get(f"/groups/{victim}").json()["storage_quota"] == (
                10 * 2**30 if ok else 16_000_000_000
            )

    return r, effect


def _admin_retention(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    victim = w.new_user("victim")
    r = c.post(f"/admin/groups/{victim}/retention", json={"retention_days": 7})

    def effect(ok: bool) -> None:
        if ok:
            assert r.json() == {"retention_days": 7, "effective_days": 7}
        with w.client(SYSADMIN) as admin:
            back = admin.get(f"/admin/groups/{victim}/retention")
            assert back.json() == {"retention_days": 7 if ok else None, "effective_days": 7 if ok else None}

    return r, effect


def _admin_get_retention(w: World, who: str, c: httpx.Client) -> tuple[httpx.Response, Effect]:
    victim = w.new_user("victim")
    with w.client(SYSADMIN) as admin:
        assert admin.post(f"/admin/groups/{victim}/retention", json={"retention_days": 9}).status_code == 200
    r = c.get(f"/admin/groups/{victim}/retention")

    def effect(ok: bool) -> None:
        if ok:
            assert r.json() == {"retention_days": 9, "effective_days": 9}

    return r, effect


ENDPOINTS: dict[str, Endpoint] = {
    "POST /login": _login,
    "GET /auth": _auth,
    "GET /redis": _redis,
    "POST /users/{self}/password": _own_password,
    "GET /users/groups": _my_groups,
    "POST /groups": _create_group,
    "GET /groups/team": _get_group,
    "PUT /groups/team/users": _put_members,
    "DELETE /groups/team/users?users=": _removal(via_body=False),
    "POST /groups/team/users/remove": _removal(via_body=True),
    "POST /admin/users": _admin_create_user,
    "DELETE /admin/users/{u}": _admin_delete_user,
    "POST /admin/users/{u}/password": _admin_password,
    "POST /admin/users/{u}/group-quota": _admin_group_quota,
    "POST /admin/users/{u}/state": _admin_state,
    "POST /admin/groups/{g}/storage-quota": _admin_storage_quota,
    "GET /admin/groups/{g}/retention": _admin_get_retention,
    "POST /admin/groups/{g}/retention": _admin_retention,
}


def test_matrix_covers_every_endpoint() -> None:
    assert set(ENDPOINTS) == set(MEMBER_STATUS)


@pytest.mark.parametrize("who", IDENTITIES)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_authz(world: World, endpoint: str, who: str) -> None:
    with world.client(who) as c:
        r, effect = ENDPOINTS[endpoint](world, who, c)
    status = expected_status(endpoint, who)
    assert r.status_code == status, f"{who} on {endpoint}: {r.status_code} {r.text}"
    if status == 400:
        assert r.json() == {"msg": MISSING_HEADER}
    elif status == 401:
        assert r.json() == {"msg": INVALID_TOKEN}
    elif status == 403:
        assert set(r.json()) == {"msg"} and r.json()["msg"].startswith(PERMISSION_DENIED), r.text
    effect(status == 200)


# --------------------------------------------------------------------------- the forged tokens work


def test_forgery_alone_is_what_is_refused(world: World) -> None:
    """Re-signing the writer's claims with the real key and a live exp is accepted, so the expired and
    foreign-key identities above are refused for their one fault only."""
    key = tokens.real_key(world.coord.data_dir)
    live = tokens.reissued(world.tokens[WRITER], key)
    with world.as_token(live) as c:
        assert c.get("/auth").text == WRITER
    claims = tokens.claims_of(world.tokens[WRITER])
    assert set(claims) == {"sub", "exp", "sign", "typ"} and claims["typ"] == "user"
