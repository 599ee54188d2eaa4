"""The dashboard in a real browser: sign in, submit, watch a task finish live, download its
artifact, cancel a waiting task, and one user kept out of another user's group."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, ViewportSize, expect

from tests.browser.conftest import PASSWORDS, db_kind, login, running_worker
from tests.support.coordinator import ADMIN_PASSWORD, ADMIN_USER, LiveCoordinator, coordinator_process
from tests.support.databases import sqlite_url

pytestmark = pytest.mark.e2e

Shots = Callable[[Page, str], None]


def _submit(page: Page, base: str, command: str, *, tags: str = "", labels: str = "", group: str = "") -> str:
    page.goto(f"{base}/ui/tasks/new")
    page.get_by_label("Command").fill(command)
    if group:
        page.get_by_label("Group").fill(group)
    if tags:
        page.get_by_label("Tags").fill(tags)
    if labels:
        page.get_by_label("Labels").fill(labels)
    page.get_by_label("Capture terminal output").check()
    page.get_by_role("button", name="Submit", exact=True).click()
    page.wait_for_url(re.compile(r"/ui/tasks/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def test_login_page_and_redirect(browser: Browser, coord: LiveCoordinator, shots: Shots) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{coord.url}/ui/workers")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    shots(page, "01-login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    page.get_by_label("Password").fill("alice-pw-1")
    page.get_by_role("button", name="Sign in").click()
    # Back to the page that asked for the sign-in.
    expect(page).to_have_url(re.compile(r"/ui/workers$"))
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.goto(f"{coord.url}/ui/tasks")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    context.close()


def test_login_throttled_is_explained(browser: Browser, coord: LiveCoordinator) -> None:
    """After five failures for one name the API answers 429: the form says to wait, not "wrong"."""
    name = "mallory"  # no such user: the throttle counts names, existing or not
    for _ in range(5):
        page, status = _try_login(browser, coord.url, name, "guess")
        assert status == 401
        expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
        page.context.close()
    page, status = _try_login(browser, coord.url, name, "guess")
    assert status == 429
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Too many failed sign-ins")
    expect(alert).to_contain_text(re.compile(r"Try again in \d+ s"))
    expect(page.get_by_label("Username")).to_have_value(name)
    page.context.close()


def test_task_finishes_live_and_artifact_downloads(
    coord: LiveCoordinator,
    worker: subprocess.Popen[bytes],
    session_for: Callable[..., Page],
    shots: Shots,
    tmp_path: Path,
) -> None:
    page = session_for("alice")
    shots(page, "02-tasks-empty")
    command = (
        'sh -c \'mkdir -p "$MITO_RESULT_DIR" && echo 42 > "$MITO_RESULT_DIR/answer.txt" '
        "&& echo hello-from-mitosis && sleep 2 && exit 3'"
    )
    page.goto(f"{coord.url}/ui/tasks/new")
    shots(page, "03-submit")
    task_uuid = _submit(page, coord.url, command, labels="demo")
    # The task list, loaded once: the row must reach Finished with no reload of the page.
    page.goto(f"{coord.url}/ui/tasks")
    page.evaluate("window.__sameDocument = true")
    # Updates come from the event stream (live.js marks the trigger it uses; "poll" is the fallback).
    expect(page.locator("#task-rows")).to_have_attribute("data-live-mode", "sse")
    row = page.locator(f'tr[data-uuid="{task_uuid}"]')
    expect(row).to_be_visible()
    expect(row.locator(".badge")).to_have_text("Finished", timeout=60_000)
    expect(row).to_contain_text("exit 3", timeout=30_000)
    assert page.evaluate("window.__sameDocument === true"), "the list page was reloaded"
    expect(page.locator("#task-rows")).to_have_attribute("data-live-mode", "sse")
    assert int(page.locator("#task-rows").get_attribute("data-live-updates") or "0") >= 1
    shots(page, "04-tasks-finished")

    row.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(task_uuid))
    status = page.locator("#status")
    expect(status.locator("#exit-text")).to_have_text("exit 3")
    expect(status).to_contain_text("raw 768")
    link = status.get_by_role("link", name="result.tar.gz")
    expect(link).to_be_visible()
    expect(status.get_by_role("link", name="std-log.tar.gz")).to_be_visible()
    # The timeline comes from the recorded state changes, in order; "Ended" is the Finished change.
    steps = status.locator("#timeline li")
    expect(steps.nth(3)).to_have_attribute("data-kind", "finished")
    kinds = [steps.nth(i).get_attribute("data-kind") for i in range(steps.count())]
    assert kinds[:4] == ["created", "ready", "running", "finished"], kinds
    ended = status.locator("#ended-at time").get_attribute("datetime")
    assert ended and ended == steps.nth(3).locator("time").get_attribute("datetime")
    started = status.locator("#started-at time").get_attribute("datetime")
    assert started == steps.nth(2).locator("time").get_attribute("datetime")
    assert started is not None and started <= ended
    expect(status.locator("#run-time")).to_be_visible()
    shots(page, "05-task-detail")
    with page.expect_download() as info:
        link.click()
    saved = tmp_path / "result.tar.gz"
    info.value.save_as(saved)
    with tarfile.open(saved) as tar:
        names = tar.getnames()
        member = next(n for n in names if n.endswith("answer.txt"))
        extracted = tar.extractfile(member)
        assert extracted is not None and extracted.read().strip() == b"42"

    # The finished task's log, then its std-log artifact: the same bytes the command printed.
    log = page.locator("#log-text")
    expect(page.locator("#log")).to_have_attribute(
        "data-log-mode", re.compile("archived|ended"), timeout=20_000
    )
    expect(log).to_contain_text("hello-from-mitosis")
    with page.expect_download() as info:
        status.get_by_role("link", name="std-log.tar.gz").click()
    std_log = tmp_path / "std-log.tar.gz"
    info.value.save_as(std_log)
    streams = _tar_files(std_log.read_bytes())
    assert streams["stdout.log"] == b"hello-from-mitosis\n", streams
    assert streams.get("stderr.log", b"") == b""
    assert (log.text_content() or "").strip() == streams["stdout.log"].decode().strip()

    # Labels can be changed from the detail page; the edit is on the timeline and, a second or
    # more after the end, leaves the end time alone (the row's updated_at moves, "Ended" must not).
    page.wait_for_timeout(1100)
    page.get_by_label("Labels (comma separated)").fill("demo, checked")
    page.get_by_role("button", name="Save labels").click()
    expect(page.get_by_role("status")).to_contain_text("Labels saved")
    expect(page.locator(".chip", has_text="checked")).to_be_visible()
    expect(status.locator('#timeline li[data-kind="labels"]')).to_have_count(1)
    assert status.locator("#ended-at time").get_attribute("datetime") == ended
    expect(status.locator("#last-change")).to_have_count(0)


def _tar_files(data: bytes) -> dict[str, bytes]:
    """The regular files of a tar archive by base name."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isreg() else None
            if handle is not None:
                out[member.name.rsplit("/", 1)[-1]] = handle.read()
    return out


