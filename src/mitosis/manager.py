"""Local worker processes started by ``mito manager`` (behavior.md §6.14), tracked by pid file.

0.6.8 found its workers with ``ps``/``pkill -f "mito worker"``, which also hit workers it never
started (another user's, another terminal's). We record each spawned worker's pid and start time in
``<user cache dir>/mitosis/manager/workers.json`` and act only on those: a recorded pid whose process
has a different start time was reused by the system and is treated as dead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from mitosis.config import user_cache_dir

WORKER_MODULE = "mitosis.cli.worker"


def pid_file() -> Path:
    return user_cache_dir() / "manager" / "workers.json"


@dataclass(frozen=True)
class SpawnedWorker:
    pid: int
    create_time: float
    argv: list[str]

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            # psutil rounds differently from one read to the next; a reused pid differs by far more.
            same: bool = abs(float(proc.create_time()) - self.create_time) < 1.0
            return same and str(proc.status()) != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def load_records(path: Path | None = None) -> list[SpawnedWorker]:
    path = path or pid_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return []
    return [SpawnedWorker(int(d["pid"]), float(d["create_time"]), list(d["argv"])) for d in data]


def save_records(records: Sequence[SpawnedWorker], path: Path | None = None) -> None:
    path = path or pid_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".workers.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump([asdict(r) for r in records], fh)
    os.replace(tmp, path)


def spawn_one(worker_argv: Sequence[str]) -> SpawnedWorker:
    """Start one detached worker (own session, output discarded) and return its record."""
    argv = [sys.executable, "-m", WORKER_MODULE, *worker_argv]
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    env.setdefault("MITO_FILE_LOG_LEVEL", "info")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        created = 0.0  # already gone: recorded as dead
    return SpawnedWorker(proc.pid, created, argv)


def record_spawned(new: Sequence[SpawnedWorker], path: Path | None = None) -> None:
    """Add freshly spawned workers; forget records of workers that are gone."""
    records = [r for r in load_records(path) if r.alive()]
    save_records([*records, *new], path)


def status(path: Path | None = None) -> list[tuple[SpawnedWorker, bool]]:
    return [(r, r.alive()) for r in load_records(path)]


def kill(path: Path | None = None) -> int:
    """SIGTERM every recorded worker still alive (a graceful stop); return how many were signalled."""
    signalled = 0
    for record in load_records(path):
        if record.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGTERM)
                signalled += 1
    save_records([], path)
    return signalled
