"""Shared test harness: the launcher as a user runs it, a Tianwang callback server, HTTP helpers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any

from aiohttp import web

from cluster.processes import group_members as process_group_alive
from standins.webhook_recorder import WebhookRecorder
from tests import pg
from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent


# One /api/health costs ~35 ms of CPU across the system's processes (Root asks every actor for its report):
# tests ask it a few times a second at most, or their polling alone keeps a core busy.
HEALTH_POLL_S = 0.25


def http(method: str, url: str, body: Any = None, raw: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, Any]:
    """One HTTP request; (status, parsed JSON body or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json",
                                                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def sigterm_and_wait(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a process that is still running and wait up to timeout for it (the caller kills what is left)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)


def wait_for(predicate: Any, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll until predicate() is truthy; its value, or AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, HTTPException) as exc:  # a server killed mid-answer
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@dataclass
class Launcher:
    """launcher.py in a subprocess on free ports and its own DATA_DIR; with SHOP_TEST_DB=postgresql, on a database
    of its own on the session's PostgreSQL server (kept across its restarts), else on SQLite under DATA_DIR."""

    data_dir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    api_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    sim_ws_port: int = field(default_factory=free_port)
    sim_http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    pgids: set[int] = field(default_factory=set)
    database_url: str = ""  # PostgreSQL: made on first start
    command: list[str] = field(default_factory=lambda: [sys.executable, str(REPO / "launcher.py")])  # how it starts

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def sim(self) -> str:
        return f"http://127.0.0.1:{self.sim_http_port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "shop.db"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TIANWANG_", "IM_", "GEMINI_", "SMTP_"))}
        env.update(
            DATA_DIR=str(self.data_dir), HTTP_API_PORT=str(self.api_port), THESPIAN_ADMIN_PORT=str(self.admin_port),
            IM_SIMULATOR_WS_PORT=str(self.sim_ws_port), IM_SIMULATOR_HTTP_PORT=str(self.sim_http_port),
            DISPATCH_STANDIN_PORT="0", SWEEP_INTERVAL_S="1", TASK_RETRY_BASE_S="0.2", CALLBACK_RETRY_MAX_S="1",
            PYTHONUNBUFFERED="1",
        )
        if pg.wanted() and "DATABASE_URL" not in self.env_extra:
            self.database_url = self.database_url or pg.shared_server().new_database()
            env["DATABASE_URL"] = self.database_url
        env.update(self.env_extra)
        return env

    def start(self, wait: bool = True) -> Launcher:
        """Start it; with wait, until /api/health says every actor runs."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "launcher.out", "ab")  # noqa: SIM115 (the child writes it)
        self.proc = subprocess.Popen(self.command, cwd=self.data_dir, env=self.env(),
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_healthy()
        return self

    def shop_admin(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """`shop-admin …` as the shop's admin runs it: the command installed beside the python that runs this
        launcher, on its settings and DATA_DIR."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.run([str(Path(self.command[0]).with_name("shop-admin")), *args], input=stdin,
                              env=self.env(), cwd=self.data_dir, capture_output=True, text=True, timeout=120)

    def add_operator(self, username: str, password: str) -> None:
        """An operator account, made with `shop-admin user add NAME --password-stdin`."""
        done = self.shop_admin("user", "add", username, "--password-stdin", stdin=password + "\n")
        assert done.returncode == 0, done.stderr

    def output(self) -> str:
        """Everything the launcher (and its actors) printed."""
        path = self.data_dir / "launcher.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def health(self) -> dict[str, Any]:
        status, body = http("GET", f"{self.api}/api/health", timeout=5)
        return body if isinstance(body, dict) else {"code": status}

    def wait_healthy(self, timeout: float = 40) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"launcher exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            h = self.health()
            if h.get("code") == 200:
                root = h["data"]["actors"][0]
                self.pgids.add(root["detail"]["pgid"])
                return h
            return None

        return wait_for(ok, timeout, HEALTH_POLL_S, "every actor running")

    def pid_of(self, name: str) -> int:
        """Current pid of the actor with this name (from /api/health)."""
        actors = self.wait_healthy()["data"]["actors"]
        return next(a["pid"] for a in actors if a["name"] == name)

    def stop(self, timeout: float = 15) -> float:
        """SIGTERM, wait; seconds it took. Kills whatever is left either way."""
        started = time.monotonic()
        try:
            sigterm_and_wait(self.proc, timeout)
        finally:
            took = time.monotonic() - started
            self.kill()
        return took

    def kill(self) -> None:
        """SIGKILL the launcher and every actor group it ever had."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pgid in self.pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for pid in _listeners(self.sim_http_port):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def leftovers(self) -> list[int]:
        """Processes of this launcher still running."""
        pids = [p for g in self.pgids for p in process_group_alive(g)]
        return pids + _listeners(self.sim_http_port)

    def post_task(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return http("POST", f"{self.api}/api/task/receive", body, headers=headers)

    def task(self, task_id: str) -> dict[str, Any]:
        status, body = http("GET", f"{self.api}/api/task/status/{task_id}")
        assert status == 200, body
        return body["data"]

    def wait_status(self, task_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
        return wait_for(lambda: (t := self.task(task_id))["status"] == status and t, timeout, 0.05,
                        f"task {task_id} to be {status}")

    def customer_says(self, customer_id: str, kind: str, content: Any, name: str = "") -> str:
        status, body = http("POST", f"{self.sim}/customer/message",
                            {"customer_id": customer_id, "name": name, "kind": kind, "content": content})
        assert status == 200, body
        return body["msg_id"]

    def deliveries(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        q = f"?customer_id={customer_id}" if customer_id else ""
        return http("GET", f"{self.sim}/deliveries{q}")[1]

    def sim_stats(self) -> dict[str, Any]:
        return http("GET", f"{self.sim}/stats")[1]

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the real database, as an operator would (SQL with ? marks, run on SQLite or PostgreSQL)."""
        if self.database_url:
            con = pg.connect_url(self.database_url)
            try:
                cursor = con.cursor()
                cursor.execute(sql.replace("%", "%%").replace("?", "%s"), args)
                return [tuple(row) for row in cursor.fetchall()]
            finally:
                con.close()
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()