def test_cancel_waiting_task(coord: LiveCoordinator, session_for: Callable[..., Page], shots: Shots) -> None:
    page = session_for("alice")
    # No worker carries this tag, so the task waits in Ready.
    task_uuid = _submit(page, coord.url, "sleep 100", tags="no-such-machine")
    status = page.locator("#status")
    expect(status.locator(".badge")).to_have_text("Ready")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel task").click()
    expect(page.get_by_role("status")).to_contain_text("Cancel requested")
    expect(status.locator(".badge")).to_have_text("Cancelled")
    expect(status).to_contain_text("UserCancellation")
    expect(page.get_by_role("button", name="Cancel task")).to_have_count(0)
    cancelled = status.locator('#timeline li[data-kind="cancelled"]')
    expect(cancelled).to_contain_text("UserCancellation")
    expect(status.locator("#timeline li[data-kind=running]")).to_have_count(0)
    assert status.locator("#ended-at time").get_attribute("datetime") == cancelled.locator(
        "time"
    ).get_attribute("datetime")
    shots(page, "06-task-cancelled")
    page.goto(f"{coord.url}/ui/tasks?state=Cancelled")
    expect(page.locator(f'tr[data-uuid="{task_uuid}"]')).to_be_visible()


def test_workers_and_groups_pages(
    coord: LiveCoordinator, worker: subprocess.Popen[bytes], session_for: Callable[..., Page], shots: Shots
) -> None:
    page = session_for("alice")
    page.goto(f"{coord.url}/ui/workers")
    rows = page.locator("#worker-rows tr[data-worker]")
    expect(rows).to_have_count(1, timeout=30_000)
    expect(rows.first).to_contain_text("alice:Admin")
    # alice is Admin of her group and the worker is Admin there: she may stop it.
    expect(rows.first.get_by_role("button", name=re.compile("^Stop worker"))).to_have_count(2)
    shots(page, "07-workers")

    page.goto(f"{coord.url}/ui/groups")
    page.get_by_label("Name").fill("alice-team")
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/ui/groups/alice-team$"))
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Role").select_option("Read")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("bob is now Read in alice-team")
    expect(page.locator("table")).to_contain_text("bob")
    # alice is the only Admin: no Remove for her (the service refuses it), Remove for bob.
    expect(page.get_by_role("button", name="Remove bob")).to_have_count(1)
    expect(page.get_by_role("button", name="Remove alice")).to_have_count(0)
    expect(page.locator("tr", has_text="alice")).to_contain_text("last Admin")
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value") or ""
    refused = page.request.post(
        f"{coord.url}/ui/groups/alice-team/members/remove",
        form={"csrf_token": token, "username": "alice"},
        max_redirects=0,
    )
    assert refused.status == 303
    page.goto(f"{coord.url}/ui/groups/alice-team")
    expect(page.get_by_role("alert")).to_contain_text("must keep at least one Admin")
    expect(page.locator("tr", has_text="alice")).to_contain_text("Admin")
    shots(page, "08-group")
    page.goto(f"{coord.url}/ui/groups")
    shots(page, "09-groups")

    # bob, a Read member, sees the group but no management and no worker stop buttons.
    bob = session_for("bob")
    bob.goto(f"{coord.url}/ui/groups/alice-team")
    expect(bob.get_by_role("heading", level=1)).to_contain_text("alice-team")
    expect(bob.get_by_role("button", name=re.compile("^Remove"))).to_have_count(0)
    expect(bob.get_by_text("Add a member")).to_have_count(0)
    bob.goto(f"{coord.url}/ui/tasks/new")
    bob.get_by_label("Command").fill("true")
    bob.get_by_label("Group").fill("alice-team")
    bob.get_by_role("button", name="Submit", exact=True).click()
    expect(bob.get_by_role("alert")).to_contain_text("needs the Write role")


