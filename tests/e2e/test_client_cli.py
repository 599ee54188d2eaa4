"""The real ``mito client`` CLI, as a subprocess, against a live coordinator (SQLite and PostgreSQL).

No worker runs, so submitted tasks stay Ready and can be changed and cancelled.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mitosis.client import AuthExpiredError, MitoClient
from tests.e2e.clientcli import client_argv, client_env
from tests.support import databases
from tests.support.coordinator import LiveCoordinator, coordinator_process

pytestmark = pytest.mark.e2e


class Cli:
    def __init__(self, coord: LiveCoordinator, home: Path, user: str, password: str) -> None:
        self.coord = coord
        self.home = home
        self.base = [
            *client_argv(),
            "-c",
            coord.url,
            "--credential-path",
            str(home / "cred"),
            "-u",
            user,
            "-p",
            password,
        ]
        self.env = client_env(home)

    def run(self, *args: str, ok: bool = True, auth: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [*self.base, *args] if auth else [*client_argv(), "-c", self.coord.url, *args]
        proc = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        if ok:
            assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            assert "Traceback" not in proc.stderr
        return proc

    def json(self, *args: str) -> Any:
        """Run with ``--json`` (placed before a ``--`` so it is not taken as part of a command)."""
        cut = args.index("--") if "--" in args else len(args)
        return json.loads(self.run(*args[:cut], "--json", *args[cut:]).stdout)


@pytest.fixture
def admin(live_coordinator: LiveCoordinator, tmp_path: Path) -> Cli:
    return Cli(
        live_coordinator, tmp_path / "admin", live_coordinator.admin_user, live_coordinator.admin_password
    )


def test_login_auth_and_credentials(admin: Cli, live_coordinator: LiveCoordinator) -> None:
    out = admin.run("auth").stdout
    assert out.strip() == live_coordinator.admin_user
    cred = (admin.home / "cred").read_text()
    assert cred.startswith(f"{live_coordinator.admin_user}:")
    assert admin.json("auth") == {"username": live_coordinator.admin_user}
    # A stored valid token is reused: no password needed any more.
    proc = subprocess.run(
        [*client_argv(), "-c", live_coordinator.url, "--credential-path", str(admin.home / "cred"), "auth"],
        env=admin.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == live_coordinator.admin_user
    out = admin.run("login", live_coordinator.admin_user, live_coordinator.admin_password, "--retain").stdout
    assert f"Logged in as {live_coordinator.admin_user}" in out


def test_users_groups_and_tasks(admin: Cli, live_coordinator: LiveCoordinator, tmp_path: Path) -> None:
    assert "User alice created" in admin.run("admin", "users", "create", "alice", "alice-pw").stdout
    dup = admin.run("admin", "users", "create", "alice", "alice-pw", ok=False)
    assert dup.returncode == 5 and dup.stderr.startswith("error: ") and "Traceback" not in dup.stderr
    admin.run("admin", "users", "create", "bob", "bob-pw")

    alice = Cli(live_coordinator, tmp_path / "alice", "alice", "alice-pw")
    assert "Group lab created" in alice.run("groups", "create", "lab").stdout
    alice.run("groups", "update-user", "lab", "bob:write")
    group = alice.json("groups", "get", "lab")
    assert group["group_name"] == "lab"
    assert group["users_in_group"] == {"alice": "Admin", "bob": "Write"}
    table = alice.run("groups", "get", "lab").stdout
    assert "lab" in table and "bob" in table and "Write" in table
    assert alice.json("users", "groups")["groups"] == {"alice": "Admin", "lab": "Admin"}
    alice.run("groups", "remove-user", "lab", "bob")
    assert "bob" not in alice.json("groups", "get", "lab")["users_in_group"]
    # A plain 403 (not a quota): exit 3 and one line, no login hint (logging in again would not help).
    bob = Cli(live_coordinator, tmp_path / "bob", "bob", "bob-pw")
    for args in (("groups", "get", "lab"), ("tasks", "submit", "-g", "lab", "--", "true")):
        denied = bob.run(*args, ok=False)
        assert denied.returncode == 3, denied
        assert denied.stderr.startswith("error: Authentication error: Permission denied")
        assert len(denied.stderr.splitlines()) == 1 and denied.stdout == ""

    out = alice.run(
        "tasks",
        "submit",
        "-g",
        "lab",
        "-t",
        "gpu",
        "-l",
        "exp1,sweep",
        "--timeout",
        "5min",
        "-p",
        "3",
        "-e",
        "A=1",
        "--",
        "echo",
        "hello world",
    ).stdout
    assert out.startswith("Task submitted with id 1 in group lab and a global uuid ")
    uuid = out.strip().rsplit(" ", 1)[1]

    task = alice.json("tasks", "get", uuid)
    info = task["info"]
    assert info["state"] == "Ready" and info["group_name"] == "lab" and info["priority"] == 3
    assert info["spec"]["args"] == ["echo", "hello world"] and info["spec"]["envs"] == {"A": "1"}
    assert info["timeout"] == 300 and sorted(info["labels"]) == ["exp1", "sweep"] and info["tags"] == ["gpu"]
    human = alice.run("tasks", "get", uuid).stdout
    assert uuid in human and "Ready" in human and "echo hello world" in human
    assert "timeout" in human and "5m" in human
    as_yaml = yaml.safe_load(alice.run("tasks", "get", uuid, "--output", "yaml").stdout)
    assert as_yaml == task

    assert alice.run("tasks", "query", "-g", "lab").stdout.split() == [uuid]
    assert alice.run("tasks", "query", "-g", "lab", "--count").stdout.strip() == "1"
    queried = alice.json("tasks", "query", "-g", "lab", "-s", "ready", "-l", "exp1")
    assert [t["uuid"] for t in queried["tasks"]] == [uuid]
    assert alice.json("tasks", "query", "-g", "lab", "-s", "finished")["tasks"] == []
    assert uuid in alice.run("tasks", "query", "-g", "lab", "-v").stdout

    alice.run("tasks", "change", uuid, "-p", "7", "--timeout", "1h", "--", "sleep", "1")
    info = alice.json("tasks", "get", uuid)["info"]
    assert info["priority"] == 7 and info["timeout"] == 3600 and info["spec"]["args"] == ["sleep", "1"]
    alice.run("tasks", "update-labels", uuid, "final")
    assert alice.json("tasks", "get", uuid)["info"]["labels"] == ["final"]

    assert f"Task {uuid} cancelled" in alice.run("tasks", "cancel", uuid).stdout
    assert alice.json("tasks", "get", uuid)["info"]["state"] == "Cancelled"
    again = alice.run("tasks", "cancel", uuid, ok=False)
    assert again.returncode == 4 and "not found" in again.stderr

    waited = alice.run("tasks", "wait", uuid, ok=False)
    assert waited.returncode == 1 and "Cancelled" in waited.stdout


def test_cancel_many_after_a_single_cancel(admin: Cli) -> None:
    """A task submitted after another was cancelled (archived) gets a fresh id and can be batch-cancelled."""
    first = admin.json("tasks", "submit", "--", "true")
    admin.run("tasks", "cancel", first["uuid"])
    second = admin.json("tasks", "submit", "-l", "batch", "--", "true")
    assert second["task_id"] != first["task_id"]
    many = admin.json("tasks", "cancel-many", "-l", "batch")
    assert many["cancelled_count"] == 1
    assert admin.json("tasks", "get", second["uuid"])["info"]["state"] == "Cancelled"
    listed = admin.json("tasks", "cancel-list", second["uuid"])
    assert listed["cancelled_count"] == 0 and listed["failed_uuids"] == [second["uuid"]]


def test_expected_errors_have_codes_and_no_traceback(
    admin: Cli, live_coordinator: LiveCoordinator, tmp_path: Path
) -> None:
    missing = admin.run("tasks", "get", "67e55044-10b1-426f-9247-bb680e5fe0c8", ok=False)
    assert missing.returncode == 4 and missing.stderr.startswith("error: ")
    wrong = Cli(live_coordinator, tmp_path / "wrong", live_coordinator.admin_user, "bad-password")
    denied = wrong.run("auth", ok=False)
    assert denied.returncode == 3 and "mito client login" in denied.stderr
    offline = subprocess.run(
        [
            *client_argv(),
            "-c",
            "http://127.0.0.1:9",
            "--credential-path",
            str(tmp_path / "c"),
            "-u",
            "x",
            "-p",
            "y",
            "auth",
        ],
        env=admin.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert offline.returncode == 7 and "error: Fail to connect to http://127.0.0.1:9" in offline.stderr
    nouser = subprocess.run(
        [*client_argv(), "-c", live_coordinator.url, "--credential-path", str(tmp_path / "none"), "auth"],
        env=admin.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert nouser.returncode == 2 and "-u/--user" in nouser.stderr
    bad_uuid = admin.run("tasks", "get", "nope", ok=False)
    assert bad_uuid.returncode == 2
    huge = admin.run("tasks", "submit", "-p", "99999999999999999999", "--", "echo", ok=False)
    assert huge.returncode == 2 and "Traceback" not in huge.stderr
    assert "Invalid value for '-p' / '--priority'" in huge.stderr and huge.stdout == ""
    assert admin.run("tasks", "query", "--count").stdout.strip() == "0"
    bad_url = admin.run("-c", "http://[bad", "auth", ok=False)
    assert bad_url.returncode == 2 and bad_url.stderr.startswith("error: invalid coordinator URL")


def test_quota_exceeded_is_exit_6_with_one_line(
    admin: Cli, live_coordinator: LiveCoordinator, tmp_path: Path
) -> None:
    admin.run("admin", "users", "create", "bob", "bob-pw")
    out = admin.run("admin", "users", "group-quota", "bob", "=0").stdout
    assert out.strip() == "Group quota of bob is now 0"
    bob = Cli(live_coordinator, tmp_path / "bob", "bob", "bob-pw")
    refused = bob.run("groups", "create", "bobs-lab", ok=False)
    assert refused.returncode == 6, refused
    assert refused.stdout == "" and "Traceback" not in refused.stderr
    error, hint = refused.stderr.splitlines()
    assert error.startswith("error: Resource quota exceeded: ") and "0 groups" in error
    assert hint.startswith("hint: ask an admin to raise the quota")
    assert bob.json("users", "groups")["groups"] == {"bob": "Admin"}


def test_an_expired_session_names_the_login_to_run(tmp_path: Path) -> None:
    """Tokens that live 3 s: once bob's stored token has expired, commands say how to log in again
    (exit 3); with the password at hand the client logs in again by itself."""
    with coordinator_process(
        tmp_path / "coord", databases.sqlite_url(tmp_path), "--access-token-expires-in", "3s"
    ) as coord:
        coord.create_user("bob", "bob-pw")
        bob = Cli(coord, tmp_path / "bob", "bob", "bob-pw")
        assert bob.run("login", "bob", "bob-pw").stdout.strip() == "Logged in as bob"
        stored = (bob.home / "cred").read_text().partition(":")[2]
        time.sleep(4)

        for args in (["auth"], ["tasks", "query"]):
            expired = bob.run("--credential-path", str(bob.home / "cred"), *args, ok=False, auth=False)
            assert expired.returncode == 3, expired
            assert expired.stderr == "error: your session for bob expired: run `mito client login bob`\n"
            assert expired.stdout == ""
        with MitoClient(coord.url, stored, username="bob") as sdk, pytest.raises(AuthExpiredError) as info:
            sdk.my_groups()
        assert info.value.username == "bob" and info.value.status == 401

        # -u/-p given: the expired token is replaced by a fresh login, without a word.
        assert bob.run("auth").stdout.strip() == "bob"
        assert (bob.home / "cred").read_text().partition(":")[2] != stored


def test_watch_prints_json_lines_as_tasks_change(admin: Cli) -> None:
    submitted = admin.json("tasks", "submit", "-l", "watched", "--", "sleep", "60")
    uuid = submitted["uuid"]
    once = admin.json("tasks", "watch", "-l", "watched", "--once")
    assert [t["uuid"] for t in once["tasks"]] == [uuid] and once["tasks"][0]["state"] == "Ready"

    proc = subprocess.Popen(
        [*admin.base, "tasks", "watch", "-l", "watched", "--json"],
        env=admin.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines_out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for text in proc.stdout:
            lines_out.put(text)

    def next_record() -> Any:
        return json.loads(lines_out.get(timeout=30))  # queue.Empty: the record never came

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        first = next_record()
        assert first["uuid"] == uuid and first["state"] == "Ready" and first["result"] is None
        assert first["labels"] == ["watched"] and first["command"] == "sleep 60"
        # Submitted after the watch began: one matching task joins it, one other does not.
        other = admin.json("tasks", "submit", "-l", "unwatched", "--", "sleep", "60")["uuid"]
        late = admin.json("tasks", "submit", "-l", "watched", "--", "sleep", "61")["uuid"]
        joined = next_record()
        assert joined["uuid"] == late and joined["state"] == "Ready" and joined["command"] == "sleep 61"
        admin.run("tasks", "cancel", other)
        admin.run("tasks", "cancel", uuid)
        admin.run("tasks", "cancel", late)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.stderr is not None
    err = proc.stderr.read()
    lines = [json.loads(lines_out.get_nowait()) for _ in range(lines_out.qsize())]
    assert proc.returncode == 0, err
    assert lines and other not in {line["uuid"] for line in lines}
    ends = {line["uuid"]: line for line in lines if line["state"] == "Cancelled"}
    assert set(ends) == {uuid, late} and lines[-1]["uuid"] == late
    assert all(end["result"] is not None and end["updated_at"] for end in ends.values())
