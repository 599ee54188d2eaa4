"""Faults on the worker side, with real `mito worker` processes and real shell tasks (issue 8).

Each test ends by checking that no process carrying the test's marker survives (``psutil``).
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import databases
from tests.support.cluster import (
    WorkerPool,
    create_group,
    get_task,
    processes_mentioning,
    setup_user,
    sh,
    submit,
    wait_for,
    wait_state,
    wait_task,
)
from tests.support.coordinator import LiveCoordinator, coordinator_process

pytestmark = pytest.mark.e2e


def marker() -> str:
    return f"{random.randint(300, 899)}.{random.randint(10**8, 10**9 - 1)}"


@pytest.fixture
def coord(tmp_path: Path) -> Iterator[LiveCoordinator]:
    """Reaps silent workers after 3 s; its timeout backstop (grace 30 s) stays behind the worker's."""
    data = tmp_path / "coord"
    data.mkdir()
    config = data / "faults.toml"
    config.write_text('[coordinator]\nreaper_interval = "500ms"\ntask_timeout_grace = "30s"\n')
    with coordinator_process(
        data, databases.sqlite_url(tmp_path), "--config", str(config), "--heartbeat-timeout", "3s"
    ) as c:
        yield c


def test_worker_sigkilled_mid_task(coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path) -> None:
    token, alice = setup_user(coord, "alice")
    create_group(alice, "lab")
    [first] = pool.start_workers(coord, "alice", token, groups=["lab"])
    mark = marker()
    started, done = tmp_path / "started", tmp_path / "done"
    uuid = submit(alice, "lab", sh(f"echo x >> {started}; sleep {mark} & wait; echo x >> {done}"))
    wait_for(lambda: processes_mentioning(mark), 20, "the task to start")
    first.kill()
    # The watchdog kills the orphaned task at once: nothing keeps running for the dead worker.
    wait_for(lambda: not processes_mentioning(mark), 5, "the orphaned task to be killed")
    # After the heartbeat timeout the task is re-queued (at-least-once) and runs on another worker.
    [second] = pool.start_workers(coord, "alice", token, groups=["lab"])
    wait_for(lambda: started.exists() and len(started.read_text().split()) == 2, 30, "the second run")
    info = get_task(alice, uuid)["info"]
    assert info["state"] == "Running"
    r = alice.delete(f"/tasks/{uuid}")  # end the sleeper
    assert r.status_code == 200, r.text
    info = wait_task(alice, uuid, pool=pool)["info"]
    assert info["reporter_uuid"] == second.worker_uuid()
    assert not done.exists()
    wait_for(lambda: not processes_mentioning(mark), 5, "no leftover")
    alice.close()


def test_task_ignoring_sigterm_is_killed_after_the_grace(
    coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path
) -> None:
    token, alice = setup_user(coord, "alice")
    create_group(alice, "lab")
    pool.start_workers(coord, "alice", token, groups=["lab"])
    mark = marker()
    uuid = submit(alice, "lab", sh(f"trap '' TERM; sleep {mark} & wait; wait"), timeout="1s")
    wait_for(lambda: processes_mentioning(mark), 20, "the task to start")
    t0 = time.monotonic()
    info = wait_task(alice, uuid, timeout=30, pool=pool)["info"]
    elapsed = time.monotonic() - t0
    assert info["state"] == "Cancelled"
    assert info["result"] == {"exit_status": 9, "msg": "ExecTimeout"}  # SIGTERM ignored → SIGKILL
    assert 8 < elapsed < 20, elapsed  # the 10 s grace after SIGTERM
    wait_for(lambda: not processes_mentioning(mark), 5, "the sleeper to be gone")
    alice.close()
    print(f"RESULT sigterm-ignored killed_after_s={elapsed:.1f} exit_status=9")


def test_task_forking_100_children_leaves_no_orphan(
    coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path
) -> None:
    token, alice = setup_user(coord, "alice")
    create_group(alice, "lab")
    pool.start_workers(coord, "alice", token, groups=["lab"])
    mark = marker()
    forked = tmp_path / "forked"
    script = f"for i in $(seq 100); do sleep {mark} & done; ps -eo args | grep -c 'sleep {mark}' > {forked}"
    uuid = submit(alice, "lab", sh(script))
    info = wait_task(alice, uuid, pool=pool)["info"]
    assert info["result"] == {"exit_status": 0, "msg": None}
    assert int(forked.read_text()) >= 100, "the children were not running when the task exited"
    wait_for(lambda: not processes_mentioning(mark), 5, "the 100 children to be gone")
    alice.close()


