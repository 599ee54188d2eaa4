"""``POST /tasks`` checks the caller, the spec and the group before it stores anything.

On PostgreSQL the common case is one statement that also checks the user row (state, token
signature) and the caller's role; when any check fails it writes nothing and the request takes the
usual path, which answers with 0.6.8's error, in 0.6.8's order: credentials, then the spec, then
the group. Each case here checks the exact answer and that no task, event or task number was
spent. The same on SQLite, where there is only the usual path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from mitosis.coordinator.db import raw
from tests.support.coordinator import LiveCoordinator, md5
from tests.support.databases import Names

WRONG_CREDENTIALS = {"msg": "Authentication error: Wrong credentials"}


@dataclass
class Env:
    coord: LiveCoordinator
    names: Names
    admin: httpx.Client


@pytest.fixture(scope="module")
def env(module_coordinator: LiveCoordinator, names: Names) -> Iterator[Env]:
    with module_coordinator.admin() as admin:
        yield Env(module_coordinator, names, admin)


def _task(group: str, **spec: object) -> dict[str, object]:
    return {"group_name": group, "tags": ["parked"], "labels": ["checks"], "timeout": "1m", "priority": 0,
            "task_spec": {"args": ["true"], **spec}}  # fmt: skip


def _member(env: Env, role: str) -> tuple[str, httpx.Client, str]:
    """A user, their client, and a group (owned by a fresh owner) where they hold ``role``."""
    owner = env.names("owner")
    group = env.names("grp")
    with env.coord.client(env.coord.create_user(owner, f"pw-{owner}")) as oc:
        assert oc.post("/groups", json={"group_name": group}).status_code == 200
        name = env.names("user")
        client = env.coord.client(env.coord.create_user(name, f"pw-{name}"))
        if role != "none":
            r = oc.put(f"/groups/{group}/users", json={"relations": {name: role}})
            assert r.status_code == 200, r.text
    return name, client, group


def _state_of(env: Env, group: str) -> tuple[int, int]:
    """(tasks in the group, the group's task counter)."""
    r = env.admin.post("/tasks/query", json={"group_name": group, "count": True})
    assert r.status_code == 200, r.text
    return r.json()["count"], env.admin.get(f"/groups/{group}").json()["task_count"]


def test_a_writer_submits_and_the_numbers_follow(env: Env) -> None:
    _, c, group = _member(env, "Write")
    ids = [c.post("/tasks", json=_task(group)).json()["task_id"] for _ in range(3)]
    assert ids == [1, 2, 3]
    assert _state_of(env, group) == (3, 3)
    c.close()


@pytest.mark.parametrize(
    ("role", "status", "msg"),
    [
        ("Read", 403, "Authentication error: Permission denied"),
        ("none", 403, "Authentication error: Permission denied"),
    ],
)
def test_a_member_without_write_is_refused_and_nothing_is_spent(
    env: Env, role: str, status: int, msg: str
) -> None:
    _, c, group = _member(env, role)
    r = c.post("/tasks", json=_task(group))
    assert r.status_code == status and r.json()["msg"].startswith(msg), r.text
    assert _state_of(env, group) == (0, 0)
    c.close()


def test_an_unknown_group_is_refused(env: Env) -> None:
    _, c, _ = _member(env, "Write")
    missing = env.names("nogroup")
    for client in (c, env.admin):
        r = client.post("/tasks", json=_task(missing))
        assert (r.status_code, r.json()) == (404, {"msg": f"User or group with name {missing} not found"})
    c.close()


def test_a_locked_user_is_refused_before_the_spec_is_looked_at(env: Env) -> None:
    name, c, group = _member(env, "Write")
    assert env.admin.post(f"/admin/users/{name}/state", json={"state": "Locked"}).status_code == 200
    for body in (
        _task(group),
        _task(group, resources=[{"remote_file": {"Attachment": {"key": "k"}}, "local_path": "/abs"}]),
    ):
        r = c.post("/tasks", json=body)
        assert r.status_code == 403 and r.json()["msg"].endswith(f"user {name} is locked"), r.text
    assert env.admin.post(f"/admin/users/{name}/state", json={"state": "Active"}).status_code == 200
    assert c.post("/tasks", json=_task(group)).json()["task_id"] == 1  # the same token works again
    assert _state_of(env, group) == (1, 1)
    c.close()


def test_a_token_whose_signature_was_rotated_is_refused(env: Env) -> None:
    name, c, group = _member(env, "Write")
    r = httpx.post(f"{env.coord.url}/login", json={"username": name, "md5_password": md5(f"pw-{name}")})
    assert r.status_code == 200  # a login without retain rotates the signature: the old token dies
    r = c.post("/tasks", json=_task(group))
    assert (r.status_code, r.json()) == (401, WRONG_CREDENTIALS)
    assert _state_of(env, group) == (0, 0)
    with env.coord.client(r.request.headers["authorization"].split()[1]) as stale:
        assert stale.get("/auth").status_code == 401
    c.close()


def test_a_bad_spec_from_a_writer_is_a_400_and_nothing_is_spent(env: Env) -> None:
    _, c, group = _member(env, "Write")
    body = _task(group, resources=[{"remote_file": {"Attachment": {"key": "k"}}, "local_path": "../out"}])
    r = c.post("/tasks", json=body)
    assert r.status_code == 400 and "Resource local path is absolute or contains `..`" in r.json()["msg"], (
        r.text
    )
    assert _state_of(env, group) == (0, 0)
    c.close()


def test_an_admin_submits_to_any_group(env: Env) -> None:
    _, c, group = _member(env, "none")
    r = env.admin.post("/tasks", json=_task(group))
    assert r.status_code == 200 and r.json()["task_id"] == 1, r.text
    assert _state_of(env, group) == (1, 1)
    c.close()


def test_on_postgresql_a_submission_is_one_statement(env: Env) -> None:
    """The point of the combined check: the user row, the role and the insert in one round trip
    (SQLite: the usual path, a user check and then the insert). A refusal inserts nothing."""
    app = env.coord.extra["app"]
    _, c, group = _member(env, "Write")
    sent: list[str] = []

    def on_exec(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        sent.append(statement)

    def on_raw(statement: str, _args: tuple[Any, ...]) -> None:
        sent.append(statement)

    engine = app.state.ctx.engine
    event.listen(engine.sync_engine, "before_cursor_execute", on_exec)
    raw.observers.append(on_raw)
    try:
        r = c.post("/tasks", json=_task(group))
        accepted, sent[:] = list(sent), []
        refused = c.post("/tasks", json=_task(env.names("nogroup")))
    finally:
        raw.observers.remove(on_raw)
        event.remove(engine.sync_engine, "before_cursor_execute", on_exec)
    assert r.status_code == 200 and refused.status_code == 404
    if engine.dialect.name == "postgresql":
        [one] = accepted
        assert "FROM users" in one and "INSERT INTO active_tasks" in one, one
    else:
        assert "FROM users" in accepted[0] and "INSERT" not in accepted[0], accepted
        assert sum("INSERT INTO active_tasks" in s for s in accepted) == 1, accepted
    # The refusal: after the combined attempt (PostgreSQL) the usual user check and group look-up.
    assert any("FROM users" in s and "INSERT" not in s for s in sent), sent
    assert _state_of(env, group) == (1, 1)
    c.close()
