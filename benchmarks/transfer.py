"""Attachment upload and download throughput, fs backend vs S3 backend, as a ratio to ``cp``.

Reproduce (prints one JSON document on stdout; progress on stderr)::

    .venv/bin/python -m benchmarks.transfer --size 1GiB            # the issue-4 measurement
    .venv/bin/python -m benchmarks.transfer --size 64MiB --reps 1  # a quick check
    .venv/bin/python -m benchmarks.transfer --size 256MiB --backends fs

One file of ``--size`` random bytes is generated once into a temporary directory (``--tmp-dir``,
default the system temp dir, so on this disk) and then moved, ``--reps`` times each:

* ``baseline``: ``cp`` of the file on the same disk, ``cp`` followed by an fsync of the copy (the fs
  store fsyncs every object before renaming it into place), and ``cat file > /dev/null`` for reads;
* ``fs``: a ``mito coordinator`` process with the directory blob store. The coordinator is on the
  data path: the client PUTs to and GETs from its signed ``/blobs/...`` URLs;
* ``s3``: a ``mito coordinator`` process with ``--blob-store s3`` on a throwaway SeaweedFS
  (``weed mini``, the one the tests use). The coordinator only signs URLs; the bytes go from the
  client straight to SeaweedFS.

Transfers use the real SDK as a user would: ``MitoClient.upload_attachment_file`` (upload URL +
streamed PUT) and ``attachment_download_url`` + ``download_to`` (streamed GET through
``<path>.part``); both timings include the API call that hands out the URL. The downloaded file's
sha256 is checked against the source after each download (not timed), and the attachment is
deleted (admin route) after each repetition so the disk never holds more than a few copies.

During each transfer a thread samples the coordinator's RSS (its process and any children) every
50 ms with psutil; ``rss_before_mib`` is the sample just before a transfer, ``rss_peak_mib`` the
highest one during it (both: the largest over the repetitions). For ``s3`` the SeaweedFS process is not counted (it is the storage service).

MB/s are 10^6 bytes per second of the median repetition; ``ratio_to_cp`` divides a transfer's MB/s
by ``cp``'s. All files are written while the page cache is warm (the source was just written or
read), as ``cp`` and ``cat`` see it too. Everything listens on 127.0.0.1 and is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.common import ADMIN_PASSWORD, ADMIN_USER, MITO, free_port, log, machine_info
from mitosis.client.sdk import MitoClient
from mitosis.wire.codecs import format_size, parse_size

GEN_CHUNK = 16 << 20
HASH_CHUNK = 8 << 20
SAMPLE_SECONDS = 0.05
MIB = 1 << 20


# ------------------------------------------------------------------------------------------ helpers


def generate(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path`` (fsynced); return their sha256."""
    digest = hashlib.sha256()
    left = size
    with path.open("wb") as fh:
        while left:
            chunk = os.urandom(min(GEN_CHUNK, left))
            digest.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mb_per_s(size: int, seconds: float) -> float:
    return round(size / seconds / 1e6, 1)