def test_second_user_cannot_see_first_users_group(
    coord: LiveCoordinator, session_for: Callable[..., Page], shots: Shots
) -> None:
    alice = session_for("alice")
    task_uuid = _submit(alice, coord.url, "echo private", tags="no-such-machine")

    bob = session_for("bob")
    own_uuid = _submit(bob, coord.url, "echo bobs-own", tags="no-such-machine")
    bob.goto(f"{coord.url}/ui/groups")
    expect(bob.get_by_role("link", name="bob", exact=True)).to_be_visible()
    expect(bob.get_by_role("link", name="alice", exact=True)).to_have_count(0)
    # bob's task list: his own task is listed, alice's is not, and alice's group is not offered.
    bob.goto(f"{coord.url}/ui/tasks")
    expect(bob.locator(f'tr[data-uuid="{own_uuid}"]')).to_be_visible()
    expect(bob.locator(f'tr[data-uuid="{task_uuid}"]')).to_have_count(0)
    expect(bob.locator("#task-rows")).not_to_contain_text("echo private")
    expect(bob.locator('datalist option[value="bob"]')).to_have_count(1)
    expect(bob.locator('datalist option[value="alice"]')).to_have_count(0)

    # Crafted URLs are refused by the same service code as the API.
    for path in (
        "/ui/groups/alice",
        f"/ui/tasks/{task_uuid}",
        f"/ui/tasks/{task_uuid}/artifacts/result",
        "/ui/tasks?group=alice",
        "/ui/workers?group=alice",
    ):
        response = bob.goto(f"{coord.url}{path}")
        assert response is not None and response.status in (400, 403), (path, response and response.status)
        expect(bob.get_by_role("alert")).to_be_visible()
        expect(bob.locator("body")).not_to_contain_text("echo private")
    bob.goto(f"{coord.url}/ui/groups/alice")
    expect(bob.get_by_role("heading", level=1)).to_have_text("Not allowed")
    shots(bob, "10-refused")
    # Not an admin: no Admin link, and the page itself refuses.
    expect(bob.get_by_role("link", name="Admin")).to_have_count(0)
    response = bob.goto(f"{coord.url}/ui/admin")
    assert response is not None and response.status == 403
    # bob's cancel attempt, crafted with his own valid CSRF token, is refused too.
    bob.goto(f"{coord.url}/ui/tasks")
    token = bob.locator('input[name="csrf_token"]').first.get_attribute("value")
    refused = bob.request.post(
        f"{coord.url}/ui/tasks/{task_uuid}/cancel", form={"csrf_token": token or ""}, max_redirects=0
    )
    assert refused.status == 303
    alice.goto(f"{coord.url}/ui/tasks/{task_uuid}")
    expect(alice.locator("#status .badge")).to_have_text("Ready")


