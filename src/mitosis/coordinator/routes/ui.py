"""The dashboard at ``/ui``: server-rendered pages over the same services as the API.

Every page and action calls the service the matching API route calls, with the signed-in user,
so whatever the API refuses the dashboard refuses with the same code and message; the templates
only hide what would be refused. Live parts of a page (``data-live-url``) fetch a JSON fragment
(``…/live``) when the event stream (``/ui/events``, the ``GET /events`` service with the cookie
session) reports a relevant change; ``static/live.js`` falls back to polling every two seconds
when the stream cannot be opened. The task page tails the live log (``/ui/tasks/{uuid}/log``, the
``GET /tasks/{uuid}/logs`` service) and, once the task is archived, shows its std-log artifact.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import shlex
import tarfile
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from mitosis import __version__
from mitosis.coordinator import errors
from mitosis.coordinator.blobs import FsBlobStore
from mitosis.coordinator.routes import admin as admin_routes
from mitosis.coordinator.routes import ctx_of, path_content_type, path_uuid, peer_of
from mitosis.coordinator.routes.events import SSE_HEADERS
from mitosis.coordinator.services import accounts, artifacts, attachments, events, logs, tasks, workers
from mitosis.coordinator.services.common import now
from mitosis.coordinator.web import STATIC_DIR, TEMPLATES_DIR, present, queries
from mitosis.coordinator.web.session import (
    CSRF_FIELD,
    FLASH_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CsrfError,
    Form,
    LoginRequired,
    Session,
    check_login_csrf,
    checked_form,
    clear_cookie,
    flash,
    new_login_csrf,
    read_form,
    require_admin,
    require_session,
    safe_next,
    session_of,
    set_cookie,
    take_flash,
)
from mitosis.wire import models as m
from mitosis.wire.codecs import DurationError, parse_duration
from mitosis.wire.enums import ArtifactContentType, Role, TaskState, UserState, WorkerShutdownOp

PAGE_SIZE = 50
LIVE_INTERVAL_MS = 2000
SHUTDOWN_WORD = "shutdown"
ATTACHMENT_PAGE = 100
ATTACHMENT_SCAN = attachments.MAX_BATCH
LOG_TEXT_CAP = 1 << 20
"""The archived log shows at most the last MiB of each stream (the browser keeps the same bound)."""
STD_LOG_FETCH_CAP = 64 << 20
"""A std-log archive larger than this is not unpacked for the page; it stays downloadable."""
JSON_SUFFIXES = ("/live", "/upload-url", "/log", "/log/archived")


def _csp(connect: str = "'self'") -> str:
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )


SECURITY_HEADERS = {
    "Content-Security-Policy": _csp(),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(present.FILTERS)
_env.globals.update(
    version=__version__,
    csrf_field=CSRF_FIELD,
    task_states=[s.value for s in TaskState if s != TaskState.Unknown],
    roles=[r.value for r in Role],
    live_interval_ms=LIVE_INTERVAL_MS,
)


def _asset_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


_env.globals["asset_version"] = _asset_version()


def _secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def render(
    request: Request,
    name: str,
    session: Session | None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> Response:
    notice = take_flash(request)
    base = {
        "request": request,
        "session": session,
        "user": session.user if session else None,
        "csrf": session.csrf if session else "",
        "notice": notice,
        "path": request.url.path,
    }
    html = _env.get_template(name).render({**base, **context})
    response = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
    if notice is not None:
        clear_cookie(request, response, FLASH_COOKIE)
    return _secured(response)


def fragment(name: str, **context: Any) -> str:
    return _env.get_template(name).render(**context)


def live(html: str, **extra: Any) -> Response:
    return _secured(JSONResponse({"html": html, **extra}))


def redirect(request: Request, target: str, message: str | None = None, kind: str = "info") -> Response:
    response = RedirectResponse(target, status_code=303)
    if message:
        flash(request, response, message, kind)
    return _secured(response)


def _referer_path(request: Request) -> str:
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.netloc == request.url.netloc:
            return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))
    return "/ui/tasks"


def _validation_text(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))


async def _error_page(request: Request, status: int, message: str) -> Response:
    try:
        session: Session | None = await session_of(request)
    except (LoginRequired, errors.ApiError):
        session = None
    return render(request, "error.html", session, status=status, status_code=status, message=message)


class UiRoute(APIRoute):
    """Turns refusals into pages: an error page for a GET or a 403, otherwise a message on the previous page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except CsrfError as exc:
                if request.url.path.endswith(JSON_SUFFIXES):
                    return _secured(JSONResponse({"msg": str(exc)}, status_code=403))
                return await _error_page(request, 403, str(exc))
            except (errors.ApiError, ValidationError) as exc:
                status = exc.status if isinstance(exc, errors.ApiError) else 400
                text = exc.msg if isinstance(exc, errors.ApiError) else _validation_text(exc)
                if request.url.path.endswith(JSON_SUFFIXES):
                    return _secured(JSONResponse({"msg": text}, status_code=status))
                if request.method == "GET" or status == 403:
                    return await _error_page(request, status, text)
                return redirect(request, _referer_path(request), text, "error")

        return wrapped


