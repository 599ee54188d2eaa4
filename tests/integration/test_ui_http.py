"""The dashboard over plain HTTP, on SQLite and PostgreSQL.

- Every state-changing ``/ui`` route (found by walking the app's routes, so a new one is covered
  without editing this file) refuses a request without its CSRF token or with a wrong one, and
  the database and the blob directory are byte for byte what they were before.
- The task list shows exactly the tasks a filter matches (group, state, labels, tags, creator),
  newest first, page after page with no duplicate and no gap, tasks of both tables interleaved.
- A task query answers the same rows, order and count whether or not it reads a task table its
  state filter rules out (``services.tasks.query_tables``).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from mitosis.coordinator.app import create_app
from mitosis.coordinator.db.engine import make_engine
from mitosis.coordinator.db.tables import active_tasks, archived_tasks, metadata
from mitosis.coordinator.services import tasks as task_service
from tests.support.coordinator import LiveCoordinator, coordinator_settings
from tests.support.databases import Names

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ROW = re.compile(r'<tr data-uuid="([0-9a-f-]{36})"')
PAGE_SIZE = 50
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def _walk(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            # FastAPI 0.16x keeps an included router as one lazy entry instead of copying its routes.
            context = getattr(route, "include_context", None)
            yield from _walk(inner.routes, prefix + getattr(context, "prefix", ""))


def _ui_writes() -> list[tuple[str, str]]:
    settings = coordinator_settings(Path("/nonexistent"), "sqlite:////nonexistent/x.db", 1)
    found = {
        (method, path)
        for path, route in _walk(create_app(settings).routes)
        if path.startswith("/ui")
        for method in (route.methods or set()) & STATE_CHANGING
    }
    # Shutdown last: if its refusal ever broke, it would take the shared coordinator down with it.
    return sorted(found, key=lambda item: (item[1] == "/ui/admin/shutdown", item[1], item[0]))


UI_WRITES = _ui_writes()
KNOWN_WRITES = {
    "/ui/login",
    "/ui/logout",
    "/ui/tasks/new",
    "/ui/tasks/{task_uuid}/cancel",
    "/ui/tasks/{task_uuid}/labels",
    "/ui/workers/{worker_uuid}/cancel",
    "/ui/groups",
    "/ui/groups/{group_name}/members",
    "/ui/groups/{group_name}/members/remove",
    "/ui/groups/{group_name}/attachments/upload-url",
    "/ui/groups/{group_name}/attachments/delete",
    "/ui/admin/users",
    "/ui/admin/users/{username}/state",
    "/ui/admin/password",
    "/ui/admin/group-quota",
    "/ui/admin/storage-quota",
    "/ui/admin/shutdown",
}


def test_the_route_walk_finds_every_known_dashboard_action() -> None:
    assert UI_WRITES, "no state-changing /ui route found: the route walk is broken"
    assert {path for method, path in UI_WRITES if method == "POST"} >= KNOWN_WRITES


# ------------------------------------------------------------------------------------------ helpers


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def _session_cookies(response: httpx.Response) -> list[str]:
    return [c for c in response.headers.get_list("set-cookie") if c.startswith("mito_session=")]


@contextmanager
def _browser(coord: LiveCoordinator, username: str, password: str) -> Iterator[httpx.Client]:
    """A client signed in through the login form, as a browser is."""
    with httpx.Client(base_url=coord.url, follow_redirects=False, timeout=60) as client:
        page = client.get("/ui/login")
        login = client.post(
            "/ui/login",
            data={"username": username, "password": password, "csrf_token": _csrf(page.text), "next": "/ui"},
        )
        assert login.status_code == 303 and _session_cookies(login), login.text
        yield client


def _snapshot(coord: LiveCoordinator) -> dict[str, Any]:
    """Every row of every table, and every file under the data directory with its size."""

    async def rows() -> dict[str, list[str]]:
        engine = make_engine(coord.db_url)
        try:
            async with engine.connect() as conn:
                return {
                    table.name: sorted(repr(tuple(r)) for r in await conn.execute(select(table)))
                    for table in metadata.sorted_tables
                }
        finally:
            await engine.dispose()

    files = sorted(
        (str(p.relative_to(coord.data_dir)), p.stat().st_size)
        for p in coord.data_dir.rglob("*")
        if p.is_file() and not p.name.startswith("mitosis.db")
    )
    return {"tables": asyncio.run(rows()), "files": files}


def _submit(api: httpx.Client, group: str, **fields: Any) -> dict[str, Any]:
    body = {"group_name": group, "timeout": "1h", "task_spec": {"args": ["true"]}, **fields}
    r = api.post("/tasks", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


# --------------------------------------------------------------------------------------------- CSRF


@dataclass
class CsrfWorld:
    admin: str
    password: str
    group: str
    member: str
    stranger: str
    task_uuid: str
    worker_uuid: str
    attachment: str
    fresh: str = field(default_factory=lambda: f"fresh_{uuid.uuid4().hex[:8]}")

    def path(self, template: str) -> str:
        values = {
            "task_uuid": self.task_uuid,
            "worker_uuid": self.worker_uuid,
            "group_name": self.group,
            "username": self.member,
        }
        return re.sub(r"{(\w+)}", lambda m: values.get(m.group(1), "x"), template)

    def form(self, template: str) -> dict[str, str]:
        """A form each action would carry out if its token were right (an admin may do them all)."""
        forms = {
            "/ui/login": {"username": self.admin, "password": self.password, "next": "/ui/tasks"},
            "/ui/tasks/new": {"command": "echo hi", "group": self.group, "timeout": "1m", "priority": "0"},
            "/ui/tasks/{task_uuid}/labels": {"labels": "changed"},
            "/ui/workers/{worker_uuid}/cancel": {"op": "Force"},
            "/ui/groups": {"group_name": self.fresh},
            "/ui/groups/{group_name}/members": {"username": self.stranger, "role": "Admin"},
            "/ui/groups/{group_name}/members/remove": {"username": self.member},
            "/ui/groups/{group_name}/attachments/upload-url": {"key": "new/file.bin", "size": "3"},
            "/ui/groups/{group_name}/attachments/delete": {"key": self.attachment},
            "/ui/admin/users": {"username": self.fresh, "password": "fresh-pw"},
            "/ui/admin/users/{username}/state": {"state": "Locked"},
            "/ui/admin/password": {"username": self.member, "password": "changed-pw"},
            "/ui/admin/group-quota": {"username": self.member, "quota": "77"},
            "/ui/admin/storage-quota": {"group_name": self.group, "quota": "1GiB"},
            "/ui/admin/shutdown": {"confirm": "shutdown"},
        }
        generic = {"username": self.member, "group_name": self.group, "key": self.attachment}
        return forms.get(template, generic)


@pytest.fixture(scope="module")
def csrf_world(module_coordinator: LiveCoordinator, names: Names) -> CsrfWorld:
    coord = module_coordinator
    admin, member, stranger = names("csrfadmin"), names("csrfmember"), names("csrfstranger")
    coord.create_user(admin, "admin-pw", admin=True)
    coord.create_user(member, "member-pw")
    coord.create_user(stranger, "stranger-pw")
    with coord.client(coord.login(admin, "admin-pw")) as api:
        assert api.put(f"/groups/{admin}/users", json={"relations": {member: "Write"}}).status_code == 200
        task = _submit(api, admin)
        worker = api.post("/workers", json={"tags": [], "labels": [], "groups": []}).json()
    with _browser(coord, admin, "admin-pw") as client:
        token = _csrf(client.get(f"/ui/groups/{admin}/attachments").text)
        got = client.post(
            f"/ui/groups/{admin}/attachments/upload-url",
            data={"key": "kept/a.bin", "size": "3", "csrf_token": token},
        )
        assert got.status_code == 200, got.text
        assert httpx.put(got.json()["url"], content=b"abc").status_code in (200, 201, 204)
    return CsrfWorld(
        admin=admin,
        password="admin-pw",
        group=admin,
        member=member,
        stranger=stranger,
        task_uuid=str(task["uuid"]),
        worker_uuid=str(worker["worker_id"]),
        attachment="kept/a.bin",
    )


@pytest.mark.parametrize("token", ["missing", "wrong"])
@pytest.mark.parametrize(("method", "template"), UI_WRITES, ids=[f"{m} {p}" for m, p in UI_WRITES])
def test_a_dashboard_action_without_its_csrf_token_is_refused_and_changes_nothing(
    module_coordinator: LiveCoordinator, csrf_world: CsrfWorld, method: str, template: str, token: str
) -> None:
    coord = module_coordinator
    form = csrf_world.form(template)
    if token == "wrong":
        form["csrf_token"] = "0" * 64
    with _browser(coord, csrf_world.admin, csrf_world.password) as client:
        if template == "/ui/login":
            # The login form's token is a double-submit cookie: a fresh one is set for the next try.
            client.cookies.delete("mito_session", path="/ui")
            client.get("/ui/login")
        before = _snapshot(coord)
        r = client.request(method, csrf_world.path(template), data=form)
        after = _snapshot(coord)
        assert r.status_code == 403, f"{method} {template}: {r.status_code} {r.text[:300]}"
        assert "CSRF" in r.text or "expired" in r.text
        assert not _session_cookies(r), "a refused request must neither set nor clear the session cookie"
        assert after == before
        if template != "/ui/login":
            # Still signed in, and still an admin: nothing was locked, changed or shut down.
            assert client.get("/ui/admin").status_code == 200
    assert httpx.get(f"{coord.url}/health").status_code == 200


def test_the_same_action_with_its_token_is_carried_out(
    module_coordinator: LiveCoordinator, csrf_world: CsrfWorld
) -> None:
    """The control for the refusals above: the right token makes the same form change the data."""
    coord = module_coordinator
    template = "/ui/tasks/{task_uuid}/labels"
    with _browser(coord, csrf_world.admin, csrf_world.password) as client:
        token = _csrf(client.get(f"/ui/tasks/{csrf_world.task_uuid}").text)
        before = _snapshot(coord)
        r = client.post(csrf_world.path(template), data={**csrf_world.form(template), "csrf_token": token})
        assert r.status_code == 303, r.text
        assert _snapshot(coord) != before
    with coord.admin() as api:
        assert api.get(f"/tasks/{csrf_world.task_uuid}").json()["info"]["labels"] == ["changed"]
        # Put it back: the refusal cases share this task.
        assert api.put(f"/tasks/{csrf_world.task_uuid}/labels", json={"labels": []}).status_code == 200


def test_logout_deletes_the_cookie_but_only_locking_the_user_revokes_the_token(
    module_coordinator: LiveCoordinator, names: Names
) -> None:
    """What docs/dashboard.md promises: the session cookie holds a stateless token (an EdDSA JWT).

    Signing out deletes the cookie in this browser; a copy of the token keeps working until it
    expires, unless the user is locked (or their password changed), which every request checks.
    """
    coord = module_coordinator
    user = names("leaver")
    coord.create_user(user, "leaver-pw")
    with _browser(coord, user, "leaver-pw") as client:
        # The cookie holds the API token as is (quoted when it holds characters a cookie may not).
        cookie = client.cookies["mito_session"]
        token = cookie.strip('"')
        out = client.post("/ui/logout", data={"csrf_token": _csrf(client.get("/ui/tasks").text)})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        cleared = _session_cookies(out)
        assert len(cleared) == 1 and ("max-age=0" in cleared[0].lower() or "expires=" in cleared[0].lower())
        assert "mito_session" not in client.cookies
        assert client.get("/ui/tasks").status_code == 303
    with httpx.Client(base_url=coord.url, cookies={"mito_session": cookie}, follow_redirects=False) as copy:
        assert copy.get("/ui/tasks").status_code == 200
        with coord.client(token) as api:
            probe = api.post("/tasks/query", json={"count": True})
            assert probe.status_code == 200, probe.text
        with coord.admin() as admin:
            assert admin.post(f"/admin/users/{user}/state", json={"state": "Locked"}).status_code == 200
        locked = copy.get("/ui/tasks")
        assert locked.status_code == 303 and locked.headers["location"].startswith("/ui/login")
        with coord.client(token) as api:
            assert api.post("/tasks/query", json={"count": True}).status_code == 403


def test_the_session_cookie_is_secure_behind_a_proxy_that_says_https(
    module_coordinator: LiveCoordinator, names: Names
) -> None:
    """docs/deployment.md: the proxy must send ``X-Forwarded-Proto``; it decides the Secure flag."""
    user = names("proxied")
    module_coordinator.create_user(user, "proxied-pw")
    flags = {}
    for proto in ("https", "http"):
        headers = {"X-Forwarded-Proto": proto}
        page = httpx.get(f"{module_coordinator.url}/ui/login", headers=headers)
        # Sent by hand: a client on plain http rightly keeps a Secure cookie to itself.
        login_csrf = page.cookies["mito_login_csrf"].strip('"')
        login = httpx.post(
            f"{module_coordinator.url}/ui/login",
            headers={**headers, "Cookie": f"mito_login_csrf={login_csrf}"},
            data={"username": user, "password": "proxied-pw", "csrf_token": _csrf(page.text), "next": "/ui"},
        )
        cookies = _session_cookies(login)
        assert login.status_code == 303 and len(cookies) == 1, login.text
        flags[proto] = "secure" in [a.strip().lower() for a in cookies[0].split(";")]
    assert flags == {"https": True, "http": False}


# ----------------------------------------------------------------------------- the task list


@dataclass(frozen=True)
class Task:
    uuid: str
    group: str
    creator: str
    task_id: int
    tags: frozenset[str]
    labels: frozenset[str]


@dataclass
class ListWorld:
    alice: str
    bob: str
    team: str
    tasks: list[Task]
    states: dict[str, str]
    reporter: str

    def expected(
        self,
        group: str,
        state: str | None = None,
        labels: Iterable[str] = (),
        tags: Iterable[str] = (),
        creators: Iterable[str] = (),
    ) -> list[str]:
        creators = set(creators)
        matching = [
            t
            for t in self.tasks
            if t.group == group
            and (state is None or self.states[t.uuid] == state)
            and set(labels) <= t.labels
            and set(tags) <= t.tags
            and (not creators or t.creator in creators)
        ]
        return [t.uuid for t in sorted(matching, key=lambda t: t.task_id, reverse=True)]


def _report(worker: httpx.Client, task_id: int, op: Any) -> None:
    r = worker.post("/workers/tasks", json={"id": task_id, "op": op})
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def list_world(module_coordinator: LiveCoordinator, names: Names) -> ListWorld:
    """Two creators in a shared group, tasks of both tables in every state the code writes.

    States are reached through the API and the worker protocol, never written by hand, and
    recorded here as they are made: this record, not a query, is what the pages are checked against.
    """
    coord = module_coordinator
    alice, bob, team = names("alice"), names("bob"), names("team")
    coord.create_user(alice, "alice-pw")
    coord.create_user(bob, "bob-pw")
    made: list[Task] = []
    states: dict[str, str] = {}
    with (
        coord.client(coord.login(alice, "alice-pw")) as a_api,
        coord.client(coord.login(bob, "bob-pw")) as b_api,
    ):
        assert a_api.post("/groups", json={"group_name": team}).status_code == 200
        assert a_api.put(f"/groups/{team}/users", json={"relations": {bob: "Write"}}).status_code == 200

        def submit(
            api: httpx.Client, creator: str, group: str, tags: list[str], labels: list[str], prio: int
        ) -> Task:
            got = _submit(api, group, tags=tags, labels=labels, priority=prio)
            task = Task(
                str(got["uuid"]), group, creator, int(got["task_id"]), frozenset(tags), frozenset(labels)
            )
            made.append(task)
            states[task.uuid] = "Ready"
            return task

        for i in range(130):
            # Interleaved creators, so a creator's tasks are spread over the whole id range.
            if i % 4 == 3:
                submit(b_api, bob, team, ["cpu"], ["bob-run", f"mod3-{i % 3}"], 0)
                continue
            tags = ["gpu", "big"] if i % 8 == 0 else ["gpu"] if i % 4 == 0 else []
            submit(a_api, alice, team, tags, ["batch", f"mod3-{i % 3}"], 5 if i % 13 == 1 else 0)
        for i in range(12):
            submit(a_api, alice, alice, ["gpu"] if i % 2 else [], ["batch", "own"], 0)

        # The worker fetches the priority-5 tasks first (oldest first), whatever their tags.
        reg = a_api.post("/workers", json={"tags": ["gpu", "big", "cpu"], "labels": [], "groups": [team]})
        assert reg.status_code == 200, reg.text
        reporter = str(reg.json()["worker_id"])

        def fetch(worker: httpx.Client) -> dict[str, Any]:
            got = worker.get("/workers/tasks")
            assert got.status_code == 200 and got.json(), got.text
            return dict(got.json())

        with coord.client(reg.json()["token"]) as worker:
            for op, state in (("Finish", "Finished"), ("Cancel", "Cancelled"), ("Finish", "Finished")):
                got = fetch(worker)
                _report(worker, got["id"], op)
                _report(worker, got["id"], {"Commit": {"exit_status": 0, "msg": None}})
                states[str(got["uuid"])] = state
        # Tasks held by workers stay in active_tasks: running, or reported and not yet committed.
        for final in ("Running", "Finished", "Cancelled", "downstream"):
            extra = a_api.post(
                "/workers", json={"tags": ["gpu", "big", "cpu"], "labels": [], "groups": [team]}
            )
            with coord.client(extra.json()["token"]) as worker:
                got = fetch(worker)
                uid = str(got["uuid"])
                states[uid] = "Running"
                if final in ("Finished", "Cancelled"):
                    _report(worker, got["id"], "Finish" if final == "Finished" else "Cancel")
                    states[uid] = final
                if final == "downstream":
                    _report(worker, got["id"], "Finish")
                    spec = {
                        "group_name": team,
                        "tags": [],
                        "labels": ["batch", "downstream"],
                        "timeout": "1h",
                        "task_spec": {"args": ["true"]},
                    }
                    _report(worker, got["id"], {"Submit": spec})
                    states[uid] = "Finished"
                    down = a_api.get(f"/tasks/{uid}").json()["info"]["downstream_task_uuid"]
                    info = a_api.get(f"/tasks/{down}").json()["info"]
                    made.append(
                        Task(
                            down,
                            team,
                            alice,
                            int(info["task_id"]),
                            frozenset(),
                            frozenset({"batch", "downstream"}),
                        )
                    )
                    states[down] = "Pending"
        # Cancelling waiting tasks moves them to the archive, between active ones in id order.
        waiting = [t.uuid for t in made if t.group == team and states[t.uuid] == "Ready"]
        chosen = waiting[::6]
        r = a_api.post("/tasks/cancel/list", json={"uuids": chosen})
        assert r.status_code == 200 and r.json()["cancelled_count"] == len(chosen), r.text
        states.update(dict.fromkeys(chosen, "Cancelled"))
        for uid, state in states.items():
            assert a_api.get(f"/tasks/{uid}").json()["info"]["state"] == state, uid
    return ListWorld(alice=alice, bob=bob, team=team, tasks=made, states=states, reporter=reporter)


def _pages(client: httpx.Client, params: dict[str, str]) -> list[list[str]]:
    """Every page of the list for these filters, up to and including the first empty one."""
    pages: list[list[str]] = []
    for page in itertools.count(1):
        r = client.get("/ui/tasks", params={**params, "page": str(page)})
        assert r.status_code == 200, r.text
        rows = ROW.findall(r.text)
        pages.append(rows)
        if len(rows) < PAGE_SIZE or page > 20:
            break
    return pages


LIST_CASES: list[tuple[str, dict[str, Any]]] = [
    ("everything", {}),
    ("other group", {"group": "alice"}),
    *[(f"state {s}", {"state": s}) for s in ("Pending", "Ready", "Running", "Finished", "Cancelled")],
    ("label", {"labels": ["batch"]}),
    ("two labels", {"labels": ["batch", "mod3-1"]}),
    ("label of one creator", {"labels": ["bob-run"]}),
    ("no such label", {"labels": ["nothing-has-this"]}),
    ("tag", {"tags": ["gpu"]}),
    ("two tags", {"tags": ["gpu", "big"]}),
    ("creator", {"creators": ["bob"]}),
    ("two creators", {"creators": ["alice", "bob"]}),
    ("creator and state", {"creators": ["alice"], "state": "Cancelled"}),
    ("everything at once", {"creators": ["alice"], "state": "Ready", "tags": ["gpu"], "labels": ["mod3-0"]}),
]


@pytest.mark.parametrize(("case", "spec"), LIST_CASES, ids=[c for c, _ in LIST_CASES])
def test_the_task_list_shows_exactly_the_matching_tasks_page_by_page(
    module_coordinator: LiveCoordinator, list_world: ListWorld, case: str, spec: dict[str, Any]
) -> None:
    world = list_world
    who = {"alice": world.alice, "bob": world.bob}
    group = world.alice if spec.get("group") == "alice" else world.team
    creators = [who[c] for c in spec.get("creators", [])]
    expected = world.expected(
        group, spec.get("state"), spec.get("labels", ()), spec.get("tags", ()), creators
    )
    if case not in ("no such label",):
        assert expected, f"{case}: the fixture has no task for this filter"
    params = {"group": group}
    if spec.get("state"):
        params["state"] = spec["state"]
    if spec.get("labels"):
        params["labels"] = ",".join(spec["labels"])
    if spec.get("tags"):
        params["tags"] = ", ".join(spec["tags"])
    if creators:
        params["creator"] = ",".join(creators)
    with _browser(module_coordinator, world.alice, "alice-pw") as client:
        pages = _pages(client, params)
    shown = [uid for page in pages for uid in page]
    assert len(shown) == len(set(shown)), f"{case}: a task is shown twice"
    assert shown == expected, (
        f"{case}: missing {set(expected) - set(shown)}, extra {set(shown) - set(expected)}"
    )
    assert all(len(page) == PAGE_SIZE for page in pages[:-1]) and len(pages[-1]) < PAGE_SIZE


def test_the_fixture_spans_several_pages_and_both_tables(list_world: ListWorld) -> None:
    """Guards the cases above: pagination and the union of the two tables are really exercised."""
    team = list_world.expected(list_world.team)
    assert len(team) > 2 * PAGE_SIZE
    first_page = set(team[:PAGE_SIZE])
    active = {"Pending", "Ready", "Running"}
    assert {list_world.states[u] for u in first_page} & active
    assert {list_world.states[u] for u in first_page} - active
    assert sorted(set(list_world.states.values())) == ["Cancelled", "Finished", "Pending", "Ready", "Running"]


def test_a_member_of_the_group_sees_the_same_list_and_an_outsider_none(
    module_coordinator: LiveCoordinator, list_world: ListWorld
) -> None:
    world = list_world
    with _browser(module_coordinator, world.bob, "bob-pw") as client:
        shown = [uid for page in _pages(client, {"group": world.team}) for uid in page]
        assert shown == world.expected(world.team)
        refused = client.get("/ui/tasks", params={"group": world.alice})
        assert not ROW.findall(refused.text)
    with module_coordinator.client(module_coordinator.login(world.bob, "bob-pw")) as api:
        # Refused with the API's own answer to the same query (0.6.8 says 400 for a foreign group).
        api_status = api.post("/tasks/query", json={"group_name": world.alice}).status_code
    assert refused.status_code == api_status and api_status in (400, 403)


# ------------------------------------------------------------------ query tables vs. both tables

ALL_STATES = ["Pending", "Ready", "Running", "Finished", "Cancelled", "Unknown"]
STATE_FILTERS: list[list[str] | None] = [None] + [
    list(c) for n in range(1, len(ALL_STATES) + 1) for c in itertools.combinations(ALL_STATES, n)
]
WINDOWS: list[dict[str, int]] = [{}, {"limit": 50}, {"limit": 50, "offset": 50}, {"limit": 7, "offset": 3}]


def test_skipping_a_table_the_state_filter_rules_out_changes_no_answer(
    module_coordinator: LiveCoordinator, list_world: ListWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``POST /tasks/query`` (the dashboard list's service) with the table pruning and without it.

    The coordinator runs in this process, so replacing ``query_tables`` with "both tables, always"
    gives the answers of the query before the pruning: they must be the same rows in the same order.
    """
    world = list_world
    bodies: list[dict[str, Any]] = []
    for states in STATE_FILTERS:
        base: dict[str, Any] = {"group_name": world.team}
        if states is not None:
            base["states"] = states
        bodies.extend({**base, **window} for window in WINDOWS)
        bodies.append({**base, "count": True})
        bodies.append({**base, "reporter_uuid": world.reporter, "limit": 50})
    bodies.append(
        {"group_name": world.team, "creator_usernames": [world.bob], "states": ["Ready"], "limit": 20}
    )

    def answers() -> list[Any]:
        with module_coordinator.client(module_coordinator.login(world.alice, "alice-pw")) as api:
            out = []
            for body in bodies:
                r = api.post("/tasks/query", json=body)
                assert r.status_code == 200, (body, r.text)
                out.append(r.json())
            return out

    pruned = answers()
    monkeypatch.setattr(task_service, "query_tables", lambda f, reporter: [active_tasks, archived_tasks])
    both = answers()
    monkeypatch.undo()
    assert len(pruned) == len(bodies)
    for body, got, want in zip(bodies, pruned, both, strict=True):
        assert got == want, body
    # And the pruning really happens: a waiting-state filter reads one table, a final one both.
    assert task_service.query_tables(_filter(["Ready", "Pending"]), None) == [active_tasks]
    assert task_service.query_tables(_filter(["Running", "Finished"]), None) == [active_tasks, archived_tasks]
    assert task_service.query_tables(_filter(None), uuid.uuid4()) == [archived_tasks]
    assert task_service.query_tables(_filter(["Unknown"]), None) == []
    non_empty = [g for g, b in zip(pruned, bodies, strict=True) if not b.get("count") and g["tasks"]]
    assert len(non_empty) > len(bodies) // 3


def _filter(states: list[str] | None) -> Any:
    from mitosis.wire import models as m

    return m.TasksQueryReq.model_validate({"states": states})
