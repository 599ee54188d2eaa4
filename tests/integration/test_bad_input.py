"""Bad input on the account and group endpoints (issue 2), on SQLite and PostgreSQL.

Each case checks the reply (status and a message that names the problem) and, through the API,
that nothing was written: no user that can log in, no group, no membership, no changed password.
Statuses follow 0.6.8 (§3.6): malformed JSON 400, wrong or missing fields 422, invalid names 400
``Invalid username`` / ``Invalid group name``, unknown names 404 or 400 with 0.6.8's texts, taken
names 409. Where 0.6.8 answered 500 (quota strings, unknown user on group-quota) we answer 400/404.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.coordinator import LiveCoordinator, md5
from tests.support.databases import Names

WRONG_CREDENTIALS = "Authentication error: Wrong credentials"


@dataclass
class Env:
    coord: LiveCoordinator
    names: Names
    admin: httpx.Client

    def user(self, prefix: str = "user") -> tuple[str, httpx.Client]:
        """A fresh user (password ``pw-<name>``) and a client holding their token."""
        name = self.names(prefix)
        token = self.coord.create_user(name, f"pw-{name}")
        return name, self.coord.client(token)

    def login(self, name: str, password: str | None = None) -> httpx.Response:
        body = {"username": name, "md5_password": md5(password or f"pw-{name}"), "retain": True}
        return httpx.post(f"{self.coord.url}/login", json=body)

    def assert_no_user(self, name: str) -> None:
        assert self.login(name, "anything").json() == {"msg": WRONG_CREDENTIALS}
        assert (
            self.admin.post(f"/admin/users/{name}/group-quota", json={"group_quota": "+0"}).status_code == 404
        )

    def assert_no_group(self, name: str) -> None:
        r = self.admin.get(f"/groups/{name}")
        assert (r.status_code, r.json()) == (404, {"msg": f"Group {name} not found"})

    def members(self, group: str, client: httpx.Client) -> dict[str, str]:
        r = client.get(f"/groups/{group}")
        assert r.status_code == 200, r.text
        members: dict[str, str] = r.json()["users_in_group"]
        return members


@pytest.fixture(scope="module")
def env(module_coordinator: LiveCoordinator, names: Names) -> Iterator[Env]:
    with module_coordinator.admin() as admin:
        yield Env(module_coordinator, names, admin)


def assert_msg(r: httpx.Response, status: int, *fragments: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"msg"}, body
    for fragment in fragments:
        assert fragment in body["msg"], body["msg"]
    return str(body["msg"])


# ------------------------------------------------------------------------------------ malformed JSON

JSON = {"Content-Type": "application/json"}


def test_malformed_json_login(env: Env) -> None:
    r = httpx.post(f"{env.coord.url}/login", content=b'{"username": "x", "md5_password": [1,', headers=JSON)
    assert_msg(r, 400, "not valid JSON")


def test_malformed_json_create_user_writes_nothing(env: Env) -> None:
    name = env.names("mj")
    r = env.admin.post(
        "/admin/users", content=f'{{"username": "{name}", "md5_password": ['.encode(), headers=JSON
    )
    assert_msg(r, 400, "not valid JSON")
    env.assert_no_user(name)
    env.assert_no_group(name)


def test_malformed_json_create_group_writes_nothing(env: Env) -> None:
    _, c = env.user()
    before = c.get("/users/groups").json()
    name = env.names("mjg")
    r = c.post("/groups", content=f'{{"group_name": "{name}"'.encode(), headers=JSON)
    assert_msg(r, 400, "not valid JSON")
    env.assert_no_group(name)
    assert c.get("/users/groups").json() == before


def test_malformed_json_member_update_writes_nothing(env: Env) -> None:
    owner, c = env.user("owner")
    other, _ = env.user()
    r = c.put(f"/groups/{owner}/users", content=f'{{"relations": {{"{other}": "Read"'.encode(), headers=JSON)
    assert_msg(r, 400, "not valid JSON")
    assert env.members(owner, c) == {owner: "Admin"}


# ---------------------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": 5, "md5_password": md5("x"), "admin": False}, "username"),
        ({"username": "NAME", "md5_password": "0123456789abcdef", "admin": False}, "md5_password"),
        ({"username": "NAME", "md5_password": md5("x"), "admin": "sometimes"}, "admin"),
        ({"username": "NAME", "admin": False}, "md5_password"),
        ({"md5_password": md5("x"), "admin": False}, "username"),
        (["NAME", md5("x"), False], "body"),
    ],
    ids=["username-int", "md5-string", "admin-word", "no-md5", "no-username", "array-body"],
)
def test_create_user_wrong_types(env: Env, body: object, field: str) -> None:
    name = env.names("wt")
    if isinstance(body, dict) and body.get("username") == "NAME":
        body = {**body, "username": name}
    r = env.admin.post("/admin/users", json=body)
    assert_msg(r, 422, field)
    env.assert_no_user(name)


@pytest.mark.parametrize(
    ("body", "field"),
    [({"group_name": 7}, "group_name"), ({"group_name": None}, "group_name"), ({}, "group_name")],
    ids=["int", "null", "missing"],
)
def test_create_group_wrong_types(env: Env, body: dict[str, object], field: str) -> None:
    _, c = env.user()
    before = c.get("/users/groups").json()
    assert_msg(c.post("/groups", json=body), 422, field)
    assert c.get("/users/groups").json() == before


@pytest.mark.parametrize(
    "body",
    [{"relations": {"OTHER": "Owner"}}, {"relations": ["OTHER"]}, {"relations": {"OTHER": 2}}, {}],
    ids=["unknown-role", "list", "role-code", "missing"],
)
def test_member_update_wrong_types(env: Env, body: dict[str, object]) -> None:
    owner, c = env.user("owner")
    other, _ = env.user()
    raw = str(body).replace("'", '"').replace("OTHER", other)
    assert_msg(c.put(f"/groups/{owner}/users", content=raw.encode(), headers=JSON), 422, "relations")
    assert env.members(owner, c) == {owner: "Admin"}


def test_member_removal_wrong_type(env: Env) -> None:
    owner, c = env.user("owner")
    other, _ = env.user()
    assert c.put(f"/groups/{owner}/users", json={"relations": {other: "Read"}}).status_code == 200
    assert_msg(c.post(f"/groups/{owner}/users/remove", json={"users": other}), 422, "users")
    assert env.members(owner, c) == {owner: "Admin", other: "Read"}


def test_login_wrong_types(env: Env) -> None:
    name, _ = env.user()
    good = md5(f"pw-{name}")
    assert_msg(
        env.coord.client().post("/login", json={"username": name, "md5_password": good, "retain": "maybe"}),
        422,
        "retain",
    )
    assert_msg(
        env.coord.client().post("/login", json={"username": [name], "md5_password": good}), 422, "username"
    )


def test_admin_state_wrong_value(env: Env) -> None:
    name, c = env.user()
    assert_msg(env.admin.post(f"/admin/users/{name}/state", json={"state": "Frozen"}), 422, "state")
    assert c.get("/auth").text == name


def test_admin_quotas_wrong_types(env: Env) -> None:
    name, c = env.user()
    assert_msg(
        env.admin.post(f"/admin/users/{name}/group-quota", json={"group_quota": 5}), 422, "group_quota"
    )
    assert env.admin.post(f"/admin/users/{name}/group-quota", json={"group_quota": "+0"}).json() == {
        "group_quota": 8
    }
    r = env.admin.post(f"/admin/groups/{name}/storage-quota", json={"storage_quota": 10})
    assert_msg(r, 422, "storage_quota")
    assert c.get(f"/groups/{name}").json()["storage_quota"] == 16_000_000_000


@pytest.mark.parametrize("spec", ["", "abc", "+", "+++1", "1.5", "99999999999", "-+-1", "= 2x", "2147483648"])
def test_bad_group_quota_strings(env: Env, spec: str) -> None:
    name, _ = env.user()
    r = env.admin.post(f"/admin/users/{name}/group-quota", json={"group_quota": spec})
    assert_msg(r, 400, "Process request error: ", "group quota")
    assert env.admin.post(f"/admin/users/{name}/group-quota", json={"group_quota": "+0"}).json() == {
        "group_quota": 8
    }


@pytest.mark.parametrize("spec", ["", "ten", "10 parsecs", "+", "1e999", "10GiBs"])
def test_bad_storage_quota_strings(env: Env, spec: str) -> None:
    name, c = env.user()
    r = env.admin.post(f"/admin/groups/{name}/storage-quota", json={"storage_quota": spec})
    assert_msg(r, 400, "Process request error: ", "storage quota")
    assert c.get(f"/groups/{name}").json()["storage_quota"] == 16_000_000_000


# ----------------------------------------------------------------------------------- oversized strings


def test_oversized_username_is_an_invalid_username(env: Env) -> None:
    for name in ("u" * 256, "u" * 100_000):
        r = env.admin.post("/admin/users", json={"username": name, "md5_password": md5("x"), "admin": False})
        assert_msg(r, 400, "Process request error: Invalid username")
        assert env.login(name, "x").json() == {"msg": WRONG_CREDENTIALS}
    longest = "u" * 255
    assert (
        env.admin.post(
            "/admin/users", json={"username": longest, "md5_password": md5("x"), "admin": False}
        ).status_code
        == 200
    )
    assert env.login(longest, "x").status_code == 200


def test_oversized_group_name_is_an_invalid_group_name(env: Env) -> None:
    _, c = env.user()
    before = c.get("/users/groups").json()
    for name in ("g" * 256, "g" * 100_000):
        assert_msg(
            c.post("/groups", json={"group_name": name}), 400, "Process request error: Invalid group name"
        )
    assert c.get("/users/groups").json() == before


def test_oversized_login_name_is_wrong_credentials(env: Env) -> None:
    r = env.coord.client().post("/login", json={"username": "x" * 300, "md5_password": md5("x")})
    assert r.status_code == 401 and r.json() == {"msg": WRONG_CREDENTIALS}


def test_oversized_quota_strings(env: Env) -> None:
    name, c = env.user()
    r = env.admin.post(f"/admin/users/{name}/group-quota", json={"group_quota": "+" + "1" * 10_000})
    assert_msg(r, 422, "group_quota")
    r = env.admin.post(f"/admin/groups/{name}/storage-quota", json={"storage_quota": "1" * 10_000})
    assert_msg(r, 422, "storage_quota")
    assert env.admin.post(f"/admin/users/{name}/group-quota", json={"group_quota": "+0"}).json() == {
        "group_quota": 8
    }
    assert c.get(f"/groups/{name}").json()["storage_quota"] == 16_000_000_000


# -------------------------------------------------------------------------------------- invalid names


@pytest.mark.parametrize("bad", ["", "has space", "slash/name", "dot.name", "ünïcode", "semi;colon", "tab\t"])
def test_invalid_names(env: Env, bad: str) -> None:
    r = env.admin.post("/admin/users", json={"username": bad, "md5_password": md5("x"), "admin": False})
    assert_msg(r, 400, "Process request error: Invalid username")
    assert env.login(bad, "x").json() == {"msg": WRONG_CREDENTIALS}
    _, c = env.user()
    before = c.get("/users/groups").json()
    assert_msg(c.post("/groups", json={"group_name": bad}), 400, "Process request error: Invalid group name")
    assert c.get("/users/groups").json() == before


# ------------------------------------------------------------------------------ unknown users/groups


def test_unknown_group(env: Env) -> None:
    name, c = env.user()
    ghost = env.names("ghostgroup")
    expected = {"msg": f"Group {ghost} not found"}
    assert c.get(f"/groups/{ghost}").json() == expected
    for r in (
        c.put(f"/groups/{ghost}/users", json={"relations": {name: "Read"}}),
        c.delete(f"/groups/{ghost}/users", params={"users": name}),
        c.post(f"/groups/{ghost}/users/remove", json={"users": [name]}),
    ):
        assert (r.status_code, r.json()) == (404, expected)
    r = env.admin.post(f"/admin/groups/{ghost}/storage-quota", json={"storage_quota": "1GB"})
    assert (r.status_code, r.json()) == (404, expected)
    env.assert_no_group(ghost)


def test_unknown_member_writes_no_membership(env: Env) -> None:
    owner, c = env.user("owner")
    real, _ = env.user()
    ghost = env.names("ghost")
    r = c.put(f"/groups/{owner}/users", json={"relations": {real: "Write", ghost: "Read"}})
    assert_msg(r, 400, "Process request error: Some users do not exist")
    assert env.members(owner, c) == {owner: "Admin"}, "the known user of a refused request was added"
    env.assert_no_user(ghost)


def test_unknown_member_removal_removes_nobody(env: Env) -> None:
    owner, c = env.user("owner")
    real, _ = env.user()
    ghost = env.names("ghost")
    assert c.put(f"/groups/{owner}/users", json={"relations": {real: "Read"}}).status_code == 200
    r = c.delete(f"/groups/{owner}/users", params={"users": [real, ghost]})
    assert_msg(r, 400, "Process request error: Some users do not exist")
    r = c.post(f"/groups/{owner}/users/remove", json={"users": [real, ghost]})
    assert_msg(r, 400, "Process request error: Some users do not exist")
    assert env.members(owner, c) == {owner: "Admin", real: "Read"}


def test_empty_relations(env: Env) -> None:
    owner, c = env.user("owner")
    assert_msg(
        c.put(f"/groups/{owner}/users", json={"relations": {}}),
        400,
        "Process request error: Empty group relations",
    )
    assert_msg(c.delete(f"/groups/{owner}/users"), 400, "Process request error: Empty group relations")
    assert_msg(
        c.post(f"/groups/{owner}/users/remove", json={"users": []}),
        400,
        "Process request error: Empty group relations",
    )
    assert env.members(owner, c) == {owner: "Admin"}


def test_unknown_user_admin_routes(env: Env) -> None:
    ghost = env.names("ghost")
    gone = {"msg": f"User or group with name {ghost} not found"}
    r = env.admin.delete(f"/admin/users/{ghost}")
    assert (r.status_code, r.json()) == (404, gone)
    r = env.admin.post(f"/admin/users/{ghost}/state", json={"state": "Locked"})
    assert (r.status_code, r.json()) == (404, gone)
    r = env.admin.post(f"/admin/users/{ghost}/password", json={"new_md5_password": md5("x")})
    assert (
        r.status_code == 404 and r.json()["msg"].startswith("User") and r.json()["msg"].endswith("not found")
    )
    r = env.admin.post(f"/admin/users/{ghost}/group-quota", json={"group_quota": "+1"})
    assert r.status_code == 404 and r.json()["msg"].endswith("not found")
    env.assert_no_user(ghost)


def test_unknown_user_login_and_password(env: Env) -> None:
    name, c = env.user()
    ghost = env.names("ghost")
    assert env.login(ghost, "x").json() == {"msg": WRONG_CREDENTIALS}
    pw = md5(f"pw-{name}")
    r = c.post(f"/users/{ghost}/password", json={"old_md5_password": pw, "new_md5_password": md5("new")})
    assert (r.status_code, r.json()) == (401, {"msg": WRONG_CREDENTIALS})
    assert c.get("/auth").text == name, "a refused password change killed the caller's token"
    assert env.login(name).status_code == 200


# ------------------------------------------------------------------------------------ duplicate names


def test_duplicate_user_name(env: Env) -> None:
    name, c = env.user()
    r = env.admin.post("/admin/users", json={"username": name, "md5_password": md5("other"), "admin": True})
    assert (r.status_code, r.json()) == (409, {"msg": f"User or group with same name {name} already exists"})
    assert env.login(name).status_code == 200
    assert env.login(name, "other").status_code == 401
    assert c.get("/auth").text == name
    assert (
        c.post("/admin/users", json={"username": env.names("x"), "md5_password": md5("x")}).status_code == 403
    )


def test_user_name_taken_by_group(env: Env) -> None:
    _, c = env.user()
    group = env.names("grp")
    assert c.post("/groups", json={"group_name": group}).status_code == 200
    r = env.admin.post("/admin/users", json={"username": group, "md5_password": md5("x"), "admin": False})
    assert (r.status_code, r.json()) == (409, {"msg": f"User or group with same name {group} already exists"})
    env.assert_no_user(group)


def test_group_name_taken(env: Env) -> None:
    other, _ = env.user("other")
    owner, c = env.user()
    group = env.names("grp")
    assert c.post("/groups", json={"group_name": group}).status_code == 200
    before = c.get("/users/groups").json()
    for taken in (group, other, owner):
        r = c.post("/groups", json={"group_name": taken})
        assert (r.status_code, r.json()) == (
            409,
            {"msg": f"User or group with same name {taken} already exists"},
        )
    assert c.get("/users/groups").json() == before
    info = env.admin.get(f"/groups/{other}").json()
    assert info["creator_username"] == other and info["users_in_group"] == {other: "Admin"}
    # The refused attempts did not use up quota: 8 allowed, personal + 1 used, so 6 more fit.
    for _ in range(6):
        assert c.post("/groups", json={"group_name": env.names("fill")}).status_code == 200
    assert c.post("/groups", json={"group_name": env.names("fill")}).status_code == 403


# ------------------------------------------------------------------------------ md5 arrays of bad size

BAD_MD5 = {
    "15-numbers": md5("x")[:15],
    "17-numbers": [*md5("x"), 0],
    "empty": [],
    "256": [256, *md5("x")[1:]],
    "negative": [-1, *md5("x")[1:]],
}


@pytest.mark.parametrize("digest", list(BAD_MD5.values()), ids=list(BAD_MD5))
def test_bad_md5_login(env: Env, digest: list[int]) -> None:
    name, _ = env.user()
    r = env.coord.client().post("/login", json={"username": name, "md5_password": digest, "retain": False})
    assert_msg(r, 422, "md5_password", "16 numbers")


@pytest.mark.parametrize("digest", list(BAD_MD5.values()), ids=list(BAD_MD5))
def test_bad_md5_create_user(env: Env, digest: list[int]) -> None:
    name = env.names("md5")
    r = env.admin.post("/admin/users", json={"username": name, "md5_password": digest, "admin": False})
    assert_msg(r, 422, "md5_password", "16 numbers")
    env.assert_no_user(name)
    env.assert_no_group(name)


def test_fifteen_number_md5_on_password_changes(env: Env) -> None:
    name, c = env.user()
    fifteen = md5("new")[:15]
    r = c.post(
        f"/users/{name}/password", json={"old_md5_password": md5(f"pw-{name}"), "new_md5_password": fifteen}
    )
    assert_msg(r, 422, "new_md5_password", "16 numbers")
    r = c.post(f"/users/{name}/password", json={"old_md5_password": fifteen, "new_md5_password": md5("new")})
    assert_msg(r, 422, "old_md5_password", "16 numbers")
    r = env.admin.post(f"/admin/users/{name}/password", json={"new_md5_password": fifteen})
    assert_msg(r, 422, "new_md5_password", "16 numbers")
    assert c.get("/auth").text == name, "a refused password change killed the user's token"
    assert env.login(name).status_code == 200


@pytest.mark.parametrize("field", ["limit", "offset"])
@pytest.mark.parametrize("path", ["/tasks/query", "/groups/{group}/attachments/query"])
def test_limits_past_64_bits_are_refused_not_failed(env: Env, path: str, field: str) -> None:
    """Both databases hold 64-bit integers; a larger limit or offset must not reach a query."""
    name, c = env.user()
    r = c.post(path.format(group=name), json={field: 2**64})
    assert_msg(r, 422, field, "less than or equal to 9223372036854775807")
    edge = c.post(path.format(group=name), json={field: 2**63 - 1})
    if field == "limit":
        # In range for the database, but above the rows one reply may hold (max_query_rows).
        assert_msg(edge, 400, "limit 9223372036854775807 is above the 10000 rows", "max_query_rows")
    else:
        assert edge.status_code == 200, edge.text
        assert edge.json()["count"] == 0