router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


def install(app: FastAPI) -> None:
    """Add the dashboard pages and its static files to the coordinator app."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def _md5(password: str) -> list[int]:
    return list(hashlib.md5(password.encode()).digest())


# ------------------------------------------------------------------------------------------ session


@router.get("")
@router.get("/")
async def home(_: Session = Depends(require_session)) -> Response:
    return RedirectResponse("/ui/tasks", status_code=303)


@router.get("/login")
async def login_page(request: Request) -> Response:
    token = new_login_csrf()
    response = render(
        request,
        "login.html",
        None,
        login_csrf=token,
        next=safe_next(request.query_params.get("next")),
        error=None,
    )
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, 3600)
    return response


def _login_refusal(exc: Exception) -> tuple[int, str, dict[str, str]]:
    """Status, message and headers of a refused sign-in: wrong password, throttled, or locked."""
    if isinstance(exc, ValidationError):
        return 400, "Enter a username and a password.", {}
    if isinstance(exc, HTTPException) and exc.status_code == 429:
        # The login throttle (services.throttle): too many failures for this name or address.
        retry = (exc.headers or {}).get("Retry-After", "")
        wait = f" in {retry} s" if retry.isdigit() else " later"
        return (
            429,
            f"Too many failed sign-ins: sign-in is paused for a while. Try again{wait}.",
            {"Retry-After": retry} if retry else {},
        )
    if isinstance(exc, errors.ApiError) and exc.status == 403:
        # services.accounts.login refuses Locked and Deleted accounts before checking the password.
        if "deleted" in exc.msg:
            return 403, "This account has been deleted. Ask an administrator.", {}
        return 403, "This account is locked. Ask an administrator to unlock it.", {}
    if isinstance(exc, errors.ApiError) and exc.status == 401:
        return 401, "Wrong username or password.", {}
    if isinstance(exc, errors.ApiError):
        return exc.status, exc.msg, {}
    detail = exc.detail if isinstance(exc, HTTPException) else ""
    return getattr(exc, "status_code", 400), str(detail or "Sign-in failed."), {}


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    check_login_csrf(request, form)
    ctx = ctx_of(request)
    username = form.get("username").strip()
    target = safe_next(form.get("next"))
    try:
        # retain: signing in here must not end the user's CLI sessions (their token signature).
        req = m.UserLoginReq(username=username, md5_password=_md5(form.get("password")), retain=True)
        token = await accounts.login(
            ctx.engine,
            ctx.tokens,
            ctx.settings.access_token_expires_in,
            req,
            peer_of(request),
            ctx.login_throttle,
        )
    except (errors.ApiError, ValidationError, HTTPException) as exc:
        status, message, headers = _login_refusal(exc)
        fresh = new_login_csrf()
        response = render(
            request,
            "login.html",
            None,
            status=status,
            headers=headers,
            login_csrf=fresh,
            next=target,
            error=message,
            username=username,
        )
        set_cookie(request, response, LOGIN_CSRF_COOKIE, fresh, 3600)
        return response
    response = redirect(request, target)
    set_cookie(
        request, response, SESSION_COOKIE, token, int(ctx.settings.access_token_expires_in.total_seconds())
    )
    clear_cookie(request, response, LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, session: Session = Depends(require_session)) -> Response:
    await checked_form(request, session)
    response = redirect(request, "/ui/login", "Signed out.")
    clear_cookie(request, response, SESSION_COOKIE)
    return response


# -------------------------------------------------------------------------------------------- tasks


def _task_query(params: Mapping[str, str], session: Session) -> tuple[m.TasksQueryReq, dict[str, str], int]:
    state = params.get("state", "")
    states = None
    if state:
        try:
            states = [TaskState(state)]
        except ValueError:
            raise errors.invalid(f"unknown state {state!r}") from None
    try:
        page = max(1, int(params.get("page", "1")))
    except ValueError:
        page = 1
    filters = {
        "group": params.get("group", "").strip() or session.user.username,
        "state": state,
        "tags": params.get("tags", "").strip(),
        "labels": params.get("labels", "").strip(),
        "creator": params.get("creator", "").strip(),
    }
    req = m.TasksQueryReq(
        group_name=filters["group"],
        states=states,
        tags=_split(filters["tags"]) or None,
        labels=_split(filters["labels"]) or None,
        creator_usernames=_split(filters["creator"]) or None,
        limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
    )
    return req, filters, page


async def _task_rows(
    request: Request, session: Session
) -> tuple[list[m.TaskQueryInfo], dict[str, str], int, bool]:
    req, filters, page = _task_query(request.query_params, session)
    resp = await tasks.query(ctx_of(request).engine, session.user, req)
    rows = resp.tasks[:PAGE_SIZE]
    return rows, filters, page, len(resp.tasks) > PAGE_SIZE


def _page_link(filters: dict[str, str], page: int) -> str:
    params = {k: v for k, v in filters.items() if v}
    if page > 1:
        params["page"] = str(page)
    return "/ui/tasks" + (f"?{urlencode(params)}" if params else "")


@router.get("/tasks")
async def task_list(request: Request, session: Session = Depends(require_session)) -> Response:
    rows, filters, page, has_next = await _task_rows(request, session)
    my_groups = await accounts.my_groups(ctx_of(request).engine, session.user)
    query = request.url.query
    return render(
        request,
        "tasks.html",
        session,
        tasks=rows,
        filters=filters,
        page=page,
        my_groups=my_groups,
        prev_link=_page_link(filters, page - 1) if page > 1 else None,
        next_link=_page_link(filters, page + 1) if has_next else None,
        live_url="/ui/tasks/live" + (f"?{query}" if query else ""),
        events_url=_events_url(group=filters["group"], kind="task"),
    )


@router.get("/tasks/live")
async def task_list_live(request: Request, session: Session = Depends(require_session)) -> Response:
    rows, _, _, _ = await _task_rows(request, session)
    return live(fragment("_task_rows.html", tasks=rows), count=len(rows))


def _submit_defaults(session: Session) -> dict[str, str]:
    return {
        "command": "",
        "group": session.user.username,
        "tags": "",
        "labels": "",
        "env": "",
        "timeout": "10m",
        "priority": "0",
        "terminal_output": "",
    }


async def _writable_groups(request: Request, session: Session) -> list[str]:
    mine = await accounts.my_groups(ctx_of(request).engine, session.user)
    return [name for name, role in mine.items() if session.user.admin or role.at_least(Role.Write)]


@router.get("/tasks/new")
async def submit_page(request: Request, session: Session = Depends(require_session)) -> Response:
    return render(
        request,
        "submit.html",
        session,
        form=_submit_defaults(session),
        groups=await _writable_groups(request, session),
        error=None,
    )


def _submit_request(form: Form) -> m.SubmitTaskReq:
    command = form.get("command").strip()
    try:
        args = shlex.split(command)
    except ValueError as exc:
        raise errors.invalid(f"command: {exc} (check the quotes)") from None
    if not args:
        raise errors.invalid("command: enter the command to run, e.g. python train.py --seed 3")
    envs: dict[str, str] = {}
    for number, line in enumerate(form.get("env").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise errors.invalid(f"environment line {number}: write NAME=value")
        envs[key.strip()] = value
    try:
        timeout = parse_duration(form.get("timeout").strip() or "10m")
    except DurationError as exc:
        raise errors.invalid(f"timeout: {exc}") from None
    try:
        priority = int(form.get("priority").strip() or "0")
    except ValueError:
        raise errors.invalid("priority: enter a whole number, e.g. 0 or 10") from None
    return m.SubmitTaskReq(
        group_name=form.get("group").strip(),
        tags=_split(form.get("tags")),
        labels=_split(form.get("labels")),
        timeout=timeout,
        priority=priority,
        task_spec=m.TaskSpec(args=args, envs=envs, terminal_output=form.get("terminal_output") == "on"),
    )


@router.post("/tasks/new")
async def submit(request: Request, session: Session = Depends(require_session)) -> Response:
    form = await checked_form(request, session)
    ctx = ctx_of(request)
    try:
        req = _submit_request(form)
        resp = await tasks.submit(ctx.engine, ctx.notifier, session.user, req)
    except (errors.ApiError, ValidationError) as exc:
        values = {k: form.get(k) for k in _submit_defaults(session)}
        text = exc.msg if isinstance(exc, errors.ApiError) else _validation_text(exc)
        status = exc.status if isinstance(exc, errors.ApiError) else 400
        groups = await _writable_groups(request, session)
        return render(request, "submit.html", session, status=status, form=values, groups=groups, error=text)
    return redirect(request, f"/ui/tasks/{resp.uuid}", f"Submitted task #{resp.task_id} to {req.group_name}.")


async def _task_view(request: Request, session: Session, task_uuid: str) -> dict[str, Any]:
    ctx = ctx_of(request)
    tid = path_uuid(task_uuid)
    task = await tasks.get_task(ctx.engine, session.user, tid)
    role = (await accounts.my_groups(ctx.engine, session.user)).get(task.info.group_name)
    can_write = session.user.admin or (role is not None and role.at_least(Role.Write))
    waiting = task.info.state in (TaskState.Ready, TaskState.Pending, TaskState.Running)
    # Read after the task itself (which checked the viewer may read it): its recorded changes.
    history = await queries.task_events(ctx.engine, tid)
    return {
        "task": task.info,
        "timeline": present.timeline(task.info.created_at, history, now() - ctx.settings.event_retention),
        "event_retention": int(ctx.settings.event_retention.total_seconds()),
        "artifacts": task.artifacts,
        "can_write": can_write,
        "can_cancel": can_write and waiting,
        "final": task.info.result is not None,
        "csrf": session.csrf,
    }


@router.get("/tasks/{task_uuid}")
async def task_detail(
    task_uuid: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    view = await _task_view(request, session, task_uuid)
    tid = view["task"].uuid
    return render(
        request,
        "task.html",
        session,
        live_url=f"/ui/tasks/{tid}/live",
        events_url=_events_url(task=str(tid)),
        log_url=f"/ui/tasks/{tid}/log",
        log_cap=LOG_TEXT_CAP,
        **view,
    )


@router.get("/tasks/{task_uuid}/live")
async def task_detail_live(
    task_uuid: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    view = await _task_view(request, session, task_uuid)
    return live(fragment("_task_status.html", csrf_field=CSRF_FIELD, **view), final=view["final"])


@router.post("/tasks/{task_uuid}/cancel")
async def cancel_task(
    task_uuid: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    await checked_form(request, session)
    ctx = ctx_of(request)
    tid = path_uuid(task_uuid)
    await tasks.cancel(ctx.engine, ctx.notifier, session.user, tid)
    return redirect(request, f"/ui/tasks/{tid}", "Cancel requested.")


@router.post("/tasks/{task_uuid}/labels")
async def task_labels(
    task_uuid: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    form = await checked_form(request, session)
    tid = path_uuid(task_uuid)
    labels = list(dict.fromkeys(_split(form.get("labels"))))
    await tasks.update_labels(ctx_of(request).engine, session.user, tid, labels)
    return redirect(request, f"/ui/tasks/{tid}", "Labels saved.")


@router.get("/tasks/{task_uuid}/artifacts/{content_type}")
async def download_artifact(
    task_uuid: str, content_type: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    ctx = ctx_of(request)
    got = await artifacts.user_download(
        ctx.engine, ctx.blobs, session.user, path_uuid(task_uuid), path_content_type(content_type)
    )
    return _secured(RedirectResponse(got.url, status_code=303))


# ------------------------------------------------------------------------------------------ workers


async def _worker_view(request: Request, session: Session) -> dict[str, Any]:
    ctx = ctx_of(request)
    group = request.query_params.get("group", "").strip() or session.user.username
    resp = await workers.query(ctx.engine, session.user, m.WorkersQueryReq(group_name=group))
    memberships = await queries.worker_groups(ctx.engine, [w.worker_id for w in resp.workers])
    mine = await accounts.my_groups(ctx.engine, session.user)
    current = [w.assigned_task_id for w in resp.workers if w.assigned_task_id is not None]
    task_groups = await queries.task_groups(ctx.engine, current)
    rows = []
    for info in resp.workers:
        groups = memberships.get(info.worker_id, {})
        # The rule of services.workers.cancel_worker: Admin on a group where the worker is Admin.
        manageable = session.user.admin or any(
            role == Role.Admin and mine.get(name) == Role.Admin for name, role in groups.items()
        )
        # The current task may belong to another group the worker serves: link it only when the
        # viewer may read that group (the task page would refuse otherwise).
        task_group = task_groups.get(info.assigned_task_id) if info.assigned_task_id else None
        task_readable = task_group is not None and (session.user.admin or task_group in mine)
        rows.append(
            {"info": info, "groups": groups, "can_cancel": manageable, "task_readable": task_readable}
        )
    back = "/ui/workers" + (f"?{urlencode({'group': group})}" if group != session.user.username else "")
    return {"workers": rows, "group": group, "my_groups": mine, "csrf": session.csrf, "back": back}


@router.get("/workers")
async def worker_list(request: Request, session: Session = Depends(require_session)) -> Response:
    view = await _worker_view(request, session)
    query = request.url.query
    # Polled: heartbeats (the "last heartbeat" column) are not events.
    return render(
        request, "workers.html", session, live_url="/ui/workers/live" + (f"?{query}" if query else ""), **view
    )


@router.get("/workers/live")
async def worker_list_live(request: Request, session: Session = Depends(require_session)) -> Response:
    view = await _worker_view(request, session)
    return live(fragment("_worker_rows.html", csrf_field=CSRF_FIELD, **view), count=len(view["workers"]))


@router.post("/workers/{worker_uuid}/cancel")
async def cancel_worker(
    worker_uuid: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    form = await checked_form(request, session)
    ctx = ctx_of(request)
    try:
        op = WorkerShutdownOp(form.get("op", "Graceful"))
    except ValueError:
        raise errors.invalid("op: use Graceful or Force") from None
    wid = path_uuid(worker_uuid)
    await workers.cancel_worker(ctx.engine, ctx.notifier, session.user, wid, op)
    verb = "will stop after its current task" if op == WorkerShutdownOp.Graceful else "was stopped"
    return redirect(request, safe_next(form.get("back"), "/ui/workers"), f"Worker {wid} {verb}.")


# ------------------------------------------------------------------------------------------- groups


@router.get("/groups")
async def group_list(request: Request, session: Session = Depends(require_session)) -> Response:
    engine = ctx_of(request).engine
    mine = await accounts.my_groups(engine, session.user)
    # The create form only while the quota allows one more (services.accounts.create_group refuses).
    quota_left = await queries.group_quota_left(engine, session.user.id)
    return render(request, "groups.html", session, groups=mine, quota_left=quota_left)


@router.post("/groups")
async def create_group(request: Request, session: Session = Depends(require_session)) -> Response:
    form = await checked_form(request, session)
    name = form.get("group_name").strip()
    await accounts.create_group(ctx_of(request).engine, session.user, name)
    return redirect(request, f"/ui/groups/{name}", f"Created group {name}.")


@router.get("/groups/{group_name}")
async def group_detail(
    group_name: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    ctx = ctx_of(request)
    info = await accounts.get_group(ctx.engine, session.user, group_name)
    role = (await accounts.my_groups(ctx.engine, session.user)).get(group_name)
    can_manage = session.user.admin or role == Role.Admin
    members = sorted((info.users_in_group or {}).items())
    # A group keeps at least one Admin (services.accounts.remove_members refuses the last one).
    admin_count = sum(1 for _, r in members if r == Role.Admin)
    return render(
        request,
        "group.html",
        session,
        group=info,
        role=role,
        can_manage=can_manage,
        members=members,
        admin_count=admin_count,
        attachments_enabled=True,
    )


@router.post("/groups/{group_name}/members")
async def set_member(
    group_name: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    form = await checked_form(request, session)
    username = form.get("username").strip()
    try:
        role = Role(form.get("role"))
    except ValueError:
        raise errors.invalid("role: choose Read, Write or Admin") from None
    if not username:
        raise errors.invalid("username: enter the member's username")
    await accounts.update_members(ctx_of(request).engine, session.user, group_name, {username: role})
    return redirect(request, f"/ui/groups/{group_name}", f"{username} is now {role.value} in {group_name}.")


@router.post("/groups/{group_name}/members/remove")
async def remove_member(
    group_name: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    form = await checked_form(request, session)
    username = form.get("username").strip()
    await accounts.remove_members(ctx_of(request).engine, session.user, group_name, [username])
    return redirect(request, f"/ui/groups/{group_name}", f"Removed {username} from {group_name}.")


# -------------------------------------------------------------------------------------------- admin


@router.get("/admin")
async def admin_page(request: Request, session: Session = Depends(require_admin)) -> Response:
    ctx = ctx_of(request)
    return render(
        request,
        "admin.html",
        session,
        users=await queries.all_users(ctx.engine),
        groups=await queries.all_groups(ctx.engine),
        shutdown_word=SHUTDOWN_WORD,
    )


@router.post("/admin/users")
async def admin_create_user(request: Request, session: Session = Depends(require_admin)) -> Response:
    form = await checked_form(request, session)
    username = form.get("username").strip()
    password = form.get("password")
    if not password:
        raise errors.invalid("password: enter the new user's password")
    req = m.CreateUserReq(username=username, md5_password=_md5(password), admin=form.get("admin") == "on")
    await accounts.admin_create_user(ctx_of(request).engine, req)
    return redirect(request, "/ui/admin", f"Created user {username}.")


@router.post("/admin/users/{username}/state")
async def admin_user_state(
    username: str, request: Request, session: Session = Depends(require_admin)
) -> Response:
    form = await checked_form(request, session)
    try:
        state = UserState(form.get("state"))
    except ValueError:
        raise errors.invalid("state: choose Active or Locked") from None
    if state == UserState.Deleted:
        raise errors.invalid("state: choose Active or Locked")
    engine = ctx_of(request).engine
    if await queries.user_state(engine, username) == UserState.Deleted:
        # The page offers no Lock/Unlock for a deleted account; a crafted form gets the same answer.
        raise errors.conflict(f"{username} is deleted: the dashboard does not bring deleted accounts back")
    await accounts.admin_set_state(engine, username, state)
    return redirect(request, "/ui/admin", f"{username} is now {state.value}.")


@router.post("/admin/password")
async def admin_password(request: Request, session: Session = Depends(require_admin)) -> Response:
    form = await checked_form(request, session)
    username = form.get("username").strip()
    password = form.get("password")
    if not password:
        raise errors.invalid("password: enter the new password")
    req = m.AdminChangePasswordReq(new_md5_password=_md5(password))
    await accounts.admin_change_password(ctx_of(request).engine, username, req)
    return redirect(request, "/ui/admin", f"Changed the password of {username}; their sessions have ended.")


@router.post("/admin/group-quota")
async def admin_group_quota(request: Request, session: Session = Depends(require_admin)) -> Response:
    form = await checked_form(request, session)
    username = form.get("username").strip()
    value = await accounts.admin_group_quota(ctx_of(request).engine, username, form.get("quota").strip())
    return redirect(request, "/ui/admin", f"{username} may now create {value} groups.")


@router.post("/admin/storage-quota")
async def admin_storage_quota(request: Request, session: Session = Depends(require_admin)) -> Response:
    form = await checked_form(request, session)
    group = form.get("group_name").strip()
    value = await accounts.admin_storage_quota(ctx_of(request).engine, group, form.get("quota").strip())
    return redirect(request, "/ui/admin", f"Storage quota of {group} is now {present.size_text(value)}.")


@router.post("/admin/shutdown")
async def admin_shutdown(request: Request, session: Session = Depends(require_admin)) -> Response:
    form = await checked_form(request, session)
    if form.get("confirm").strip() != SHUTDOWN_WORD:
        raise errors.invalid(f"type {SHUTDOWN_WORD!r} to confirm the shutdown")
    ctx = ctx_of(request)
    # The admin API's own shutdown, with the secret it would otherwise need from the log.
    await admin_routes.shutdown(m.ShutdownReq(secret=ctx.shutdown_secret), request, session.user)
    return render(request, "shutdown.html", session)


# ------------------------------------------------------------------------------------------- events


@router.get("/events")
async def ui_events(request: Request, session: Session = Depends(require_session)) -> Response:
    """``GET /events`` for the browser: the same filters, authorization and stream, cookie session.

    ``EventSource`` resends the last id it saw in ``Last-Event-ID`` when it reconnects, so a page
    misses nothing across a reconnect (or is told to re-query with a ``reset`` event).
    """
    ctx = ctx_of(request)
    params = request.query_params
    flt = events.make_filter(
        params.getlist("group"),
        params.getlist("task"),
        params.getlist("labels"),
        params.getlist("state"),
        params.get("kind") or None,
    )
    await events.authorize(ctx.engine, session.user, flt)
    last_id: int | None = None
    raw = request.headers.get("last-event-id", "").strip()
    if raw:
        try:
            last_id = max(0, int(raw))
        except ValueError:
            raise errors.invalid(f"Last-Event-ID {raw!r} is not an event id") from None
    body = await events.open_stream(
        ctx.engine,
        ctx.notifier,
        session.user,
        flt,
        last_id,
        ctx.settings.event_heartbeat.total_seconds(),
    )
    return _secured(StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS))


def _events_url(**params: str) -> str:
    return "/ui/events?" + urlencode({k: v for k, v in params.items() if v})


# ----------------------------------------------------------------------------------------- task log


def _offset(value: str | None) -> int:
    try:
        return max(0, int(value or "0"))
    except ValueError:
        raise errors.invalid(f"offset {value!r} is not a byte offset") from None


@router.get("/tasks/{task_uuid}/log")
async def task_log(task_uuid: str, request: Request, session: Session = Depends(require_session)) -> Response:
    """The live log of ``GET /tasks/{uuid}/logs`` for the browser, with one offset per stream.

    ``?stdout=N&stderr=M&follow=1``: NDJSON frames from ``services.logs.read``. Once the task is
    archived with a std-log artifact: 409 ``{"artifact": "std-log"}``, as the API answers; the page
    then asks ``…/log/archived`` for the artifact's text.
    """
    ctx = ctx_of(request)
    tid = path_uuid(task_uuid)
    info = await logs.authorize_read(ctx.engine, session.user, tid)
    if info.archived and info.has_std_log:
        return _secured(
            JSONResponse(
                {"msg": "the task has ended; its std-log artifact has the output", "artifact": "std-log"},
                status_code=409,
            )
        )
    params = request.query_params
    offsets = {s: _offset(params.get(s)) for s in logs.STREAMS}
    body = logs.read(
        ctx.engine,
        ctx.notifier,
        tid,
        logs.STREAMS,
        offsets,
        params.get("follow") in ("1", "true"),
        ctx.settings.event_heartbeat.total_seconds(),
    )
    return _secured(
        StreamingResponse(body, media_type="application/x-ndjson", headers={"X-Accel-Buffering": "no"})
    )


@dataclass(frozen=True)
class StdLogText:
    stdout: str
    stderr: str
    truncated: bool


def _tail(tar: tarfile.TarFile, member: tarfile.TarInfo, cap: int) -> tuple[bytes, bool]:
    handle = tar.extractfile(member)
    if handle is None:
        return b"", False
    skip = max(0, member.size - cap)
    if skip:
        handle.seek(skip)
    return handle.read(cap), skip > 0


def unpack_std_log(data: bytes, cap: int = LOG_TEXT_CAP) -> StdLogText:
    """The text of ``std-log/stdout.log`` and ``std-log/stderr.log``: the last ``cap`` bytes of each.

    Reads in memory, at most ``cap`` bytes per stream and the first 16 entries (the worker writes
    exactly two); anything else in the archive is ignored.
    """
    out = {"stdout": b"", "stderr": b""}
    truncated = False
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for number, member in enumerate(tar):
            if number >= 16:
                break
            name = member.name.rsplit("/", 1)[-1]
            stream = name.removesuffix(".log")
            if not member.isreg() or stream not in out:
                continue
            out[stream], cut = _tail(tar, member, cap)
            truncated = truncated or cut
    return StdLogText(
        stdout=out["stdout"].decode("utf-8", "replace"),
        stderr=out["stderr"].decode("utf-8", "replace"),
        truncated=truncated,
    )


async def _fetch_capped(url: str, cap: int) -> bytes:
    async with httpx.AsyncClient(timeout=30) as client, client.stream("GET", url) as resp:
        if resp.status_code != 200:
            raise errors.ApiError(502, f"the std-log artifact could not be fetched (HTTP {resp.status_code})")
        buf = bytearray()
        async for chunk in resp.aiter_bytes():
            buf += chunk
            if len(buf) > cap:
                raise errors.invalid("the std-log artifact is too large to show here; download it instead")
        return bytes(buf)


@router.get("/tasks/{task_uuid}/log/archived")
async def task_log_archived(
    task_uuid: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    """The std-log artifact's text (the download service decides who may read it)."""
    ctx = ctx_of(request)
    tid = path_uuid(task_uuid)
    got = await artifacts.user_download(ctx.engine, ctx.blobs, session.user, tid, ArtifactContentType.std_log)
    if got.size > STD_LOG_FETCH_CAP:
        raise errors.invalid("the std-log artifact is too large to show here; download it instead")
    if isinstance(ctx.blobs, FsBlobStore):
        path = ctx.blobs.path_for("artifacts", artifacts.artifact_key(tid, ArtifactContentType.std_log))
        data = await asyncio.to_thread(path.read_bytes)
    else:
        data = await _fetch_capped(got.url, STD_LOG_FETCH_CAP)
    try:
        text = await asyncio.to_thread(unpack_std_log, data)
    except (tarfile.TarError, OSError, EOFError):
        raise errors.ApiError(502, "the std-log artifact is not a readable archive") from None
    return _secured(JSONResponse({"stdout": text.stdout, "stderr": text.stderr, "truncated": text.truncated}))


