"""Contract test of the SDK's request shapes: every route of behavior.md §4.0 is sent through an
``httpx.MockTransport`` that asserts method, path, query and JSON body, and answers a canned reply
that must decode into the documented response model."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from mitosis.client import (
    AsyncMitoClient,
    AuthError,
    AuthExpiredError,
    ConflictError,
    ConnectionFailed,
    ForbiddenError,
    InvalidRequestError,
    MissingCredentials,
    MitoClient,
    NotFoundError,
    QuotaExceededError,
    ServerError,
    WaitTimeout,
)
from mitosis.wire import models as m
from mitosis.wire.codecs import md5_digest_list
from mitosis.wire.enums import ArtifactContentType, Role, TaskState, UserState

U = UUID("67e55044-10b1-426f-9247-bb680e5fe0c8")
U2 = UUID("17e55044-10b1-426f-9247-bb680e5fe0c8")
DT = "2025-03-04 08:57:59.123456 +00:00:00"
PW = md5_digest_list("pw")
NEW = md5_digest_list("new")

SPEC = {"args": ["echo", "hi"], "envs": {}, "resources": [], "terminal_output": False, "watch": None}
TASK_INFO = {
    "uuid": str(U),
    "creator_username": "alice",
    "group_name": "alice",
    "task_id": 1,
    "tags": [],
    "labels": [],
    "created_at": DT,
    "updated_at": DT,
    "state": "Ready",
    "timeout": 600,
    "priority": 0,
    "spec": SPEC,
    "result": None,
    "upstream_task_uuid": None,
    "downstream_task_uuid": None,
    "reporter_uuid": None,
}
TASK_RESP = {"info": TASK_INFO, "artifacts": []}
WORKER_INFO = {
    "worker_id": str(U),
    "creator_username": "alice",
    "tags": ["gpu"],
    "labels": [],
    "created_at": DT,
    "updated_at": DT,
    "state": "Normal",
    "last_heartbeat": DT,
    "assigned_task_id": None,
}
GROUP_INFO = {
    "group_name": "g",
    "creator_username": "alice",
    "created_at": DT,
    "updated_at": DT,
    "state": "Active",
    "task_count": 0,
    "storage_quota": 1,
    "storage_used": 0,
    "worker_count": 0,
    "users_in_group": {"alice": "Admin"},
}
URL_RESP = {"url": "http://blob/x", "size": 3}
FILTER_NULLS = {
    "creator_usernames": None,
    "group_name": None,
    "tags": None,
    "labels": None,
    "states": None,
    "exit_status": None,
    "priority": None,
}

Case = tuple[Callable[[MitoClient], Any], str, str, list[tuple[str, str]], Any, Any]

CASES: list[Case] = [
    (lambda c: c.health(), "GET", "/health", [], None, {"status": "ok"}),
    (
        lambda c: c.login("alice", "pw", True),
        "POST",
        "/login",
        [],
        {"username": "alice", "md5_password": PW, "retain": True},
        {"token": "T"},
    ),
    (lambda c: c.auth(), "GET", "/auth", [], None, "alice"),
    (lambda c: c.redis(), "GET", "/redis", [], None, {"url": None}),
    (
        lambda c: c.change_password("pw", "new", username="alice"),
        "POST",
        "/users/alice/password",
        [],
        {"old_md5_password": PW, "new_md5_password": NEW},
        {"token": "T2"},
    ),
    (lambda c: c.my_groups(), "GET", "/users/groups", [], None, {"groups": {"alice": "Admin"}}),
    (lambda c: c.create_group("g"), "POST", "/groups", [], {"group_name": "g"}, b""),
    (lambda c: c.get_group("g"), "GET", "/groups/g", [], None, GROUP_INFO),
    (
        lambda c: c.update_group_users("g", {"bob": "write"}),
        "PUT",
        "/groups/g/users",
        [],
        {"relations": {"bob": "Write"}},
        b"",
    ),
    (
        lambda c: c.remove_group_users("g", ["bob", "carol"]),
        "DELETE",
        "/groups/g/users",
        [("users", "bob"), ("users", "carol")],
        None,
        b"",
    ),
    (
        lambda c: c.remove_group_users("g", ["bob"], use_body=True),
        "POST",
        "/groups/g/users/remove",
        [],
        {"users": ["bob"]},
        b"",
    ),
    (
        lambda c: c.upload_attachment_url("g", "a/b.txt", 3),
        "POST",
        "/groups/g/attachments",
        [],
        {"key": "a/b.txt", "content_length": 3},
        {"exist": False, "url": "http://blob/put"},
    ),
    (
        lambda c: c.get_attachment("g", "a/b.txt"),
        "GET",
        "/groups/g/attachments/a/b.txt",
        [],
        None,
        {"content_type": "NoSet", "size": 3, "created_at": DT, "updated_at": DT},
    ),
    (lambda c: c.delete_attachment("g", "a/b.txt"), "DELETE", "/groups/g/attachments/a/b.txt", [], None, b""),
    (
        lambda c: c.query_attachments("g", "a", 5, 1, False),
        "POST",
        "/groups/g/attachments/query",
        [],
        {"key": "a", "limit": 5, "offset": 1, "count": False},
        {"count": 0, "attachments": [], "group_name": "g"},
    ),
    (
        lambda c: c.attachment_download_url("g", "a/b.txt"),
        "GET",
        "/groups/g/download/attachments/a/b.txt",
        [],
        None,
        URL_RESP,
    ),
    (
        lambda c: c.download_attachments_by_filter("g", "a"),
        "POST",
        "/groups/g/download/attachments",
        [],
        {"key": "a", "limit": None, "offset": None},
        {"downloads": [], "group_name": "g"},
    ),
    (
        lambda c: c.download_attachments_by_keys("g", ["k"]),
        "POST",
        "/groups/g/download/attachments/list",
        [],
        {"keys": ["k"]},
        {"downloads": [{"key": "k", "url": "u", "size": 1}], "group_name": "g"},
    ),
    (
        lambda c: c.delete_attachments_by_filter("g", "a"),
        "POST",
        "/groups/g/delete/attachments",
        [],
        {"key": "a", "limit": None, "offset": None},
        {"deleted_count": 1, "group_name": "g"},
    ),
    (
        lambda c: c.delete_attachments_by_keys("g", ["k"]),
        "POST",
        "/groups/g/delete/attachments/list",
        [],
        {"keys": ["k"]},
        {"deleted_count": 0, "failed_keys": ["k"], "group_name": "g"},
    ),
    (
        lambda c: c.submit_task(m.SubmitTaskReq(group_name="g", task_spec=m.TaskSpec(args=["echo", "hi"]))),
        "POST",
        "/tasks",
        [],
        {"group_name": "g", "tags": [], "labels": [], "timeout": "10m", "priority": 0, "task_spec": SPEC},
        {"task_id": 1, "uuid": str(U)},
    ),
    (
        lambda c: c.submit_tasks(
            [m.SubmitTaskReq(group_name="g", task_spec=m.TaskSpec(args=["echo", "hi"]))]
        ),
        "POST",
        "/tasks/submit",
        [],
        {
            "tasks": [
                {
                    "group_name": "g",
                    "tags": [],
                    "labels": [],
                    "timeout": "10m",
                    "priority": 0,
                    "task_spec": SPEC,
                }
            ]
        },
        {"results": [{"Ok": {"task_id": 1, "uuid": str(U)}}, {"Err": {"msg": "x"}}]},
    ),
    (lambda c: c.get_task(U), "GET", f"/tasks/{U}", [], None, TASK_RESP),
    (
        lambda c: c.change_task(str(U), m.ChangeTaskReq(priority=3)),
        "PUT",
        f"/tasks/{U}",
        [],
        {"tags": None, "timeout": None, "priority": 3, "task_spec": None},
        b"",
    ),
    (lambda c: c.cancel_task(U), "DELETE", f"/tasks/{U}", [], None, b""),
    (
        lambda c: c.update_task_labels(U, ["a", "a", "b"]),
        "PUT",
        f"/tasks/{U}/labels",
        [],
        {"labels": ["a", "b"]},
        b"",
    ),
    (
        lambda c: c.query_tasks(m.TasksQueryReq(states=[TaskState.Ready], count=True)),
        "POST",
        "/tasks/query",
        [],
        {
            **FILTER_NULLS,
            "states": ["Ready"],
            "reporter_uuid": None,
            "limit": None,
            "offset": None,
            "count": True,
        },
        {"count": 1, "tasks": [], "group_name": "alice"},
    ),
    (
        lambda c: c.cancel_tasks(m.TasksCancelByFilterReq(tags=["x"])),
        "POST",
        "/tasks/cancel",
        [],
        {**FILTER_NULLS, "tags": ["x"]},
        {"cancelled_count": 2, "group_name": "alice"},
    ),
    (
        lambda c: c.cancel_task_list([U, U2]),
        "POST",
        "/tasks/cancel/list",
        [],
        {"uuids": [str(U), str(U2)]},
        {"cancelled_count": 1, "failed_uuids": [str(U2)]},
    ),
    (
        lambda c: c.upload_artifact_url(U, "result", 9),
        "POST",
        f"/tasks/{U}/artifacts",
        [],
        {"content_type": "result", "content_length": 9},
        {"exist": True, "url": "u"},
    ),
    (
        lambda c: c.artifact_download_url(U, "exec-log"),
        "GET",
        f"/tasks/{U}/download/artifacts/exec-log",
        [],
        None,
        URL_RESP,
    ),
    (
        lambda c: c.delete_artifact(U, ArtifactContentType.std_log),
        "DELETE",
        f"/tasks/{U}/artifacts/std-log",
        [],
        None,
        b"",
    ),
    (
        lambda c: c.download_artifacts_by_filter(m.ArtifactsDownloadByFilterReq(content_type="result")),
        "POST",
        "/tasks/download/artifacts",
        [],
        {**FILTER_NULLS, "reporter_uuid": None, "content_type": "result"},
        {"downloads": [{"uuid": str(U), "url": "u", "size": 1}]},
    ),
    (
        lambda c: c.download_artifacts_by_uuids([U], "result"),
        "POST",
        "/tasks/download/artifacts/list",
        [],
        {"uuids": [str(U)], "content_type": "result"},
        {"downloads": []},
    ),
    (
        lambda c: c.delete_artifacts_by_filter(m.ArtifactsDeleteByFilterReq(content_type="result")),
        "POST",
        "/tasks/delete/artifacts",
        [],
        {**FILTER_NULLS, "reporter_uuid": None, "content_type": "result"},
        {"deleted_count": 0},
    ),
    (
        lambda c: c.delete_artifacts_by_uuids([U], "result"),
        "POST",
        "/tasks/delete/artifacts/list",
        [],
        {"uuids": [str(U)], "content_type": "result"},
        {"deleted_count": 0, "failed_uuids": [str(U)]},
    ),
    (
        lambda c: c.register_worker(m.RegisterWorkerReq(tags=["gpu"], groups=["g:read"])),
        "POST",
        "/workers",
        [],
        {"tags": ["gpu"], "labels": [], "groups": ["g:read"], "lifetime": None},
        {"worker_id": str(U), "token": "W", "redis_url": None},
    ),
    (
        lambda c: c.get_worker(U),
        "GET",
        f"/workers/{U}",
        [],
        None,
        {"info": WORKER_INFO, "groups": {"g": "Write"}},
    ),
    (lambda c: c.cancel_worker(U), "DELETE", f"/workers/{U}", [], None, b""),
    (lambda c: c.cancel_worker(U, force=True), "DELETE", f"/workers/{U}", [("op", "Force")], None, b""),
    (lambda c: c.replace_worker_tags(U, ["a"]), "PUT", f"/workers/{U}/tags", [], {"tags": ["a"]}, b""),
    (lambda c: c.replace_worker_labels(U, ["b"]), "PUT", f"/workers/{U}/labels", [], {"labels": ["b"]}, b""),
    (
        lambda c: c.update_worker_groups(U, {"g": Role.Admin}),
        "PUT",
        f"/workers/{U}/groups",
        [],
        {"relations": {"g": "Admin"}},
        b"",
    ),
    (
        lambda c: c.remove_worker_groups(U, ["g", "h"]),
        "DELETE",
        f"/workers/{U}/groups",
        [("groups", "g"), ("groups", "h")],
        None,
        b"",
    ),
    (
        lambda c: c.remove_worker_groups(U, ["g"], use_body=True),
        "DELETE",
        f"/workers/{U}/groups/remove",
        [],
        {"groups": ["g"]},
        b"",
    ),
    (
        lambda c: c.query_workers(m.WorkersQueryReq(group_name="g")),
        "POST",
        "/workers/query",
        [],
        {
            "group_name": "g",
            "role": None,
            "tags": None,
            "labels": None,
            "creator_username": None,
            "count": False,
        },
        {"count": 1, "workers": [WORKER_INFO], "group_name": "g"},
    ),
    (
        lambda c: c.shutdown_workers(m.WorkersShutdownByFilterReq(op="Force")),
        "POST",
        "/workers/shutdown",
        [],
        {
            "group_name": None,
            "role": None,
            "tags": None,
            "labels": None,
            "creator_username": None,
            "op": "Force",
        },
        {"shutdown_count": 0, "group_name": "alice"},
    ),
    (
        lambda c: c.shutdown_worker_list([U]),
        "POST",
        "/workers/shutdown/list",
        [],
        {"uuids": [str(U)], "op": "Graceful"},
        {"shutdown_count": 1, "failed_uuids": []},
    ),
    (lambda c: c.unregister_worker(), "DELETE", "/workers", [], None, b"null"),
    (lambda c: c.heartbeat(), "POST", "/workers/heartbeat", [], None, b"null"),
    (lambda c: c.fetch_task(), "GET", "/workers/tasks", [], None, b"null"),
    (
        lambda c: c.report_task(m.ReportTaskReq(id=1, op="Finish")),
        "POST",
        "/workers/tasks",
        [],
        {"id": 1, "op": "Finish"},
        {"url": None},
    ),
    (lambda c: c.worker_get_task(U), "GET", f"/workers/tasks/{U}", [], None, TASK_RESP),
    (
        lambda c: c.worker_artifact_url(U, "result"),
        "GET",
        f"/workers/tasks/{U}/artifacts/result",
        [],
        None,
        URL_RESP,
    ),
    (
        lambda c: c.worker_attachment_url(U, "d/x.bin"),
        "GET",
        f"/workers/tasks/{U}/attachments/d/x.bin",
        [],
        None,
        URL_RESP,
    ),
    (
        lambda c: c.create_user("bob", "pw", True),
        "POST",
        "/admin/users",
        [],
        {"username": "bob", "md5_password": PW, "admin": True},
        b"",
    ),
    (lambda c: c.delete_user("bob"), "DELETE", "/admin/users/bob", [], None, {"state": "Deleted"}),
    (
        lambda c: c.change_user_password("bob", "new"),
        "POST",
        "/admin/users/bob/password",
        [],
        {"new_md5_password": NEW},
        b"",
    ),
    (
        lambda c: c.user_group_quota("bob", "+2"),
        "POST",
        "/admin/users/bob/group-quota",
        [],
        {"group_quota": "+2"},
        {"group_quota": 5},
    ),
    (
        lambda c: c.user_state("bob", UserState.Locked),
        "POST",
        "/admin/users/bob/state",
        [],
        {"state": "Locked"},
        {"state": "Locked"},
    ),
    (
        lambda c: c.group_storage_quota("g", "20GB"),
        "POST",
        "/admin/groups/g/storage-quota",
        [],
        {"storage_quota": "20GB"},
        {"storage_quota": 20_000_000_000},
    ),
    (lambda c: c.admin_cancel_worker(U, True), "DELETE", f"/admin/workers/{U}", [("op", "Force")], None, b""),
    (
        lambda c: c.admin_delete_attachment("g", "a b/c"),
        "DELETE",
        "/admin/groups/g/attachments/a%20b/c",
        [],
        None,
        b"",
    ),
    (
        lambda c: c.admin_delete_artifact(U, "result"),
        "DELETE",
        f"/admin/tasks/{U}/artifacts/result",
        [],
        None,
        b"",
    ),
    (lambda c: c.shutdown("s3cret"), "POST", "/admin/shutdown", [], {"secret": "s3cret"}, b""),
]

ROUTES_COVERED = {(method, path) for _, method, path, _, _, _ in CASES}


def _reply(body: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.Response(200, content=body)
    if isinstance(body, str):
        return httpx.Response(200, text=body)
    return httpx.Response(200, json=body)


def _asserting(method: str, path: str, params: list[tuple[str, str]], body: Any, reply: Any) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == method
        assert request.url.raw_path.split(b"?")[0].decode() == path
        assert list(request.url.params.multi_items()) == params
        if body is None:
            assert request.content == b""
        else:
            assert request.headers["content-type"] == "application/json"
            assert json.loads(request.content) == body
        if path not in ("/login", "/health"):
            assert request.headers["authorization"] == "Bearer TOKEN"
        else:
            assert "authorization" not in request.headers
        return _reply(reply)

    return handler


@pytest.mark.parametrize(("call", "method", "path", "params", "body", "reply"), CASES)
def test_route_shapes(
    call: Callable[[MitoClient], Any],
    method: str,
    path: str,
    params: list[tuple[str, str]],
    body: Any,
    reply: Any,
) -> None:
    transport = httpx.MockTransport(_asserting(method, path, params, body, reply))
    with MitoClient("http://coord:5000/ignored/prefix", "TOKEN", username="alice", transport=transport) as c:
        result = call(c)
    if reply in (b"", b"null"):
        assert result is None
    elif isinstance(reply, str):
        assert result == reply


@pytest.mark.parametrize(("call", "method", "path", "params", "body", "reply"), CASES)
async def test_async_route_shapes(
    call: Callable[[AsyncMitoClient], Any],
    method: str,
    path: str,
    params: list[tuple[str, str]],
    body: Any,
    reply: Any,
) -> None:
    """The same cases through the async face: the same method names send the same requests and
    decode the same replies as the blocking face."""
    transport = httpx.MockTransport(_asserting(method, path, params, body, reply))
    with MitoClient("http://coord:5000", "TOKEN", username="alice", transport=transport) as sync:
        expected = call(sync)  # type: ignore[arg-type]
    async with AsyncMitoClient(
        "http://coord:5000/ignored/prefix", "TOKEN", username="alice", transport=transport
    ) as c:
        pending = call(c)
        assert inspect.isawaitable(pending)
        result = await pending
    assert result == expected
    assert (c.token, c.username) == (sync.token, sync.username)
    if reply in (b"", b"null"):
        assert result is None


def _public(cls: type) -> dict[str, Any]:
    return {name: getattr(cls, name) for name in dir(cls) if not name.startswith("_")}


def test_both_faces_have_the_same_methods_and_parameters() -> None:
    sync, asyn = _public(MitoClient), _public(AsyncMitoClient)
    assert set(sync) - set(asyn) == {"close"} and set(asyn) - set(sync) == {"aclose"}
    for name in sorted(set(sync) & set(asyn)):
        if not callable(sync[name]):
            continue
        assert list(inspect.signature(sync[name]).parameters) == list(
            inspect.signature(asyn[name]).parameters
        ), name
        # Streams are opened with `async with` / `async for`; every other method is awaited.
        assert inspect.iscoroutinefunction(asyn[name]) == (name not in ("events", "logs")), name
        assert not inspect.iscoroutinefunction(sync[name]), name


def test_every_route_of_the_table_is_covered() -> None:
    # The 64 routes of §4.0 are 64 distinct (method, path) pairs; 39 is sent with and without ?op.
    assert len(CASES) == 65
    assert len(ROUTES_COVERED) == 64


def test_decoded_models() -> None:
    transport = httpx.MockTransport(lambda r: _reply(TASK_RESP))
    with MitoClient("http://coord", "TOKEN", transport=transport) as c:
        resp = c.get_task(str(U))
    assert resp.info.state is TaskState.Ready
    assert resp.info.spec.args == ["echo", "hi"]

    transport = httpx.MockTransport(
        lambda r: _reply({"results": [{"Ok": {"task_id": 1, "uuid": str(U)}}, {"Err": {"msg": "boom"}}]})
    )
    with MitoClient("http://coord", "TOKEN", transport=transport) as c:
        results = c.submit_tasks([]).results
    assert isinstance(results[0], m.SubmitOk) and results[0].Ok.uuid == U
    assert isinstance(results[1], m.SubmitErr) and results[1].Err.msg == "boom"


def test_login_adopts_token() -> None:
    transport = httpx.MockTransport(lambda r: _reply({"token": "NEW"}))
    with MitoClient("http://coord", transport=transport) as c:
        assert c.login("alice", "pw") == "NEW"
        assert c.token == "NEW" and c.username == "alice"


@pytest.mark.parametrize(
    ("status", "msg", "cls"),
    [
        (400, "Process request error: x", InvalidRequestError),
        (422, "bad json", InvalidRequestError),
        (401, "Authentication error: Invalid token", AuthExpiredError),  # the request carried a token
        (403, "Authentication error: Permission denied", ForbiddenError),
        (403, "Resource quota exceeded", QuotaExceededError),
        (
            403,
            "Resource quota exceeded: you have created 1 of the 0 groups your quota allows",
            QuotaExceededError,
        ),
        (403, "Authentication error: Permission denied: Resource quota exceeded", ForbiddenError),
        (404, "Task with uuid x not found", NotFoundError),
        (409, "User or group with same name g already exists", ConflictError),
        (500, "Internal server error", ServerError),
    ],
)
def test_errors_are_typed(status: int, msg: str, cls: type[Exception]) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(status, json={"msg": msg}))
    with MitoClient("http://coord", "TOKEN", transport=transport) as c, pytest.raises(cls) as info:
        c.get_group("g")
    assert type(info.value) is cls
    assert info.value.msg == msg  # type: ignore[attr-defined]
    assert info.value.status == status  # type: ignore[attr-defined]


def test_a_401_is_auth_expired_only_for_a_request_that_carried_a_token() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"msg": "Authentication error: Wrong credentials"})

    with MitoClient("http://coord", transport=httpx.MockTransport(refuse)) as c:
        with pytest.raises(AuthError) as info:
            c.login("bob", "wrong")
        assert type(info.value) is AuthError  # a wrong password, not an expired session
        c.token, c.username = "OLD", "bob"
        with pytest.raises(AuthExpiredError) as expired:
            c.my_groups()
        assert expired.value.username == "bob" and expired.value.status == 401


def test_plain_text_framework_errors() -> None:
    transport = httpx.MockTransport(
        lambda r: httpx.Response(400, text="Header of type `authorization` was missing")
    )
    with MitoClient("http://coord", transport=transport) as c, pytest.raises(InvalidRequestError) as info:
        c.my_groups()
    assert "authorization" in info.value.msg


HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>"
    + "x" * 5000
    + "</body></html>"
)


@pytest.mark.parametrize(
    ("status", "content_type", "cls"),
    [
        (502, "text/html; charset=utf-8", ServerError),
        (404, "text/html", NotFoundError),
        (400, "text/plain", InvalidRequestError),  # plain text, but a whole page of it
        (403, None, ForbiddenError),
    ],
)
def test_a_foreign_error_page_is_one_line(
    status: int, content_type: str | None, cls: type[Exception]
) -> None:
    headers = {"content-type": content_type} if content_type else {}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=HTML_PAGE.encode(), headers=headers)

    with (
        MitoClient("http://coord:8080", "T", transport=httpx.MockTransport(handler)) as c,
        pytest.raises(cls) as info,
    ):
        c.remove_group_users("g", ["bob"])  # a query string, left out of the message
    kind = (content_type or "no content type").split(";")[0]
    assert str(info.value) == (
        f"unexpected HTTP {status} ({kind}) from http://coord:8080/groups/g/users: "
        "is this a Mitosis coordinator?"
    )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html><body>hello</body></html>", "the body is not JSON"),
        (b'{"group_name": "g"}', "creator_username: Field required (and 7 more)"),
        (
            json.dumps({**GROUP_INFO, "task_count": "many"}).encode(),
            "task_count: Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
)
def test_a_reply_that_is_not_the_model_is_one_line(body: bytes, why: str) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    with MitoClient("http://coord", "T", transport=transport) as c, pytest.raises(ServerError) as info:
        c.get_group("g")
    assert str(info.value) == (
        f"unexpected reply from the coordinator, not a GroupQueryInfo ({why}): is it a Mitosis coordinator?"
    )


def test_connection_failed() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with (
        MitoClient("http://coord:5000", transport=httpx.MockTransport(refuse)) as c,
        pytest.raises(ConnectionFailed) as info,
    ):
        c.auth()
    assert str(info.value) == "Fail to connect to http://coord:5000"


def test_credential_flow_reuses_valid_token(tmp_path: Path) -> None:
    cred = tmp_path / "credentials"
    cred.write_text("alice:OLD")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path} {request.headers.get('authorization')}")
        return httpx.Response(200, text="alice")

    with MitoClient("http://coord", credential_path=cred, transport=httpx.MockTransport(handler)) as c:
        assert c.login_with_credentials("alice") == "alice"
    assert seen == ["GET /auth Bearer OLD"]


def test_credential_flow_falls_back_to_login(tmp_path: Path) -> None:
    cred = tmp_path / "sub" / "credentials"
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/auth":
            return httpx.Response(401, json={"msg": "Authentication error: Invalid token"})
        body = json.loads(request.content)
        assert body == {"username": "bob", "md5_password": PW, "retain": False}
        return httpx.Response(200, json={"token": "FRESH"})

    asked: list[str] = []

    def ask(what: str) -> str:
        asked.append(what)
        return "pw"

    with MitoClient("http://coord", credential_path=cred, transport=httpx.MockTransport(handler)) as c:
        assert c.login_with_credentials("bob", ask=ask) == "bob"
        assert c.token == "FRESH"
    assert asked == ["password"]
    assert cred.read_text() == "bob:FRESH"
    assert seen == ["/login"]


def _expired_store(tmp_path: Path, seen: list[str]) -> tuple[Path, httpx.MockTransport]:
    """bob's stored token is refused; a login as bob with password "pw" gets a fresh one."""
    cred = tmp_path / "credentials"
    cred.write_text("bob:OLD")

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/auth":
            return httpx.Response(401, json={"msg": "Authentication error: Wrong credentials"})
        assert json.loads(request.content) == {"username": "bob", "md5_password": PW, "retain": False}
        return httpx.Response(200, json={"token": "FRESH"})

    return cred, httpx.MockTransport(handler)


