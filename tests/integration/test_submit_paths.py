"""Submission through every path the coordinator has (one task in one statement, a batch over
arrays, the SQLAlchemy path on SQLite): what goes in comes back out, byte for byte."""

from __future__ import annotations

from typing import Any

from tests.support.coordinator import LiveCoordinator
from tests.support.databases import Names

AWKWARD = ["a,b", 'quote"d', "back\\slash", "{brace}", "NULL", "sp ace", "é ✓", ""]


def _req(group: str, i: int) -> dict[str, Any]:
    return {
        "group_name": group,
        "tags": [f"t{i}", *AWKWARD[:3]],
        "labels": [f"l{i}", *AWKWARD],
        "timeout": "90s",
        "priority": i,
        "task_spec": {
            "args": ["sh", "-c", "echo \"$X\" '{}'"],
            "envs": {"X": 'va"l', "Z": "\\"},
            "terminal_output": True,
        },
    }


def _check(info: dict[str, Any], req: dict[str, Any], task_id: int) -> None:
    assert info["task_id"] == task_id
    assert sorted(info["tags"]) == sorted(set(req["tags"]))
    assert sorted(info["labels"]) == sorted(set(req["labels"]))
    assert info["timeout"] == 90 and info["priority"] == req["priority"]
    assert info["state"] == "Ready" and info["result"] is None


def test_one_and_many_store_exactly_what_was_sent(module_coordinator: LiveCoordinator, names: Names) -> None:
    user = names("subm")
    token = module_coordinator.create_user(user, "pw")
    with module_coordinator.client(token) as c:
        one = c.post("/tasks", json=_req(user, 0))
        assert one.status_code == 200, one.text
        assert one.json()["task_id"] == 1
        many = c.post("/tasks/submit", json={"tasks": [_req(user, i) for i in range(1, 6)]})
        assert many.status_code == 200, many.text
        created = [r["Ok"] for r in many.json()["results"]]
        assert [r["task_id"] for r in created] == [2, 3, 4, 5, 6]
        for i, uuid in enumerate([one.json()["uuid"], *(r["uuid"] for r in created)]):
            body = c.get(f"/tasks/{uuid}").json()
            _check(body["info"], _req(user, i), i + 1)
            spec = body["info"]["spec"]
            assert spec["args"] == ["sh", "-c", "echo \"$X\" '{}'"] and spec["envs"] == {
                "X": 'va"l',
                "Z": "\\",
            }
            assert spec["terminal_output"] is True
        # Label queries find them through the stored arrays.
        r = c.post(
            "/tasks/query", json={"group_name": user, "labels": ['quote"d', "back\\slash"], "count": True}
        )
        assert r.json()["count"] == 6


def test_a_refused_submission_writes_nothing(module_coordinator: LiveCoordinator, names: Names) -> None:
    owner, outsider = names("own"), names("out")
    module_coordinator.create_user(owner, "pw")
    token = module_coordinator.create_user(outsider, "pw")
    with module_coordinator.client(token) as c:
        r = c.post("/tasks", json=_req(owner, 1))
        assert r.status_code == 403 and f"group {owner}" in r.json()["msg"]
        r = c.post("/tasks", json=_req("no-such-group-anywhere", 1))
        assert r.status_code == 404 and "no-such-group-anywhere" in r.json()["msg"]
    with module_coordinator.admin() as admin:
        assert admin.get(f"/groups/{owner}").json()["task_count"] == 0
        assert admin.post("/tasks/query", json={"group_name": owner, "count": True}).json()["count"] == 0


def test_resource_local_paths_outside_or_naming_no_file_are_refused(
    module_coordinator: LiveCoordinator, names: Names
) -> None:
    """A resource is downloaded to ``local_path`` under the resource dir: a path that leaves it, or
    names a directory rather than a file, is a 400 at submit (one and many) and writes nothing."""
    user = names("res")
    token = module_coordinator.create_user(user, "pw")

    def req(local_path: str) -> dict[str, Any]:
        body = _req(user, 1)
        body["task_spec"]["resources"] = [
            {"remote_file": {"Attachment": {"key": "data/in.txt"}}, "local_path": local_path}
        ]
        return body

    escaping = ["/etc/passwd", "../up", "a/../../up", ""]
    no_file = [".", "./", "data/", "a/."]
    with module_coordinator.client(token) as c:
        for path in escaping + no_file:
            r = c.post("/tasks", json=req(path))
            assert r.status_code == 400, (path, r.text)
            expected = "absolute or contains `..`" if path in escaping else "names a directory"
            assert expected in r.json()["msg"], (path, r.json())
            if path in no_file:
                assert repr(path) in r.json()["msg"]
        assert c.post("/tasks/query", json={"group_name": user, "count": True}).json()["count"] == 0
        # The batch endpoint answers per task (as 0.6.8): the good one is created, the bad one not.
        r = c.post("/tasks/submit", json={"tasks": [req("ok/in.txt"), req(".")]})
        assert r.status_code == 200, r.text
        ok, bad = r.json()["results"]
        assert "names a directory" in bad["Err"]["msg"], bad
        assert c.post("/tasks/query", json={"group_name": user, "count": True}).json()["count"] == 1
        spec = c.get(f"/tasks/{ok['Ok']['uuid']}").json()["info"]["spec"]
        assert spec["resources"][0]["local_path"] == "ok/in.txt"
