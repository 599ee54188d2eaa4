"""Bad input to ``mito client`` is a one-line usage error (exit 2) found before any request, never a
traceback: out-of-range numbers, request models refusing a value, a malformed coordinator URL; and
the interactive shell survives whatever a command raises."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel, Field

from mitosis.cli.client import client
from mitosis.client.commands import EXIT_USAGE, Session
from mitosis.client.shell import run_line
from mitosis.config import ClientSettings

# Nothing listens on port 9: a command that sent a request would fail with exit 7 instead.
NOWHERE = "http://127.0.0.1:9"
U = "67e55044-10b1-426f-9247-bb680e5fe0c8"


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    for key in ("MITO_COORDINATOR_ADDR", "MITO_USER", "MITO_PASSWORD", "MITO_CREDENTIAL_PATH"):
        monkeypatch.delenv(key, raising=False)


def mito(*args: str) -> Result:
    return CliRunner().invoke(client, ["-c", NOWHERE, "-u", "u", "-p", "p", *args], prog_name="mito client")


def assert_usage_error(result: Result, *needles: str) -> None:
    assert result.exit_code == EXIT_USAGE, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and result.stdout == ""
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["tasks", "submit", "-p", "99999999999999999999", "--", "echo"],
        ["tasks", "submit", "-p", "-2147483649", "--", "echo"],
        ["tasks", "change", U, "-p", "99999999999999999999"],
    ],
)
def test_priority_outside_i32_is_a_usage_error(args: list[str]) -> None:
    assert_usage_error(mito(*args), "'-p' / '--priority'", "-2147483648<=x<=2147483647")


@pytest.mark.parametrize(
    "args",
    [
        ["tasks", "query", "--limit", "99999999999999999999"],
        ["tasks", "query", "--offset", "99999999999999999999"],
        ["tasks", "query", "--offset", "-1"],
        ["tasks", "watch", "--once", "--limit", "99999999999999999999"],
        ["groups", "attachments", "query", "--limit", "99999999999999999999"],
        ["groups", "attachments", "delete-many", "--offset", "99999999999999999999"],
    ],
)
def test_limit_and_offset_outside_i64_never_reach_the_coordinator(args: list[str]) -> None:
    assert_usage_error(mito(*args), "9223372036854775807")


def test_a_value_the_request_model_refuses_is_a_usage_error() -> None:
    result = mito("tasks", "submit", "-g", "x" * 300, "--", "echo")
    assert_usage_error(result, "error: invalid value: group_name: String should have at most 255 characters")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://[bad", "Invalid IPv6 URL"),
        ("http://coord:99999", "Port out of range 0-65535"),
        ("ftp://coord", "scheme 'ftp' is not http or https"),
    ],
)
def test_a_malformed_coordinator_url_is_a_configuration_error(url: str, problem: str) -> None:
    result = CliRunner().invoke(client, ["-c", url, "auth"], prog_name="mito client")
    assert_usage_error(result, f"error: invalid coordinator URL {url!r} ({problem})", "set by command line")
    assert len(result.stderr.splitlines()) == 1


def test_a_malformed_url_from_the_environment_names_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MITO_COORDINATOR_ADDR", "http://[::1")
    result = CliRunner().invoke(client, ["config"], prog_name="mito client")
    assert_usage_error(result, "invalid coordinator URL 'http://[::1'", "set by env MITO_COORDINATOR_ADDR")


# ------------------------------------------------------------------------------- the shell's net


class _Req(BaseModel):
    n: int = Field(le=3)


def _root() -> click.Group:
    root = click.Group(name="")

    @root.command()
    def crash() -> None:
        raise RuntimeError("boom\nsecond line of a long story")

    @root.command()
    def invalid() -> None:
        _Req(n=99)

    @root.command()
    def fine() -> None:
        click.echo("still here")

    return root


def test_the_shell_survives_any_exception(capsys: pytest.CaptureFixture[str]) -> None:
    root, session = _root(), Session(ClientSettings(coordinator_addr=NOWHERE))
    run_line(root, session, ["crash"])
    assert capsys.readouterr().err == "error: unexpected RuntimeError: boom\n"
    run_line(root, session, ["invalid"])
    assert capsys.readouterr().err == "error: invalid value: n: Input should be less than or equal to 3\n"
    run_line(root, session, ["fine"])
    assert capsys.readouterr().out == "still here\n"
