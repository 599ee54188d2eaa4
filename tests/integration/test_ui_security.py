"""Dashboard security over plain HTTP: login redirect, cookie flags, CSRF, headers, refusals."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support.coordinator import LiveCoordinator

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


@contextmanager
def _signed_in(
    coord: LiveCoordinator, username: str, password: str
) -> Iterator[tuple[httpx.Client, httpx.Response]]:
    with httpx.Client(base_url=coord.url, follow_redirects=False, timeout=30) as client:
        page = client.get("/ui/login")
        login = client.post(
            "/ui/login",
            data={
                "username": username,
                "password": password,
                "csrf_token": _csrf(page.text),
                "next": "/ui/tasks",
            },
        )
        yield client, login


def test_unauthenticated_pages_redirect_to_login(sqlite_coordinator: LiveCoordinator) -> None:
    with httpx.Client(base_url=sqlite_coordinator.url, follow_redirects=False) as client:
        for path in ("/ui", "/ui/tasks", "/ui/tasks/new", "/ui/workers", "/ui/groups", "/ui/admin"):
            r = client.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/ui/login?next="), path
        r = client.get("/ui/tasks/live")
        assert r.status_code == 303
        # A state-changing request without a session changes nothing and goes to the login page.
        r = client.post("/ui/admin/users", data={"username": "x", "password": "y"})
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


def test_session_cookie_flags(sqlite_coordinator: LiveCoordinator) -> None:
    sqlite_coordinator.create_user("cookie", "cookie-pw")
    with _signed_in(sqlite_coordinator, "cookie", "cookie-pw") as (client, login):
        assert login.status_code == 303 and login.headers["location"] == "/ui/tasks"
        cookies = [c for c in login.headers.get_list("set-cookie") if c.startswith("mito_session=")]
        assert len(cookies) == 1
        attrs = [a.strip().lower() for a in cookies[0].split(";")]
        assert "httponly" in attrs
        assert "samesite=strict" in attrs
        assert "path=/ui" in attrs
        page = client.get("/ui/tasks")
        assert page.status_code == 200
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"


def test_wrong_password_is_refused(sqlite_coordinator: LiveCoordinator) -> None:
    sqlite_coordinator.create_user("wrongpw", "right-pw")
    with _signed_in(sqlite_coordinator, "wrongpw", "not-it") as (_, login):
        assert login.status_code == 401
        assert "Wrong username or password" in login.text
        assert not [c for c in login.headers.get_list("set-cookie") if c.startswith("mito_session=")]


def test_login_without_csrf_is_refused(sqlite_coordinator: LiveCoordinator) -> None:
    sqlite_coordinator.create_user("nocsrf", "nocsrf-pw")
    with httpx.Client(base_url=sqlite_coordinator.url, follow_redirects=False) as client:
        r = client.post("/ui/login", data={"username": "nocsrf", "password": "nocsrf-pw"})
        assert r.status_code == 403
        assert not [c for c in r.headers.get_list("set-cookie") if c.startswith("mito_session=")]


def test_state_change_without_csrf_is_403(sqlite_coordinator: LiveCoordinator) -> None:
    sqlite_coordinator.create_user("csrfuser", "csrf-pw")
    with _signed_in(sqlite_coordinator, "csrfuser", "csrf-pw") as (client, _):
        form = {"command": "echo hi", "group": "csrfuser", "timeout": "1m", "priority": "0"}
        missing = client.post("/ui/tasks/new", data=form)
        assert missing.status_code == 403
        wrong = client.post("/ui/tasks/new", data={**form, "csrf_token": "0" * 64})
        assert wrong.status_code == 403
        assert client.post("/ui/logout", data={}).status_code == 403
        token = _csrf(client.get("/ui/tasks/new").text)
        with sqlite_coordinator.client(sqlite_coordinator.login("csrfuser", "csrf-pw")) as api:
            before = api.post("/tasks/query", json={"count": True}).json()["count"]
            assert before == 0
            ok = client.post("/ui/tasks/new", data={**form, "csrf_token": token})
            assert ok.status_code == 303 and ok.headers["location"].startswith("/ui/tasks/")
            assert api.post("/tasks/query", json={"count": True}).json()["count"] == 1


def test_non_admin_is_refused_admin_actions(sqlite_coordinator: LiveCoordinator) -> None:
    sqlite_coordinator.create_user("plain", "plain-pw")
    with _signed_in(sqlite_coordinator, "plain", "plain-pw") as (client, _):
        page = client.get("/ui/tasks")
        assert 'href="/ui/admin"' not in page.text
        assert client.get("/ui/admin").status_code == 403
        r = client.post(
            "/ui/admin/users", data={"csrf_token": _csrf(page.text), "username": "z", "password": "z"}
        )
        assert r.status_code == 403
        r = client.post("/ui/admin/shutdown", data={"csrf_token": _csrf(page.text), "confirm": "shutdown"})
        assert r.status_code == 403


def test_open_redirect_is_refused(sqlite_coordinator: LiveCoordinator) -> None:
    sqlite_coordinator.create_user("redir", "redir-pw")
    client = httpx.Client(base_url=sqlite_coordinator.url, follow_redirects=False)
    with client:
        page = client.get("/ui/login")
        r = client.post(
            "/ui/login",
            data={
                "username": "redir",
                "password": "redir-pw",
                "csrf_token": _csrf(page.text),
                "next": "//evil.example",
            },
        )
        assert r.status_code == 303 and r.headers["location"] == "/ui/tasks"


def test_new_endpoints_need_a_session(sqlite_coordinator: LiveCoordinator) -> None:
    with httpx.Client(base_url=sqlite_coordinator.url, follow_redirects=False) as client:
        for path in (
            "/ui/events",
            "/ui/groups/admin/attachments",
            "/ui/groups/admin/attachments/download?key=a",
            "/ui/tasks/00000000-0000-0000-0000-000000000000/log",
            "/ui/tasks/00000000-0000-0000-0000-000000000000/log/archived",
        ):
            r = client.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next="), path
        r = client.post("/ui/groups/admin/attachments/upload-url", data={"key": "a", "size": "1"})
        assert r.status_code == 303


def test_event_stream_and_upload_url_with_cookie(sqlite_coordinator: LiveCoordinator) -> None:
    sqlite_coordinator.create_user("sse", "sse-pw")
    sqlite_coordinator.create_user("other", "other-pw")
    with _signed_in(sqlite_coordinator, "sse", "sse-pw") as (client, _):
        with client.stream("GET", "/ui/events?group=sse&kind=task") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            first = next(stream.iter_bytes())
            assert b": connected" in first
        # Another user's group: refused before the stream starts, as GET /events refuses it.
        assert client.get("/ui/events?group=other").status_code == 403
        token = _csrf(client.get("/ui/groups/sse/attachments").text)
        form = {"key": "data/a.bin", "size": "3"}
        no_csrf = client.post("/ui/groups/sse/attachments/upload-url", data=form)
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["msg"]
        ok = client.post("/ui/groups/sse/attachments/upload-url", data={**form, "csrf_token": token})
        assert ok.status_code == 200 and "/blobs/attachments/sse/data/a.bin" in ok.json()["url"]
        put = httpx.put(ok.json()["url"], content=b"abc")
        assert put.status_code in (200, 201, 204)
        page = client.get("/ui/groups/sse/attachments?prefix=data/")
        assert 'data-key="data/a.bin"' in page.text
        got = client.get("/ui/groups/sse/attachments/download", params={"key": "data/a.bin"})
        assert got.status_code == 303 and httpx.get(got.headers["location"]).content == b"abc"
        # Not a member of group other: the service refuses the upload URL.
        refused = client.post("/ui/groups/other/attachments/upload-url", data={**form, "csrf_token": token})
        assert refused.status_code == 403
        bad_key = client.post(
            "/ui/groups/sse/attachments/upload-url", data={"key": "../x", "size": "1", "csrf_token": token}
        )
        assert bad_key.status_code == 400


def test_std_log_unpacking_is_capped() -> None:
    import io
    import tarfile

    from mitosis.coordinator.routes.ui import unpack_std_log

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("stdout.log", b"x" * 5000 + b"TAIL"), ("stderr.log", b"oops\n")):
            info = tarfile.TarInfo(f"std-log/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    text = unpack_std_log(buf.getvalue(), cap=100)
    assert text.truncated and len(text.stdout) == 100 and text.stdout.endswith("TAIL")
    assert text.stderr == "oops\n"
