"""Login for the console: signed session cookies, CSRF tokens, and the guard in front of every /console path.

A session is `base64(JSON {op, csrf, iat}).hex(HMAC-SHA256)` in the cookie `shop_session`, valid for 12 hours
and while the operator's account stands (logout and a password change void it). Every POST under /console must
carry the session's CSRF token (header X-CSRF-Token or form field csrf); the login form itself uses a
double-submit cookie. With no account at all, the console is open from loopback only, as operator `local`.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html import escape
from http.cookies import SimpleCookie
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from persistence import operators
from protocol.settings import Settings
from web.base import STATE, ApiError, envelope

log = logging.getLogger("shop.console")

SESSION_COOKIE = "shop_session"
LOGIN_CSRF_COOKIE = "shop_login_csrf"
SESSION_S = 12 * 3600
LOGIN_FORM_S = 3600
LOGIN_PATH = "/console/login"
LOGOUT_PATH = "/console/logout"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FAILURES_PER_MINUTE = 5
LOGIN_PAGE = Path(__file__).resolve().parent / "static" / "login.html"
CSRF_MISSING = "CSRF token missing or wrong"
NO_ACCOUNTS = ("no operator account exists yet: the console is open only from this machine (loopback). "
               "On the server run `shop-admin user add NAME`, then log in at /console/login")
FORWARDED_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")  # a proxy in front: the client is not local
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                           "frame-ancestors 'none'; base-uri 'none'"}


@dataclass(frozen=True)
class Session:
    """Who is logged in, the CSRF token their actions must carry, and when the session was issued."""

    operator: str
    csrf: str
    issued_at: float


class SessionSigner:
    """Signs sessions into cookie values and checks them back (HMAC-SHA256, constant-time compare)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, body: bytes) -> str:
        return hmac.new(self._key, body, "sha256").hexdigest()

    def encode(self, session: Session) -> str:
        """The cookie value of a session."""
        raw = json.dumps({"op": session.operator, "csrf": session.csrf, "iat": session.issued_at},
                         ensure_ascii=False, separators=(",", ":")).encode()
        body = base64.urlsafe_b64encode(raw).rstrip(b"=")
        return f"{body.decode()}.{self._mac(body)}"

    def decode(self, value: str, now: float) -> Session | None:
        """The session a cookie value carries; None if it is forged, damaged or older than 12 hours."""
        body, _, mac = value.partition(".")
        if not body or not hmac.compare_digest(mac.encode(), self._mac(body.encode()).encode()):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = Session(operator=str(data["op"]), csrf=str(data["csrf"]), issued_at=float(data["iat"]))
        except (ValueError, KeyError, TypeError):
            return None
        if not session.csrf or not now - SESSION_S < session.issued_at <= now + 60:
            return None
        return session


def new_session(operator: str) -> Session:
    """A fresh session with its own CSRF token."""
    return Session(operator=operator, csrf=secrets.token_urlsafe(32), issued_at=time.time())


