"""Task resources end to end: a `mito coordinator` process, a `mito worker` process and the real
``mito client`` CLI (SQLite and PostgreSQL).

An attachment uploaded with the CLI and the result artifact of an earlier task are fetched into
``MITO_RESOURCE_DIR`` before the task runs; the task's own command checks their bytes, so its exit
status says whether the right bytes arrived at the right paths. A task whose attachment does not
exist ends with ``ResourceNotFound`` and the worker goes on with the next task.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.clientcli import client_argv, client_env
from tests.support.cluster import WorkerPool, create_group, setup_user, sh, submit, wait_task
from tests.support.coordinator import LiveCoordinator
from tests.support.databases import Names

pytestmark = pytest.mark.e2e


def cli(coord: LiveCoordinator, home: Path, *args: str, as_json: bool = True) -> Any:
    """Run ``mito client ...`` with the token in ``home/cred`` (a login would rotate the user's key
    and log the worker out); with ``--json`` (before the ``--`` of a command), return its JSON."""
    cut = args.index("--") if "--" in args else len(args)
    argv = [*client_argv(), "-c", coord.url, "--credential-path", str(home / "cred")]
    proc = subprocess.run(
        [*argv, *args[:cut], *(["--json"] if as_json else []), *args[cut:]],
        env=client_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout) if as_json else proc.stdout


def test_attachment_and_artifact_resources_reach_the_task(
    coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path, names: Names
) -> None:
    user, lab = names("alice"), names("lab")
    token, client = setup_user(coord, user)
    create_group(client, lab)
    pool.start_workers(coord, user, token, groups=[lab])
    home = tmp_path / "cli"
    home.mkdir()
    (home / "cred").write_text(f"{user}:{token}")

    payload = os.urandom(200_000)
    source = tmp_path / "input.bin"
    source.write_bytes(payload)
    out = cli(coord, home, "groups", "attachments", "upload", "-g", lab, str(source), "data/", as_json=False)
    assert out.startswith(f"Uploaded attachment data/input.bin in group {lab} ")
    meta = cli(coord, home, "groups", "attachments", "get", "-g", lab, "data/input.bin")
    assert meta["size"] == len(payload)

    producer = submit(client, lab, sh('printf "made by A\\n" > "$MITO_RESULT_DIR/out.txt"'))
    done = wait_task(client, producer, pool=pool)["info"]
    assert done["state"] == "Finished" and done["result"] == {"exit_status": 0, "msg": None}

    def consumer(sha: str) -> str:
        check = (
            f'echo "{sha}  $MITO_RESOURCE_DIR/in/input.bin" | sha256sum -c - '
            '&& test "$(tar -xzOf "$MITO_RESOURCE_DIR/prev/result.tar.gz" result/out.txt)" = "made by A"'
        )
        submitted = cli(
            coord, home, "tasks", "submit", "-g", lab,
            "-r", "attachment=data/input.bin:in/input.bin",
            "-r", f"artifact={producer}:result:prev/result.tar.gz",
            "--", "sh", "-c", check,
        )  # fmt: skip
        return str(submitted["uuid"])

    good = consumer(hashlib.sha256(payload).hexdigest())
    info = wait_task(client, good, pool=pool)["info"]
    assert [r["local_path"] for r in info["spec"]["resources"]] == ["in/input.bin", "prev/result.tar.gz"]
    assert info["state"] == "Finished" and info["result"] == {"exit_status": 0, "msg": None}, info
    # The same check against other bytes fails: the exit status above really came from the check.
    bad = consumer(hashlib.sha256(payload + b"x").hexdigest())
    info = wait_task(client, bad, pool=pool)["info"]
    assert info["state"] == "Finished" and info["result"]["msg"] is None
    assert info["result"]["exit_status"] != 0
    client.close()


def test_missing_attachment_ends_the_task_and_the_worker_goes_on(
    coord: LiveCoordinator, pool: WorkerPool, names: Names
) -> None:
    user, lab = names("bob"), names("lab")
    token, client = setup_user(coord, user)
    create_group(client, lab)
    [worker] = pool.start_workers(coord, user, token, groups=[lab])

    missing = {"remote_file": {"Attachment": {"key": "never/uploaded.bin"}}, "local_path": "x.bin"}
    lost = submit(client, lab, ["true"], resources=[missing])
    info = wait_task(client, lost, pool=pool)["info"]
    assert info["result"] == {"exit_status": 0, "msg": "ResourceNotFound"}, info
    assert info["state"] == "Cancelled"  # Cancel + Commit, as 0.6.8 (behavior.md, "resource 404")
    first_reporter = info["reporter_uuid"]

    after = submit(client, lab, sh('test -d "$MITO_RESOURCE_DIR" && ! test -e "$MITO_RESOURCE_DIR/x.bin"'))
    info = wait_task(client, after, pool=pool)["info"]
    assert info["state"] == "Finished" and info["result"] == {"exit_status": 0, "msg": None}, info
    # Both ran on that one worker: the failed fetch did not stop or unregister it.
    assert worker.alive() and first_reporter == info["reporter_uuid"] == worker.worker_uuid()
    client.close()
