"""The console in a real browser (Debian's chromium driven by Playwright) against the launcher, as an operator.

An operator account made with `shop-admin user add`; the browser logs in, watches a customer's conversation
appear as the IM simulator sends messages (no reload, no polling), sees the paid job's result thumbnail,
pauses the AI, writes to the customer as staff (the simulator receives it), cancels a Tianwang task, hands
the job to a designer, finds every action in the audit view, and deletes the customer's data on her request. A
screenshot of each step is written under the test's output directory, printed at the start.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_image_job import pay, send_photo, wait_text
from tests.harness import Launcher, http, photo_png, task_body, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
OPERATOR, PASSWORD = "xiaowang", "console-pass-2026"
STEP_MS = 20_000  # every browser wait
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
STAFF_TEXT = "您好,我是店长小王,这单我亲自跟进"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extras: pip install -e .[test]")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("console") / "shop", {"DEBOUNCE_S": "1"})
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed: `make test` installs it (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 900}, locale="zh-CN", timeout=60_000)
        context.set_default_timeout(STEP_MS)
        try:
            yield context
        finally:
            context.close()


class Steps:
    """Numbered screenshots of the steps, in one folder."""

    def __init__(self, page: Any, folder: Path) -> None:
        self.page, self.folder, self.n = page, folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str, full_page: bool = True) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02}-{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


def test_an_operator_watches_pauses_writes_and_finds_it_audited(shop: Launcher, browser: Any, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    expect = sync_api.expect
    shop.add_operator(OPERATOR, PASSWORD)
    folder = tmp_path / "screenshots"
    with capsys.disabled():
        print(f"\nconsole screenshots: {folder}")
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"))
    api_calls: list[str] = []
    page.on("request", lambda req: "/console/api/" in req.url and api_calls.append(req.url))
    steps = Steps(page, folder)

    # Without a session the console sends the browser to the login page.
    page.goto(f"{shop.api}/console")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.fill("input[name=username]", OPERATOR)
    page.fill("input[name=password]", PASSWORD)
    steps.shot("login")
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/console$"))
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(page.locator("#operator")).to_have_text(OPERATOR)
    page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads
    steps.shot("logged-in")

    # A customer writes: the conversation appears by itself.
    shop.customer_says("lily", "text", "你好,在吗", name="Lily")
    row = page.locator('#conv-list li[data-customer-id="lily"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("你好,在吗")
    steps.shot("conversation-appears")
    row.click()
    timeline = page.locator("#conv-timeline")
    expect(timeline.locator('li[data-dir="in"]')).to_contain_text(["你好,在吗"])

    # She sends a photo and pays: the quote shows in her messages, the result as a thumbnail on her job.
    send_photo(shop, "lily", photo_png(seed=21))
    shop.customer_says("lily", "text", "帮我变清晰一点", name="Lily")
    quote = wait_text(shop, "lily", "元")[0]
    expect(timeline.locator('li[data-dir="out"]').filter(has_text=quote)).to_be_visible()
    pay(shop, "lily", int(re.search(r"(\d+)\s*元", quote).group(1)))  # type: ignore[union-attr]
    wait_text(shop, "lily", "没问题把邮箱发我")
    (job_id,) = [j["job_id"] for j in http("GET", f"{shop.api}/api/conversation/lily")[1]["data"]["jobs"]]
    result = page.locator(f'img.thumb[data-job-id="{job_id}"][data-which="result"]')
    expect(result).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=result.element_handle())
    result.scroll_into_view_if_needed()
    steps.shot("result-thumbnail")

    # The browser asks the server nothing while nothing happens: the picture is pushed.
    time.sleep(1)
    asked = len(api_calls)
    time.sleep(4)
    assert api_calls[asked:] == []

    # Pause the AI for her.
    page.locator("#conv-list li[data-customer-id=lily]").scroll_into_view_if_needed()
    page.fill("#pause-minutes", "45")
    page.click("#btn-pause")
    expect(page.locator("#toast")).to_have_text("已暂停AI回复")
    expect(page.locator("#takeover-state")).to_have_attribute("data-paused", "true")
    takeover = http("GET", f"{shop.api}/api/conversation/lily")[1]["data"]["takeover"]
    assert takeover["paused"] and 44 * 60 < takeover["paused_until"] - time.time() <= 45 * 60
    expect(page.locator('#takeover-list tr[data-customer-id="lily"]')).to_be_visible()
    steps.shot("paused")

    # Write to her as staff: it reaches her through the simulator, and shows in her messages.
    page.fill("#staff-text", STAFF_TEXT)
    page.click("#btn-send-staff")
    expect(page.locator("#toast")).to_have_text("消息已发出")
    wait_for(lambda: STAFF_TEXT in [d["content"] for d in shop.deliveries("lily")], 20, 0.2, "the staff message")
    expect(timeline.locator('li[data-dir="out"][data-by="staff"]').filter(has_text=STAFF_TEXT)).to_be_visible()
    expect(page.locator("#staff-text")).to_have_value("")
    steps.shot("staff-message")

    # Both actions are in the audit view, by this operator.
    audit = page.locator("#audit-list")
    for action in ("pause", "message"):
        expect(audit.locator(f'tr[data-action="{action}"][data-target="conversation:lily"]')).to_contain_text(OPERATOR)
    audit.scroll_into_view_if_needed()
    steps.shot("audit", full_page=False)

    # Cancel a Tianwang task and hand the job to a designer with the buttons; both land in the audit too.
    status, body = shop.post_task(task_body("T_CONSOLE", "lily", {"type": "customer_keyword", "keywords": ["发货"]}))
    assert status == 200, body
    page.locator('button[data-action="cancel-task"][data-task-id="T_CONSOLE"]').click()
    expect(page.locator('#task-list tr[data-task-id="T_CONSOLE"]')).to_have_attribute("data-status", "cancelled")
    assert shop.task("T_CONSOLE")["status"] == "cancelled"
    page.locator(f'button[data-action="handoff"][data-job-id="{job_id}"]').click()
    expect(page.locator("#toast")).to_have_text("已转给设计师")
    expect(page.locator(f'#job-list li[data-job-id="{job_id}"]')).to_have_attribute("data-state", "transferred")
    expect(page.locator('#handoff-list tr[data-status="assigned"]')).to_contain_text("lily")
    for action, target in (("cancel_task", "task:T_CONSOLE"), ("handoff", f"job:{job_id}")):
        expect(audit.locator(f'tr[data-action="{action}"][data-target="{target}"]')).to_contain_text(OPERATOR)
    steps.shot("cancelled-and-handed-off")

    # She asks the shop to delete her data: the browser asks first, naming her; then the console no longer lists her.
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.locator("#conv-list li[data-customer-id=lily]").click()
    page.click("#btn-forget")
    expect(page.locator("#toast")).to_have_text("客户数据已删除")
    assert "Lily (lily)" in asked[0]
    expect(page.locator("#conv-list li[data-customer-id=lily]")).to_have_count(0)
    expect(page.locator("#conv-body")).to_be_hidden()
    expect(audit.locator('tr[data-action="forget"]')).to_contain_text(OPERATOR)
    assert http("GET", f"{shop.api}/api/conversation/lily")[0] == 404
    steps.shot("forgotten")

    # On a phone the page fits the screen's width.
    page.set_viewport_size({"width": 360, "height": 740})
    page.evaluate("window.scrollTo(0, 0)")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    steps.shot("phone", full_page=False)

    assert page.evaluate("window.__sameDocument") is True  # everything above arrived without a reload
    assert problems == []