def load_secret(settings: Settings) -> bytes:
    """The signing key: CONSOLE_SECRET, else DATA_DIR/console-secret (32 random bytes made once, mode 0600)."""
    if settings.CONSOLE_SECRET is not None:
        return settings.CONSOLE_SECRET.get_secret_value().encode()
    path = settings.DATA_DIR / "console-secret"
    damaged = True
    try:
        key = bytes.fromhex(path.read_text().strip())
        if len(key) == 32:
            return key
        log.warning("%s is damaged: a new console secret is made (every session ends)", path)
    except FileNotFoundError:
        damaged = False
    except ValueError:
        log.warning("%s is damaged: a new console secret is made (every session ends)", path)
    tmp = path.with_name(f".console-secret.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
        f.flush()
        os.fsync(f.fileno())
    if damaged:
        os.replace(tmp, path)
    else:
        # Two ingress processes starting together both find no file: the first link wins, the other reads it.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # never replaces a key another process made meanwhile
        tmp.unlink()
    return bytes.fromhex(path.read_text().strip())


class LoginThrottle:
    """Failed logins per client address, in the database so that every ingress process counts the same ones:
    after `per_minute` within a minute, the next waits."""

    def __init__(self, per_minute: int = FAILURES_PER_MINUTE) -> None:
        self.per_minute = per_minute

    def wait_s(self, ip: str, now: float) -> float:
        """Seconds until this address may try again; 0 if it may now (a database read)."""
        times = operators.recent_login_failures(ip, now)
        return 60 - (now - times[-self.per_minute]) if len(times) >= self.per_minute else 0.0

    def failed(self, ip: str, now: float) -> None:
        """Count a failed login (a database write)."""
        operators.login_failed(ip, now)

    def succeeded(self, ip: str) -> None:
        """A good login clears the address's count (a database write)."""
        operators.login_succeeded(ip)


@dataclass
class ConsoleAuth:
    """What the guard and the login handlers share."""

    signer: SessionSigner
    throttle: LoginThrottle
    login_page: Template


CONSOLE = web.AppKey("console_auth", ConsoleAuth)
NEW_SESSION = web.RequestKey("console_new_session", Session)  # a session the response must set as a cookie
CSRF = web.RequestKey("console_csrf", str)  # the session's CSRF token
OPERATOR = web.RequestKey("console_operator", str)  # who acts: the session's operator
ACCOUNTS = web.RequestKey("console_accounts", bool)  # whether any operator account exists


def is_console_path(path: str) -> bool:
    """Whether a path belongs to the console."""
    return path == "/console" or path.startswith("/console/")


def is_https(request: web.Request) -> bool:
    """Whether the browser reached us over https (directly, or through a proxy that says so)."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address == "localhost"
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def is_local(remote: str | None, host: str | None, headers: Any) -> bool:
    """Whether a request comes from this machine itself: a loopback peer, addressed by a loopback name (a page
    of another site rebinding its name to 127.0.0.1 is not local), with no proxy in between."""
    if not remote or not _loopback(remote) or any(h in headers for h in FORWARDED_HEADERS):
        return False
    hostname = urlsplit(f"//{host or ''}").hostname
    return hostname is not None and _loopback(hostname)


def client_ip(request: web.Request) -> str:
    """The peer's address, as recorded in the audit trail."""
    return request.remote or ""


def _set_session_cookie(response: web.StreamResponse, request: web.Request, session: Session) -> None:
    # Added as a header rather than by set_cookie: this also runs in on_response_prepare, after aiohttp has
    # already turned the response's cookies into headers.
    cookie: SimpleCookie = SimpleCookie()
    cookie[SESSION_COOKIE] = request.app[CONSOLE].signer.encode(session)
    morsel = cookie[SESSION_COOKIE]
    morsel.update({"max-age": str(SESSION_S), "path": "/console", "httponly": True, "samesite": "Strict"})
    if is_https(request):
        morsel["secure"] = True
    response.headers.add(hdrs.SET_COOKIE, morsel.OutputString())


async def _attach_new_session(request: web.Request, response: web.StreamResponse) -> None:
    # on_response_prepare: works for streamed answers (server-sent events) too, whose headers go out early.
    session = request.get(NEW_SESSION)
    if session is not None:
        _set_session_cookie(response, request, session)


async def _valid(request: web.Request, session: Session, accounts: bool, local: bool) -> bool:
    if session.operator == operators.LOCAL_OPERATOR:
        return not accounts and local
    return await request.app[STATE].read(operators.session_valid, session.operator, session.issued_at)


async def _csrf_given(request: web.Request) -> str:
    given = request.headers.get("X-CSRF-Token", "")
    if not given and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        given = str((await request.post()).get("csrf", ""))
    return given


@web.middleware
async def console_guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
    """Every /console path but the login page and static files needs a session (request[OPERATOR]);
    every POST its CSRF token."""
    path = request.path
    if not is_console_path(path) or path == LOGIN_PATH or path.startswith("/console/static/"):
        return await handler(request)
    auth, state = request.app[CONSOLE], request.app[STATE]
    now = time.time()
    session = auth.signer.decode(request.cookies.get(SESSION_COOKIE, ""), now)
    accounts = await state.read(operators.any_users)
    local = is_local(request.remote, request.host, request.headers)
    if session is not None and not await _valid(request, session, accounts, local):
        session = None
    if session is None:
        if not accounts:
            if not local:
                raise ApiError(403, NO_ACCOUNTS)
            session = request[NEW_SESSION] = new_session(operators.LOCAL_OPERATOR)
        elif path.startswith("/console/api/"):
            raise ApiError(401, "log in first: POST /console/login (the session is missing, expired or ended)")
        else:
            return web.Response(status=303, headers={"Location": LOGIN_PATH, "Cache-Control": "no-store"})
    request[OPERATOR] = session.operator
    request[CSRF], request[ACCOUNTS] = session.csrf, accounts
    if request.method not in SAFE_METHODS:
        given = await _csrf_given(request)
        if not given or not hmac.compare_digest(given.encode(), session.csrf.encode()):
            raise ApiError(403, CSRF_MISSING)
    return await handler(request)


# -- the login page --------------------------------------------------------------------------------------
def _login_page(request: web.Request, status: int, token: str, error: str = "", username: str = "",
                accounts: bool = True, headers: dict[str, str] | None = None) -> web.Response:
    notice = "" if accounts else ('<p class="notice">还没有操作员账号:在服务器上运行 '
                                  '<code>shop-admin user add 名字</code>;在服务器本机可直接打开 '
                                  '<a href="/console">/console</a>。<br>No operator account yet: run '
                                  '<code>shop-admin user add NAME</code> on the server; on the server itself '
                                  '<a href="/console">/console</a> opens without a login.</p>')
    page = request.app[CONSOLE].login_page.substitute(
        csrf=escape(token), username=escape(username), notice=notice,
        error=f'<p class="error" role="alert">{escape(error)}</p>' if error else "")
    resp = web.Response(status=status, text=page, content_type="text/html", headers={**PAGE_HEADERS, **(headers or {})})
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=LOGIN_FORM_S, path=LOGIN_PATH, httponly=True,
                    samesite="Strict", secure=is_https(request))
    return resp


