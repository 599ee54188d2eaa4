"""Authorization matrix of every task, attachment, worker and admin endpoint (issue 8), on SQLite and PostgreSQL.

The account and group endpoints have their own matrix (``test_authz_matrix.py``); this one covers
the rest: tasks and artifacts (routes 21-36), attachments (12-20, 62), workers from the user's side
(37-47), the admin task/worker routes (61, 63, 64), the worker protocol (48-54, plus our
``GET /workers/signals`` and ``POST /workers/tasks/{id}/logs``), ``GET /events`` and
``GET /tasks/{uuid}/logs``. Every endpoint is called by every identity; each call must give the exact
status of the table, the body (``msg`` prefix on errors, JSON shape and content on success) and the
effect (a successful call changed what it should, a refused one changed nothing).

Identities: anonymous (no header: 400 as 0.6.8), a plain user outside group ``team``, Read / Write /
Admin members of ``team``, the system admin, a locked user (a Write member), an expired token, a token
signed by a key the coordinator never saw, a worker serving ``team`` and a worker that does not serve
it. On user paths the expired and foreign-key tokens are the writer's claims (exp an hour ago /
another key), and both workers' tokens are refused (403, DECISIONS A5). On worker paths the expired
token is that of a worker whose lifetime has ended (S15: a worker token lives as long as its worker)
and the foreign-key token is the serving worker's claims signed by another key; every user token is
refused there (403, A5).

Rules exercised (DECISIONS A1-A7 over the 0.6.8 matrix of behavior.md §4.11): submitting needs Write
(A1); registering a worker into a group needs Write in it (A2); reading a task, its artifacts, its
log, its events or a worker needs Read in its group (A3); a worker reads tasks, artifacts and
attachments only of groups it serves (A4); changes need Write, worker group changes and shutdowns
need Admin/Admin as 0.6.8; system admins pass every group check. 0.6.8's not-a-member statuses are
kept (400 on change/cancel/labels/queries, 403 elsewhere); batch routes answer 200 and skip what the
caller may not touch (``NOP`` in the tables).

Fixtures (users, the group, a parked task with an artifact, an attachment, workers) are built once
per module; only destructive cases create their own task, attachment or worker. Tasks are tagged so
that no worker but the intended one can claim them (DECISIONS D1).

``test_every_route_has_a_matrix_row`` walks the app's routes: every route must be reached by a row of
this matrix or of ``test_authz_matrix.py``, or be listed in ``NOT_IN_MATRIX`` with its reason.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import update
from starlette.routing import compile_path

from mitosis.config import CoordinatorSettings
from mitosis.coordinator.app import create_app
from mitosis.coordinator.db.engine import make_engine
from mitosis.coordinator.db.tables import artifacts, attachments
from tests.integration import test_authz_matrix as authz_matrix
from tests.support import tokens
from tests.support.coordinator import ADMIN_USER, LiveCoordinator

ANON, OUTSIDER, READER, WRITER, GADMIN, SYSADMIN = (
    "anonymous", "outsider", "reader", "writer", "gadmin", "sysadmin",
)  # fmt: skip
LOCKED, EXPIRED, FOREIGN = "locked", "expired", "foreign-key"
WORKER, OTHER_WORKER = "worker-serving", "worker-not-serving"
IDENTITIES = [
    ANON,
    OUTSIDER,
    READER,
    WRITER,
    GADMIN,
    SYSADMIN,
    LOCKED,
    EXPIRED,
    FOREIGN,
    WORKER,
    OTHER_WORKER,
]
ACTIVE_USERS = [OUTSIDER, READER, WRITER, GADMIN, SYSADMIN]
USER_IDENTITIES = [*ACTIVE_USERS, LOCKED]
TEAM = "team"
PARK = "parked"  # a tag no worker has: tasks of the user-path cases are never claimed
SHARED_LABEL = "shared"
SHARED_KEY = "shared/data.txt"
SHARED_BYTES = b"shared attachment bytes"
ARTIFACT_BYTES = b"artifact bytes"

MISSING_HEADER = "Header of type `authorization` was missing"
INVALID_TOKEN = "Authentication error: Invalid token"
WRONG_CREDENTIALS = "Authentication error: Wrong credentials"
PERMISSION_DENIED = "Authentication error: Permission denied"
NOT_MEMBER_400 = {
    "Process request error: User is not in the group",
    f"Process request error: Group with name {TEAM} not found or user is not in the group",
}

# httpx builds an SSL context per client (~60 ms); plain-http loopback clients share one.
_SSL = ssl.create_default_context()
_RAW = httpx.Client(timeout=30, verify=_SSL)  # for the blob URLs the coordinator hands out

NOP = "200, nothing done"  # a batch route: 200, and the caller's items are skipped
Outcome = int | str

# User paths: the status for the active users; the other identities are refused as REFUSED_ON_USER_PATH.
#                                                       outsider reader writer gadmin sysadmin
USER_PATHS: dict[str, tuple[Outcome, Outcome, Outcome, Outcome, Outcome]] = {
    # tasks (21-29), DECISIONS A1/A3
    "POST /tasks":                                      (403, 403, 200, 200, 200),
    "POST /tasks/submit":                               (NOP, NOP, 200, 200, 200),
    "GET /tasks/{uuid}":                                (403, 200, 200, 200, 200),
    "PUT /tasks/{uuid}":                                (400, 403, 200, 200, 200),
    "DELETE /tasks/{uuid}":                             (400, 403, 200, 200, 200),
    "PUT /tasks/{uuid}/labels":                         (400, 403, 200, 200, 200),
    "POST /tasks/query":                                (400, 200, 200, 200, 200),
    "POST /tasks/cancel":                               (400, 403, 200, 200, 200),
    "POST /tasks/cancel/list":                          (NOP, NOP, 200, 200, 200),
    # artifacts (30-36, 63)
    "POST /tasks/{uuid}/artifacts":                     (403, 403, 200, 200, 200),
    "GET /tasks/{uuid}/download/artifacts/result":      (403, 200, 200, 200, 200),
    "DELETE /tasks/{uuid}/artifacts/result":            (403, 403, 200, 200, 200),
    "POST /tasks/download/artifacts":                   (400, 200, 200, 200, 200),
    "POST /tasks/download/artifacts/list":              (NOP, 200, 200, 200, 200),
    "POST /tasks/delete/artifacts":                     (400, NOP, 200, 200, 200),
    "POST /tasks/delete/artifacts/list":                (NOP, NOP, 200, 200, 200),
    "DELETE /admin/tasks/{uuid}/artifacts/result":      (403, 403, 403, 403, 200),
    # our additions read like a task
    "GET /tasks/{uuid}/logs":                           (403, 200, 200, 200, 200),
    "GET /events?group=team":                           (403, 200, 200, 200, 200),
    # attachments (12-20, 62)
    "POST /groups/team/attachments":                    (403, 403, 200, 200, 200),
    "GET /groups/team/attachments/{key}":               (403, 200, 200, 200, 200),
    "DELETE /groups/team/attachments/{key}":            (403, 403, 200, 200, 200),
    "POST /groups/team/attachments/query":              (400, 200, 200, 200, 200),
    "GET /groups/team/download/attachments/{key}":      (403, 200, 200, 200, 200),
    "POST /groups/team/download/attachments":           (400, 200, 200, 200, 200),
    "POST /groups/team/download/attachments/list":      (400, 200, 200, 200, 200),
    "POST /groups/team/delete/attachments":             (400, 403, 200, 200, 200),
    "POST /groups/team/delete/attachments/list":        (400, 403, 200, 200, 200),
    "DELETE /admin/groups/team/attachments/{key}":      (403, 403, 403, 403, 200),
    # workers, user side (37-47, 61), DECISIONS A2/A3
    "POST /workers":                                    (403, 403, 200, 200, 200),
    "GET /workers/{uuid}":                              (403, 200, 200, 200, 200),
    "DELETE /workers/{uuid}?op=Force":                  (403, 403, 403, 200, 200),
    "PUT /workers/{uuid}/tags":                         (403, 403, 200, 200, 200),
    "PUT /workers/{uuid}/labels":                       (403, 403, 200, 200, 200),
    "PUT /workers/{uuid}/groups":                       (403, 403, 403, 200, 200),
    "DELETE /workers/{uuid}/groups?groups=":            (403, 403, 403, 200, 200),
    "DELETE /workers/{uuid}/groups/remove":             (403, 403, 403, 200, 200),
    "POST /workers/query":                              (403, 200, 200, 200, 200),
    "POST /workers/shutdown":                           (403, 403, 403, 200, 200),
    "POST /workers/shutdown/list":                      (NOP, NOP, NOP, 200, 200),
    "DELETE /admin/workers/{uuid}?op=Force":            (403, 403, 403, 403, 200),
    "DELETE /admin/workers/{uuid}/?op=Force":           (403, 403, 403, 403, 200),  # the OpenAPI spelling (D5)
    # 64, with a wrong secret only (the right one stops this coordinator): the admin gate, then the secret
    "POST /admin/shutdown (wrong secret)":              (403, 403, 403, 403, 403),
}  # fmt: skip
REFUSED_ON_USER_PATH = {ANON: 400, LOCKED: 403, EXPIRED: 401, FOREIGN: 401, WORKER: 403, OTHER_WORKER: 403}

# Worker paths: the status for the two workers; every user token is refused (A5).
#                                                       serving  not serving
WORKER_PATHS: dict[str, tuple[Outcome, Outcome]] = {
    "DELETE /workers":                                  (200, 200),  # each unregisters itself
    "POST /workers/heartbeat":                          (200, 200),
    "GET /workers/tasks":                               (200, NOP),  # the other gets null
    "POST /workers/tasks Finish":                       (200, 404),  # not its task
    "POST /workers/tasks Upload":                       (200, 404),
    "GET /workers/tasks/{uuid}":                        (200, 403),  # A4
    "GET /workers/tasks/{uuid}/artifacts/result":       (200, 403),
    "GET /workers/tasks/{uuid}/attachments/{key}":      (200, 403),
    "GET /workers/signals":                             (200, NOP),  # no signal about others' tasks
    "POST /workers/tasks/{id}/logs":                    (200, 404),
    "POST /workers/batch":                              (200, NOP),  # others' tasks: refused entries
}  # fmt: skip
REFUSED_ON_WORKER_PATH = {ANON: 400, EXPIRED: 401, FOREIGN: 401, **dict.fromkeys(USER_IDENTITIES, 403)}

# The exact 401 text each identity gets.
UNAUTHORIZED_MSG = {
    "user": {EXPIRED: INVALID_TOKEN, FOREIGN: INVALID_TOKEN},
    "worker": {EXPIRED: WRONG_CREDENTIALS, FOREIGN: INVALID_TOKEN},
}


def expected(endpoint: str, who: str) -> Outcome:
    if endpoint in USER_PATHS:
        if who in ACTIVE_USERS:
            return USER_PATHS[endpoint][ACTIVE_USERS.index(who)]
        return REFUSED_ON_USER_PATH[who]
    if who in (WORKER, OTHER_WORKER):
        return WORKER_PATHS[endpoint][0 if who == WORKER else 1]
    return REFUSED_ON_WORKER_PATH[who]


# ------------------------------------------------------------------------------------------- world


@dataclass
class Worker:
    uuid: str
    token: str
    tag: str = ""


@dataclass
class World:
    coord: LiveCoordinator
    tokens: dict[str, str] = field(default_factory=dict)
    serving: Worker | None = None  # the worker identities on user paths
    other: Worker | None = None
    expired_worker: Worker | None = None
    task: str = ""  # the parked task of group team, with a result artifact
    log_task: str = ""  # a task of team running on ``serving``, with some stdout
    _n: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    # One engine and loop for the direct database writes (aging blobs), kept for the module.
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    engine: Any = None

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._n)}"

    # ----------------------------------------------------------------------- clients and tokens

    def user_headers(self, who: str) -> dict[str, str]:
        if who == ANON:
            return {}
        if who == EXPIRED:
            token = tokens.expired(self.tokens[WRITER], self.coord.data_dir)
        elif who == FOREIGN:
            token = tokens.foreign(self.tokens[WRITER])
        elif who in (WORKER, OTHER_WORKER):
            w = self.serving if who == WORKER else self.other
            assert w is not None
            token = w.token
        else:
            token = self.tokens[who]
        return {"Authorization": f"Bearer {token}"}

    def client(self, who: str) -> httpx.Client:
        """A client for ``who`` on a user path."""
        return httpx.Client(base_url=self.coord.url, headers=self.user_headers(who), timeout=30, verify=_SSL)

    def worker_client(self, who: str, subject: Worker) -> tuple[httpx.Client, Worker | None]:
        """A client for ``who`` on a worker path, where ``subject`` is the serving worker of the case.

        Returns the worker the call acts as (None for the refused identities)."""
        acting: Worker | None = None
        if who == ANON:
            headers = {}
        elif who == WORKER:
            acting = subject
        elif who == OTHER_WORKER:
            acting = self.register(OUTSIDER, groups=[])  # serves only the outsider's own group
        elif who == EXPIRED:
            assert self.expired_worker is not None
            headers = {"Authorization": f"Bearer {self.expired_worker.token}"}
        elif who == FOREIGN:
            headers = {"Authorization": f"Bearer {tokens.foreign(subject.token)}"}
        else:
            headers = self.user_headers(who)
        if acting is not None:
            headers = {"Authorization": f"Bearer {acting.token}"}
        return httpx.Client(base_url=self.coord.url, headers=headers, timeout=30, verify=_SSL), acting

    def token_client(self, token: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.coord.url, headers=headers, timeout=30, verify=_SSL)

    def admin(self) -> httpx.Client:
        return self.client(SYSADMIN)

    # --------------------------------------------------------------------------------- builders

    def submit(self, *, tags: list[str] | None = None, labels: list[str] | None = None) -> str:
        body = {
            "group_name": TEAM,
            "tags": [PARK] if tags is None else tags,
            "labels": labels or [],
            "timeout": "10m",
            "task_spec": {"args": ["true"]},
        }
        with self.client(WRITER) as c:
            r = c.post("/tasks", json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["uuid"])

    def get_task(self, task_uuid: str) -> dict[str, Any] | None:
        with self.admin() as c:
            r = c.get(f"/tasks/{task_uuid}")
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def state(self, task_uuid: str) -> str:
        t = self.get_task(task_uuid)
        assert t is not None
        return str(t["info"]["state"])

    def artifact_types(self, task_uuid: str) -> list[str]:
        t = self.get_task(task_uuid)
        assert t is not None
        return [a["content_type"] for a in t["artifacts"]]

    def add_artifact(self, task_uuid: str, data: bytes = ARTIFACT_BYTES) -> None:
        with self.client(WRITER) as c:
            r = c.post(
                f"/tasks/{task_uuid}/artifacts", json={"content_type": "result", "content_length": len(data)}
            )
        assert r.status_code == 200, r.text
        put(r.json()["url"], data)
        assert self.artifact_types(task_uuid) == ["result"]

    def attach(self, key: str, data: bytes = SHARED_BYTES) -> None:
        with self.client(WRITER) as c:
            r = c.post(f"/groups/{TEAM}/attachments", json={"key": key, "content_length": len(data)})
        assert r.status_code == 200, r.text
        put(r.json()["url"], data)
        assert self.attachment_size(key) == len(data)

    def attachment_size(self, key: str) -> int | None:
        with self.admin() as c:
            r = c.get(f"/groups/{TEAM}/attachments/{key}")
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return int(r.json()["size"])

    def age_blobs(self) -> None:
        """Make every artifact and attachment two hours old, past the one-hour delete protection."""
        old = datetime.now(UTC) - timedelta(hours=2)

        async def run() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(update(artifacts).values(updated_at=old))
                await conn.execute(update(attachments).values(updated_at=old))

        self.loop.run_until_complete(run())

    def register(
        self, who: str = SYSADMIN, *, groups: list[str], tags: list[str] | None = None, **extra: Any
    ) -> Worker:
        body = {"tags": tags or [], "labels": extra.pop("labels", []), "groups": groups, **extra}
        with self.client(who) as c:
            r = c.post("/workers", json=body)
        assert r.status_code == 200, r.text
        return Worker(uuid=r.json()["worker_id"], token=r.json()["token"], tag=(tags or [""])[0])

    def target_worker(self, **extra: Any) -> Worker:
        """A worker that is Admin in team (registered by the system admin): the object of user-side cases."""
        return self.register(groups=[f"{TEAM}:Admin"], **extra)

    def serving_worker(self) -> Worker:
        """A fresh worker serving team, tagged so that only tasks made for it reach it."""
        return self.register(groups=[f"{TEAM}:Write"], tags=[self.unique("wtag")])

    def worker_info(self, worker_uuid: str) -> dict[str, Any] | None:
        with self.admin() as c:
            r = c.get(f"/workers/{worker_uuid}")
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def claimed(self, w: Worker) -> tuple[int, str]:
        """A task of team submitted for ``w`` and claimed by it: (id, uuid)."""
        task_uuid = self.submit(tags=[w.tag])
        with self.token_client(w.token) as c:
            r = c.get("/workers/tasks")
        assert r.status_code == 200 and r.json()["uuid"] == task_uuid, r.text
        return int(r.json()["id"]), task_uuid

    def group_counts(self) -> tuple[int, int]:
        with self.admin() as c:
            body = c.get(f"/groups/{TEAM}").json()
        return int(body["task_count"]), int(body["worker_count"])

    def log_frames(self, task_uuid: str) -> list[dict[str, Any]]:
        with self.admin() as c:
            r = c.get(f"/tasks/{task_uuid}/logs", params={"stream": "stdout"})
        assert r.status_code == 200, r.text
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def put(url: str, data: bytes) -> None:
    r = _RAW.put(url, content=data, headers={"Content-Length": str(len(data))}, timeout=30)
    assert r.status_code == 200, r.text


def log_text(frames: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(f["data"]) for f in frames if "data" in f)


@pytest.fixture(scope="module")
def world(module_coordinator: LiveCoordinator) -> Iterator[World]:
    coord = module_coordinator
    w = World(coord=coord)
    w.engine = make_engine(coord.db_url)
    w.tokens[SYSADMIN] = coord.login()
    for who in (OUTSIDER, READER, WRITER, GADMIN, LOCKED):
        w.tokens[who] = coord.create_user(who, f"pw-{who}")
    with w.client(GADMIN) as c:
        assert c.post("/groups", json={"group_name": TEAM}).status_code == 200
        r = c.put(
            f"/groups/{TEAM}/users", json={"relations": {READER: "Read", WRITER: "Write", LOCKED: "Write"}}
        )
        assert r.status_code == 200, r.text
    # The expired worker serves a group of its own: the coordinator's sweep deletes it at some point
    # after its lifetime, and that must not change team's worker count while a case compares it.
    with w.client(GADMIN) as c:
        assert c.post("/groups", json={"group_name": f"{TEAM}-expiry"}).status_code == 200
    expired_at = time.monotonic() + 1.0
    w.expired_worker = w.register(groups=[f"{TEAM}-expiry:Write"], lifetime="1s")
    w.serving = w.serving_worker()
    w.other = w.register(OUTSIDER, groups=[])
    w.task = w.submit(labels=[SHARED_LABEL])
    w.add_artifact(w.task)
    w.attach(SHARED_KEY)
    task_id, w.log_task = w.claimed(w.serving)
    with w.token_client(w.serving.token) as c:
        body = {"stream": "stdout", "offset": 0, "data": base64.b64encode(b"hello\n").decode()}
        assert c.post(f"/workers/tasks/{task_id}/logs", json=body).status_code == 200
    with w.admin() as c:
        r = c.post(f"/admin/users/{LOCKED}/state", json={"state": "Locked"})
        assert r.json() == {"state": "Locked"}
    time.sleep(max(0.0, expired_at - time.monotonic()))
    try:
        yield w
    finally:
        w.loop.run_until_complete(w.engine.dispose())
        w.loop.close()


# --------------------------------------------------------------------------------------- endpoints

# An endpoint makes its call as ``who`` and returns the reply plus a check of the effect, given
# whether the call was allowed: it asserts the change happened, or that nothing changed.
Effect = Callable[[bool], None]
Endpoint = Callable[[World, str], tuple[httpx.Response, Effect]]
ENDPOINTS: dict[str, Endpoint] = {}


def endpoint(name: str) -> Callable[[Endpoint], Endpoint]:
    def register(fn: Endpoint) -> Endpoint:
        assert name not in ENDPOINTS
        ENDPOINTS[name] = fn
        return fn

    return register


def no_effect(_: bool) -> None:
    """A read: nothing to change (the body check is the endpoint's)."""


def task_body(labels: list[str] | None = None) -> dict[str, Any]:
    return {"group_name": TEAM, "tags": [PARK], "labels": labels or [], "task_spec": {"args": ["true"]}}


# ------------------------------------------------------------------------------------------- tasks


@endpoint("POST /tasks")
def _submit(w: World, who: str) -> tuple[httpx.Response, Effect]:
    before, _ = w.group_counts()
    with w.client(who) as c:
        r = c.post("/tasks", json=task_body())

    def effect(ok: bool) -> None:
        after, _ = w.group_counts()
        if ok:
            assert set(r.json()) == {"task_id", "uuid"} and r.json()["task_id"] == after == before + 1
            t = w.get_task(r.json()["uuid"])
            assert t is not None and t["info"]["group_name"] == TEAM and t["info"]["state"] == "Ready"
        else:
            assert after == before
            if r.status_code == 403 and who in ACTIVE_USERS:
                assert f"group {TEAM}" in r.json()["msg"]  # A1: the group is named

    return r, effect


@endpoint("POST /tasks/submit")
def _submit_many(w: World, who: str) -> tuple[httpx.Response, Effect]:
    before, _ = w.group_counts()
    with w.client(who) as c:
        r = c.post("/tasks/submit", json={"tasks": [task_body(), task_body()]})

    def effect(ok: bool) -> None:
        after, _ = w.group_counts()
        if r.status_code != 200:
            assert after == before
            return
        results = r.json()["results"]
        assert list(r.json()) == ["results"] and len(results) == 2
        if ok:
            assert [list(x) for x in results] == [["Ok"], ["Ok"]] and after == before + 2
            assert all(w.state(x["Ok"]["uuid"]) == "Ready" for x in results)
        else:
            assert after == before
            for x in results:
                assert list(x) == ["Err"] and x["Err"]["msg"].startswith(PERMISSION_DENIED), x

    return r, effect


@endpoint("GET /tasks/{uuid}")
def _get_task(w: World, who: str) -> tuple[httpx.Response, Effect]:
    with w.client(who) as c:
        r = c.get(f"/tasks/{w.task}")

    def effect(ok: bool) -> None:
        if ok:
            body = r.json()
            assert set(body) == {"info", "artifacts"}
            assert (body["info"]["uuid"], body["info"]["group_name"]) == (w.task, TEAM)
            assert [a["content_type"] for a in body["artifacts"]] == ["result"]

    return r, effect


@endpoint("PUT /tasks/{uuid}")
def _change_task(w: World, who: str) -> tuple[httpx.Response, Effect]:
    before = w.get_task(w.task)
    assert before is not None
    priority = next(w._n)
    with w.client(who) as c:
        r = c.put(f"/tasks/{w.task}", json={"priority": priority})

    def effect(ok: bool) -> None:
        after = w.get_task(w.task)
        assert after is not None
        if ok:
            assert r.content == b""
            assert after["info"]["priority"] == priority
        else:
            assert after["info"]["priority"] == before["info"]["priority"]

    return r, effect


@endpoint("DELETE /tasks/{uuid}")
def _cancel_task(w: World, who: str) -> tuple[httpx.Response, Effect]:
    task = w.submit()
    with w.client(who) as c:
        r = c.delete(f"/tasks/{task}")

    def effect(ok: bool) -> None:
        if ok:
            assert r.content == b""
        assert w.state(task) == ("Cancelled" if ok else "Ready")

    return r, effect


@endpoint("PUT /tasks/{uuid}/labels")
def _task_labels(w: World, who: str) -> tuple[httpx.Response, Effect]:
    label = w.unique("label")
    with w.client(who) as c:
        r = c.put(f"/tasks/{w.task}/labels", json={"labels": [SHARED_LABEL, label]})

    def effect(ok: bool) -> None:
        t = w.get_task(w.task)
        assert t is not None
        assert (label in t["info"]["labels"]) is ok and SHARED_LABEL in t["info"]["labels"]
        if ok:
            assert r.content == b""

    return r, effect


@endpoint("POST /tasks/query")
def _query_tasks(w: World, who: str) -> tuple[httpx.Response, Effect]:
    with w.client(who) as c:
        r = c.post("/tasks/query", json={"group_name": TEAM, "labels": [SHARED_LABEL]})

    def effect(ok: bool) -> None:
        if ok:
            body = r.json()
            assert set(body) == {"count", "tasks", "group_name"} and body["group_name"] == TEAM
            assert [t["uuid"] for t in body["tasks"]] == [w.task] and body["count"] == 1

    return r, effect


@endpoint("POST /tasks/cancel")
def _cancel_by_filter(w: World, who: str) -> tuple[httpx.Response, Effect]:
    label = w.unique("cancel")
    task = w.submit(labels=[label])
    with w.client(who) as c:
        r = c.post("/tasks/cancel", json={"group_name": TEAM, "labels": [label]})

    def effect(ok: bool) -> None:
        if ok:
            assert r.json() == {"cancelled_count": 1, "group_name": TEAM}
        assert w.state(task) == ("Cancelled" if ok else "Ready")

    return r, effect


@endpoint("POST /tasks/cancel/list")
def _cancel_by_uuids(w: World, who: str) -> tuple[httpx.Response, Effect]:
    task = w.submit()
    with w.client(who) as c:
        r = c.post("/tasks/cancel/list", json={"uuids": [task]})

    def effect(ok: bool) -> None:
        if r.status_code == 200:
            expected_body = (
                {"cancelled_count": 1, "failed_uuids": []}
                if ok
                else {"cancelled_count": 0, "failed_uuids": [task]}
            )
            assert r.json() == expected_body
        assert w.state(task) == ("Cancelled" if ok else "Ready")

    return r, effect


# --------------------------------------------------------------------------------------- artifacts


@endpoint("POST /tasks/{uuid}/artifacts")
def _upload_artifact(w: World, who: str) -> tuple[httpx.Response, Effect]:
    task = w.submit()
    with w.client(who) as c:
        r = c.post(f"/tasks/{task}/artifacts", json={"content_type": "result", "content_length": 5})

    def effect(ok: bool) -> None:
        if ok:
            assert set(r.json()) == {"exist", "url"} and r.json()["exist"] is False
            put(r.json()["url"], b"12345")
        assert w.artifact_types(task) == (["result"] if ok else [])

    return r, effect


@endpoint("GET /tasks/{uuid}/download/artifacts/result")
def _download_artifact(w: World, who: str) -> tuple[httpx.Response, Effect]:
    with w.client(who) as c:
        r = c.get(f"/tasks/{w.task}/download/artifacts/result")

    def effect(ok: bool) -> None:
        if ok:
            assert set(r.json()) == {"url", "size"} and r.json()["size"] == len(ARTIFACT_BYTES)
            assert _RAW.get(r.json()["url"]).content == ARTIFACT_BYTES

    return r, effect


def _aged_artifact(w: World, labels: list[str] | None = None) -> str:
    task = w.submit(labels=labels)
    w.add_artifact(task)
    w.age_blobs()
    return task


@endpoint("DELETE /tasks/{uuid}/artifacts/result")
def _delete_artifact(w: World, who: str) -> tuple[httpx.Response, Effect]:
    task = _aged_artifact(w)
    with w.client(who) as c:
        r = c.delete(f"/tasks/{task}/artifacts/result")

    def effect(ok: bool) -> None:
        if ok:
            assert r.content == b""
        assert w.artifact_types(task) == ([] if ok else ["result"])

    return r, effect


@endpoint("DELETE /admin/tasks/{uuid}/artifacts/result")
def _admin_delete_artifact(w: World, who: str) -> tuple[httpx.Response, Effect]:
    task = w.submit()
    w.add_artifact(task)  # fresh: the admin route has no one-hour rule
    with w.client(who) as c:
        r = c.delete(f"/admin/tasks/{task}/artifacts/result")

    def effect(ok: bool) -> None:
        if ok:
            assert r.content == b""
        assert w.artifact_types(task) == ([] if ok else ["result"])

    return r, effect


@endpoint("POST /tasks/download/artifacts")
def _download_artifacts_by_filter(w: World, who: str) -> tuple[httpx.Response, Effect]:
    with w.client(who) as c:
        r = c.post(
            "/tasks/download/artifacts",
            json={"group_name": TEAM, "labels": [SHARED_LABEL], "content_type": "result"},
        )

    def effect(ok: bool) -> None:
        if ok:
            [item] = r.json()["downloads"]
            assert (item["uuid"], item["size"]) == (w.task, len(ARTIFACT_BYTES))

    return r, effect


@endpoint("POST /tasks/download/artifacts/list")
def _download_artifacts_by_uuids(w: World, who: str) -> tuple[httpx.Response, Effect]:
    with w.client(who) as c:
        r = c.post("/tasks/download/artifacts/list", json={"uuids": [w.task], "content_type": "result"})

    def effect(ok: bool) -> None:
        if r.status_code == 200:
            # A3: a caller without Read in the task's group gets no URL for it.
            assert [d["uuid"] for d in r.json()["downloads"]] == ([w.task] if ok else [])

    return r, effect


@endpoint("POST /tasks/delete/artifacts")
def _delete_artifacts_by_filter(w: World, who: str) -> tuple[httpx.Response, Effect]:
    label = w.unique("artdel")
    task = _aged_artifact(w, labels=[label])
    with w.client(who) as c:
        r = c.post(
            "/tasks/delete/artifacts", json={"group_name": TEAM, "labels": [label], "content_type": "result"}
        )

    def effect(ok: bool) -> None:
        if r.status_code == 200:
            assert r.json() == {"deleted_count": 1 if ok else 0}
        assert w.artifact_types(task) == ([] if ok else ["result"])

    return r, effect


@endpoint("POST /tasks/delete/artifacts/list")
def _delete_artifacts_by_uuids(w: World, who: str) -> tuple[httpx.Response, Effect]:
    task = _aged_artifact(w)
    with w.client(who) as c:
        r = c.post("/tasks/delete/artifacts/list", json={"uuids": [task], "content_type": "result"})

    def effect(ok: bool) -> None:
        if r.status_code == 200:
            assert r.json() == (
                {"deleted_count": 1, "failed_uuids": []}
                if ok
                else {"deleted_count": 0, "failed_uuids": [task]}
            )
        assert w.artifact_types(task) == ([] if ok else ["result"])

    return r, effect


# ----------------------------------------------------------------------------- logs and the events


@endpoint("GET /tasks/{uuid}/logs")
def _read_log(w: World, who: str) -> tuple[httpx.Response, Effect]:
    with w.client(who) as c:
        r = c.get(f"/tasks/{w.log_task}/logs", params={"stream": "stdout"})

    def effect(ok: bool) -> None:
        if ok:
            assert r.headers["content-type"].startswith("application/x-ndjson")
            frames = [json.loads(line) for line in r.text.splitlines() if line.strip()]
            assert log_text(frames) == b"hello\n"
            assert frames[-1] == {"end": True, "state": "Running", "result": None}

    return r, effect


@endpoint("GET /events?group=team")
def _events(w: World, who: str) -> tuple[httpx.Response, Effect]:
    first: dict[str, Any] = {}
    with w.client(who) as c, c.stream("GET", "/events", params={"group": TEAM, "last_event_id": 0}) as r:
        if r.status_code == 200:
            for line in r.iter_lines():  # the replay of team's past events starts at once
                if line.startswith("data: "):
                    first.update(json.loads(line.removeprefix("data: ")))
                    break
        else:
            r.read()

    def effect(ok: bool) -> None:
        if ok:
            assert r.headers["content-type"].startswith("text/event-stream")
            assert first["kind"] in ("task", "worker") and TEAM in first["groups"], first

    return r, effect


# ------------------------------------------------------------------------------------- attachments


@endpoint("POST /groups/team/attachments")
def _upload_attachment(w: World, who: str) -> tuple[httpx.Response, Effect]:
    key = f"{w.unique('up')}.txt"
    with w.client(who) as c:
        r = c.post(f"/groups/{TEAM}/attachments", json={"key": key, "content_length": 3})

    def effect(ok: bool) -> None:
        if ok:
            assert set(r.json()) == {"exist", "url"} and r.json()["exist"] is False
            put(r.json()["url"], b"abc")
        assert w.attachment_size(key) == (3 if ok else None)

    return r, effect


@endpoint("GET /groups/team/attachments/{key}")
def _attachment_metadata(w: World, who: str) -> tuple[httpx.Response, Effect]:
    with w.client(who) as c:
        r = c.get(f"/groups/{TEAM}/attachments/{SHARED_KEY}")

    def effect(ok: bool) -> None:
        if ok:
            assert set(r.json()) == {"content_type", "size", "created_at", "updated_at"}
            assert r.json()["size"] == len(SHARED_BYTES)

    return r, effect


def _aged_attachment(w: World) -> str:
    key = f"{w.unique('del')}.txt"
    w.attach(key, b"xyz")
    w.age_blobs()
    return key


@endpoint("DELETE /groups/team/attachments/{key}")
def _delete_attachment(w: World, who: str) -> tuple[httpx.Response, Effect]:
    key = _aged_attachment(w)
    with w.client(who) as c:
        r = c.delete(f"/groups/{TEAM}/attachments/{key}")

    def effect(ok: bool) -> None:
        if ok:
            assert r.content == b""
        assert w.attachment_size(key) == (None if ok else 3)

    return r, effect


@endpoint("DELETE /admin/groups/team/attachments/{key}")
def _admin_delete_attachment(w: World, who: str) -> tuple[httpx.Response, Effect]:
    key = f"{w.unique('adel')}.txt"
    w.attach(key, b"xyz")  # fresh: the admin route has no one-hour rule
    with w.client(who) as c:
        r = c.delete(f"/admin/groups/{TEAM}/attachments/{key}")

    def effect(ok: bool) -> None:
        if ok:
            assert r.content == b""
        assert w.attachment_size(key) == (None if ok else 3)

    return r, effect


@endpoint("POST /groups/team/attachments/query")
def _query_attachments(w: World, who: str) -> tuple[httpx.Response, Effect]:
    with w.client(who) as c:
        r = c.post(f"/groups/{TEAM}/attachments/query", json={"key": SHARED_KEY})

    def effect(ok: bool) -> None:
        if ok:
            body = r.json()
            assert (body["group_name"], body["count"]) == (TEAM, 1)
            assert [a["key"] for a in body["attachments"]] == [SHARED_KEY]

    return r, effect


@endpoint("GET /groups/team/download/attachments/{key}")
def _download_attachment(w: World, who: str) -> tuple[httpx.Response, Effect]:
    with w.client(who) as c:
        r = c.get(f"/groups/{TEAM}/download/attachments/{SHARED_KEY}")

    def effect(ok: bool) -> None:
        if ok:
            assert set(r.json()) == {"url", "size"} and r.json()["size"] == len(SHARED_BYTES)
            assert _RAW.get(r.json()["url"]).content == SHARED_BYTES

    return r, effect


@endpoint("POST /groups/team/download/attachments")
def _download_attachments_by_filter(w: World, who: str) -> tuple[httpx.Response, Effect]:
    with w.client(who) as c:
        r = c.post(f"/groups/{TEAM}/download/attachments", json={"key": SHARED_KEY})

    def effect(ok: bool) -> None:
        if ok:
            assert r.json()["group_name"] == TEAM
            assert [(d["key"], d["size"]) for d in r.json()["downloads"]] == [(SHARED_KEY, len(SHARED_BYTES))]

    return r, effect


@endpoint("POST /groups/team/download/attachments/list")
def _download_attachments_by_keys(w: World, who: str) -> tuple[httpx.Response, Effect]:
    with w.client(who) as c:
        r = c.post(f"/groups/{TEAM}/download/attachments/list", json={"keys": [SHARED_KEY]})

    def effect(ok: bool) -> None:
        if ok:
            assert r.json()["group_name"] == TEAM
            assert [d["key"] for d in r.json()["downloads"]] == [SHARED_KEY]

    return r, effect


@endpoint("POST /groups/team/delete/attachments")
def _delete_attachments_by_filter(w: World, who: str) -> tuple[httpx.Response, Effect]:
    key = _aged_attachment(w)
    with w.client(who) as c:
        r = c.post(f"/groups/{TEAM}/delete/attachments", json={"key": key})

    def effect(ok: bool) -> None:
        if ok:
            assert r.json() == {"deleted_count": 1, "group_name": TEAM}
        assert w.attachment_size(key) == (None if ok else 3)

    return r, effect


@endpoint("POST /groups/team/delete/attachments/list")
def _delete_attachments_by_keys(w: World, who: str) -> tuple[httpx.Response, Effect]:
    key = _aged_attachment(w)
    with w.client(who) as c:
        r = c.post(f"/groups/{TEAM}/delete/attachments/list", json={"keys": [key]})

    def effect(ok: bool) -> None:
        if ok:
            assert r.json() == {"deleted_count": 1, "failed_keys": [], "group_name": TEAM}
        assert w.attachment_size(key) == (None if ok else 3)

    return r, effect


# --------------------------------------------------------------------------------- workers (users)


@endpoint("POST /workers")
def _register_worker(w: World, who: str) -> tuple[httpx.Response, Effect]:
    _, before = w.group_counts()
    with w.client(who) as c:
        r = c.post("/workers", json={"tags": [w.unique("reg")], "labels": [], "groups": [TEAM]})

    def effect(ok: bool) -> None:
        _, after = w.group_counts()
        if ok:
            assert set(r.json()) == {"worker_id", "token", "redis_url"} and after == before + 1
            info = w.worker_info(r.json()["worker_id"])
            assert info is not None and info["groups"][TEAM] == "Write"
            assert tokens.claims_of(r.json()["token"])["typ"] == "worker"
        else:
            assert after == before
            if r.status_code == 403 and who in ACTIVE_USERS:
                assert f"group {TEAM}" in r.json()["msg"]  # A2: the group is named

    return r, effect


@endpoint("GET /workers/{uuid}")
def _get_worker(w: World, who: str) -> tuple[httpx.Response, Effect]:
    target = w.target_worker()
    with w.client(who) as c:
        r = c.get(f"/workers/{target.uuid}")

    def effect(ok: bool) -> None:
        if ok:
            assert set(r.json()) == {"info", "groups"} and r.json()["info"]["worker_id"] == target.uuid
            assert r.json()["groups"] == {ADMIN_USER: "Admin", TEAM: "Admin"}

    return r, effect


def _worker_gone_effect(w: World, r: httpx.Response, target: Worker) -> Effect:
    def effect(ok: bool) -> None:
        if ok:
            assert r.content == b""
        assert (w.worker_info(target.uuid) is None) is ok

    return effect


@endpoint("DELETE /workers/{uuid}?op=Force")
def _delete_worker(w: World, who: str) -> tuple[httpx.Response, Effect]:
    target = w.target_worker()
    with w.client(who) as c:
        r = c.delete(f"/workers/{target.uuid}", params={"op": "Force"})
    return r, _worker_gone_effect(w, r, target)


@endpoint("DELETE /admin/workers/{uuid}?op=Force")
def _admin_delete_worker(w: World, who: str) -> tuple[httpx.Response, Effect]:
    target = w.target_worker()
    with w.client(who) as c:
        r = c.delete(f"/admin/workers/{target.uuid}", params={"op": "Force"})
    return r, _worker_gone_effect(w, r, target)


@endpoint("DELETE /admin/workers/{uuid}/?op=Force")
def _admin_delete_worker_slash(w: World, who: str) -> tuple[httpx.Response, Effect]:
    target = w.target_worker()
    with w.client(who) as c:
        r = c.delete(f"/admin/workers/{target.uuid}/", params={"op": "Force"})
    return r, _worker_gone_effect(w, r, target)


def _replace(field_name: str) -> Endpoint:
    def call(w: World, who: str) -> tuple[httpx.Response, Effect]:
        target = w.target_worker()
        value = w.unique(field_name)
        with w.client(who) as c:
            r = c.put(f"/workers/{target.uuid}/{field_name}", json={field_name: [value]})

        def effect(ok: bool) -> None:
            info = w.worker_info(target.uuid)
            assert info is not None
            assert (info["info"][field_name] == [value]) is ok
            if ok:
                assert r.content == b""

        return r, effect

    return call


endpoint("PUT /workers/{uuid}/tags")(_replace("tags"))
endpoint("PUT /workers/{uuid}/labels")(_replace("labels"))


@endpoint("PUT /workers/{uuid}/groups")
def _worker_groups(w: World, who: str) -> tuple[httpx.Response, Effect]:
    target = w.target_worker()
    with w.client(who) as c:
        r = c.put(f"/workers/{target.uuid}/groups", json={"relations": {TEAM: "Read"}})

    def effect(ok: bool) -> None:
        info = w.worker_info(target.uuid)
        assert info is not None and info["groups"][TEAM] == ("Read" if ok else "Admin")

    return r, effect


def _remove_groups(via_body: bool) -> Endpoint:
    def call(w: World, who: str) -> tuple[httpx.Response, Effect]:
        target = w.target_worker()
        with w.client(who) as c:
            if via_body:
                r = c.request("DELETE", f"/workers/{target.uuid}/groups/remove", json={"groups": [TEAM]})
            else:
                r = c.delete(f"/workers/{target.uuid}/groups", params={"groups": TEAM})

        def effect(ok: bool) -> None:
            info = w.worker_info(target.uuid)
            assert info is not None and (TEAM not in info["groups"]) is ok
            if ok:
                assert r.content == b""

        return r, effect

    return call


endpoint("DELETE /workers/{uuid}/groups?groups=")(_remove_groups(via_body=False))
endpoint("DELETE /workers/{uuid}/groups/remove")(_remove_groups(via_body=True))


@endpoint("POST /workers/query")
def _query_workers(w: World, who: str) -> tuple[httpx.Response, Effect]:
    label = w.unique("wq")
    target = w.target_worker(labels=[label])
    with w.client(who) as c:
        r = c.post("/workers/query", json={"group_name": TEAM, "labels": [label]})

    def effect(ok: bool) -> None:
        if ok:
            body = r.json()
            assert (body["group_name"], body["count"]) == (TEAM, 1)
            assert [x["worker_id"] for x in body["workers"]] == [target.uuid]

    return r, effect


@endpoint("POST /workers/shutdown")
def _shutdown_by_filter(w: World, who: str) -> tuple[httpx.Response, Effect]:
    label = w.unique("shut")
    target = w.target_worker(labels=[label])
    with w.client(who) as c:
        r = c.post("/workers/shutdown", json={"group_name": TEAM, "labels": [label], "op": "Force"})

    def effect(ok: bool) -> None:
        if ok:
            assert r.json() == {"shutdown_count": 1, "group_name": TEAM}
        assert (w.worker_info(target.uuid) is None) is ok

    return r, effect


@endpoint("POST /workers/shutdown/list")
def _shutdown_by_uuids(w: World, who: str) -> tuple[httpx.Response, Effect]:
    target = w.target_worker()
    with w.client(who) as c:
        r = c.post("/workers/shutdown/list", json={"uuids": [target.uuid], "op": "Force"})

    def effect(ok: bool) -> None:
        if r.status_code == 200:
            assert r.json() == (
                {"shutdown_count": 1, "failed_uuids": []}
                if ok
                else {"shutdown_count": 0, "failed_uuids": [target.uuid]}
            )
        assert (w.worker_info(target.uuid) is None) is ok

    return r, effect


@endpoint("POST /admin/shutdown (wrong secret)")
def _admin_shutdown(w: World, who: str) -> tuple[httpx.Response, Effect]:
    with w.client(who) as c:
        r = c.post("/admin/shutdown", json={"secret": "not-the-secret"})

    def effect(ok: bool) -> None:
        assert not ok
        if who == SYSADMIN:
            assert "wrong shutdown secret" in r.json()["msg"]
        assert _RAW.get(f"{w.coord.url}/health").json() == {"status": "ok"}

    return r, effect


# ---------------------------------------------------------------------------------- worker protocol


@endpoint("DELETE /workers")
def _unregister(w: World, who: str) -> tuple[httpx.Response, Effect]:
    subject = w.serving_worker()
    client, acting = w.worker_client(who, subject)
    with client as c:
        r = c.delete("/workers")

    def effect(ok: bool) -> None:
        if ok:
            assert acting is not None and r.json() is None
            assert w.worker_info(acting.uuid) is None
        assert (w.worker_info(subject.uuid) is None) is (ok and acting is subject)

    return r, effect


@endpoint("POST /workers/heartbeat")
def _heartbeat(w: World, who: str) -> tuple[httpx.Response, Effect]:
    subject = w.serving_worker()
    client, acting = w.worker_client(who, subject)
    watched = acting or subject
    info = w.worker_info(watched.uuid)
    assert info is not None
    before = info["info"]["last_heartbeat"]
    with client as c:
        r = c.post("/workers/heartbeat")

    def effect(ok: bool) -> None:
        after = w.worker_info(watched.uuid)
        assert after is not None
        if ok:
            assert r.json() is None
        assert (after["info"]["last_heartbeat"] != before) is ok

    return r, effect


@endpoint("GET /workers/tasks")
def _fetch(w: World, who: str) -> tuple[httpx.Response, Effect]:
    subject = w.serving_worker()
    task = w.submit(tags=[subject.tag])
    client, _ = w.worker_client(who, subject)
    with client as c:
        r = c.get("/workers/tasks")

    def effect(ok: bool) -> None:
        if ok:
            assert set(r.json()) == {"id", "uuid", "timeout", "upstream_task_uuid", "spec"}
            assert r.json()["uuid"] == task
        elif r.status_code == 200:
            assert r.json() is None
        assert w.state(task) == ("Running" if ok else "Ready")

    return r, effect


def _report(op_name: str) -> Endpoint:
    def call(w: World, who: str) -> tuple[httpx.Response, Effect]:
        subject = w.serving_worker()
        task_id, task = w.claimed(subject)
        op: Any = (
            "Finish" if op_name == "Finish" else {"Upload": {"content_type": "result", "content_length": 4}}
        )
        client, _ = w.worker_client(who, subject)
        with client as c:
            r = c.post("/workers/tasks", json={"id": task_id, "op": op})

        def effect(ok: bool) -> None:
            if r.status_code == 404:
                assert r.json() == {"msg": f"Task {task_id} not found"}
            if op_name == "Finish":
                if ok:
                    assert r.json() == {"url": None}
                assert w.state(task) == ("Finished" if ok else "Running")
            else:
                if ok:
                    assert list(r.json()) == ["url"] and r.json()["url"].startswith("http")
                    put(r.json()["url"], b"data")
                assert w.artifact_types(task) == (["result"] if ok else [])
                assert w.state(task) == "Running"

        return r, effect

    return call


endpoint("POST /workers/tasks Finish")(_report("Finish"))
endpoint("POST /workers/tasks Upload")(_report("Upload"))


@endpoint("GET /workers/tasks/{uuid}")
def _worker_get_task(w: World, who: str) -> tuple[httpx.Response, Effect]:
    client, _ = w.worker_client(who, w.serving_worker())
    with client as c:
        r = c.get(f"/workers/tasks/{w.task}")

    def effect(ok: bool) -> None:
        if ok:
            assert set(r.json()) == {"info", "artifacts"} and r.json()["info"]["uuid"] == w.task
        elif r.status_code == 403 and who == OTHER_WORKER:
            assert f"does not serve group {TEAM}" in r.json()["msg"]

    return r, effect


@endpoint("GET /workers/tasks/{uuid}/artifacts/result")
def _worker_artifact(w: World, who: str) -> tuple[httpx.Response, Effect]:
    client, _ = w.worker_client(who, w.serving_worker())
    with client as c:
        r = c.get(f"/workers/tasks/{w.task}/artifacts/result")

    def effect(ok: bool) -> None:
        if ok:
            assert set(r.json()) == {"url", "size"} and r.json()["size"] == len(ARTIFACT_BYTES)
            assert _RAW.get(r.json()["url"]).content == ARTIFACT_BYTES

    return r, effect


@endpoint("GET /workers/tasks/{uuid}/attachments/{key}")
def _worker_attachment(w: World, who: str) -> tuple[httpx.Response, Effect]:
    client, _ = w.worker_client(who, w.serving_worker())
    with client as c:
        r = c.get(f"/workers/tasks/{w.task}/attachments/{SHARED_KEY}")

    def effect(ok: bool) -> None:
        if ok:
            assert set(r.json()) == {"url", "size"} and r.json()["size"] == len(SHARED_BYTES)
            assert _RAW.get(r.json()["url"]).content == SHARED_BYTES

    return r, effect


@endpoint("GET /workers/signals")
def _signals(w: World, who: str) -> tuple[httpx.Response, Effect]:
    subject = w.serving_worker()
    task_id, task = w.claimed(subject)
    with w.client(WRITER) as c:
        assert c.delete(f"/tasks/{task}").status_code == 200  # S5: a Running task is flagged
    client, _ = w.worker_client(who, subject)
    with client as c:
        r = c.get("/workers/signals")

    def effect(ok: bool) -> None:
        if r.status_code == 200:
            assert r.json() == {"cancel": [task_id] if ok else []}
        assert w.state(task) == "Running"

    return r, effect


@endpoint("POST /workers/batch")
def _batch(w: World, who: str) -> tuple[httpx.Response, Effect]:
    subject = w.serving_worker()
    task_id, task = w.claimed(subject)
    client, _ = w.worker_client(who, subject)
    done = [{"id": task_id, "op": "Finish", "result": {"exit_status": 0, "msg": None}}]
    with client as c:
        r = c.post("/workers/batch", json={"done": done})

    def effect(ok: bool) -> None:
        if r.status_code == 200:
            refused = [] if ok else [{"id": task_id, "status": 404, "msg": f"Task {task_id} not found"}]
            assert r.json() == {"refused": refused, "tasks": [], "cancel": [], "lost": []}
        assert w.state(task) == ("Finished" if ok else "Running")

    return r, effect


@endpoint("POST /workers/tasks/{id}/logs")
def _upload_log(w: World, who: str) -> tuple[httpx.Response, Effect]:
    subject = w.serving_worker()
    task_id, task = w.claimed(subject)
    client, _ = w.worker_client(who, subject)
    with client as c:
        body = {"stream": "stdout", "offset": 0, "data": base64.b64encode(b"out").decode()}
        r = c.post(f"/workers/tasks/{task_id}/logs", json=body)

    def effect(ok: bool) -> None:
        if ok:
            assert r.json() == {"stream": "stdout", "offset": 3}
        if r.status_code == 404:
            assert r.json()["msg"].endswith("not found"), r.text
        assert log_text(w.log_frames(task)) == (b"out" if ok else b"")

    return r, effect


# --------------------------------------------------------------------------------------- the tests


def test_matrix_covers_every_endpoint() -> None:
    assert set(ENDPOINTS) == set(USER_PATHS) | set(WORKER_PATHS)
    assert not set(USER_PATHS) & set(WORKER_PATHS)


@pytest.mark.parametrize("who", IDENTITIES)
@pytest.mark.parametrize("endpoint_name", list(ENDPOINTS))
def test_authz(world: World, endpoint_name: str, who: str) -> None:
    r, effect = ENDPOINTS[endpoint_name](world, who)
    outcome = expected(endpoint_name, who)
    status = 200 if outcome == NOP else outcome
    try:
        text = r.text[:300]
    except httpx.ResponseNotRead:  # the event stream, left open after its first event
        text = "<event stream>"
    where = f"{who} on {endpoint_name}: {r.status_code} {text}"
    assert r.status_code == status, where
    body = r.json() if status != 200 else None
    if status == 400:
        if who == ANON:
            assert body == {"msg": MISSING_HEADER}, where
        else:
            assert body is not None and body["msg"] in NOT_MEMBER_400, where
    elif status == 401:
        kind = "user" if endpoint_name in USER_PATHS else "worker"
        assert body == {"msg": UNAUTHORIZED_MSG[kind][who]}, where
    elif status == 403:
        assert (
            set(body or {}) == {"msg"} and body is not None and body["msg"].startswith(PERMISSION_DENIED)
        ), where
        if who in (WORKER, OTHER_WORKER) and endpoint_name in USER_PATHS:
            assert "worker token cannot be used on user paths" in body["msg"], where
        if who in USER_IDENTITIES and endpoint_name in WORKER_PATHS:
            assert "user token cannot be used on worker paths" in body["msg"], where
    elif status == 404:
        assert body is not None and set(body) == {"msg"} and body["msg"].endswith("not found"), where
    effect(outcome == 200)


# ------------------------------------------------------------------------------ every route has a row

# Routes that are deliberately not in either matrix, each with the reason and where it is tested.
# None of them takes a bearer token, so the identities of the matrices mean nothing to them.
NOT_IN_MATRIX: dict[tuple[str, str], str] = {
    ("GET", "/health"): "liveness probe: no token, no data (every LiveCoordinator waits on it)",
    ("GET", "/metrics"): "Prometheus scrape: no token, counts only (tests/integration/test_metrics.py)",
    **{
        (method, path): "FastAPI's generated schema and docs pages (Starlette adds HEAD): public, no data"
        for path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
        for method in ("GET", "HEAD")
    },
    **{
        (method, "/blobs/{bucket}/{key:path}"): "signed blob URLs: the signature is the only credential "
        "(tests/unit/test_blob_signing.py, tests/integration/test_blobstores.py)"
        for method in ("PUT", "GET", "HEAD")
    },
}
# The dashboard authenticates with a session cookie and CSRF tokens, not a bearer token: its own
# suites check every page and action (tests/integration/test_ui_security.py, test_ui_http.py).
NOT_IN_MATRIX_PREFIX = "/ui"


def _app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route of ``app``, in the order the router tries them."""
    routes: list[tuple[str, str]] = []
    for route in iter_route_contexts(app.routes):
        for method in sorted(route.methods or ()):
            routes.append((method, str(route.path)))
    return routes


def _row_request(row: str) -> tuple[str, str]:
    """The method and path a matrix row calls: ``POST /workers/tasks Finish`` -> POST /workers/tasks."""
    method, target = row.split(" ")[:2]
    return method, target.split("?")[0]


def uncovered_routes(app: FastAPI) -> list[str]:
    """The routes of ``app`` that no matrix row reaches and that are not excluded above.

    A row reaches the first route (in the router's order) whose method and path pattern match the
    request it makes, as a real request would be routed."""
    rows = [*USER_PATHS, *WORKER_PATHS, *authz_matrix.MEMBER_STATUS]
    routes = _app_routes(app)
    reached: set[tuple[str, str]] = set()
    for row in rows:
        method, path = _row_request(row)
        hit = next(
            (r for r in routes if r[0] == method and compile_path(r[1])[0].fullmatch(path) is not None),
            None,
        )
        assert hit is not None, f"matrix row {row!r} reaches no route of the app"
        reached.add(hit)
    return [
        f"{method} {path}"
        for method, path in routes
        if (method, path) not in reached
        and (method, path) not in NOT_IN_MATRIX
        and not (path == NOT_IN_MATRIX_PREFIX or path.startswith(NOT_IN_MATRIX_PREFIX + "/"))
    ]


def _app() -> FastAPI:
    return create_app(CoordinatorSettings())


def test_every_route_has_a_matrix_row() -> None:
    app = _app()
    assert uncovered_routes(app) == [], "routes with no row in the authorization matrices"
    stale = set(NOT_IN_MATRIX) - set(_app_routes(app))
    assert not stale, f"exclusions naming no route of the app: {sorted(stale)}"


def test_a_new_route_without_a_row_is_named() -> None:
    app = _app()

    @app.get("/tasks/{task_uuid}/brand-new", include_in_schema=False)
    async def brand_new(task_uuid: str) -> None:
        return None

    @app.post("/ui/tasks/{task_uuid}/brand-new")
    async def brand_new_page(task_uuid: str) -> None:
        return None

    assert uncovered_routes(app) == ["GET /tasks/{task_uuid}/brand-new"]