def test_disk_full_while_packing(coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path) -> None:
    """The worker's disk is a 2 MiB tmpfs: the task's 1.5 MiB output fits, its archive does not."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=False)
    if mounted.returncode != 0:
        pytest.fail("cannot mount a tmpfs (this test needs root)")
    try:
        token, alice = setup_user(coord, "alice")
        create_group(alice, "lab")
        [worker] = pool.start_workers(
            coord, "alice", token, groups=["lab"], extra=["--work-dir", str(disk / "work")]
        )
        uuid = submit(
            alice, "lab", sh('head -c 1500000 /dev/urandom > "$MITO_RESULT_DIR/big.bin"; echo written')
        )
        info = wait_task(alice, uuid, pool=pool)["info"]
        assert info["state"] == "Finished"
        assert info["result"] == {"exit_status": 0, "msg": "UploadResultTimeout"}
        assert "No space left on device" in worker.log_text()
        assert worker.alive()
        # The disk is freed after the commit, and the worker carries on.
        after = submit(alice, "lab", sh("true"))
        assert wait_task(alice, after, pool=pool)["info"]["result"] == {"exit_status": 0, "msg": None}
        alice.close()
    finally:
        pool.close()
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_network_cut_longer_than_heartbeat_timeout(
    coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path
) -> None:
    """SIGSTOP the worker past the heartbeat timeout: the task is re-queued and run elsewhere; the old
    worker, resumed, is told 401 and exits; its late report is ignored (one result, by the new one)."""
    token, alice = setup_user(coord, "alice")
    create_group(alice, "lab")
    [old] = pool.start_workers(coord, "alice", token, groups=["lab"])
    started, done = tmp_path / "started", tmp_path / "done"
    uuid = submit(alice, "lab", sh(f'echo x >> {started}; sleep 2; echo "$MITO_TASK_UUID" >> {done}'))
    wait_for(started.exists, 20, "the task to start")
    old.proc.send_signal(signal.SIGSTOP)
    try:
        # Re-queued by the reaper after 3 s of silence.
        wait_state(alice, uuid, "Ready", timeout=20)
        [new] = pool.start_workers(coord, "alice", token, groups=["lab"])
        info = wait_task(alice, uuid, timeout=30, pool=pool)["info"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            old.proc.send_signal(signal.SIGCONT)
    assert info["reporter_uuid"] == new.worker_uuid()
    assert old.proc.wait(timeout=30) == 0
    assert "forced this worker to exit" in old.log_text()
    time.sleep(1.0)
    final = get_task(alice, uuid)["info"]
    assert final == info, "the resumed worker changed the committed result"
    assert final["result"] == {"exit_status": 0, "msg": None}
    assert len(started.read_text().split()) == 2  # at-least-once: the body ran on both workers
    alice.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_mid_task_exits_0_unregisters_and_requeues_the_task(
    coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path, sig: signal.Signals
) -> None:
    """A stop while a task runs (behavior.md §6.7, runner.py): the task is killed at once, nothing is
    reported, the worker unregisters (which re-queues the task) and exits 0."""
    token, alice = setup_user(coord, "alice")
    create_group(alice, "lab")
    [worker] = pool.start_workers(coord, "alice", token, groups=["lab"])
    worker_uuid = worker.worker_uuid()
    mark = marker()
    nap = f"2.{random.randint(10**8, 10**9 - 1)}"  # `sleep 2`, recognisable among processes
    started, done = tmp_path / "started", tmp_path / "done"
    script = f": {mark}; echo x >> {started}; sleep {nap}; echo done >> {done}"
    uuid = submit(alice, "lab", sh(script))
    wait_for(lambda: processes_mentioning(nap), 20, "the task to start")
    assert get_task(alice, uuid)["info"]["state"] == "Running"

    t0 = time.monotonic()
    worker.proc.send_signal(sig)
    assert worker.proc.wait(timeout=15) == 0, worker.log_text()
    assert time.monotonic() - t0 < 10
    # The task's whole process group went with it: its last line can never run.
    assert not processes_mentioning(mark) and not processes_mentioning(nap)
    assert f"task {uuid} abandoned: the worker is stopping" in worker.log_text()
    info = get_task(alice, uuid)["info"]
    assert info["state"] == "Ready"
    assert info["result"] is None and info["reporter_uuid"] is None
    r = alice.get(f"/workers/{worker_uuid}")
    assert r.status_code == 404, r.text
    r = alice.post("/workers/query", json={"group_name": "lab"})
    assert r.status_code == 200 and r.json()["workers"] == [], r.text

    # Re-queued at once (no heartbeat timeout involved), it runs to the end on the next worker.
    [second] = pool.start_workers(coord, "alice", token, groups=["lab"])
    info = wait_task(alice, uuid, pool=pool)["info"]
    assert info["state"] == "Finished"
    assert info["result"] == {"exit_status": 0, "msg": None}
    assert info["reporter_uuid"] == second.worker_uuid()
    assert len(started.read_text().split()) == 2
    assert done.read_text() == "done\n"
    alice.close()