def _try_login(browser: Browser, base: str, username: str, password: str) -> tuple[Page, int]:
    """Sign in through the form in a fresh context; the page and the status of the form's answer."""
    page = browser.new_context().new_page()
    page.goto(f"{base}/ui/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_response(lambda r: r.url.endswith("/ui/login") and r.request.method == "POST") as got:
        page.get_by_role("button", name="Sign in").click()
    return page, got.value.status


def test_admin_page(
    browser: Browser, coord: LiveCoordinator, session_for: Callable[..., Page], shots: Shots
) -> None:
    admin = session_for(ADMIN_USER)
    admin.get_by_role("link", name="Admin").click()
    expect(admin.get_by_role("heading", level=1)).to_have_text("Administration")
    admin.get_by_label("Username").fill("carol")
    admin.get_by_label("Password", exact=True).fill("carol-pw-1")
    admin.get_by_role("button", name="Create user").click()
    expect(admin.get_by_role("status")).to_contain_text("Created user carol")
    admin.get_by_role("button", name="Lock carol").click()
    expect(admin.locator('tr[data-user="carol"]')).to_contain_text("Locked")
    with httpx.Client(base_url=coord.url) as client:
        r = client.post("/login", json={"username": "carol", "md5_password": list(b"\0" * 16)})
        assert r.status_code in (401, 403)
    # A locked account is told so at sign-in, not "wrong password".
    locked, status = _try_login(browser, coord.url, "carol", "carol-pw-1")
    assert status == 403
    expect(locked.get_by_role("alert")).to_contain_text("This account is locked")
    locked.context.close()
    admin.get_by_role("button", name="Unlock carol").click()
    expect(admin.locator('tr[data-user="carol"]')).to_contain_text("Active")

    # The admin changes carol's password: the old one stops working, the new one signs her in.
    admin.locator("#pw-user").select_option("carol")
    admin.get_by_label("New password").fill("carol-pw-2")
    admin.get_by_role("button", name="Change password").click()
    expect(admin.get_by_role("status")).to_contain_text("Changed the password of carol")
    old, status = _try_login(browser, coord.url, "carol", "carol-pw-1")
    assert status == 401
    expect(old.get_by_role("alert")).to_contain_text("Wrong username or password")
    old.context.close()
    carol = browser.new_context().new_page()
    login(carol, coord.url, "carol", "carol-pw-2")
    expect(carol.locator(".who")).to_contain_text("carol")
    carol.context.close()

    admin.get_by_label("Storage quota").fill("1GiB")
    admin.locator("#sq-group").select_option("carol")
    admin.get_by_role("button", name="Set storage quota").click()
    expect(admin.get_by_role("status")).to_contain_text("Storage quota of carol is now 1 GiB")
    admin.get_by_label("How many groups they may create").fill("+2")
    admin.locator("#gq-user").select_option("carol")
    admin.get_by_role("button", name="Set group quota").click()
    expect(admin.get_by_role("status")).to_contain_text("carol may now create 10 groups")

    # A deleted account (DELETE /admin/users) shows no Lock/Unlock; a crafted form is refused.
    coord.create_user("dora", "dora-pw-1")
    with coord.admin() as api:
        assert api.delete("/admin/users/dora").json() == {"state": "Deleted"}
    admin.goto(f"{coord.url}/ui/admin")
    dora = admin.locator('tr[data-user="dora"]')
    expect(dora).to_contain_text("Deleted")
    expect(dora.get_by_role("button")).to_have_count(0)
    expect(admin.get_by_role("button", name="Lock carol")).to_have_count(1)
    token = admin.locator('input[name="csrf_token"]').first.get_attribute("value") or ""
    refused = admin.request.post(
        f"{coord.url}/ui/admin/users/dora/state",
        form={"csrf_token": token, "state": "Active"},
        max_redirects=0,
    )
    assert refused.status == 303
    admin.goto(f"{coord.url}/ui/admin")
    expect(admin.get_by_role("alert")).to_contain_text("dora is deleted")
    expect(admin.locator('tr[data-user="dora"]')).to_contain_text("Deleted")
    shots(admin, "11-admin")

    # Shutdown asks first. This coordinator serves the whole module: cancel the question and check
    # that nothing happened (test_admin_shutdown_ends_the_coordinator goes through with it).
    questions: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    admin.on("dialog", dismiss)
    admin.get_by_role("button", name="Shut down").click()  # no word typed: the form does not submit
    admin.get_by_label("to confirm").fill("shutdown")
    admin.get_by_role("button", name="Shut down").click()
    expect(admin.get_by_role("heading", level=1)).to_have_text("Administration")
    admin.wait_for_timeout(500)
    assert questions == ["Shut the coordinator down now?"]
    admin.remove_listener("dialog", dismiss)
    # Without the typed word the server refuses too.
    refused = admin.request.post(
        f"{coord.url}/ui/admin/shutdown", form={"csrf_token": token, "confirm": "yes"}, max_redirects=0
    )
    assert refused.status == 303
    admin.goto(f"{coord.url}/ui/admin")
    expect(admin.get_by_role("alert")).to_contain_text("type 'shutdown' to confirm")
    assert httpx.get(f"{coord.url}/health", timeout=5).status_code == 200


def test_admin_shutdown_ends_the_coordinator(browser: Browser, tmp_path: Path, shots: Shots) -> None:
    """A coordinator of this test only (a separate process: shutdown signals the process)."""
    with coordinator_process(tmp_path / "coord", sqlite_url(tmp_path)) as own:
        proc = own.extra["proc"]
        page = browser.new_context().new_page()
        page.set_default_timeout(15_000)
        login(page, own.url, ADMIN_USER, ADMIN_PASSWORD)
        page.goto(f"{own.url}/ui/admin")
        page.get_by_label("to confirm").fill("shutdown")
        questions: list[str] = []

        def accept(dialog: Dialog) -> None:
            questions.append(dialog.message)
            dialog.accept()

        page.once("dialog", accept)
        page.get_by_role("button", name="Shut down").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Coordinator shutting down")
        assert questions == ["Shut the coordinator down now?"]
        shots(page, "16-shutdown")
        # uvicorn drains, then re-raises the SIGTERM the shutdown route sent to its own process.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{own.url}/health", timeout=2)
        page.context.close()


PHONE: ViewportSize = {"width": 390, "height": 844}


def _no_sideways_scroll(page: Page, what: str) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert inner == PHONE["width"]
    assert width <= inner + 1, f"{what} scrolls sideways on a phone ({width}px > {inner}px)"


def test_phone_layout_and_keyboard(
    browser: Browser,
    coord: LiveCoordinator,
    worker: subprocess.Popen[bytes],
    session_for: Callable[..., Page],
    shots: Shots,
) -> None:
    page = session_for("alice", viewport=PHONE)
    task_uuid = _submit(
        page, coord.url, "echo phone-sized && echo and-some-more-output-to-wrap", labels="phone"
    )
    expect(page.locator("#status .badge")).to_have_text("Finished", timeout=60_000)
    pages = {
        "tasks": "/ui/tasks",
        "submit": "/ui/tasks/new",
        "task": f"/ui/tasks/{task_uuid}",
        "workers": "/ui/workers",
        "groups": "/ui/groups",
        "group": "/ui/groups/alice",
        "attachments": "/ui/groups/alice/attachments",
    }
    for name, path in pages.items():
        response = page.goto(f"{coord.url}{path}")
        assert response is not None and response.status == 200, (path, response and response.status)
        expect(page.locator("main h1")).to_be_visible()
        _no_sideways_scroll(page, path)
        shots(page, f"12-phone-{name}")
    admin = session_for(ADMIN_USER, viewport=PHONE)
    admin.goto(f"{coord.url}/ui/admin")
    expect(admin.get_by_role("heading", level=1)).to_have_text("Administration")
    _no_sideways_scroll(admin, "/ui/admin")
    shots(admin, "12-phone-admin")
    signed_out = browser.new_context(viewport=PHONE).new_page()
    signed_out.goto(f"{coord.url}/ui/login")
    expect(signed_out.get_by_role("heading", level=1)).to_have_text("Sign in")
    _no_sideways_scroll(signed_out, "/ui/login")
    shots(signed_out, "12-phone-login")
    signed_out.context.close()

    # Keyboard: the skip link comes first, then the main navigation.
    page.goto(f"{coord.url}/ui/tasks")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to content")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Tasks")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/tasks/new$"))
    page.get_by_label("Command").focus()
    page.keyboard.type("echo typed")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/tasks/[0-9a-f-]{36}$"))


