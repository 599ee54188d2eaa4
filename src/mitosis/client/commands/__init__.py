"""The ``mito client`` command tree (behavior.md §9.2) and what every command shares: the session
(settings, lazy authentication, output format), option helpers, and error reporting.

Expected failures never print a traceback: one line ``error: <message>`` on stderr, a hint when the
fix is obvious, and one of these process exit codes (the same table is in docs/cli.md, "Exit codes"):

==== ==========================================================================================
code meaning
==== ==========================================================================================
0    success (``tasks wait`` and ``tasks logs --follow``: the task's own exit code instead)
1    generic or remote error: 400/422 request rejected, 5xx server error, I/O error, wait timeout;
     also click's ``Aborted!`` (Ctrl-C outside the commands below, or a declined prompt)
2    usage or configuration error: bad flag or value, invalid config or coordinator URL, missing
     user/password, an invalid sweep (``--matrix``)
3    authentication or permission: 401 (wrong password, invalid token; an expired session says
     ``your session for USER expired: run mito client login USER``), 403 (role too low, locked)
4    not found (404): unknown user, group, task, worker, artifact or attachment
5    conflict (409): a user or group with that name already exists
6    quota exceeded (403 ``Resource quota exceeded``)
7    connection failed: the coordinator (or blob store) could not be reached
130  interrupted (Ctrl-C) while ``tasks wait``, ``tasks logs``, ``tasks watch`` or a sweep's
     submission was running
==== ==========================================================================================

``tasks wait`` and ``tasks logs --follow`` exit with the finished task's decoded exit code
(``128 + N`` when killed by signal N), or 1 when the task was cancelled. ``tasks wait-many`` exits 0
when every matching task finished with exit code 0, else 1. ``tasks submit --matrix`` exits 1 when
the coordinator refused any task of the sweep (the others are submitted).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import click
from pydantic import ValidationError

from mitosis.client import core
from mitosis.client.errors import (
    AuthError,
    AuthExpiredError,
    ConflictError,
    ConnectionFailed,
    ForbiddenError,
    MissingCredentials,
    MitoError,
    NotFoundError,
    QuotaExceededError,
    SweepError,
    SweepInterrupted,
)
from mitosis.client.output import FORMATS, Format, Printer
from mitosis.client.sdk import MitoClient
from mitosis.config import ClientSettings, ConfigError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_QUOTA = 6
EXIT_CONNECTION = 7
EXIT_INTERRUPTED = 130

EXIT_CODES_EPILOG = """\b
Exit codes: 0 ok, 1 error, 2 usage or configuration, 3 authentication or permission,
4 not found, 5 conflict, 6 quota exceeded, 7 coordinator unreachable, 130 interrupted;
`tasks wait` and `tasks logs --follow` exit with the task's own code.
The full table is in docs/cli.md ("Exit codes")."""

_FLAG_OF = {"user": "-u/--user (or MITO_USER)", "password": "-p/--password (or MITO_PASSWORD)"}


@dataclass
class Session:
    """One CLI invocation (or one interactive shell): settings plus a lazily authenticated client."""

    settings: ClientSettings
    fmt: Format = "table"
    interactive: bool = False
    sources: dict[str, str] = field(default_factory=dict)
    """Where each explicitly set setting came from (see :class:`mitosis.config.Loaded`)."""
    quit_requested: bool = False
    seen_tasks: list[str] = field(default_factory=list)
    """Task uuids this session submitted or listed, oldest first (the shell completes them)."""
    seen_groups: list[str] = field(default_factory=list)
    """Groups this session created (the shell completes them with the user's groups)."""
    _client: MitoClient | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # A malformed URL is a configuration error found at start-up, not a failure of the first
        # command that happens to connect.
        try:
            core.base_url(self.settings.coordinator_addr)
        except MitoError as exc:
            origin = self.sources.get("coordinator_addr")
            raise ConfigError(f"{exc.msg}" + (f" (set by {origin})" if origin else "")) from None

    def _new_client(self) -> MitoClient:
        return MitoClient(self.settings.coordinator_addr, credential_path=self.settings.credential_path)

    def client(self) -> MitoClient:
        """The authenticated client; the first call runs the credential flow (behavior.md §3.8)."""
        if self._client is None:
            c = self._new_client()
            try:
                c.login_with_credentials(
                    self.settings.user, self.settings.password, self.settings.retain, ask=ask_terminal
                )
            except BaseException:
                c.close()
                raise
            self._client = c
        return self._client

    def quiet_client(self) -> MitoClient | None:
        """The authenticated client if it can be had without asking anyone, else None (for
        completion: a Tab must never prompt for a password, nor fail)."""
        if self._client is not None and self._client.token:
            return self._client
        c = self._client or self._new_client()
        try:
            c.login_with_credentials(self.settings.user, self.settings.password, self.settings.retain)
        except MitoError:
            if c is not self._client:
                c.close()
            return None
        self._client = c
        return c

    def remember(self, *, tasks: Iterable[object] = (), groups: Iterable[str] = ()) -> None:
        self.seen_tasks.extend(str(t) for t in tasks)
        self.seen_groups.extend(groups)

    def anonymous(self) -> MitoClient:
        """A client without a token yet, for ``login``; it becomes the session's client."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    @property
    def username(self) -> str:
        name = self.client().username
        if not name:
            raise MissingCredentials("user")
        return name

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def ask_terminal(what: str) -> str:
    """Prompt for a missing user or password, but only when a person is at the keyboard."""
    if not sys.stdin.isatty():
        raise MissingCredentials(what)
    if what == "password":
        return click.prompt("Password", hide_input=True, err=True)
    return click.prompt("Username", err=True)


def ask_new_password(given: str | None, prompt: str) -> str:
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise click.UsageError(f"{prompt.lower()} missing: pass it as an argument")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True, err=True)


def ask_value(given: str | None, prompt: str, *, secret: bool = False) -> str:
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise click.UsageError(f"{prompt.lower()} missing: pass it as an argument")
    return click.prompt(prompt, hide_input=secret, err=True)


def get_session() -> Session:
    session = click.get_current_context().find_object(Session)
    if session is None:
        raise click.UsageError("no client session: run through `mito client`")
    return session


# --------------------------------------------------------------------------------------- errors


def _hint(exc: BaseException) -> str | None:
    if isinstance(exc, SweepInterrupted):
        return _hint(exc.cause) or "the uuids printed above were submitted; resubmit only the rest"
    if isinstance(exc, MissingCredentials):
        return None
    if isinstance(exc, AuthExpiredError) and exc.username:
        return None  # the message says what to run
    if isinstance(exc, AuthError):
        return "run `mito client login` or pass -u/--user and -p/--password"
    if isinstance(exc, ConnectionFailed):
        return "is the coordinator running? set its URL with -c/--coordinator or MITO_COORDINATOR_ADDR"
    if isinstance(exc, QuotaExceededError):
        return "ask an admin to raise the quota (`mito client admin ...`)"
    return None


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, SweepInterrupted):
        return exit_code_for(exc.cause)
    if isinstance(exc, MissingCredentials | ConfigError | SweepError | ValidationError):
        return EXIT_USAGE
    if isinstance(exc, QuotaExceededError):
        return EXIT_QUOTA
    if isinstance(exc, AuthError | ForbiddenError):
        return EXIT_AUTH
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, ConflictError):
        return EXIT_CONFLICT
    if isinstance(exc, ConnectionFailed):
        return EXIT_CONNECTION
    return EXIT_ERROR


def _validation_message(exc: ValidationError) -> str:
    """A request model built from command-line values refused them: say which field and why."""
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:3]:
        where = ".".join(str(p) for p in err["loc"]) or exc.title
        parts.append(f"{where}: {err['msg']}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "invalid value: " + "; ".join(parts) + more


def error_message(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return _validation_message(exc)
    if isinstance(exc, AuthExpiredError) and exc.username:
        return f"your session for {exc.username} expired: run `mito client login {exc.username}`"
    if isinstance(exc, MissingCredentials):
        return f"not logged in and no {exc.field} given: pass {_FLAG_OF.get(exc.field, exc.field)}"
    if isinstance(exc, OSError) and not isinstance(exc, MitoError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc)


def report_error(exc: BaseException) -> int:
    """Print one ``error:`` line (and a hint) on stderr; return the exit code for ``exc``."""
    click.echo(f"error: {error_message(exc)}", err=True)
    hint = _hint(exc)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    return exit_code_for(exc)


EXPECTED_ERRORS = (MitoError, ConfigError, OSError, ValidationError)
"""What a command may raise for bad input or a refusal: reported in one line, never a traceback.
A pydantic ``ValidationError`` here comes from a request model built from command-line values."""


# ------------------------------------------------------------------------------ option helpers


def output_options(f: F) -> F:
    """``--json`` / ``--output FORMAT``; the command receives a ready ``printer``."""

    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (the wire model).")
    @click.option("--output", "output_fmt", type=click.Choice(FORMATS), help="Output format.")
    @functools.wraps(f)
    def wrapper(*args: Any, as_json: bool, output_fmt: Format | None, **kwargs: Any) -> Any:
        fmt: Format = "json" if as_json else output_fmt or get_session().fmt
        return f(*args, printer=Printer(fmt), **kwargs)

    return cast(F, wrapper)


def split_list(values: Iterable[str]) -> list[str]:
    """Flags given repeatedly and/or comma separated (``-t a,b -t c``) as one list."""
    out: list[str] = []
    for value in values:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return list(dict.fromkeys(out))


def list_option(*decls: str, help: str, shell_complete: Any = None) -> Callable[[F], F]:
    return click.option(
        *decls,
        multiple=True,
        metavar="A,B,...",
        help=f"{help} (comma separated or repeated)",
        shell_complete=shell_complete,
    )


def printer_for(session: Session) -> Printer:
    return Printer(session.fmt)


def register(group: click.Group) -> None:
    """Add the whole command tree to ``group`` (the ``mito client`` group or the shell's root), and
    the exit codes to its help."""
    from mitosis.client.commands import admin, config, groups, session, tasks, users, workers

    if group.epilog is None:
        group.epilog = EXIT_CODES_EPILOG

    for cmd in (
        admin.admin,
        session.auth,
        config.config,
        session.login,
        users.users,
        groups.groups,
        tasks.tasks,
        workers.workers,
        session.cmd,
    ):
        group.add_command(cmd)
