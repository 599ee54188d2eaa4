"""A 100 MiB result artifact end to end (issue 3): a real task writes random data into
``MITO_RESULT_DIR``, a real worker packs and uploads it, the test downloads and checks it.

* fs blob store: the bytes stream through the coordinator process (signed URLs to itself) in both
  directions, and its resident memory (psutil on its pid) grows by less than 20 MiB meanwhile;
* S3 blob store on a real SeaweedFS: the presigned URLs point at the S3 server, so the bytes never
  pass through the coordinator, whose memory stays flat as well.
"""

from __future__ import annotations

import hashlib
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.support.cluster import (
    WorkerPool,
    create_group,
    fast_coordinator,
    setup_user,
    sh,
    submit,
    wait_task,
)
from tests.support.coordinator import LiveCoordinator
from tests.support.databases import Names
from tests.support.seaweed import SeaweedS3, start_seaweed

pytestmark = pytest.mark.e2e

SIZE = 100 * 1024 * 1024
MAX_GROWTH = 20 * 1024 * 1024


class RssSampler:
    """Peak resident set size of one process, sampled every 20 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def download(client: httpx.Client, uuid: str, dest: Path) -> str:
    """Download the task's result artifact to ``dest``; returns the URL the bytes came from."""
    r = client.get(f"/tasks/{uuid}/download/artifacts/result")
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    with httpx.stream("GET", url, timeout=120) as resp, dest.open("wb") as out:
        assert resp.status_code == 200
        for chunk in resp.iter_bytes(1 << 20):
            out.write(chunk)
    assert dest.stat().st_size == r.json()["size"]
    return str(url)


def member_sha256(archive: Path, name: str) -> tuple[int, str]:
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            if member.name == name:
                f = tar.extractfile(member)
                assert f is not None
                digest = hashlib.sha256()
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                return member.size, digest.hexdigest()
    raise AssertionError(f"{name} not in {archive}")


def run_big_artifact(
    coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path, names: Names
) -> tuple[str, RssSampler]:
    user, lab = names("alice"), names("lab")
    token, alice = setup_user(coord, user)
    create_group(alice, lab)
    pool.start_workers(coord, user, token, groups=[lab])
    # Warm up every code path of an upload and a download before measuring.
    warm = submit(alice, lab, sh('echo warm > "$MITO_RESULT_DIR/w"'))
    wait_task(alice, warm, pool=pool)
    download(alice, warm, tmp_path / "warm.tar.gz")

    checksum = tmp_path / "sha256"
    script = (
        f'head -c {SIZE} /dev/urandom > "$MITO_RESULT_DIR/big.bin" && '
        f"sha256sum \"$MITO_RESULT_DIR/big.bin\" | cut -d' ' -f1 > {checksum}"
    )
    with RssSampler(coord.extra["proc"].pid) as sampler:
        uuid = submit(alice, lab, sh(script), timeout="5m")
        resp = wait_task(alice, uuid, timeout=120, pool=pool)
        info = resp["info"]
        assert info["state"] == "Finished" and info["result"] == {"exit_status": 0, "msg": None}
        [artifact] = [a for a in resp["artifacts"] if a["content_type"] == "result"]
        assert artifact["size"] > SIZE  # random data does not compress
        archive = tmp_path / "result.tar.gz"
        url = download(alice, uuid, archive)
    assert archive.stat().st_size == artifact["size"]
    assert member_sha256(archive, "result/big.bin") == (SIZE, checksum.read_text().strip())
    alice.close()
    return url, sampler


def test_large_artifact_through_fs_store(
    coord: LiveCoordinator, pool: WorkerPool, tmp_path: Path, names: Names
) -> None:
    url, sampler = run_big_artifact(coord, pool, tmp_path, names)
    assert urlsplit(url).netloc == urlsplit(coord.url).netloc  # the coordinator served the bytes
    assert sampler.growth < MAX_GROWTH, f"coordinator RSS grew by {sampler.growth / 2**20:.1f} MiB"
    blobs = [p for p in coord.data_dir.rglob("*") if p.is_file() and p.stat().st_size > SIZE]
    assert len(blobs) >= 1  # stored on disk by the fs blob store


@pytest.fixture
def seaweed(tmp_path: Path) -> Iterator[SeaweedS3]:
    server = start_seaweed(tmp_path / "weed")
    try:
        yield server
    finally:
        server.stop(timeout=3)  # a throwaway store: no need to wait for a clean flush


@pytest.mark.s3
@pytest.mark.postgres
def test_large_artifact_through_s3(
    seaweed: SeaweedS3, pg_url: str, pool: WorkerPool, tmp_path: Path, names: Names
) -> None:
    """The production pairing, PostgreSQL and S3 (the fs test above covers both databases)."""
    s3_args = [
        "--blob-store", "s3", "--s3", seaweed.endpoint, "--s3-access-key", seaweed.access_key,
        "--s3-secret-key", seaweed.secret_key, "--s3-region", seaweed.region, "--s3-force-path-style",
    ]  # fmt: skip
    with fast_coordinator(tmp_path / "coord", pg_url, *s3_args) as coord:
        url, sampler = run_big_artifact(coord, pool, tmp_path, names)
        pool.close()
    assert urlsplit(url).netloc == urlsplit(seaweed.endpoint).netloc  # straight from S3
    assert sampler.growth < MAX_GROWTH, f"coordinator RSS grew by {sampler.growth / 2**20:.1f} MiB"
    assert not [p for p in (tmp_path / "coord").rglob("*") if p.is_file() and p.stat().st_size > SIZE]