def test_group_quota_hides_create(
    coord: LiveCoordinator, session_for: Callable[..., Page], request: pytest.FixtureRequest
) -> None:
    user = f"quota-{db_kind(request)}"
    PASSWORDS[user] = "quota-pw-1"
    coord.create_user(user, PASSWORDS[user])
    with coord.admin() as api:
        # A new user has created one group (their own): a quota of 1 leaves none to create.
        r = api.post(f"/admin/users/{user}/group-quota", json={"group_quota": "1"})
        assert r.status_code == 200 and r.json()["group_quota"] == 1
    page = session_for(user)
    page.goto(f"{coord.url}/ui/groups")
    card = page.locator("#create-group")
    expect(card).to_contain_text("all the groups your quota allows")
    expect(card.get_by_role("button", name="Create")).to_have_count(0)
    # The service refuses it as well.
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value") or ""
    refused = page.request.post(
        f"{coord.url}/ui/groups", form={"csrf_token": token, "group_name": f"{user}-x"}, max_redirects=0
    )
    assert refused.status == 403 and "Resource quota exceeded" in refused.text()
    page.goto(f"{coord.url}/ui/groups")
    expect(page.get_by_role("link", name=f"{user}-x")).to_have_count(0)
    with coord.admin() as api:
        assert api.post(f"/admin/users/{user}/group-quota", json={"group_quota": "+1"}).status_code == 200
    page.reload()
    expect(card).to_contain_text("You may create 1 more")
    page.get_by_label("Name").fill(f"{user}-x")
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(f"/ui/groups/{user}-x$"))