# -------------------------------------------------------------------------------------- attachments


@dataclass(frozen=True)
class AttachmentEntry:
    key: str
    name: str
    size: int
    updated_at: Any
    deletable: bool


def _blob_origin(request: Request) -> str:
    settings = ctx_of(request).settings
    base = settings.s3_url if settings.blob_store == "s3" else settings.effective_public_url
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _browse(
    infos: list[m.AttachmentQueryInfo], prefix: str, can_delete: bool, admin: bool
) -> tuple[list[str], list[AttachmentEntry]]:
    """Keys under ``prefix`` as a directory listing: sub-folders (next ``/`` segment) and files."""
    folders: dict[str, None] = {}
    files: list[AttachmentEntry] = []
    cutoff = now() - attachments.ONE_HOUR
    for info in infos:
        if not info.key.startswith(prefix):
            continue
        rest = info.key[len(prefix) :]
        head, sep, _ = rest.partition("/")
        if sep:
            folders[prefix + head + "/"] = None
            continue
        updated = info.updated_at if info.updated_at.tzinfo else info.updated_at.replace(tzinfo=cutoff.tzinfo)
        recent = updated > cutoff
        files.append(
            AttachmentEntry(info.key, rest, info.size, updated, can_delete and (admin or not recent))
        )
    return list(folders), files