def test_an_expired_stored_token_logs_in_again_as_its_user(tmp_path: Path) -> None:
    seen: list[str] = []
    asked: list[str] = []
    cred, transport = _expired_store(tmp_path, seen)
    with MitoClient("http://coord", credential_path=cred, transport=transport) as c:
        assert c.login_with_credentials(ask=lambda what: asked.append(what) or "pw") == "bob"
        assert c.token == "FRESH" and c.username == "bob"
    assert asked == ["password"] and seen == ["/auth", "/login"]
    assert cred.read_text() == "bob:FRESH"


def test_an_expired_stored_token_without_a_password_is_auth_expired(tmp_path: Path) -> None:
    seen: list[str] = []
    cred, transport = _expired_store(tmp_path, seen)

    def no_terminal(what: str) -> str:
        raise MissingCredentials(what)

    for ask in (None, no_terminal):
        with MitoClient("http://coord", credential_path=cred, transport=transport) as c:
            with pytest.raises(AuthExpiredError) as info:
                c.login_with_credentials(ask=ask)
            assert info.value.username == "bob" and c.token is None
    assert "bob" in str(info.value) and seen == ["/auth", "/auth"]
    # Another user named explicitly is not bob's expired session: their password is what is missing.
    with (
        MitoClient("http://coord", credential_path=cred, transport=transport) as c,
        pytest.raises(MissingCredentials),
    ):
        c.login_with_credentials("carol")