def test_worker_graceful_stop(
    coord: LiveCoordinator, session_for: Callable[..., Page], shots: Shots, tmp_path: Path
) -> None:
    """wes's worker serves wes (bob may read it) and wes-private (bob may not): bob sees the worker
    but neither its stop buttons nor a link to its current task; wes stops it gracefully."""
    with coord.client(coord.login("wes", PASSWORDS["wes"])) as api:
        if api.get("/groups/wes-private").status_code != 200:
            assert api.post("/groups", json={"group_name": "wes-private"}).status_code == 200
        r = api.put("/groups/wes/users", json={"relations": {"bob": "Read"}})
        assert r.status_code == 200, r.text
    with running_worker(coord, tmp_path, "wes", "-g", "wes:admin,wes-private:admin") as proc:
        wes = session_for("wes")
        task_uuid = _submit(wes, coord.url, "sleep 4", group="wes-private")
        expect(wes.locator("#status .badge")).to_have_text("Running", timeout=60_000)

        bob = session_for("bob")
        bob.goto(f"{coord.url}/ui/workers?group=wes")
        row = bob.locator("#worker-rows tr[data-worker]")
        expect(row).to_have_count(1)
        worker_id = row.get_attribute("data-worker") or ""
        current = row.locator('td[data-label="Current task"]')
        expect(current).to_have_text("running")
        expect(current.get_by_role("link")).to_have_count(0)
        expect(row.get_by_role("button")).to_have_count(0)
        token = bob.locator('input[name="csrf_token"]').first.get_attribute("value") or ""
        refused = bob.request.post(
            f"{coord.url}/ui/workers/{worker_id}/cancel",
            form={"csrf_token": token, "op": "Force"},
            max_redirects=0,
        )
        assert refused.status == 403 and "Permission denied" in refused.text()
        shots(bob, "17-workers-read-only")

        wes.goto(f"{coord.url}/ui/workers?group=wes")
        row = wes.locator(f'#worker-rows tr[data-worker="{worker_id}"]')
        expect(row.locator(".badge")).to_have_text("Normal")  # bob's attempt changed nothing
        expect(row.locator('td[data-label="Current task"] a')).to_have_attribute(
            "href", f"/ui/tasks/{task_uuid}"
        )
        questions: list[str] = []

        def accept(dialog: Dialog) -> None:
            questions.append(dialog.message)
            dialog.accept()

        wes.once("dialog", accept)
        row.get_by_role("button", name=re.compile("after its current task$")).click()
        expect(wes.get_by_role("status")).to_contain_text("will stop after its current task")
        assert questions == [f"Stop worker {worker_id[:8]}?"]
        expect(row.locator(".badge")).to_have_text("GracefulShutdown")
        shots(wes, "18-worker-stopping")
        # Graceful: the running task still finishes, then the worker leaves and its process exits.
        wes.goto(f"{coord.url}/ui/tasks/{task_uuid}")
        expect(wes.locator("#status .badge")).to_have_text("Finished", timeout=30_000)
        expect(wes.locator("#exit-text")).to_have_text("exit 0")
        wes.goto(f"{coord.url}/ui/workers?group=wes")
        expect(wes.locator(f'tr[data-worker="{worker_id}"]')).to_have_count(0, timeout=30_000)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is not None, "the worker process did not exit after its graceful stop"


