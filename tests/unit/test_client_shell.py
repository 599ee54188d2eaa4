"""The interactive shell's pieces that need no terminal: completion over the real command tree (with
suggestions served by a scripted coordinator) and the history trimming. The shell as a person uses it
is tested through a pseudo-terminal in tests/e2e/test_client_shell.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory

from mitosis.client.commands import Session
from mitosis.client.sdk import MitoClient
from mitosis.client.shell import HISTORY_LIMIT, ClickCompleter, Suggestions, _trim_history, build_root
from mitosis.config import ClientSettings

U1 = "67e55044-10b1-426f-9247-bb680e5fe0c8"
U2 = "17e55044-10b1-426f-9247-bb680e5fe0c8"
U3 = "27e55044-10b1-426f-9247-bb680e5fe0c8"
DT = "2025-03-04 08:57:59.123456 +00:00:00"


def _task(uuid: str) -> dict[str, Any]:
    return {
        "uuid": uuid,
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
        "spec": {},
        "result": None,
    }


class Coordinator:
    """Answers the two reads completion makes, and counts them."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path)
        if request.url.path == "/users/groups":
            return httpx.Response(200, json={"groups": {"alice": "Admin", "lab": "Write", "lab2": "Read"}})
        if request.url.path == "/tasks/query":
            return httpx.Response(
                200, json={"count": 2, "tasks": [_task(U1), _task(U2)], "group_name": "alice"}
            )
        return httpx.Response(404, json={"msg": "unexpected"})


class _Session(Session):
    """A session whose client is already logged in to the scripted coordinator."""

    def _new_client(self) -> MitoClient:
        raise AssertionError("completion must not log in again")


@pytest.fixture
def coordinator() -> Coordinator:
    return Coordinator()


@pytest.fixture
def completer(coordinator: Coordinator) -> ClickCompleter:
    session = _Session(ClientSettings())
    session._client = MitoClient(
        "http://coord", "TOKEN", username="alice", transport=httpx.MockTransport(coordinator)
    )
    return ClickCompleter(build_root(), Suggestions(session))


def complete(completer: ClickCompleter, text: str) -> list[str]:
    return [
        c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))
    ]


def test_commands_and_flags(completer: ClickCompleter) -> None:
    assert complete(completer, "wor") == ["workers"]
    assert complete(completer, "")[-3:] == ["help", "exit", "quit"]
    assert complete(completer, "tasks wa") == ["wait", "wait-many", "watch"]
    assert "--count" in complete(completer, "workers query --co")
    assert complete(completer, "help ta") == ["tasks"]
    assert complete(completer, "help tasks sub") == ["submit", "submit-many"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tasks query --output ", ["table", "json", "yaml"]),
        ("tasks get --output y", ["yaml"]),
        ("tasks query -s fin", ["finished"]),
        ("tasks query -s ready,r", ["ready,ready", "ready,running"]),
        ("tasks logs --stream std", ["stdout", "stderr"]),
        ("tasks artifacts download-many r", ["result"]),
        ("tasks artifacts download 67e55044-10b1-426f-9247-bb680e5fe0c8 ", ["result", "exec-log", "std-log"]),
        ("admin users state bob L", ["locked"]),
    ],
)
def test_choice_values(completer: ClickCompleter, text: str, expected: list[str]) -> None:
    assert complete(completer, text) == expected


def test_no_values_where_none_are_known(completer: ClickCompleter, coordinator: Coordinator) -> None:
    assert complete(completer, "tasks submit -- ec") == []  # the task's own command
    assert complete(completer, "tasks submit --timeout ") == []
    assert complete(completer, "groups create la") == []  # a new name
    assert complete(completer, "workers get ") == []  # worker uuids are not task uuids
    assert coordinator.calls == []


def test_group_names_are_fetched_once(completer: ClickCompleter, coordinator: Coordinator) -> None:
    assert complete(completer, "groups get la") == ["lab", "lab2"]
    assert complete(completer, "tasks query -g ") == ["alice", "lab", "lab2"]
    assert complete(completer, "tasks submit --group lab2 -t gpu -g a") == ["alice"]
    assert complete(completer, "admin groups storage-quota l") == ["lab", "lab2"]
    completer.suggestions.session.remember(groups=["new-one"])  # type: ignore[union-attr]
    assert complete(completer, "groups update-user n") == ["new-one"]
    assert coordinator.calls == ["/users/groups"]


def test_task_uuids_seen_first_then_queried_once(completer: ClickCompleter, coordinator: Coordinator) -> None:
    session = completer.suggestions.session  # type: ignore[union-attr]
    session.remember(tasks=[U3])
    assert complete(completer, "tasks get ") == [U3, U1, U2]
    assert complete(completer, "tasks cancel-list 6") == [U1]
    assert complete(completer, f"tasks artifacts download-list result {U1} 2") == [U3]
    assert complete(completer, "admin tasks artifacts delete 1") == [U2]
    assert coordinator.calls == ["/tasks/query"]


def test_a_shell_that_cannot_log_in_quietly_completes_what_it_saw() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    class Offline(Session):
        def _new_client(self) -> MitoClient:
            return MitoClient("http://coord", transport=httpx.MockTransport(refuse))

    session = Offline(ClientSettings(user="alice", password="pw"))
    session.remember(tasks=[U3], groups=["seen"])
    completer = ClickCompleter(build_root(), Suggestions(session))
    assert complete(completer, "tasks get ") == [U3]
    assert complete(completer, "groups get ") == ["seen"]
    nobody = ClickCompleter(build_root(), Suggestions(Offline(ClientSettings())))
    assert complete(nobody, "groups get ") == []  # no user: nothing asked, nothing prompted


# ---------------------------------------------------------------------------------------- history


def _fill(path: Path, n: int) -> None:
    history = FileHistory(str(path))
    for i in range(n):
        history.store_string(f"cmd {i}" if i % 7 else f"multi\nline {i}")


def _entries(path: Path) -> list[str]:
    return list(reversed(list(FileHistory(str(path)).load_history_strings())))


def test_trim_history_keeps_the_newest_entries(tmp_path: Path) -> None:
    path = tmp_path / "client-history"
    _fill(path, HISTORY_LIMIT + 25)
    before = _entries(path)
    _trim_history(path)
    after = _entries(path)
    assert len(after) == HISTORY_LIMIT and after == before[-HISTORY_LIMIT:]
    assert after[-1] == f"cmd {HISTORY_LIMIT + 24}" and "multi\nline 1001" in after
    FileHistory(str(path)).store_string("after the trim")  # appending still works
    assert _entries(path)[-2:] == [f"cmd {HISTORY_LIMIT + 24}", "after the trim"]


def test_trim_history_leaves_a_short_or_missing_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "client-history"
    _trim_history(path)
    assert not path.exists()
    _fill(path, 10)
    text = path.read_text()
    _trim_history(path)
    assert path.read_text() == text