class RssSampler:
    """Sample the RSS of a process tree every SAMPLE_SECONDS while the ``with`` block runs."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.before = self.sample()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        total = 0
        with contextlib.suppress(psutil.Error):
            total += self.proc.memory_info().rss
            for child in self.proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, self.sample())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.sample())


def timed(fn: Callable[..., object], *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def summarize(size: int, seconds: list[float], cp_mbps: float | None = None) -> dict[str, Any]:
    median = statistics.median(seconds)
    out: dict[str, Any] = {
        "seconds": [round(s, 3) for s in seconds],
        "median_seconds": round(median, 3),
        "mb_per_s": mb_per_s(size, median),
    }
    if cp_mbps:
        out["ratio_to_cp"] = round(out["mb_per_s"] / cp_mbps, 3)
    return out


# --------------------------------------------------------------------------------------- processes


@dataclass
class Coordinator:
    url: str
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def coordinator(data_dir: Path, *extra: str) -> Iterator[Coordinator]:
    """A `mito coordinator` process on SQLite in ``data_dir``, with ``extra`` flags (the blob store)."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [MITO, "coordinator", "--bind", f"127.0.0.1:{port}", "--data-dir", str(data_dir)]
    cmd += ["--db", f"sqlite:///{data_dir / 'mito.db'}"]
    cmd += ["--admin-user", ADMIN_USER, "--admin-password", ADMIN_PASSWORD, *extra]
    with (data_dir / "coordinator.log").open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"coordinator exited with {proc.returncode}; see {data_dir}/coordinator.log"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1, trust_env=False).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"coordinator at {url} not healthy after 60 s")
            time.sleep(0.05)
        yield Coordinator(url, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


@contextlib.contextmanager
def seaweed(data_dir: Path) -> Iterator[Any]:
    from tests.support.seaweed import start_seaweed

    server = start_seaweed(data_dir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# -------------------------------------------------------------------------------------- measuring


def baseline(src: Path, work: Path, size: int, reps: int) -> dict[str, Any]:
    cp_s, cp_sync_s, cat_s = [], [], []
    dst = work / "cp-copy"
    for _ in range(reps):
        cp_s.append(timed(lambda: subprocess.run(["cp", str(src), str(dst)], check=True)))
        dst.unlink()

        def cp_and_sync() -> None:
            subprocess.run(["cp", str(src), str(dst)], check=True)
            fsync_path(dst)

        cp_sync_s.append(timed(cp_and_sync))
        dst.unlink()
        cat_s.append(timed(lambda: subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)))
    cp = summarize(size, cp_s)
    return {
        "cp": cp,
        "cp_fsync": summarize(size, cp_sync_s, cp["mb_per_s"]),
        "cat_to_devnull": summarize(size, cat_s, cp["mb_per_s"]),
    }


def download(client: MitoClient, key: str, dst: Path) -> None:
    """What a user does: ask for a download URL, then stream it to disk."""
    client.download_to(client.attachment_download_url(ADMIN_USER, key).url, dst)


def run_backend(
    name: str, coord: Coordinator, src: Path, digest: str, work: Path, size: int, reps: int, cp_mbps: float
) -> dict[str, Any]:
    up_s: list[float] = []
    down_s: list[float] = []
    rss: dict[str, list[int]] = {
        "upload_before": [],
        "upload_peak": [],
        "download_before": [],
        "download_peak": [],
    }
    dst = work / f"{name}-download"
    # Generous timeouts: one streamed request carries the whole file.
    with MitoClient(coord.url, timeout=httpx.Timeout(600.0, connect=10.0)) as client:
        client.token = client.login(ADMIN_USER, ADMIN_PASSWORD)
        client.group_storage_quota(ADMIN_USER, "1TiB")
        for rep in range(reps):
            key = f"bench/{name}-{rep}.bin"
            with RssSampler(coord.proc.pid) as sampler:
                up_s.append(timed(client.upload_attachment_file, ADMIN_USER, key, src))
            rss["upload_before"].append(sampler.before)
            rss["upload_peak"].append(sampler.peak)
            stored = client.get_attachment(ADMIN_USER, key).size
            if stored != size:
                raise RuntimeError(f"{name}: stored size {stored} != {size}")

            with RssSampler(coord.proc.pid) as sampler:
                down_s.append(timed(download, client, key, dst))
            rss["download_before"].append(sampler.before)
            rss["download_peak"].append(sampler.peak)
            got = sha256_of(dst)
            if got != digest:
                raise RuntimeError(f"{name}: sha256 of the download {got} != source {digest}")
            dst.unlink()
            client.admin_delete_attachment(ADMIN_USER, key)
            log(
                f"{name} rep {rep}: upload {mb_per_s(size, up_s[-1])} MB/s, download {mb_per_s(size, down_s[-1])} MB/s"
            )
    result: dict[str, Any] = {
        "upload": summarize(size, up_s, cp_mbps),
        "download": summarize(size, down_s, cp_mbps),
        "sha256_verified": True,
    }
    for direction in ("upload", "download"):
        result[direction]["rss_before_mib"] = round(max(rss[f"{direction}_before"]) / MIB, 1)
        result[direction]["rss_peak_mib"] = round(max(rss[f"{direction}_peak"]) / MIB, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="1GiB", help="file size, e.g. 1GiB, 256MiB, 64MiB [default: 1GiB]")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per measurement [default: 3]")
    parser.add_argument("--backends", default="fs,s3", help="comma list of fs, s3 [default: fs,s3]")
    parser.add_argument(
        "--tmp-dir", type=Path, default=None, help="where the files go [default: system temp]"
    )
    args = parser.parse_args()
    size = parse_size(args.size)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"fs", "s3"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    root = Path(tempfile.mkdtemp(prefix="mito-bench-transfer-", dir=args.tmp_dir))
    free = shutil.disk_usage(root).free
    # Source, the fs store's object and its temp file, a download and a cp copy, with headroom.
    if free < 6 * size:
        shutil.rmtree(root, ignore_errors=True)
        sys.exit(f"not enough disk in {root.parent}: {format_size(free)} free, need {format_size(6 * size)}")
    try:
        src = root / "source.bin"
        log(f"generating {format_size(size)} of random bytes in {src}")
        digest = generate(src, size)
        report: dict[str, Any] = {
            "benchmark": "transfer",
            "size_bytes": size,
            "size": format_size(size),
            "reps": args.reps,
            "tmp_dir": str(root.parent),
            "machine": machine_info(),
        }
        log("baseline: cp, cp + fsync, cat > /dev/null")
        report["baseline"] = baseline(src, root, size, args.reps)
        cp_mbps = report["baseline"]["cp"]["mb_per_s"]
        if "fs" in backends:
            log("fs backend: coordinator on the data path")
            with coordinator(root / "coord-fs") as coord:
                report["fs"] = run_backend("fs", coord, src, digest, root, size, args.reps, cp_mbps)
            shutil.rmtree(root / "coord-fs", ignore_errors=True)
        if "s3" in backends:
            log("s3 backend: SeaweedFS, coordinator off the data path")
            with seaweed(root / "weed") as s3:
                flags = ["--blob-store", "s3", "--s3", s3.endpoint, "--s3-access-key", s3.access_key]
                flags += ["--s3-secret-key", s3.secret_key, "--s3-region", s3.region, "--s3-force-path-style"]
                with coordinator(root / "coord-s3", *flags) as coord:
                    report["s3"] = run_backend("s3", coord, src, digest, root, size, args.reps, cp_mbps)
            shutil.rmtree(root / "coord-s3", ignore_errors=True)
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
