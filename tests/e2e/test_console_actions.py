"""The console's operator actions through the launcher, as an operator uses them (web/console_actions.py).

An account made with `shop-admin user add` logs in; pause and resume silence and free the AI; a message written
as staff reaches the customer once (through the outbox and the IM bridge) and pauses the AI, and its echo from
the bridge is not taken for another person; a hand-off makes one dispatch task; a Tianwang task is cancelled;
every action is in the audit with the thing before and after.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from http.client import HTTPConnection
from http.cookies import SimpleCookie
from typing import Any

import pytest

from standins.dispatch_api import DispatchStandin
from tests.e2e.test_image_job import jobs_of, send_photo, texts, wait_text
from tests.harness import Launcher, http, photo_png, task_body, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TAKEOVER_S = 120.0
DEBOUNCE_S = 0.5
PASSWORD = "amy-console-pass"


class Console:
    """A browser on the console: keeps its cookies, sends the CSRF token with every POST, follows no redirect."""

    def __init__(self, base: str) -> None:
        parsed = urllib.parse.urlsplit(base)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def request(self, method: str, path: str, body: Any = None, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        sent = dict(headers or {})
        data: bytes | None = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if method == "POST" and self.csrf:
            sent.setdefault("X-CSRF-Token", self.csrf)
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=sent)
            resp = conn.getresponse()
            text = resp.read().decode()
            for header in resp.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(header).items():
                    self.cookies[name] = morsel.value
            answer_headers = dict(resp.headers.items())
            status = resp.status
        finally:
            conn.close()
        try:
            return status, answer_headers, json.loads(text)
        except ValueError:
            return status, answer_headers, text

    def login(self, username: str, password: str) -> None:
        status, _, page = self.request("GET", "/console/login")
        assert status == 200, page
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token, page
        status, headers, _ = self.request("POST", "/console/login",
                                          form={"username": username, "password": password, "csrf": token.group(1)})
        assert status == 303 and headers["Location"] == "/console", (status, headers)
        status, _, me = self.request("GET", "/console/api/me")
        assert status == 200 and me["data"]["operator"] == username, me
        self.csrf = me["data"]["csrf"]

    def act(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        status, _, answer = self.request("POST", path, body if body is not None else {}, headers=headers)
        return status, answer


@pytest.fixture(scope="module")
def designers() -> Iterator[DispatchStandin]:
    with DispatchStandin(api_key="dispatch-secret") as standin:
        yield standin


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, designers: DispatchStandin) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("console") / "shop", {
        "DEBOUNCE_S": str(DEBOUNCE_S), "TAKEOVER_MINUTES": str(TAKEOVER_S / 60),
        "TUHUI_DISPATCH_URL": designers.base_url, "TUHUI_DISPATCH_KEY": "dispatch-secret",
    })
    # The account is made as a new operator would: the command, against the DATA_DIR the service uses.
    launcher.add_operator("amy", PASSWORD)
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


@pytest.fixture(scope="module")
def amy(shop: Launcher) -> Console:
    console = Console(shop.api)
    console.login("amy", PASSWORD)
    return console


def takeover(shop: Launcher, customer: str) -> dict[str, Any]:
    status, body = http("GET", f"{shop.api}/api/conversation/{customer}")
    assert status == 200, body
    return body["data"]["takeover"]


def audit(console: Console, action: str, target: str) -> list[dict[str, Any]]:
    status, _, body = console.request("GET", "/console/api/audit?limit=200")
    assert status == 200, body
    return [e for e in body["data"] if e["action"] == action and e["target"] == target]


def quiet_for(shop: Launcher, customer: str, seconds: float) -> None:
    before = len(shop.deliveries(customer))
    time.sleep(seconds)
    assert len(shop.deliveries(customer)) == before, texts(shop, customer)[before:]


def test_without_a_login_no_action_is_done(shop: Launcher) -> None:
    stranger = Console(shop.api)
    status, _, body = stranger.request("POST", "/console/api/conversations/anyone/pause", {})
    assert status == 401 and body["code"] == 401
    status, headers, _ = stranger.request("GET", "/console")
    assert status == 303 and headers["Location"] == "/console/login"


def test_pause_and_resume(shop: Launcher, amy: Console) -> None:
    send_photo(shop, "cora", photo_png(seed=81))
    wait_text(shop, "cora", "元")
    status, body = amy.act("/console/api/conversations/cora/pause", {"minutes": 10, "reason": "客户投诉"})
    assert status == 200 and body["data"]["paused"] is True and body["data"]["paused_by"] == "operator:amy", body
    assert 590 < body["data"]["paused_until"] - time.time() <= 600
    shop.customer_says("cora", "text", "帮我抠图")
    quiet_for(shop, "cora", DEBOUNCE_S + 2.5)

    status, body = amy.act("/console/api/conversations/cora/resume")
    assert status == 200 and body["data"]["paused"] is False, body
    shop.customer_says("cora", "text", "改成分层的吧")
    wait_text(shop, "cora", "分层PSD", timeout=30)

    (paused,) = audit(amy, "pause", "conversation:cora")
    assert paused["operator"] == "amy" and paused["ip"] == "127.0.0.1"
    assert paused["before"]["paused"] is False and paused["after"]["paused"] is True
    assert paused["after"]["reason"] == "客户投诉"
    (resumed,) = audit(amy, "resume", "conversation:cora")
    assert resumed["before"]["paused"] is True and resumed["after"]["paused"] is False
    status, body = amy.act("/console/api/conversations/nobody-here/pause")
    assert status == 404 and "nobody-here" in body["message"]


def test_a_message_as_staff_reaches_the_customer_once_and_pauses_the_ai(shop: Launcher, amy: Console) -> None:
    send_photo(shop, "dora", photo_png(seed=82))
    wait_text(shop, "dora", "元")
    said = "您好,我是店长小艾,这张图我亲自帮您跟进"
    status, body = amy.act("/console/api/conversations/dora/message", {"text": said},
                           headers={"Idempotency-Key": "click-1"})
    assert status == 200 and body["data"]["created"] is True, body
    # A second click of the same message (same key) sends nothing more.
    status, again = amy.act("/console/api/conversations/dora/message", {"text": said},
                            headers={"Idempotency-Key": "click-1"})
    assert status == 200 and again["data"]["created"] is False and again["data"]["send_id"] == body["data"]["send_id"]

    wait_for(lambda: said in texts(shop, "dora"), 20, 0.1, "the staff message to reach dora")
    time.sleep(1.5)
    assert texts(shop, "dora").count(said) == 1
    taken = takeover(shop, "dora")
    assert taken["paused"] is True and taken["paused_by"] == "operator:amy"
    assert TAKEOVER_S - 15 < taken["paused_until"] - time.time() <= TAKEOVER_S

    # The bridge relays our own send back as a staff message: an echo, not a person taking over again.
    shop.customer_says("dora", "staff", said)
    time.sleep(1.5)
    assert takeover(shop, "dora")["paused_by"] == "operator:amy"

    shop.customer_says("dora", "text", "帮我抠图")
    quiet_for(shop, "dora", DEBOUNCE_S + 2.5)  # the AI stays silent while the person has the conversation

    (entry,) = audit(amy, "message", "conversation:dora")
    assert entry["before"]["paused"] is False and entry["after"]["paused"] is True
    assert entry["after"]["text"] == said and entry["after"]["send_id"] == body["data"]["send_id"]
    for bad in ({"text": ""}, {"text": "   "}, {"text": "x" * 2001}, {}):
        status, answer = amy.act("/console/api/conversations/dora/message", bad)
        assert status == 400 and answer["message"], answer


def test_a_job_handed_to_a_designer_makes_one_dispatch_task(shop: Launcher, amy: Console,
                                                            designers: DispatchStandin) -> None:
    send_photo(shop, "erin", photo_png(seed=83))
    wait_text(shop, "erin", "元")
    (job,) = jobs_of(shop, "erin")
    status, body = amy.act(f"/console/api/jobs/{job['job_id']}/handoff", {"reason": "客户要求设计师精修"})
    assert status == 200 and body["data"]["state"] == "transferred" and body["data"]["handoff_rule"] == "operator"

    def tasks() -> list[dict[str, Any]]:
        return [t for t in designers.tasks() if "(erin)" in t["description"]]

    (task,) = wait_for(lambda: (found := tasks()) and found[0]["status"] == "assigned" and found, 30, 0.2,
                       "the dispatch task to be assigned")
    assert "客户要求设计师精修" in task["description"] and "amy" in task["description"]
    wait_text(shop, "erin", "已帮您安排设计师处理", timeout=30)

    status, again = amy.act(f"/console/api/jobs/{job['job_id']}/handoff", {})
    assert status == 409 and "transferred" in again["message"]
    time.sleep(1)
    assert len(tasks()) == 1
    status, missing = amy.act("/console/api/jobs/Jnope/handoff")
    assert status == 404

    (entry,) = audit(amy, "handoff", f"job:{job['job_id']}")
    assert entry["before"]["state"] == "pending" and entry["after"]["state"] == "transferred"
    assert entry["after"]["handoff_rule"] == "operator"


def test_a_tianwang_task_is_cancelled(shop: Launcher, amy: Console) -> None:
    status, body = shop.post_task(task_body("T_CONSOLE", "fern", {"type": "customer_reply", "keyword": "好的"}))
    assert status == 200, body
    status, body = amy.act("/console/api/tasks/T_CONSOLE/cancel", {"reason": "客户已退款"})
    assert status == 200 and body["data"]["status"] == "cancelled", body
    task = shop.wait_status("T_CONSOLE", "cancelled")
    assert "amy" in task["history"][-1]["reason"] and "客户已退款" in task["history"][-1]["reason"]
    status, again = amy.act("/console/api/tasks/T_CONSOLE/cancel")
    assert status == 409
    status, _ = amy.act("/console/api/tasks/T_NONE/cancel")
    assert status == 404
    (entry,) = audit(amy, "cancel_task", "task:T_CONSOLE")
    assert entry["before"]["status"] in ("pending", "waiting") and entry["after"] == {"status": "cancelled"}


def test_the_audit_lists_every_action_newest_first(shop: Launcher, amy: Console) -> None:
    status, _, body = amy.request("GET", "/console/api/audit?limit=50")
    assert status == 200
    entries = body["data"]
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    assert {"login", "pause", "resume", "message", "handoff", "cancel_task"} <= {e["action"] for e in entries}
    assert all(e["operator"] == "amy" for e in entries if e["action"] != "user_add")
    status, _, bad = amy.request("GET", "/console/api/audit?limit=0")
    assert status == 400