def _listeners(port: int) -> list[int]:
    """Pids with a listening socket on this TCP port (the simulator)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    pids = []
    if not inodes:
        return pids
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(fd.path)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        pids.append(int(entry.name))
                        break
    return pids


def listening_addresses(pids: list[int]) -> set[str]:
    """The addresses ("127.0.0.1:4321", "0.0.0.0:4322") that these processes hold listening TCP sockets on, each
    read in the process's own network namespace (/proc/<pid>/net/tcp and tcp6; IPv6 as its hex)."""
    found = set()
    for pid in pids:
        inodes = set()
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(fd.path)
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
        for table in ("tcp", "tcp6"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if parts[3] == "0A" and parts[9] in inodes:
                        host_hex, port_hex = parts[1].rsplit(":", 1)
                        host = ".".join(str(b) for b in reversed(bytes.fromhex(host_hex))) if len(host_hex) == 8 \
                            else host_hex
                        found.add(f"{host}:{int(port_hex, 16)}")
    return found


class LoopbackServer:
    """A real aiohttp server on a free loopback port (or on `host`, a test network's address), served from a thread
    of its own; subclasses add routes."""

    def __init__(self, ssl_context: Any = None, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.host = host
        self.ssl_context = ssl_context
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def routes(self, app: web.Application) -> None:
        """Add this server's routes."""
        raise NotImplementedError

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, self.host, self.port,
                                                  ssl_context=self.ssl_context).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> Any:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class CallbackServer(LoopbackServer):
    """A real aiohttp server playing Tianwang's callback endpoint; records what arrives."""

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret
        self.received: list[dict[str, Any]] = []
        self.fail_next = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/callback", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        body = json.loads(raw)
        signature = request.headers.get("X-Signature")
        valid = None
        if self.secret is not None:
            expected = hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
            valid = signature is not None and hmac.compare_digest(signature, expected)
        self.received.append({"body": body, "signature_valid": valid, "id": request.headers.get("X-Callback-Id")})
        return web.json_response({"ok": True})

    def statuses(self, task_id: str) -> list[str]:
        return [r["body"]["status"] for r in self.received if r["body"]["task_id"] == task_id]


def task_body(task_id: str, customer: str, trigger: dict[str, Any], action: dict[str, Any] | None = None,
              **extra: Any) -> dict[str, Any]:
    """A Tianwang task body in SPEC §1's shape."""
    return {
        "task_id": task_id, "type": "test", "customer": {"id": customer, "name": "小明"}, "trigger": trigger,
        "action": action or {"type": "send_message", "message": f"hello from {task_id}"},
        "created_by": "设计师 lz", **extra,
    }


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free loopback port that keeps what it receives; can be switched off."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Any] = []
        self._controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        from email import message_from_bytes, policy

        self.messages.append(message_from_bytes(envelope.original_content or envelope.content, policy=policy.default))
        return "250 OK"

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class FileServer(LoopbackServer):
    """Serves test files (photos, junk, an endless stream) on a free loopback port (or on `host`)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.files: dict[str, tuple[bytes, str]] = {}

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name}"

    def put(self, name: str, body: bytes, content_type: str = "image/png") -> str:
        """Serve body at /name; its URL."""
        self.files[name] = (body, content_type)
        return self.url(name)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/huge", self._huge)
        app.router.add_get("/{name}", self.serve_file)

    async def serve_file(self, request: web.Request) -> web.Response:
        """GET /{name}: a file put here, or 404."""
        body, content_type = self.files.get(request.match_info["name"], (b"", ""))
        if not content_type:
            return web.Response(status=404)
        return web.Response(body=body, content_type=content_type)

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        # 50 MB claimed and streamed (a PNG header first), to be cut off by the size limit.
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        chunk = b"\x89PNG\r\n\x1a\n" + b"\0" * (1024 * 1024 - 8)
        with contextlib.suppress(ConnectionError):
            for _ in range(50):
                await resp.write(chunk)
        return resp


def photo_png(seed: int = 1, size: tuple[int, int] = (640, 480), text: str | None = None,
              font_path: str | None = None) -> bytes:
    """A photo-like PNG (gradients, shapes, a little noise); with text, that text drawn large across it."""
    import io
    import random

    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rnd = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size)
    px = img.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = (int(90 + 120 * x / w), int(60 + 140 * y / h), int(150 + rnd.randint(-12, 12)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rnd.randint(0, w - 80), rnd.randint(0, h - 80)
        draw.ellipse((x0, y0, x0 + rnd.randint(40, 160), y0 + rnd.randint(40, 160)),
                     fill=(rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(0, 255)))
    img = img.filter(ImageFilter.GaussianBlur(1.2))
    if text:
        font = ImageFont.truetype(font_path, size=max(24, h // 8)) if font_path else ImageFont.load_default()
        ImageDraw.Draw(img).text((w // 10, h // 3), text, fill=(20, 20, 20), font=font)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


class RobotThread:
    """The WeChat webhook recorder served from a thread of its own."""

    def __init__(self, per_minute: int | None = None) -> None:
        self.rec = WebhookRecorder(port=free_port(), per_minute=per_minute)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> WebhookRecorder:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.rec.start(), self.loop).result(5)
        return self.rec

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.rec.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
