"""Shared fixtures: databases (SQLite and PostgreSQL), live coordinators, SeaweedFS.

Tests that need PostgreSQL or S3 run against the real servers. When PostgreSQL is unreachable the
run fails (never skips) unless MITO_TEST_ALLOW_NO_PG=1 is set for a quick local run without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import databases
from tests.support.coordinator import LiveCoordinator, inprocess_coordinator


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind."""
    with databases.fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with databases.fresh_database("postgres", tmp_path) as url:
        yield url


@pytest.fixture
def live_coordinator(db_url: str, tmp_path: Path) -> Iterator[LiveCoordinator]:
    """A real coordinator (in-process uvicorn on 127.0.0.1) on SQLite and on PostgreSQL."""
    with inprocess_coordinator(tmp_path / "coord", db_url) as coord:
        yield coord


@pytest.fixture
def sqlite_coordinator(tmp_path: Path) -> Iterator[LiveCoordinator]:
    with inprocess_coordinator(tmp_path / "coord", databases.sqlite_url(tmp_path)) as coord:
        yield coord


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") is not None or databases._template_ready:
        databases.drop_template()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each file on one xdist worker (module-scoped servers) unless a test names its group.

    Run with ``--dist loadgroup``: tests sharing a fixed external resource (the Redis ACL users of
    0.6.8 have fixed names) carry ``xdist_group("redis_acl")`` and so never run in parallel.
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
        item.user_properties.append((_KINDS_PROPERTY, sorted(kinds_of(item))))


_KINDS_PROPERTY = "mitosis_servers"
_KINDS = ("PostgreSQL", "SQLite", "S3 (SeaweedFS)", "Redis", "browser (Chromium)", "real processes (e2e)")
_MARK_KINDS = {
    "postgres": "PostgreSQL",
    "s3": "S3 (SeaweedFS)",
    "redis": "Redis",
    "e2e": "real processes (e2e)",
}
_PATH_KINDS = {
    "tests/browser/": "browser (Chromium)",
    "tests/e2e/": "real processes (e2e)",
    "tests/reliability/": "real processes (e2e)",
}


def kinds_of(item: pytest.Item) -> set[str]:
    """The real servers a test runs against: from its markers (``s3``, ``redis``, ...), its database
    parameter ("sqlite" / "postgres", at any fixture level) and its directory — never its name."""
    kinds = {kind for mark, kind in _MARK_KINDS.items() if item.get_closest_marker(mark) is not None}
    kinds |= {kind for prefix, kind in _PATH_KINDS.items() if item.nodeid.startswith(prefix)}
    callspec = getattr(item, "callspec", None)
    params = {v for v in callspec.params.values() if isinstance(v, str)} if callspec is not None else set()
    fixtures = set(getattr(item, "fixturenames", ()))
    if "postgres" in params or "pg_url" in fixtures:
        kinds.add("PostgreSQL")
    if "sqlite" in params or "sqlite_coordinator" in fixtures:
        kinds.add("SQLite")
    return kinds


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One line saying what ran against which real servers."""
    passed = [r for r in terminalreporter.stats.get("passed", []) if r.when == "call"]
    failed = len(terminalreporter.stats.get("failed", []))
    skipped = len(terminalreporter.stats.get("skipped", []))
    # The kinds travel as a user property so that xdist's controller, which collects nothing, sees them.
    ran = [set().union(*(v for k, v in r.user_properties if k == _KINDS_PROPERTY)) for r in passed]
    parts = [f"{kind}: {sum(kind in kinds for kinds in ran)}" for kind in _KINDS]
    terminalreporter.write_line(
        f"mitosis summary: {len(passed)} passed, {failed} failed, {skipped} skipped; " + ", ".join(parts)
    )
