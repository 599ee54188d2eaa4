"""Typed errors of the client SDK: one class per kind of failure a caller may want to branch on.

Every HTTP error of the coordinator is ``{"msg": "..."}`` with a status code (behavior.md §3.6);
:func:`error_for_status` turns it into the matching class so callers never inspect status codes.
"""

from __future__ import annotations

from mitosis.wire.models import SubmitErr, SubmitOk


class MitoError(Exception):
    """Base of every SDK error. ``status`` is the HTTP status (0 when no response was received)."""

    def __init__(self, msg: str, status: int = 0) -> None:
        super().__init__(msg)
        self.msg = msg
        self.status = status

    def __str__(self) -> str:
        return self.msg


class InvalidRequestError(MitoError):
    """400 or 422: the coordinator rejected the request's content."""


class AuthError(MitoError):
    """401: invalid, expired or revoked token, or wrong credentials."""


class AuthExpiredError(AuthError):
    """401 on a request that carried a token: the token expired, or was ended (a newer login
    without ``retain``, a password change). ``username`` names whose token it was, when known;
    logging in again is the fix."""

    def __init__(self, msg: str, status: int = 401, username: str | None = None) -> None:
        super().__init__(msg, status)
        self.username = username


class ForbiddenError(MitoError):
    """403: authenticated but not allowed (role too low, user locked)."""


class QuotaExceededError(ForbiddenError):
    """403 ``Resource quota exceeded[: detail]``: a user's group quota or a group's storage quota
    would be exceeded (the coordinator appends what is used and what the quota allows)."""


class NotFoundError(MitoError):
    """404: the named user, group, task, worker, artifact or attachment does not exist."""


class ConflictError(MitoError):
    """409: a user or group with that name already exists (or a last-admin conflict)."""


class ServerError(MitoError):
    """5xx: the coordinator failed; retrying later may help."""


class ConnectionFailed(MitoError):
    """No HTTP response at all: the coordinator (or blob store) could not be reached."""


class MissingCredentials(MitoError):
    """A login is needed but the username or password is unknown and nobody can be asked.

    ``field`` is ``"user"`` or ``"password"``, so a CLI can name the flag to pass.
    """

    def __init__(self, field: str) -> None:
        super().__init__(f"no {field} given and no valid stored token", 0)
        self.field = field


class WaitTimeout(MitoError):
    """:meth:`MitoClient.wait_task` gave up before the task reached a final state."""


class SweepError(MitoError, ValueError):
    """A parameter sweep that cannot be expanded (bad matrix, unknown placeholder, too many tasks).

    Raised before anything is sent to the coordinator.
    """


class SweepInterrupted(MitoError):
    """A sweep's submission stopped part-way: a chunk failed after earlier chunks were accepted.

    ``results`` holds the per-task results of the accepted chunks (those tasks exist), in order;
    ``total`` is the size of the whole sweep and ``cause`` the error that stopped it. When the very
    first chunk fails nothing was submitted and that error is raised unchanged instead.
    """

    def __init__(self, cause: MitoError, results: list[SubmitOk | SubmitErr], total: int) -> None:
        super().__init__(
            f"submission stopped after {len(results)} of {total} task(s): {cause.msg}", cause.status
        )
        self.cause = cause
        self.results = results
        self.total = total


QUOTA_MSG = "Resource quota exceeded"


def error_for_status(
    status: int, msg: str, *, with_token: bool = False, username: str | None = None
) -> MitoError:
    """The typed error for an HTTP error response; ``with_token``: the request carried a token
    (of ``username``), so a 401 means that token is no longer accepted."""
    if status in (400, 422):
        return InvalidRequestError(msg, status)
    if status == 401:
        return AuthExpiredError(msg, status, username) if with_token else AuthError(msg, status)
    if status == 403:
        # 0.6.8 sends the bare text; ours appends ": <what is used of what quota>".
        return QuotaExceededError(msg, status) if msg.startswith(QUOTA_MSG) else ForbiddenError(msg, status)
    if status == 404:
        return NotFoundError(msg, status)
    if status == 409:
        return ConflictError(msg, status)
    if status >= 500:
        return ServerError(msg, status)
    return MitoError(msg, status)
