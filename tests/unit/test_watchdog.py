"""The worker's watchdog: the slot it reads when the worker dies names the group to kill."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from mitosis.worker.watchdog import Watchdog


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def _worker_dies(dog: Watchdog) -> None:
    """What the watchdog sees when the worker is SIGKILLed: end-of-file without ``exit``."""
    assert dog._proc is not None and dog._proc.stdin is not None
    dog._proc.stdin.close()
    dog._proc.wait(timeout=10)


def _alive(proc: subprocess.Popen[bytes], seconds: float = 0.3) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return proc.poll() is None


def test_the_tracked_group_is_killed_when_the_worker_dies(sleeper: subprocess.Popen[bytes]) -> None:
    dog = Watchdog()
    dog.start()
    dog.track(sleeper.pid)
    _worker_dies(dog)
    assert sleeper.wait(timeout=5) == -9


def test_an_untracked_group_is_left_alone(sleeper: subprocess.Popen[bytes]) -> None:
    dog = Watchdog()
    dog.start()
    dog.track(sleeper.pid)
    dog.untrack()  # the task ended; its pid may belong to someone else by now
    _worker_dies(dog)
    assert _alive(sleeper)


def test_a_clean_stop_kills_nothing(sleeper: subprocess.Popen[bytes]) -> None:
    dog = Watchdog()
    dog.start()
    dog.track(sleeper.pid)
    dog.close()
    assert _alive(sleeper)


def test_the_latest_group_wins(sleeper: subprocess.Popen[bytes]) -> None:
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        dog = Watchdog()
        dog.start()
        dog.track(other.pid)
        dog.untrack()
        dog.track(sleeper.pid)
        _worker_dies(dog)
        assert sleeper.wait(timeout=5) == -9
        assert _alive(other)
    finally:
        other.kill()
        other.wait(timeout=10)
