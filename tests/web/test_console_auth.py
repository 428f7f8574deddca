"""Login for the console (web/console_auth.py): the ingress's real aiohttp app on a real SQLite file, driven
like a browser that keeps its cookies.

Without a session the console answers 401 (API) or a redirect to the login page; a forged or expired cookie is
no session; every POST needs the session's CSRF token; a fresh install is open from loopback only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import stat
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from persistence import operators
from persistence.db import close_database, open_database
from protocol.settings import Settings
from web.app import make_app
from web.base import ApiState
from web.console_auth import CSRF_MISSING, Session, SessionSigner, is_local, load_secret

pytestmark = pytest.mark.timeout(60)

PASSWORD = "amy-pass-123"


@dataclass
class Answer:
    """One response as the browser saw it."""

    status: int
    headers: CIMultiDictProxy[str]
    text: str
    cookies: SimpleCookie

    @property
    def body(self) -> Any:
        return json.loads(self.text)


class Browser:
    """Keeps cookies by name (what a browser sends back), follows no redirects."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.cookies: dict[str, str] = {}

    async def go(self, method: str, path: str, csrf: str | None = None, headers: dict[str, str] | None = None,
                 **kwargs: Any) -> Answer:
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if csrf is not None:
            sent["X-CSRF-Token"] = csrf
        async with self.client.request(method, path, headers=sent, allow_redirects=False, **kwargs) as resp:
            text = await resp.text()
            for name, morsel in resp.cookies.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
            return Answer(resp.status, resp.headers, text, resp.cookies)

    async def login(self, username: str, password: str) -> Answer:
        form = await self.go("GET", "/console/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token, form.text
        return await self.go("POST", "/console/login",
                             data={"username": username, "password": password, "csrf": token.group(1)})

    async def me(self) -> Answer:
        return await self.go("GET", "/console/api/me")


Scenario = Callable[[Browser, list[Any]], Awaitable[None]]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """DATA_DIR with a fresh database (opened as the ingress opens it), closed after the test."""
    open_database(f"sqlite:///{tmp_path}/shop.db", create=True)
    try:
        yield tmp_path
    finally:
        close_database()


def run(data_dir: Path, scenario: Scenario, **settings: Any) -> list[Any]:
    """Serve the ingress app on a loopback port and run the scenario against it; what the app posted."""
    posted: list[Any] = []
    state = ApiState(Settings(DATA_DIR=data_dir, **settings), posted.append)

    async def main() -> None:
        async with TestClient(TestServer(make_app(state)), cookie_jar=DummyCookieJar()) as client:
            await scenario(Browser(client), posted)

    try:
        asyncio.run(main())
    finally:
        state.writer.shutdown()
        state.readers.shutdown()
    return posted


def forge(cookie: str, **changes: Any) -> str:
    """The cookie with its payload changed and its signature kept."""
    body, mac = cookie.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data.update(changes)
    new = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{new}.{mac}"


# -- a fresh install ----------------------------------------------------------------------------------
def test_with_no_account_the_console_is_open_from_loopback_as_local_with_csrf(data_dir: Path) -> None:
    async def scenario(b: Browser, posted: list[Any]) -> None:
        me = await b.me()
        assert me.status == 200 and me.body["data"]["operator"] == "local" and me.body["data"]["accounts"] is False
        cookie = me.cookies["shop_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
        csrf = me.body["data"]["csrf"]
        # A POST without the token (what another site's page could make this browser send) is refused.
        refused = await b.go("POST", "/console/api/conversations/c1/pause", json={"minutes": 5})
        assert refused.status == 403 and refused.body["message"] == CSRF_MISSING
        passed = await b.go("POST", "/console/api/conversations/c1/pause", csrf=csrf, json={"minutes": 5})
        assert passed.status == 404 and "no conversation with customer c1" in passed.body["message"]

    run(data_dir, scenario)


def test_with_no_account_the_console_is_closed_to_anyone_not_on_this_machine(data_dir: Path) -> None:
    async def scenario(b: Browser, posted: list[Any]) -> None:
        for path in ("/console/api/me", "/console"):
            # Through a proxy, or by a name that is not loopback (a rebinding page), the caller is not local.
            for headers in ({"X-Forwarded-For": "203.0.113.9"}, {"Host": "shop.example.com"}):
                answer = await b.go("GET", path, headers=headers)
                assert answer.status == 403 and "shop-admin user add NAME" in answer.body["message"], answer.text
                assert "shop_session" not in answer.cookies

    run(data_dir, scenario)


def test_is_local_needs_a_loopback_peer_a_loopback_host_and_no_proxy() -> None:
    assert is_local("127.0.0.1", "127.0.0.1:6060", {})
    assert is_local("::1", "[::1]:6060", {})
    assert is_local("::ffff:127.0.0.1", "localhost:6060", {})
    assert not is_local("10.0.0.5", "127.0.0.1:6060", {})
    assert not is_local("192.168.1.20", "shop.lan:6060", {})
    assert not is_local("127.0.0.1", "evil.example:6060", {})
    assert not is_local("127.0.0.1", "127.0.0.1:6060", {"X-Forwarded-For": "198.51.100.4"})
    assert not is_local(None, "127.0.0.1", {})


# -- with accounts ----------------------------------------------------------------------------------------
def test_without_a_session_the_api_answers_401_and_pages_redirect_to_the_login(data_dir: Path) -> None:
    operators.add_user("amy", PASSWORD)

    async def scenario(b: Browser, posted: list[Any]) -> None:
        me = await b.me()
        assert me.status == 401 and me.body["code"] == 401 and "log in" in me.body["message"]
        page = await b.go("GET", "/console")
        assert page.status == 303 and page.headers["Location"] == "/console/login"
        action = await b.go("POST", "/console/api/tasks/t1/cancel", json={})
        assert action.status == 401
        login = await b.go("GET", "/console/login")
        assert login.status == 200 and login.headers["Content-Type"].startswith("text/html")
        assert "用户名" in login.text and "User name" in login.text and 'name="viewport"' in login.text
        assert login.headers["X-Frame-Options"] == "DENY" and "shop_login_csrf" in login.cookies
        assert "no operator account" not in login.text.lower()

    run(data_dir, scenario)


def test_a_good_login_gives_a_session_cookie_and_a_wrong_one_the_same_refusal(data_dir: Path) -> None:
    operators.add_user("amy", PASSWORD)

    async def scenario(b: Browser, posted: list[Any]) -> None:
        wrong_password = await b.login("amy", "not-her-pass")
        wrong_user = await b.login("nobody", PASSWORD)
        for answer in (wrong_password, wrong_user):
            assert answer.status == 401 and "Wrong user name or password" in answer.text
            assert "shop_session" not in answer.cookies
        assert 'value="nobody"' in wrong_user.text  # the name is kept in the form, the password never
        assert PASSWORD not in wrong_user.text

        ok = await b.login("amy", PASSWORD)
        assert ok.status == 303 and ok.headers["Location"] == "/console"
        cookie = ok.cookies["shop_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["max-age"] == str(12 * 3600)
        assert not cookie["secure"]  # plain http: a Secure cookie would never come back
        me = await b.me()
        assert me.status == 200 and me.body["data"]["operator"] == "amy" and me.body["data"]["accounts"] is True

        behind_tls = Browser(b.client)  # a TLS proxy in front says so: the cookie is then Secure
        form = await behind_tls.go("GET", "/console/login", headers={"X-Forwarded-Proto": "https"})
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        over_https = await behind_tls.go("POST", "/console/login", headers={"X-Forwarded-Proto": "https"},
                                         data={"username": "amy", "password": PASSWORD, "csrf": token})
        assert over_https.status == 303 and over_https.cookies["shop_session"]["secure"]

    run(data_dir, scenario)
    actions = [(e["operator"], e["action"]) for e in operators.recent_audit(10)]
    assert actions == [("amy", "login"), ("amy", "login")]


def test_the_login_form_needs_its_own_csrf_token(data_dir: Path) -> None:
    operators.add_user("amy", PASSWORD)

    async def scenario(b: Browser, posted: list[Any]) -> None:
        await b.go("GET", "/console/login")
        for token in ("", "forged-token-forged-token-123"):
            answer = await b.go("POST", "/console/login", data={"username": "amy", "password": PASSWORD,
                                                               "csrf": token})
            assert answer.status == 403 and CSRF_MISSING in answer.text and "shop_session" not in answer.cookies
        b.cookies.pop("shop_login_csrf")  # a cross-site form: its token cannot match a cookie it cannot see
        answer = await b.go("POST", "/console/login", data={"username": "amy", "password": PASSWORD,
                                                           "csrf": "forged-token-forged-token-123"})
        assert answer.status == 403

    run(data_dir, scenario)


def test_every_post_needs_the_sessions_csrf_token(data_dir: Path) -> None:
    operators.add_user("amy", PASSWORD)

    async def scenario(b: Browser, posted: list[Any]) -> None:
        await b.login("amy", PASSWORD)
        csrf = (await b.me()).body["data"]["csrf"]
        path = "/console/api/conversations/c1/resume"
        for token in (None, "", "x" * 43, csrf[:-1] + ("A" if csrf[-1] != "A" else "B")):
            answer = await b.go("POST", path, csrf=token)
            assert answer.status == 403 and answer.body == {"code": 403, "message": CSRF_MISSING, "data": None}
        form = await b.go("POST", path, data={"csrf": "wrong"})
        assert form.status == 403
        assert (await b.go("POST", path, csrf=csrf)).status == 404  # through the guard: no such customer
        assert (await b.go("POST", path, data={"csrf": csrf})).status == 404  # the form field works as well

    run(data_dir, scenario)


def test_a_forged_expired_or_foreign_cookie_is_no_session(data_dir: Path) -> None:
    operators.add_user("amy", PASSWORD)
    operators.add_user("boss", "boss-pass-123")

    async def scenario(b: Browser, posted: list[Any]) -> None:
        await b.login("amy", PASSWORD)
        real = b.cookies["shop_session"]
        other_key = SessionSigner(b"k" * 32)
        signer = SessionSigner(load_secret(Settings(DATA_DIR=data_dir)))
        for forged in (forge(real, op="boss"), forge(real, iat=time.time() + 3600), real[:-2] + "00", "garbage",
                       other_key.encode(Session("boss", "c" * 43, time.time())),
                       signer.encode(Session("amy", "c" * 43, time.time() - 13 * 3600)),  # expired
                       signer.encode(Session("local", "c" * 43, time.time()))):  # not while accounts exist
            b.cookies["shop_session"] = forged
            assert (await b.me()).status == 401, forged
        b.cookies["shop_session"] = real
        assert (await b.me()).body["data"]["operator"] == "amy"

    run(data_dir, scenario)


def test_logout_ends_the_session_and_a_new_account_closes_the_open_console(data_dir: Path) -> None:
    async def scenario(b: Browser, posted: list[Any]) -> None:
        local = await b.me()
        local_cookie = b.cookies["shop_session"]
        assert local.body["data"]["operator"] == "local"
        await asyncio.get_running_loop().run_in_executor(None, _add_amy, data_dir)
        assert (await b.me()).status == 401  # the fresh-install session ends with the first account
        b.cookies.pop("shop_session", None)
        await b.login("amy", PASSWORD)
        kept = b.cookies["shop_session"]
        assert kept != local_cookie
        csrf = (await b.me()).body["data"]["csrf"]
        assert (await b.go("POST", "/console/logout")).status == 403  # logging out needs the token as well
        out = await b.go("POST", "/console/logout", csrf=csrf)
        assert out.status == 200 and out.body["data"] == {"operator": "amy"} and "shop_session" not in b.cookies
        b.cookies["shop_session"] = kept  # a copy of the cookie kept from before: void now
        assert (await b.me()).status == 401
        b.cookies.pop("shop_session")
        await b.login("amy", PASSWORD)
        csrf = (await b.me()).body["data"]["csrf"]
        form_out = await b.go("POST", "/console/logout", data={"csrf": csrf})
        assert form_out.status == 303 and form_out.headers["Location"] == "/console/login"

    run(data_dir, scenario)
    assert [e["action"] for e in operators.recent_audit(10)] == ["logout", "login", "logout", "login"]


def _add_amy(data_dir: Path) -> None:
    operators.add_user("amy", PASSWORD)


def test_failed_logins_from_one_address_back_off(data_dir: Path) -> None:
    operators.add_user("amy", PASSWORD)

    async def scenario(b: Browser, posted: list[Any]) -> None:
        for _ in range(5):
            assert (await b.login("amy", "guess-guess")).status == 401
        blocked = await b.login("amy", PASSWORD)  # even the right password waits now
        assert blocked.status == 429 and int(blocked.headers["Retry-After"]) > 50
        assert "shop_session" not in blocked.cookies and "Too many failed logins" in blocked.text

    run(data_dir, scenario)


def test_the_console_needs_no_api_key_and_the_api_still_does(data_dir: Path) -> None:
    operators.add_user("amy", PASSWORD)

    async def scenario(b: Browser, posted: list[Any]) -> None:
        assert (await b.go("GET", "/api/task/list")).status == 401
        me = await b.me()
        assert me.status == 401 and "X-API-Key" not in me.body["message"]
        assert (await b.login("amy", PASSWORD)).status == 303
        assert (await b.me()).status == 200

    run(data_dir, scenario, TIANWANG_API_KEY="tw-key-123")


def test_the_signing_key_is_made_once_private_and_kept_or_comes_from_settings(tmp_path: Path) -> None:
    settings = Settings(DATA_DIR=tmp_path)
    key = load_secret(settings)
    path = tmp_path / "console-secret"
    assert len(key) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret(settings) == key  # sessions survive a restart of the ingress
    assert load_secret(Settings(DATA_DIR=tmp_path, CONSOLE_SECRET="from-settings")) == b"from-settings"
    path.write_text("damaged")
    renewed = load_secret(settings)
    assert len(renewed) == 32 and renewed != key and stat.S_IMODE(os.stat(path).st_mode) == 0o600