def _form_token(request: web.Request) -> str:
    token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return token if 20 <= len(token) <= 100 and token.replace("-", "").replace("_", "").isalnum() else \
        secrets.token_urlsafe(32)


async def login_form(request: web.Request) -> web.Response:
    """GET /console/login: the login form (Chinese and English)."""
    accounts = await request.app[STATE].read(operators.any_users)
    return _login_page(request, 200, _form_token(request), accounts=accounts)


async def login(request: web.Request) -> web.Response:
    """POST /console/login (form: username, password, csrf): a session cookie and 303 to /console."""
    auth, state = request.app[CONSOLE], request.app[STATE]
    ip, now = client_ip(request), time.time()
    token = _form_token(request)
    form = await request.post()
    given, cookie = str(form.get("csrf", "")), request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not given or not cookie or not hmac.compare_digest(given.encode(), cookie.encode()):
        return _login_page(request, 403, token, "登录表单已过期,请再试一次 / " + CSRF_MISSING)
    username = str(form.get("username", "")).strip()[:64]
    wait = await state.read(auth.throttle.wait_s, ip, now)
    if wait > 0:
        return _login_page(request, 429, token, f"失败次数太多,请 {wait:.0f} 秒后再试 / Too many failed logins: "
                           f"try again in {wait:.0f} s", username, headers={"Retry-After": str(int(wait) + 1)})
    if not await state.read(operators.verify, username, str(form.get("password", ""))):
        await state.write(auth.throttle.failed, ip, now)
        log.warning("console: failed login from %s", ip)
        accounts = await state.read(operators.any_users)
        return _login_page(request, 401, token, "用户名或密码不对 / Wrong user name or password", username,
                           accounts=accounts)
    await state.write(auth.throttle.succeeded, ip)
    session = new_session(username)
    await state.write(operators.audit, username, "login", f"operator:{username}", None, None, ip)
    log.info("console: %s logged in from %s", username, ip)
    resp = web.Response(status=303, headers={"Location": "/console", "Cache-Control": "no-store"})
    _set_session_cookie(resp, request, session)
    resp.del_cookie(LOGIN_CSRF_COOKIE, path=LOGIN_PATH)
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /console/logout (session + CSRF): ends the operator's sessions; a form post goes back to the login."""
    name, state = request[OPERATOR], request.app[STATE]
    if name != operators.LOCAL_OPERATOR:
        await state.write(operators.end_sessions, name, time.time())
    await state.write(operators.audit, name, "logout", f"operator:{name}", None, None, client_ip(request))
    if request.content_type == "application/x-www-form-urlencoded":
        resp: web.StreamResponse = web.Response(status=303, headers={"Location": LOGIN_PATH})
    else:
        resp = envelope(200, "已退出 / logged out", {"operator": name})
    resp.del_cookie(SESSION_COOKIE, path="/console")
    return resp


def register(app: web.Application) -> None:
    """Add the login routes and the guard to the ingress app (after its API-key middleware)."""
    app[CONSOLE] = ConsoleAuth(signer=SessionSigner(load_secret(app[STATE].settings)), throttle=LoginThrottle(),
                               login_page=Template(LOGIN_PAGE.read_text(encoding="utf-8")))
    app.middlewares.append(console_guard)
    app.on_response_prepare.append(_attach_new_session)
    app.router.add_get(LOGIN_PATH, login_form)
    app.router.add_post(LOGIN_PATH, login)
    app.router.add_post(LOGOUT_PATH, logout)
