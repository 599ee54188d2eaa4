"""The ``mito client`` command tree as a whole: every command that prints records offers the script
formats, and the help says what the commands really do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mitosis.cli.client import client
from mitosis.client import (
    AuthError,
    AuthExpiredError,
    ConflictError,
    ConnectionFailed,
    ForbiddenError,
    MissingCredentials,
    NotFoundError,
    QuotaExceededError,
    ServerError,
    commands,
)
from mitosis.client.output import FORMATS

# Commands that print records (reads of the coordinator); named by the verbs below.
READ_VERBS = {
    "auth",
    "config",
    "get",
    "query",
    "watch",
    "groups",
    "my-groups",
    "retention",
    "wait",
    "wait-many",
}
QUERY_COMMANDS = {
    "auth",
    "config",
    "users groups",
    "users my-groups",
    "groups get",
    "groups attachments get",
    "groups attachments query",
    "tasks get",
    "tasks query",
    "tasks watch",
    "tasks wait",
    "tasks wait-many",
    "workers get",
    "workers query",
    "admin groups retention",
}


def leaves(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from leaves(cmd, (*path, name))
        else:
            yield " ".join((*path, name)), cmd


def option(cmd: click.Command, flag: str) -> click.Option | None:
    for param in cmd.params:
        if isinstance(param, click.Option) and flag in param.opts:
            return param
    return None


def test_the_read_commands_are_the_listed_ones() -> None:
    found = {path for path, _ in leaves(client) if path.split()[-1] in READ_VERBS}
    assert found == QUERY_COMMANDS


@pytest.mark.parametrize("path", sorted(QUERY_COMMANDS))
def test_every_query_command_has_json_and_output(path: str) -> None:
    cmd = dict(leaves(client))[path]
    as_json, output = option(cmd, "--json"), option(cmd, "--output")
    assert as_json is not None and as_json.is_flag, path
    assert output is not None and isinstance(output.type, click.Choice), path
    assert tuple(output.type.choices) == FORMATS


def test_json_and_output_always_come_together() -> None:
    """``--output`` is a format wherever ``--json`` exists; elsewhere (downloads) it is a place."""
    for path, cmd in leaves(client):
        fmt = option(cmd, "--output")
        if option(cmd, "--json") is not None:
            assert fmt is not None and isinstance(fmt.type, click.Choice), path
        elif fmt is not None:
            assert isinstance(fmt.type, click.Path) and "-o" in fmt.opts, path


def _help(*args: str) -> str:
    result = CliRunner().invoke(client, [*args, "--help"], prog_name="mito client")
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_cancel_help_says_running_tasks_can_be_cancelled() -> None:
    assert "Ready, Pending or Running" in _help("tasks", "cancel")
    assert "Ready, Pending or Running" in _help("tasks", "cancel-many")


def test_matrix_help_mentions_resources() -> None:
    assert "-r resources" in _help("tasks", "submit")


def test_watch_help_documents_the_script_formats() -> None:
    text = _help("tasks", "watch")
    assert "JSON Lines" in text and "--once --json" in text and "exit 130" in text


# ------------------------------------------------------------------------------------ exit codes

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _doc_codes() -> dict[int, str]:
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("## Exit codes") :]
    return {int(m[1]): m[2] for m in re.finditer(r"^\| (\d+) \| (.+) \|$", table, re.MULTILINE)}


def _docstring_codes() -> dict[int, str]:
    doc = commands.__doc__ or ""
    return {int(m[1]): m[2] for m in re.finditer(r"^(\d+)\s+(\S.*)$", doc, re.MULTILINE)}


def test_the_exit_code_tables_agree() -> None:
    constants = {v for k, v in vars(commands).items() if k.startswith("EXIT_") and isinstance(v, int)}
    assert set(_doc_codes()) == set(_docstring_codes()) == constants == {0, 1, 2, 3, 4, 5, 6, 7, 130}
    for code, meaning in _doc_codes().items():
        # The first words of each row match (the docstring wraps its rows).
        words = meaning.replace("`", "").split()[:4]
        assert _docstring_codes()[code].replace("``", "").split()[:4] == words, code


def test_client_help_points_to_the_exit_codes() -> None:
    text = _help()
    assert "Exit codes: 0 ok, 1 error, 2 usage" in text and "130 interrupted" in text
    assert 'docs/cli.md ("Exit codes")' in text


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ForbiddenError("Authentication error: Permission denied", 403), 3),
        (AuthError("Authentication error: Wrong credentials", 401), 3),
        (AuthExpiredError("expired", 401, "bob"), 3),
        (QuotaExceededError("Resource quota exceeded: x", 403), 6),
        (NotFoundError("Group g not found", 404), 4),
        (ConflictError("exists", 409), 5),
        (ConnectionFailed("Fail to connect"), 7),
        (ServerError("boom", 500), 1),
        (MissingCredentials("user"), 2),
    ],
)
def test_exit_code_of_each_error(exc: Exception, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert commands.report_error(exc) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
