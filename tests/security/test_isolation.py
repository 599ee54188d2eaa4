"""Task isolation on a worker host (issue 8), with a real coordinator, a real worker and real tasks:
per-task directories are 0700, a task's ``envs`` cannot override ``MITO_*``, and the optional
per-task resource limits are applied and enforced."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import databases
from tests.support.cluster import WorkerPool, create_group, setup_user, sh, submit, wait_task, worker_pool
from tests.support.coordinator import LiveCoordinator, coordinator_process

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveCoordinator, WorkerPool, Path]]:
    tmp = tmp_path_factory.mktemp("iso")
    with (
        coordinator_process(tmp / "coord", databases.sqlite_url(tmp)) as coord,
        worker_pool(tmp / "workers") as pool,
    ):
        token, alice = setup_user(coord, "alice")
        create_group(alice, "lab")
        alice.close()
        pool.start_workers(coord, "alice", token, 2, groups=["lab"], polling_interval="300ms")
        coord.extra["token"] = token
        yield coord, pool, tmp


def _run(
    world: tuple[LiveCoordinator, WorkerPool, Path], args: list[str], **spec: object
) -> dict[str, object]:
    coord, pool, _ = world
    with coord.client(str(coord.extra["token"])) as c:
        uuid = submit(c, "lab", args, **spec)
        return dict(wait_task(c, uuid, timeout=60, pool=pool)["info"])


def test_task_directories_are_private(world: tuple[LiveCoordinator, WorkerPool, Path]) -> None:
    out = world[2] / "modes.txt"
    script = (
        'd=$(dirname "$MITO_RESULT_DIR"); '
        f'stat -c "%a %n" "$d" "$MITO_RESULT_DIR" "$MITO_EXEC_DIR" "$MITO_RESOURCE_DIR" "$(dirname "$d")" > {out}'
    )
    info = _run(world, sh(script))
    assert info["result"] == {"exit_status": 0, "msg": None}
    modes = [line.split()[0] for line in out.read_text().splitlines()]
    assert modes == ["700"] * 5, out.read_text()


def test_mito_variables_cannot_be_overridden(world: tuple[LiveCoordinator, WorkerPool, Path]) -> None:
    out = world[2] / "env.json"
    evil = {
        "MITO_RESULT_DIR": "/tmp/evil",
        "MITO_EXEC_DIR": "/tmp/evil",
        "MITO_TASK_UUID": "00000000-0000-0000-0000-000000000000",
        "MITO_UPSTREAM_TASK_UUID": "evil",
        "MITO_NEW_TASK": "/tmp/evil.json",
        "OTHER": "kept",
    }
    code = f"import json, os; json.dump({{k: v for k, v in os.environ.items()}}, open({str(out)!r}, 'w'))"
    info = _run(world, ["python3", "-c", code], envs=evil)
    assert info["result"] == {"exit_status": 0, "msg": None}
    env = json.loads(out.read_text())
    assert env["OTHER"] == "kept"
    assert env["MITO_TASK_UUID"] == info["uuid"]
    for key in ("MITO_RESULT_DIR", "MITO_EXEC_DIR", "MITO_NEW_TASK"):
        assert "evil" not in env[key] and info["uuid"] in env[key], (key, env[key])
    assert "MITO_UPSTREAM_TASK_UUID" not in env


LIMITS = {"cpu_seconds": 2, "memory_bytes": 256 << 20, "open_files": 32, "processes": 64}


def test_limits_are_applied(world: tuple[LiveCoordinator, WorkerPool, Path]) -> None:
    out = world[2] / "limits.txt"
    info = _run(world, sh(f"cat /proc/self/limits > {out}"), limits=LIMITS)
    assert info["result"] == {"exit_status": 0, "msg": None}
    rows = {line[:26].strip(): line[26:].split() for line in out.read_text().splitlines()[1:]}
    assert rows["Max cpu time"][:2] == ["2", "2"]
    assert rows["Max address space"][:2] == [str(256 << 20)] * 2
    assert rows["Max open files"][:2] == ["32", "32"]
    assert rows["Max processes"][:2] == ["64", "64"]


def test_open_files_limit_enforced(world: tuple[LiveCoordinator, WorkerPool, Path]) -> None:
    code = "import os\nfor i in range(100): os.open('/dev/null', os.O_RDONLY)"
    info = _run(world, ["python3", "-c", code], limits={"open_files": 32})
    assert info["result"]["exit_status"] == 1 << 8, info  # type: ignore[index]  # OSError: EMFILE
    assert _run(world, ["python3", "-c", code])["result"]["exit_status"] == 0  # type: ignore[index]


def test_memory_limit_enforced(world: tuple[LiveCoordinator, WorkerPool, Path]) -> None:
    code = "b = bytearray(512 << 20)"
    info = _run(world, ["python3", "-c", code], limits={"memory_bytes": 256 << 20})
    assert info["result"]["exit_status"] == 1 << 8, info  # type: ignore[index]  # MemoryError
    assert _run(world, ["python3", "-c", code])["result"]["exit_status"] == 0  # type: ignore[index]


def test_cpu_limit_enforced(world: tuple[LiveCoordinator, WorkerPool, Path]) -> None:
    info = _run(world, sh("while :; do :; done"), limits={"cpu_seconds": 1}, timeout="30s")
    # Soft = hard limit: the kernel sends SIGXCPU (24) or SIGKILL (9); the raw status is the signal.
    assert info["result"] in ({"exit_status": 24, "msg": None}, {"exit_status": 9, "msg": None}), info
    assert info["state"] == "Finished"


def test_process_limit_enforced(world: tuple[LiveCoordinator, WorkerPool, Path]) -> None:
    # RLIMIT_NPROC does not bind root (CAP_SYS_RESOURCE): the task drops to `nobody` first when the
    # worker runs as root, as a worker run by an ordinary user already is.
    fork = "n=0; for i in $(seq 100); do sleep 3 & n=$((n+1)); done; wait"
    drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
    info = _run(world, [*drop, "sh", "-c", fork], limits={"processes": 16})
    assert info["result"]["exit_status"] != 0, info  # type: ignore[index]  # sh: fork: Resource unavailable
    info = _run(world, [*drop, "sh", "-c", fork])
    assert info["result"]["exit_status"] == 0, info  # type: ignore[index]
