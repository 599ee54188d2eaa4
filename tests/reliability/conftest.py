"""Fixtures of the fault tests: a pool of real `mito worker` processes, killed at teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import WorkerPool, worker_pool


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerPool]:
    with worker_pool(tmp_path / "workers") as p:
        yield p
