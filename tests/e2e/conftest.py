"""Fixtures of the end-to-end tests: one `mito coordinator` process per module and database, and a
pool of `mito worker` processes per test.

Starting a coordinator process costs seconds, so the tests of a module share one (on SQLite and on
PostgreSQL) and stay independent by using their own users and groups (``names``): a worker always
serves only the groups of the test that started it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import databases
from tests.support.cluster import WorkerPool, fast_coordinator, worker_pool
from tests.support.coordinator import LiveCoordinator
from tests.support.databases import Names


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def coord(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveCoordinator]:
    """A coordinator process reaping workers silent for 4 s, shared by the tests of a module."""
    tmp = tmp_path_factory.mktemp(f"coord-{request.param}")
    with databases.fresh_database(request.param, tmp) as url, fast_coordinator(tmp / "coord", url) as c:
        yield c


@pytest.fixture(scope="module")
def names() -> Names:
    return Names()


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerPool]:
    """Worker processes; all stopped (and their leftover task processes killed) at teardown."""
    with worker_pool(tmp_path / "workers") as p:
        yield p
