"""The dashboard in a real browser: sign in, submit, watch a task finish live, download its
artifact, cancel a waiting task, and one user kept out of another user's group."""

from __future__ import annotations

import re
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.coordinator import ADMIN_USER, LiveCoordinator

pytestmark = pytest.mark.e2e

Shots = Callable[[Page, str], None]


def _submit(page: Page, base: str, command: str, *, tags: str = "", labels: str = "") -> str:
    page.goto(f"{base}/ui/tasks/new")
    page.get_by_label("Command").fill(command)
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

    # Labels can be changed from the detail page.
    page.get_by_label("Labels (comma separated)").fill("demo, checked")
    page.get_by_role("button", name="Save labels").click()
    expect(page.get_by_role("status")).to_contain_text("Labels saved")
    expect(page.locator(".chip", has_text="checked")).to_be_visible()


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
    bob.goto(f"{coord.url}/ui/groups")
    expect(bob.get_by_role("link", name="alice", exact=True)).to_have_count(0)
    assert bob.locator(f'tr[data-uuid="{task_uuid}"]').count() == 0

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


def test_admin_page(coord: LiveCoordinator, session_for: Callable[..., Page], shots: Shots) -> None:
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
    admin.get_by_role("button", name="Unlock carol").click()
    expect(admin.locator('tr[data-user="carol"]')).to_contain_text("Active")
    admin.get_by_label("Storage quota").fill("1GiB")
    admin.locator("#sq-group").select_option("carol")
    admin.get_by_role("button", name="Set storage quota").click()
    expect(admin.get_by_role("status")).to_contain_text("Storage quota of carol is now 1 GiB")
    admin.get_by_label("How many groups they may create").fill("+2")
    admin.locator("#gq-user").select_option("carol")
    admin.get_by_role("button", name="Set group quota").click()
    expect(admin.get_by_role("status")).to_contain_text("carol may now create 10 groups")
    # The shutdown form needs the typed confirmation; the check is server-side too.
    expect(admin.get_by_role("button", name="Shut down")).to_be_visible()
    shots(admin, "11-admin")


def test_phone_layout_and_keyboard(
    coord: LiveCoordinator, session_for: Callable[..., Page], shots: Shots
) -> None:
    page = session_for("alice", viewport={"width": 390, "height": 844})
    page.goto(f"{coord.url}/ui/tasks")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the task list scrolls sideways on a phone ({width}px)"
    shots(page, "12-tasks-phone")
    # Keyboard: the skip link comes first, then the main navigation.
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