async def test_async_expired_stored_token(tmp_path: Path) -> None:
    seen: list[str] = []
    cred, transport = _expired_store(tmp_path, seen)
    async with AsyncMitoClient("http://coord", credential_path=cred, transport=transport) as c:
        with pytest.raises(AuthExpiredError):
            await c.login_with_credentials()
        assert await c.login_with_credentials(password="pw") == "bob"


def test_wait_task_polls_until_final() -> None:
    states = iter(["Ready", "Running", "Finished"])

    def handler(request: httpx.Request) -> httpx.Response:
        info = {**TASK_INFO, "state": next(states)}
        if info["state"] == "Finished":
            info["result"] = {"exit_status": 768, "msg": None}
        return httpx.Response(200, json={"info": info, "artifacts": []})

    with MitoClient("http://coord", "T", transport=httpx.MockTransport(handler)) as c:
        resp = c.wait_task(U, poll=0.01)
    assert resp.info.state is TaskState.Finished
    assert resp.info.result is not None and resp.info.result.exit_status == 768


def _finishing_task(seen: list[str]) -> httpx.MockTransport:
    """A task that is Finished twice before its worker commits (result still null), then committed."""
    replies = iter([("Running", None), ("Finished", None), ("Finished", None)])

    def handler(request: httpx.Request) -> httpx.Response:
        state, result = next(replies, ("Finished", {"exit_status": 0, "msg": None}))
        seen.append(state if result is None else "committed")
        return httpx.Response(
            200, json={"info": {**TASK_INFO, "state": state, "result": result}, "artifacts": []}
        )

    return httpx.MockTransport(handler)