SLOW_LINES = "sh -c 'for i in 1 2 3 4 5; do echo line$i; sleep 0.5; done'"
BADGE_AT_LINE1 = """() => {
  const pre = document.getElementById("log-text");
  const look = () => {
    if (!window.__badgeAtLine1 && pre.textContent.includes("line1")) {
      window.__badgeAtLine1 = document.querySelector("#status .badge").textContent.trim();
    }
  };
  new MutationObserver(look).observe(pre, { childList: true, characterData: true, subtree: true });
  look();
}"""


def test_live_log_tail_and_sse_detail(
    coord: LiveCoordinator, worker: subprocess.Popen[bytes], session_for: Callable[..., Page], shots: Shots
) -> None:
    page = session_for("alice")
    task_uuid = _submit(page, coord.url, SLOW_LINES)
    page.evaluate("window.__sameDocument = true")
    status = page.locator("#status")
    log = page.locator("#log-text")
    expect(status).to_have_attribute("data-live-mode", "sse")
    # The first lines show while the task still runs: at that moment it has no result yet.
    # (Recorded by a MutationObserver: the page's CSP forbids the eval that wait_for_function uses.)
    page.evaluate(BADGE_AT_LINE1)
    expect(log).to_contain_text("line1", timeout=60_000)
    badge_then = page.evaluate("window.__badgeAtLine1")
    assert badge_then and badge_then != "Finished", (
        f"the log appeared only after the task ended ({badge_then})"
    )
    expect(page.locator("#log")).to_have_attribute("data-log-mode", "live")
    shots(page, "13-task-log-live")
    # The state reaches Finished through the event stream, without reloading or polling.
    expect(status.locator(".badge")).to_have_text("Finished", timeout=30_000)
    expect(status.locator("#exit-text")).to_have_text("exit 0")
    expect(status).to_have_attribute("data-live-mode", "sse")
    expect(log).to_contain_text("line5")
    text = log.text_content() or ""
    assert [f"line{i}" for i in range(1, 6)] == [ln for ln in text.splitlines() if ln.startswith("line")]
    assert page.evaluate("window.__sameDocument === true"), "the task page was reloaded"
    # Opened after the end, the page shows the archived std-log artifact instead.
    page.goto(f"{coord.url}/ui/tasks/{task_uuid}")
    expect(page.locator("#log")).to_have_attribute(
        "data-log-mode", re.compile("archived|ended"), timeout=20_000
    )
    expect(log).to_contain_text("line5")
    shots(page, "14-task-log-archived")
    # Another user cannot read the log through the dashboard either.
    bob = session_for("bob")
    refused = bob.request.get(f"{coord.url}/ui/tasks/{task_uuid}/log")
    assert refused.status == 403
    refused = bob.request.get(f"{coord.url}/ui/tasks/{task_uuid}/log/archived")
    assert refused.status == 403
    refused = bob.request.get(f"{coord.url}/ui/events?task={task_uuid}")
    assert refused.status == 403


