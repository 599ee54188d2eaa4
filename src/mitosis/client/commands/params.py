"""Click parameter types and option sets shared by the task, artifact and worker commands.

Values are validated on the client with the same codecs the wire uses, so a typo is a usage error
(exit 2) with a precise message instead of a round trip and a 400.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID

import click

from mitosis.client.commands import list_option, split_list
from mitosis.wire.codecs import parse_duration, parse_uuid
from mitosis.wire.enums import ArtifactContentType, TaskState
from mitosis.wire.models import I64_MAX

F = TypeVar("F", bound=Callable[..., Any])


class DurationType(click.ParamType):  # type: ignore[type-arg]
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(f"{value!r} is not a duration like 10min, 1h 30m or 2d ({exc})", param, ctx)


class UuidType(click.ParamType):  # type: ignore[type-arg]
    name = "UUID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> UUID:
        if isinstance(value, UUID):
            return value
        try:
            return parse_uuid(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class ContentTypeType(click.ParamType):  # type: ignore[type-arg]
    name = "result|exec-log|std-log"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> ArtifactContentType:
        try:
            return ArtifactContentType(value)
        except ValueError:
            self.fail(f"{value!r}: content type must be result, exec-log or std-log", param, ctx)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[click.shell_completion.CompletionItem]:
        return [
            click.shell_completion.CompletionItem(c.value)
            for c in ArtifactContentType
            if c.value.startswith(incomplete)
        ]


DURATION = DurationType()
UUID_TYPE = UuidType()
CONTENT_TYPE = ContentTypeType()
# The wire's integer ranges, checked while parsing so an out-of-range number is a usage error.
PRIORITY = click.IntRange(-(2**31), 2**31 - 1)
LIMIT = click.IntRange(0, I64_MAX)

STATE_NAMES = ("pending", "ready", "running", "finished", "cancelled", "unknown")


def complete_states(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """``-s`` values, also after a comma: ``ready,fin`` completes to ``ready,finished``."""
    head, sep, last = incomplete.rpartition(",")
    return [
        click.shell_completion.CompletionItem(f"{head}{sep}{name}")
        for name in STATE_NAMES
        if name.startswith(last.lower())
    ]


def parse_states(values: tuple[str, ...]) -> list[TaskState] | None:
    out: list[TaskState] = []
    for name in split_list(values):
        if name.lower() not in STATE_NAMES:
            raise click.BadParameter(f"{name!r}: state must be one of {', '.join(STATE_NAMES)}")
        out.append(TaskState(name.lower().capitalize()))
    return out or None


def task_filter_options(*, reporter: bool) -> Callable[[F], F]:
    """The task filter flags of ``tasks query``, ``cancel-many`` and the artifact batch commands."""

    def decorate(f: F) -> F:
        opts = [
            list_option("-c", "--creators", help="Creators' usernames"),
            click.option("-g", "--group", help="Group of the tasks (default: your own group)."),
            list_option("-t", "--tags", help="Tags the tasks must all carry"),
            list_option("-l", "--labels", help="Labels the tasks must all carry"),
            list_option(
                "-s", "--state", help=f"States ({'|'.join(STATE_NAMES)})", shell_complete=complete_states
            ),
            click.option(
                "-e", "--exit-status", help="Raw exit status, with an optional =, !=, <, <=, >, >=."
            ),
            click.option("-p", "--priority", help="Priority, with an optional =, !=, <, <=, >, >=."),
        ]
        if reporter:
            opts.append(
                click.option("--reporter-uuid", type=UUID_TYPE, help="Worker that reported the tasks.")
            )
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


def filter_fields(
    creators: tuple[str, ...],
    group: str | None,
    tags: tuple[str, ...],
    labels: tuple[str, ...],
    state: tuple[str, ...],
    exit_status: str | None,
    priority: str | None,
) -> dict[str, Any]:
    """Filter flags as request fields; empty lists are sent as absent (0.6.8 does the same)."""
    return {
        "creator_usernames": split_list(creators) or None,
        "group_name": group,
        "tags": split_list(tags) or None,
        "labels": split_list(labels) or None,
        "states": parse_states(state),
        "exit_status": exit_status,
        "priority": priority,
    }
