"""Integration fixtures shared by the API suites: one live coordinator per module and database.

Table-driven suites make hundreds of small requests; starting a coordinator per test would dominate
their run time, so these suites share one coordinator per module (on SQLite and on PostgreSQL) and
keep their cases independent by giving every case its own users and groups (``Names``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import databases
from tests.support.coordinator import LiveCoordinator, inprocess_coordinator
from tests.support.databases import Names


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_coordinator(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveCoordinator]:
    """A real coordinator shared by the tests of one module, on each database."""
    tmp = tmp_path_factory.mktemp(f"coord-{request.param}")
    with (
        databases.fresh_database(request.param, tmp) as url,
        inprocess_coordinator(tmp / "coord", url) as coord,
    ):
        yield coord


@pytest.fixture(scope="module")
def names() -> Names:
    return Names()
