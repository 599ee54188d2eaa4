"""``mito client groups attachments ...`` as a subprocess against a live coordinator (SQLite and
PostgreSQL): 0.6.8's key conventions (default key, trailing ``/``, ``-s GROUP/KEY``), ``-o`` as a
file or a directory, queries, batch downloads with their summary, deletes and the errors users see.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from mitosis.coordinator.db.engine import make_engine
from mitosis.coordinator.db.tables import attachments
from tests.e2e.clientcli import client_argv, client_env
from tests.support.cluster import create_group
from tests.support.coordinator import LiveCoordinator

pytestmark = pytest.mark.e2e


class Cli:
    def __init__(self, coord: LiveCoordinator, home: Path, user: str, password: str) -> None:
        self.home = home
        self.cwd = home / "cwd"
        self.cwd.mkdir(parents=True)
        self.base = [*client_argv(), "-c", coord.url, "--credential-path", str(home / "cred"), "-u", user]
        self.env = {**client_env(home), "MITO_PASSWORD": password}

    def run(self, *args: str, rc: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.base, "groups", "attachments", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == rc, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


@pytest.fixture
def alice(live_coordinator: LiveCoordinator, tmp_path: Path) -> Cli:
    """alice, with her own group and the group ``lab`` she administers."""
    token = live_coordinator.create_user("alice", "alice-pw")
    with live_coordinator.client(token) as c:
        create_group(c, "lab")
    return Cli(live_coordinator, tmp_path / "alice", "alice", "alice-pw")


def age_attachments(db_url: str) -> None:
    """Make every attachment two hours old, past the one-hour delete protection."""

    async def run() -> None:
        engine = make_engine(db_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    update(attachments).values(updated_at=datetime.now(UTC) - timedelta(hours=2))
                )
        finally:
            await engine.dispose()

    asyncio.run(run())


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_upload_keys_get_query_and_download(alice: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    report = src / "report.txt"
    report.write_bytes(b"first report\n")
    data = src / "data.bin"
    data.write_bytes(os.urandom(3000))

    out = alice.run("upload", str(report)).stdout
    assert out == "Uploaded attachment report.txt in group alice (13 B)\n"  # key: the file name
    out = alice.run("upload", str(data), "runs/").stdout
    assert out.startswith("Uploaded attachment runs/data.bin in group alice ")  # trailing / + file name
    out = alice.run("upload", "-s", str(data), "lab/inputs/").stdout
    assert out.startswith("Uploaded attachment inputs/data.bin in group lab ")
    out = alice.run("upload", "-s", str(report), "lab").stdout
    assert out.startswith("Uploaded attachment report.txt in group lab ")  # GROUP alone: the file name
    report.write_bytes(b"second, longer report\n")
    out = alice.run("upload", str(report), "report.txt").stdout
    assert out == "Replaced attachment report.txt in group alice (22 B)\n"

    meta = alice.json("get", "runs/data.bin")
    assert meta["size"] == 3000 and set(meta) == {"content_type", "size", "created_at", "updated_at"}
    assert alice.json("get", "-s", "lab/inputs/data.bin")["size"] == 3000
    assert alice.json("get", "-g", "lab", "report.txt")["size"] == 13
    human = alice.run("get", "report.txt").stdout
    assert "report.txt" in human and "22 B" in human

    mine = alice.json("query")
    assert mine["group_name"] == "alice" and mine["count"] == 2
    assert [(a["key"], a["size"]) for a in mine["attachments"]] == [
        ("report.txt", 22),
        ("runs/data.bin", 3000),
    ]
    assert [a["key"] for a in alice.json("query", "-g", "lab")["attachments"]] == [
        "inputs/data.bin",
        "report.txt",
    ]
    assert alice.run("query", "-g", "lab", "-k", "inputs/", "--count").stdout == "1\n"
    assert alice.run("query", "-k", "runs/", "--count").stdout == "1\n"
    assert alice.run("query", "-k", "nothing-like-this", "--count").stdout == "0\n"
    table = alice.run("query", "-g", "lab").stdout
    assert "2 attachment(s) in group lab" in table and "inputs/data.bin" in table

    # -o DIR/ (created): the key's path under it; -o FILE: exactly there; -s: the key's last component.
    out = alice.run("download", "report.txt", "-o", "dl/").stdout
    assert out == "Downloaded alice/report.txt to dl/report.txt\n"
    alice.run("download", "runs/data.bin", "-o", "dl/")
    alice.run("download", "-s", "lab/inputs/data.bin", "-o", "fromlab/")
    alice.run("download", "-g", "lab", "report.txt", "-o", "lab-report.txt")
    alice.run("download", "runs/data.bin")  # no -o: the key's path in the current directory
    assert files_under(alice.cwd) == {
        "dl/report.txt": b"second, longer report\n",
        "dl/runs/data.bin": data.read_bytes(),
        "fromlab/data.bin": data.read_bytes(),
        "lab-report.txt": b"first report\n",
        "runs/data.bin": data.read_bytes(),
    }

    missing = alice.run("download", "nope.txt", "-o", "missing/", rc=4)
    assert missing.stderr == "error: Attachment of group alice and key nope.txt not found\n"
    assert missing.stdout == "" and not (alice.cwd / "missing").exists()
    missing = alice.run("get", "-s", "lab/nope.txt", rc=4)
    assert missing.stderr == "error: Attachment of group lab and key nope.txt not found\n"


def test_download_many_summary_and_delete(alice: Cli, tmp_path: Path, db_url: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    contents = {"batch/a.txt": b"aaa\n", "batch/b.txt": b"bbbbbb\n", "other/c.txt": b"c\n"}
    for key, payload in contents.items():
        path = src / key.replace("/", "_")
        path.write_bytes(payload)
        alice.run("upload", str(path), key)

    done = alice.run("download-many", "-k", "batch/", "-o", "many", "--concurrent", "2")
    assert done.stderr == "downloaded 2 of 2 file(s), 11 B\n"
    assert files_under(alice.cwd) == {"many/a.txt": b"aaa\n", "many/b.txt": b"bbbbbb\n"}

    # A directory where one file should go: that download fails, the other is kept, the summary
    # names the failure and the exit code says something went wrong.
    (alice.cwd / "partly" / "b.txt").mkdir(parents=True)
    partly = alice.run("download-many", "-k", "batch/", "-o", "partly", rc=1)
    lines = partly.stderr.splitlines()
    assert lines[0] == "downloaded 1 of 2 file(s), 4 B", partly.stderr
    assert lines[1].startswith(f"  failed: batch/b.txt -> partly{os.sep}b.txt: ")
    assert lines[-1] == "error: 1 of 2 download(s) failed"
    assert (alice.cwd / "partly" / "a.txt").read_bytes() == b"aaa\n"

    recent = alice.run("delete", "batch/a.txt", rc=1)
    assert recent.stderr == (
        "error: Process request error: Cannot delete attachment that has been updated in the last hour\n"
    )
    age_attachments(db_url)
    assert alice.run("delete", "batch/a.txt").stdout == "Deleted attachment batch/a.txt of group alice\n"
    assert alice.run("delete", "-s", "alice/other/c.txt").stdout == (
        "Deleted attachment other/c.txt of group alice\n"
    )
    alice.run("get", "batch/a.txt", rc=4)
    assert [a["key"] for a in alice.json("query")["attachments"]] == ["batch/b.txt"]
    gone = alice.run("delete", "batch/a.txt", rc=4)
    assert gone.stderr == "error: Attachment of group alice and key batch/a.txt not found\n"