def test_attachments_upload_download_delete(
    coord: LiveCoordinator, session_for: Callable[..., Page], shots: Shots, tmp_path: Path
) -> None:
    payload = bytes(range(256)) * (12 * 1024)  # 3 MiB: several progress events
    source = tmp_path / "weights.bin"
    source.write_bytes(payload)
    page = session_for("alice")
    page.goto(f"{coord.url}/ui/groups/alice")
    page.get_by_role("link", name="Attachments").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Attachments")
    expect(page.locator("#attachment-rows")).to_contain_text("No attachments")
    page.get_by_label("Key prefix").fill("models/")
    page.get_by_role("button", name="Browse").click()
    page.get_by_label("File").set_input_files(str(source))
    expect(page.get_by_label("Key", exact=True)).to_have_value("models/weights.bin")
    page.get_by_role("button", name="Upload").click()
    form = page.locator("form[data-upload]")
    expect(form).to_have_attribute("data-upload-state", "done", timeout=30_000)
    progress = page.locator("#u-progress")
    assert int(progress.get_attribute("data-progress-events") or "0") >= 1
    assert page.evaluate("document.getElementById('u-progress').value") == len(payload)
    # The page goes back to the listing of the key's folder, where the new file is.
    expect(page).to_have_url(re.compile(r"/ui/groups/alice/attachments\?prefix=models%2F$"))
    row = page.locator('tr[data-key="models/weights.bin"]')
    expect(row).to_contain_text("3 MiB")
    # Browsing: the root shows the folder, the folder shows the file.
    page.goto(f"{coord.url}/ui/groups/alice/attachments")
    expect(page.locator('tr[data-folder="models/"]')).to_be_visible()
    page.get_by_role("link", name="models/").click()
    expect(row).to_be_visible()
    shots(page, "15-attachments")
    with page.expect_download() as info:
        row.get_by_role("link", name="Download models/weights.bin").click()
    saved = tmp_path / "downloaded.bin"
    info.value.save_as(saved)
    assert saved.read_bytes() == payload
    # Members may delete an attachment an hour after its upload (route 14): no button yet.
    expect(row.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    expect(row).to_contain_text("deletable")

    # bob is in no group of alice's: no page, and the services refuse the actions.
    bob = session_for("bob")
    response = bob.goto(f"{coord.url}/ui/groups/alice/attachments")
    assert response is not None and response.status in (400, 403)
    bob.goto(f"{coord.url}/ui/tasks")
    token = bob.locator('input[name="csrf_token"]').first.get_attribute("value") or ""
    refused = bob.request.post(
        f"{coord.url}/ui/groups/alice/attachments/upload-url",
        form={"csrf_token": token, "key": "x.bin", "size": "1"},
        headers={"Accept": "application/json"},
    )
    assert refused.status == 403
    refused = bob.request.get(
        f"{coord.url}/ui/groups/alice/attachments/download?key=models/weights.bin", max_redirects=0
    )
    assert refused.status in (400, 403)
    refused = bob.request.post(
        f"{coord.url}/ui/groups/alice/attachments/delete",
        form={"csrf_token": token, "key": "models/weights.bin"},
        max_redirects=0,
    )
    assert refused.status in (303, 403)
    # Without the CSRF token, the upload URL is refused even for alice.
    no_csrf = page.request.post(
        f"{coord.url}/ui/groups/alice/attachments/upload-url", form={"key": "y.bin", "size": "1"}
    )
    assert no_csrf.status == 403

    # A system admin deletes at once (route 62's rule), through the CSRF-protected form.
    admin = session_for(ADMIN_USER)
    admin.goto(f"{coord.url}/ui/groups/alice/attachments?prefix=models/")
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.get_by_role("button", name="Delete models/weights.bin").click()
    expect(admin.get_by_role("status")).to_contain_text("Deleted models/weights.bin")
    expect(admin.locator('tr[data-key="models/weights.bin"]')).to_have_count(0)
    page.reload()
    expect(page.locator('tr[data-key="models/weights.bin"]')).to_have_count(0)
    expect(page.locator("#attachment-rows")).to_contain_text("No attachments")
