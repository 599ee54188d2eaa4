"""Browser test fixtures: Debian's Chromium driven by Playwright, a coordinator and a real worker.

Chromium comes from Debian (``apt-get install chromium``; never ``playwright install``). The
coordinator runs in-process on SQLite; the worker is a real ``mito worker`` process of user alice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect, sync_playwright

from tests.support import databases
from tests.support.coordinator import ADMIN_PASSWORD, ADMIN_USER, LiveCoordinator, inprocess_coordinator

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
T = TypeVar("T")
PASSWORDS = {"alice": "alice-pw-1", "bob": "bob-pw-1", "wes": "wes-pw-1", ADMIN_USER: ADMIN_PASSWORD}


def _ensure_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], check=True, env=env
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    _ensure_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _off_loop(func: Callable[..., T], *args: Any) -> T:
    """Run a helper that calls ``asyncio.run`` on another thread: Playwright's sync API keeps an
    event loop running on this one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(func, *args).result()


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def coord(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveCoordinator]:
    """One coordinator per database kind, shared by the tests of a module."""
    base = tmp_path_factory.mktemp("ui")
    db_url = (
        _off_loop(databases.create_pg_database) if request.param == "postgres" else databases.sqlite_url(base)
    )
    try:
        with inprocess_coordinator(base / "coord", db_url) as c:
            c.create_user("alice", PASSWORDS["alice"])
            c.create_user("bob", PASSWORDS["bob"])
            c.create_user("wes", PASSWORDS["wes"])
            yield c
    finally:
        if request.param == "postgres":
            _off_loop(databases.drop_pg_database, db_url)


def _mito() -> str:
    found = shutil.which("mito", path=str(Path(sys.executable).parent))
    assert found, "the mito entry point is not installed in this environment (pip install -e .)"
    return found


@contextmanager
def running_worker(
    coord: LiveCoordinator, home: Path, username: str, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``mito worker`` of ``username`` polling every second; ``extra``: more CLI options.

    Yields once the worker has registered (in ``username``'s own group, or the first of ``-g``)."""
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "NO_COLOR": "1",
    }
    cmd = [
        _mito(),
        "worker",
        "-c",
        coord.url,
        "-u",
        username,
        "-p",
        PASSWORDS[username],
        "--polling-interval",
        "1s",
        "--heartbeat-interval",
        "5s",
        "--work-dir",
        str(home / "work"),
        *extra,
    ]
    log = (home / "worker.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        # The worker signs in as its user, which renews that user's token signature (0.6.8 login
        # semantics): wait for its registration so the browser sessions opened later stay valid.
        _wait_registered(coord, proc, home / "worker.log", username)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def worker(
    coord: LiveCoordinator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``mito worker`` of alice, serving alice's group, polling every second."""
    with running_worker(coord, tmp_path_factory.mktemp("worker"), "alice") as proc:
        yield proc


def _wait_registered(coord: LiveCoordinator, proc: subprocess.Popen[bytes], log: Path, group: str) -> None:
    deadline = time.monotonic() + 30
    with coord.admin() as api:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"mito worker exited with {proc.returncode}: {log.read_text()[-2000:]}")
            r = api.post("/workers/query", json={"group_name": group, "count": True})
            if r.status_code == 200 and r.json()["count"] > 0:
                return
            time.sleep(0.2)
    raise TimeoutError(f"mito worker did not register within 30 s: {log.read_text()[-2000:]}")


def db_kind(request: pytest.FixtureRequest) -> str:
    """The database the test's coordinator uses (``postgres``/``sqlite``), or ``""`` without one."""
    callspec = getattr(request.node, "callspec", None)
    return str(callspec.params.get("coord", "")) if callspec is not None else ""


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Callable[[Page, str], None]:
    """``shots(page, "07-workers")`` → ``test-output/screenshots/07-workers-<db>.png``: one file
    per database, so the PostgreSQL and SQLite runs do not overwrite each other."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    suffix = f"-{db_kind(request)}" if db_kind(request) else ""

    def take(page: Page, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}{suffix}.png"), full_page=True)

    return take


def login(page: Page, base: str, username: str, password: str | None = None) -> None:
    page.goto(f"{base}/ui/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password or PASSWORDS[username])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Tasks")


@pytest.fixture
def session_for(browser: Browser, coord: LiveCoordinator) -> Iterator[Callable[..., Page]]:
    """``session_for("alice")`` → a page of a fresh browser context, signed in as alice."""
    contexts: list[BrowserContext] = []

    def make(username: str, *, viewport: ViewportSize | None = None, password: str | None = None) -> Page:
        context = browser.new_context(
            viewport=viewport or {"width": 1280, "height": 900}, accept_downloads=True
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        login(page, coord.url, username, password)
        return page

    yield make
    for context in contexts:
        context.close()
