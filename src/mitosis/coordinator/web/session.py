"""The browser session: the token cookie, CSRF tokens, flash messages and form bodies.

The session cookie holds the same user token the API takes as a Bearer token (httpOnly,
SameSite=Strict, path ``/ui``, Secure over HTTPS) and is checked by the API's own code
(:func:`mitosis.coordinator.auth._load_user`), so a locked user or a changed password ends a browser
session exactly as it ends a CLI one.

CSRF: every state-changing form carries a token bound to the session: ``HMAC-SHA256(key=session
token, "mitosis-ui-csrf")``. A page on another origin can neither read the httpOnly cookie nor
derive the token from it, and the token reveals nothing about the cookie. Before login there is
no session, so the login form uses a double-submit token from a short-lived cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote

from fastapi import HTTPException, Request, Response

from mitosis.coordinator import errors
from mitosis.coordinator.auth import User, _load_user

SESSION_COOKIE = "mito_session"
LOGIN_CSRF_COOKIE = "mito_login_csrf"
FLASH_COOKIE = "mito_flash"
COOKIE_PATH = "/ui"
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 1 << 20


class CsrfError(Exception):
    """A state-changing request without the session's CSRF token (answered 403)."""


class LoginRequired(HTTPException):
    """No usable session: the browser is sent to the login page (303)."""

    def __init__(self, request: Request) -> None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        super().__init__(status_code=303, headers={"Location": f"/ui/login?next={quote(target, safe='')}"})


@dataclass(frozen=True)
class Session:
    user: User
    token: str

    @property
    def csrf(self) -> str:
        return csrf_for(self.token)


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"mitosis-ui-csrf", hashlib.sha256).hexdigest()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))


async def session_of(request: Request, *, admin: bool = False) -> Session:
    """The signed-in user, checked by the API's token code; otherwise a redirect to the login page.

    ``admin`` pages answer a signed-in non-admin with the API's 403 (an ``ApiError``).
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired(request)
    try:
        user = await _load_user(request, token, admin=False)
    except errors.ApiError as exc:
        if exc.status in (401, 403):
            raise LoginRequired(request) from None
        raise
    if admin:
        user = await _load_user(request, token, admin=True)
    return Session(user=user, token=token)


async def require_session(request: Request) -> Session:
    return await session_of(request)


async def require_admin(request: Request) -> Session:
    return await session_of(request, admin=True)


class Form:
    """A parsed ``application/x-www-form-urlencoded`` body (the only encoding our forms use)."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    def get(self, name: str, default: str = "") -> str:
        values = self._fields.get(name)
        return values[0] if values else default

    def getlist(self, name: str) -> list[str]:
        return list(self._fields.get(name, []))


async def read_form(request: Request) -> Form:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise errors.invalid("form too large")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise errors.invalid("form is not UTF-8") from None
    return Form(parse_qs(text, keep_blank_values=True))


async def checked_form(request: Request, session: Session) -> Form:
    """The form of a state-changing request, after its CSRF token is checked."""
    form = await read_form(request)
    if not hmac.compare_digest(form.get(CSRF_FIELD).encode(), session.csrf.encode()):
        raise CsrfError("missing or wrong CSRF token: reload the page and try again")
    return form


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def check_login_csrf(request: Request, form: Form) -> None:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD)
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise CsrfError("the login form expired: reload the page and sign in again")


def flash(request: Request, response: Response, message: str, kind: str = "info") -> None:
    set_cookie(request, response, FLASH_COOKIE, quote(f"{kind}:{message[:500]}", safe=""), 60)


def take_flash(request: Request) -> tuple[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    kind, _, message = unquote(raw).partition(":")
    return (kind if kind in ("info", "error") else "info", message)


def safe_next(target: str | None, default: str = "/ui/tasks") -> str:
    """Only our own pages are redirect targets (no open redirect through ``next``)."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return default
