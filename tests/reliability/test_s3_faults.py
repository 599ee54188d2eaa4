"""The S3 store failing under a worker's artifact upload (issue 8), with SeaweedFS as the store."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.services import restart_seaweed
from tests.support import databases
from tests.support.cluster import WorkerPool, create_group, setup_user, sh, submit, wait_for, wait_task
from tests.support.coordinator import LiveCoordinator, coordinator_process
from tests.support.seaweed import SeaweedS3, seaweed_server

pytestmark = [pytest.mark.e2e, pytest.mark.s3]


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[SeaweedS3]:
    with seaweed_server(tmp_path / "s3") as server:
        yield server


@pytest.fixture
def coord(tmp_path: Path, s3: SeaweedS3) -> Iterator[LiveCoordinator]:
    with coordinator_process(
        tmp_path / "coord", databases.sqlite_url(tmp_path),
        "--blob-store", "s3", "--s3", s3.endpoint, "--s3-access-key", s3.access_key,
        "--s3-secret-key", s3.secret_key, "--s3-region", s3.region, "--s3-force-path-style",
    ) as c:  # fmt: skip
        yield c


def _script(tmp_path: Path) -> list[str]:
    return sh(
        f'head -c 2000000 /dev/urandom > "$MITO_RESULT_DIR/r.bin"; cp "$MITO_RESULT_DIR/r.bin" {tmp_path}/copy; '
        f"touch {tmp_path}/ready; while [ ! -e {tmp_path}/go ]; do sleep 0.1; done"
    )


def test_s3_outage_during_upload(
    coord: LiveCoordinator, s3: SeaweedS3, pool: WorkerPool, tmp_path: Path
) -> None:
    token, alice = setup_user(coord, "alice")
    create_group(alice, "lab")
    [worker] = pool.start_workers(coord, "alice", token, groups=["lab"], polling_interval="1s")
    uuid = submit(alice, "lab", _script(tmp_path))
    wait_for((tmp_path / "ready").exists, 30, "the task to write its result")
    s3.stop()
    (tmp_path / "go").touch()
    wait_for(lambda: worker.log_text().count("retrying") >= 3, 30, "the worker to retry the upload")
    down = time.monotonic()
    restart_seaweed(s3)
    info = wait_task(alice, uuid, timeout=60, pool=pool)["info"]
    assert info["result"] == {"exit_status": 0, "msg": None}, pool.logs()
    r = alice.get(f"/tasks/{uuid}/download/artifacts/result")
    assert r.status_code == 200, r.text
    blob = httpx.get(r.json()["url"], timeout=30)
    assert blob.status_code == 200 and len(blob.content) > 1_900_000
    retries = worker.log_text().count("retrying")
    alice.close()
    print(f"RESULT s3-outage retries={retries} committed_after_restart_s={time.monotonic() - down:.1f}")
    assert hashlib.sha256((tmp_path / "copy").read_bytes()).hexdigest()  # the output existed


def test_s3_refusing_the_upload_ends_the_task_with_a_message(
    coord: LiveCoordinator, s3: SeaweedS3, pool: WorkerPool, tmp_path: Path
) -> None:
    """A permanent store failure is not retried for the whole upload phase: the store restarted with
    other credentials refuses every signed PUT (403), the task ends with ``UploadResultTimeout``
    (0.6.8's one message for results that did not reach the store), the worker says why in its log
    and runs its next task."""
    token, alice = setup_user(coord, "alice")
    create_group(alice, "lab")
    [worker] = pool.start_workers(coord, "alice", token, groups=["lab"], polling_interval="1s")
    uuid = submit(alice, "lab", _script(tmp_path))
    wait_for((tmp_path / "ready").exists, 30, "the task to write its result")
    s3.stop()
    s3.access_key, s3.secret_key = "rotatedkey", "rotatedsecret"  # the coordinator still signs with the old
    restart_seaweed(s3)
    started = time.monotonic()
    (tmp_path / "go").touch()
    info = wait_task(alice, uuid, timeout=60, pool=pool)["info"]
    took = time.monotonic() - started
    assert info["state"] == "Finished", info
    assert info["result"] == {"exit_status": 0, "msg": "UploadResultTimeout"}, pool.logs()
    log = worker.log_text()
    assert "result.tar.gz not uploaded" in log and "403" in log, log
    # Nothing was recorded as stored.
    r = alice.get(f"/tasks/{uuid}/download/artifacts/result")
    assert r.status_code == 404, r.text
    # The worker goes on: a task with nothing to upload runs and commits.
    nxt = submit(alice, "lab", ["true"])
    assert wait_task(alice, nxt, timeout=30, pool=pool)["info"]["result"] == {"exit_status": 0, "msg": None}
    alice.close()
    print(f"RESULT s3-permanent ended_after_s={took:.1f}")
