"""No secret in the logs or the answers, even when the outside world quotes them back (issue 8, locks).

The launcher runs with every secret set, against servers that echo the credentials they were sent in
their errors: Gemini answers the render 400 "API key <key> is not valid", the dispatch API 401 "wrong key
<key>", the WeChat robot errcode 93000 quoting its URL with the key, the SMTP server refuses the login
quoting the password, Tianwang's callback endpoint answers 500 quoting the request. Then every log file
the service wrote, its console output and every API answer are searched for every secret.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from protocol.settings import Settings
from standins.fake_gemini import FakeGemini
from tests.e2e.test_image_job import ASK_EMAIL, MAIL_FAILED, pay, send_photo, wait_text
from tests.harness import Launcher, LoopbackServer, free_port, http, photo_png, task_body, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SECRETS = {
    "TIANWANG_API_KEY": "tw-key-" + secrets.token_hex(12),
    "TIANWANG_CALLBACK_SECRET": "cb-secret-" + secrets.token_hex(12),
    "GEMINI_API_KEY": "AIza-" + secrets.token_hex(16),
    "TUHUI_DISPATCH_KEY": "tuhui-" + secrets.token_hex(12),
    "SMTP_PASSWORD": "p@ss word/" + secrets.token_hex(8),  # URL-quoting changes it: both forms are searched
    "CONSOLE_SECRET": "console-" + secrets.token_hex(16),
}
ROBOT_KEY = "robot-" + secrets.token_hex(12)
KEY = SECRETS["TIANWANG_API_KEY"]


class Echo(LoopbackServer):
    """An upstream that answers every request with an error quoting the credentials it was sent."""

    def __init__(self, status: int, quote_back: Any) -> None:
        super().__init__()
        self.status, self.quote_back = status, quote_back
        self.seen: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        """Record the request; answer with the configured status and a body built from the request."""
        await request.read()
        self.seen.append({"url": str(request.url), **request.headers})
        return web.json_response(self.quote_back(request), status=self.status)


class GeminiProxy(LoopbackServer):
    """Forwards to the Gemini stand-in, but answers the image model 400 quoting the key while `refuse` is set."""

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream, self.refuse, self.refused = upstream, True, 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.refuse and "image" in request.path:
            self.refused += 1
            key = request.headers.get("x-goog-api-key", "")
            return web.json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                "message": f"API key {key} is not valid for {request.path}"}},
                                     status=400)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession() as session, session.request(
                request.method, self.upstream + str(request.rel_url), headers=headers, data=body) as resp:
            return web.Response(status=resp.status, body=await resp.read(), content_type=resp.content_type)


class RefusingSmtp:
    """An SMTP server (aiosmtpd) that refuses every login, quoting the password in its reply."""

    def __init__(self) -> None:
        self.port = free_port()
        self.tried: list[str] = []

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        password = auth_data.password.decode() if isinstance(auth_data.password, bytes) else auth_data.password
        self.tried.append(password)
        return AuthResult(success=False, handled=False, message=f"535 5.7.8 password {password} is wrong")

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        return "250 OK"

    def __enter__(self) -> RefusingSmtp:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, authenticator=self.authenticate,
                                     auth_require_tls=False)
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    with FakeGemini() as fake, GeminiProxy(fake.base_url) as gemini, \
            Echo(401, lambda r: {"success": False, "error": f"wrong key {r.headers.get('X-API-Key')}"}) as dispatch, \
            Echo(200, lambda r: {"errcode": 93000, "errmsg": f"invalid webhook url {r.url}"}) as robot, \
            Echo(500, lambda r: {"error": f"cannot take {dict(r.headers)}"}) as callback, \
            RefusingSmtp() as smtp:
        yield {"gemini": gemini, "dispatch": dispatch, "robot": robot, "callback": callback, "smtp": smtp}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, world: dict[str, Any]) -> Iterator[Launcher]:
    env = {name: value for name, value in SECRETS.items() if name in Settings.model_fields}
    env.update({
        "DEBOUNCE_S": "0.5", "GEMINI_BASE_URL": world["gemini"].url, "GEMINI_TIMEOUT_S": "3",
        "RENDER_MAX_ATTEMPTS": "1", "TUHUI_DISPATCH_URL": world["dispatch"].url,
        "WECHAT_WEBHOOK": f"{world['robot'].url}/cgi-bin/webhook/send?key={ROBOT_KEY}",
        "TIANWANG_CALLBACK_URL": f"{world['callback'].url}/callback",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(world["smtp"].port), "SMTP_USER": "shop",
        "SMTP_FROM": "shop@example.com",
    })
    launcher = Launcher(tmp_path_factory.mktemp("secrets") / "shop", env)
    launcher.start()
    try:
        yield launcher
    finally:
        launcher.stop()


def get(shop: Launcher, path: str) -> tuple[int, str]:
    """An API answer as the raw text a client receives."""
    status, body = http("GET", f"{shop.api}{path}", headers={"X-API-Key": KEY})
    return status, body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)


def leaks(text: str) -> list[str]:
    """The secrets (by setting name) that appear in text, in any of their usual spellings."""
    values = {**SECRETS, "WECHAT_WEBHOOK key": ROBOT_KEY}
    return [name for name, value in values.items()
            if any(form in text for form in {value, quote(value, safe=""), quote(value), json.dumps(value)[1:-1]})]


def test_secrets_quoted_back_by_every_upstream_never_reach_logs_or_answers(shop: Launcher,
                                                                          world: dict[str, Any]) -> None:
    # A wrong key is refused without the right one in the answer.
    status, body = http("GET", f"{shop.api}/api/task/stats", headers={"X-API-Key": "wrong"})
    assert status == 401 and not leaks(json.dumps(body))

    # A task whose callbacks the endpoint refuses, quoting the request back; its send is refused by the
    # IM bridge with an error that quotes a key (logged by the gateway and scheduler actors, kept on the task).
    assert shop.post_task(task_body("SECRET_T1", "cb", {"type": "customer_reply", "keyword": "好"}),
                          headers={"X-API-Key": KEY})[0] == 200
    wait_for(lambda: world["callback"].seen, 20, what="a callback attempt")
    bridge_error = f"upstream refused token {SECRETS['GEMINI_API_KEY']}"
    assert http("POST", f"{shop.sim}/fail_sends", {"count": 4, "error": bridge_error})[0] == 200
    shop.customer_says("cb", "text", "好的")
    failed = wait_for(lambda: (t := json.loads(get(shop, "/api/task/status/SECRET_T1")[1])["data"])["status"]
                      == "failed" and t, 30, what="the task to fail")
    assert "upstream refused token ***" in failed["error"]
    # Staff paste a password into a customer's chat: the takeover reason and the history show it masked.
    shop.customer_says("cb", "staff", f"密码是 {SECRETS['SMTP_PASSWORD']} 别外传")
    conv = wait_for(lambda: (c := json.loads(get(shop, "/api/conversation/cb")[1])["data"])["takeover"]["paused"]
                    and c, 20, what="the staff takeover")
    assert "密码是 *** 别外传" in conv["takeover"]["reason"]

    # Gemini refuses the render quoting the key → a designer; the dispatch API refuses quoting its key;
    # the staff robot refuses quoting its URL.
    send_photo(shop, "gem", photo_png(seed=71))
    shop.customer_says("gem", "text", "帮我变清晰")
    wait_text(shop, "gem", "元")
    pay(shop, "gem")
    wait_for(lambda: world["gemini"].refused >= 1, 30, what="the refused render")
    wait_for(lambda: any(s.get("X-API-Key") == SECRETS["TUHUI_DISPATCH_KEY"] for s in world["dispatch"].seen), 30,
             what="the dispatch API asked with its key")
    wait_for(lambda: any(ROBOT_KEY in s["url"] for s in world["robot"].seen), 30, what="staff notified")

    # A rendered result, an e-mail address, and an SMTP server that refuses the login quoting the password.
    world["gemini"].refuse = False
    send_photo(shop, "mail", photo_png(seed=72))
    shop.customer_says("mail", "text", "帮我变清晰")
    wait_text(shop, "mail", "元")
    pay(shop, "mail")
    wait_text(shop, "mail", ASK_EMAIL, timeout=60)
    shop.customer_says("mail", "text", "邮箱 mail.buyer@example.com")
    wait_text(shop, "mail", MAIL_FAILED, timeout=30)
    assert world["smtp"].tried and world["smtp"].tried[0] == SECRETS["SMTP_PASSWORD"]

    answers = {path: get(shop, path) for path in (
        "/api/health", "/api/task/status/SECRET_T1", "/api/task/list", "/api/task/stats",
        "/api/conversation/gem", "/api/conversation/mail", "/api/conversation/cb")}
    for customer in ("gem", "mail"):
        for job in json.loads(answers[f"/api/conversation/{customer}"][1])["data"]["jobs"]:
            answers[f"/api/jobs/{job['job_id']}"] = get(shop, f"/api/jobs/{job['job_id']}")
    for path, (status, text) in answers.items():
        assert status in (200, 503), (path, text)
        assert leaks(text) == [], f"{path} answers {leaks(text)}"

    # Every file the service wrote under logs/, but the simulator's record of the frames: that is the bridge's
    # own copy of what people typed and what it answered, not ours.
    logs = {p.name: p.read_text(errors="replace") for p in (shop.data_dir / "logs").iterdir()
            if p.is_file() and p.name != "im_bridge_frames.jsonl"}
    logs["launcher output"] = shop.output()
    for name, text in logs.items():
        assert leaks(text) == [], f"{name} shows {leaks(text)}"
    shop_log = logs["shop.log"]
    assert "is not valid" in shop_log or "render" in shop_log  # the refusals were logged …
    assert "***" in shop_log  # … with the secret masked