def test_wait_task_waits_for_the_commit_not_just_the_finished_state() -> None:
    seen: list[str] = []
    with MitoClient("http://coord", "T", transport=_finishing_task(seen)) as c:
        resp = c.wait_task(U, poll=0.01)
    assert seen == ["Running", "Finished", "Finished", "committed"]
    assert resp.info.result is not None and resp.info.result.exit_status == 0


async def test_async_wait_task_waits_for_the_commit() -> None:
    seen: list[str] = []
    async with AsyncMitoClient("http://coord", "T", transport=_finishing_task(seen)) as c:
        resp = await c.wait_task(U, poll=0.01)
    assert seen == ["Running", "Finished", "Finished", "committed"]
    assert resp.info.result is not None


def test_wait_task_timeout_says_the_result_is_missing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"info": {**TASK_INFO, "state": "Finished", "result": None}, "artifacts": []}
        )

    with (
        MitoClient("http://coord", "T", transport=httpx.MockTransport(handler)) as c,
        pytest.raises(WaitTimeout, match=r"has not ended after 0.05 s \(Finished, result not yet reported\)"),
    ):
        c.wait_task(U, timeout=0.05, poll=0.01)


def test_download_resumes_part_file(tmp_path: Path) -> None:
    data = b"0123456789"
    target = tmp_path / "out" / "file.bin"
    target.parent.mkdir()
    (target.parent / "file.bin.part").write_bytes(data[:4])

    def handler(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        assert request.headers["range"] == "bytes=4-"
        return httpx.Response(206, content=data[4:])

    progress: list[tuple[int, int | None]] = []
    with MitoClient("http://coord", "T", transport=httpx.MockTransport(handler)) as c:
        c.download_to("http://blob/file", target, lambda d, t: progress.append((d, t)))
    assert target.read_bytes() == data
    assert not (target.parent / "file.bin.part").exists()
    assert progress[-1] == (10, 10)


def test_upload_sends_content_length(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"x" * 3000)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "PUT"
        assert request.headers["content-length"] == "3000"
        assert "transfer-encoding" not in request.headers
        assert "authorization" not in request.headers
        assert request.read() == b"x" * 3000
        return httpx.Response(200)

    with MitoClient("http://coord", "T", transport=httpx.MockTransport(handler)) as c:
        c.upload_file("http://blob/put?sig=1", src)


async def test_async_face_uses_the_same_core() -> None:
    transport = httpx.MockTransport(_asserting("PUT", f"/tasks/{U}/labels", [], {"labels": ["x"]}, b""))
    async with AsyncMitoClient("http://coord", "TOKEN", transport=transport) as c:
        assert await c.update_task_labels(U, ["x"]) is None
    transport = httpx.MockTransport(_asserting("GET", "/auth", [], None, "alice"))
    async with AsyncMitoClient("http://coord", "TOKEN", transport=transport) as c:
        assert await c.auth() == "alice"