def _crumbs(prefix: str) -> list[tuple[str, str]]:
    out = []
    acc = ""
    for part in prefix.split("/")[:-1]:
        acc += part + "/"
        out.append((part, acc))
    return out


@router.get("/groups/{group_name}/attachments")
async def attachment_list(
    group_name: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    ctx = ctx_of(request)
    prefix = request.query_params.get("prefix", "")
    try:
        page = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        page = 1
    # The service matches ``key LIKE %prefix%``; the listing keeps the keys that start with it.
    req = m.AttachmentsQueryReq(key=prefix or None, limit=ATTACHMENT_SCAN)
    resp = await attachments.query(ctx.engine, ctx.blobs, session.user, group_name, req)
    role = (await accounts.my_groups(ctx.engine, session.user)).get(group_name)
    can_write = session.user.admin or (role is not None and role.at_least(Role.Write))
    folders, files = _browse(resp.attachments, prefix, can_write, session.user.admin)
    entries: list[tuple[str, Any]] = [("folder", f) for f in folders] + [("file", f) for f in files]
    start = (page - 1) * ATTACHMENT_PAGE
    shown = entries[start : start + ATTACHMENT_PAGE]

    def link(p: int) -> str:
        params = {k: v for k, v in (("prefix", prefix), ("page", str(p) if p > 1 else "")) if v}
        return request.url.path + (f"?{urlencode(params)}" if params else "")

    origin = _blob_origin(request)
    connect = "'self'" + (f" {origin}" if origin else "")
    return render(
        request,
        "attachments.html",
        session,
        headers={"Content-Security-Policy": _csp(connect)},
        group_name=group_name,
        role=role,
        can_write=can_write,
        prefix=prefix,
        crumbs=_crumbs(prefix),
        entries=shown,
        page=page,
        prev_link=link(page - 1) if page > 1 else None,
        next_link=link(page + 1) if start + ATTACHMENT_PAGE < len(entries) else None,
        capped=len(resp.attachments) >= ATTACHMENT_SCAN,
        delete_after=timedelta(hours=1),
    )


@router.post("/groups/{group_name}/attachments/upload-url")
async def attachment_upload_url(
    group_name: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    """A signed PUT URL for the page's script (route 12's service: Write role, quota, key checks)."""
    form = await checked_form(request, session)
    ctx = ctx_of(request)
    key = form.get("key").strip()
    try:
        size = int(form.get("size"))
    except ValueError:
        raise errors.invalid("size: the file's size in bytes") from None
    if size < 0:
        raise errors.invalid("size: the file's size in bytes")
    resp = await attachments.upload(ctx.engine, ctx.blobs, session.user, group_name, key, size)
    return _secured(JSONResponse({"url": resp.url, "exist": resp.exist, "key": key}))


@router.get("/groups/{group_name}/attachments/download")
async def attachment_download(
    group_name: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    ctx = ctx_of(request)
    key = request.query_params.get("key", "")
    got = await attachments.download(ctx.engine, ctx.blobs, session.user, group_name, key)
    return _secured(RedirectResponse(got.url, status_code=303))


@router.post("/groups/{group_name}/attachments/delete")
async def attachment_delete(
    group_name: str, request: Request, session: Session = Depends(require_session)
) -> Response:
    """Route 14 for members (Write role, not within an hour of the upload); route 62 for admins."""
    form = await checked_form(request, session)
    ctx = ctx_of(request)
    key = form.get("key")
    caller = None if session.user.admin else session.user
    await attachments.delete(ctx.engine, ctx.blobs, caller, group_name, key)
    prefix = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    back = f"/ui/groups/{group_name}/attachments" + (f"?{urlencode({'prefix': prefix})}" if prefix else "")
    return redirect(request, back, f"Deleted {key}.")
