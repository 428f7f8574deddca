"""The console's live picture: one snapshot of the shop shared by every open console, rebuilt when it changes.

While at least one console listens, a task in the ingress loop looks every TICK_S at the database's newest ids
and pending counts (from indexes), every SLOW_EVERY_S at what needs a scan, every HEALTH_EVERY_S at the actors'
health, every DESIGNERS_EVERY_S at the designers online, and at the log for new errors; only when one of them
moved is a snapshot built, and only a snapshot that differs is pushed. With no console open the task ends, and
nothing is read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web

from core.redaction import redact
from integrations.tuhui import DispatchClient, DispatchError
from observability.error_log import ErrorLog
from persistence import console
from protocol.messages import ActorHealth
from web.base import ApiState
from web.health import ask_health

log = logging.getLogger("shop.console")

TICK_S = 1.5
SLOW_EVERY_S = 10.0  # takeovers running out and updates in place: a scan, so seldom
HEALTH_EVERY_S = 5.0
DESIGNERS_EVERY_S = 10.0
DESIGNERS_TIMEOUT_S = 2.0


def actor_rows(actors: list[ActorHealth]) -> list[dict[str, Any]]:
    """The actors as the console lists them: conversation actors (up to CONVERSATIONS_MAX_LIVE of them) that run
    and never restarted as one line with their count; every other actor, and any conversation in trouble, alone."""
    rows, quiet = [], 0
    for a in actors:
        if a.kind == "conversation" and a.state == "running" and not a.restarts:
            quiet += 1
            continue
        rows.append({"name": a.name, "kind": a.kind, "pid": a.pid, "state": a.state, "restarts": a.restarts})
    if quiet:
        rows.append({"name": f"conversation ×{quiet}", "kind": "conversation", "pid": None, "state": "running",
                     "restarts": 0})
    return rows


class ConsoleHub:
    """Builds snapshots and hands the latest to every listener; each listener waits on its own Event."""

    def __init__(self, state: ApiState) -> None:
        self.state = state
        self.text: str | None = None  # the latest snapshot as JSON
        self.version = 0
        self.closing = False
        self._listeners: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None
        self._errors = ErrorLog(state.settings.DATA_DIR / "logs" / "shop.log")
        self._errors_lock = asyncio.Lock()  # the snapshot endpoint and the loop may both read the log
        self._health: dict[str, Any] = {"ok": None, "actors": [], "message": "not asked yet"}
        self._health_at = 0.0
        self._designers: dict[str, Any] = {"online": None, "error": None}
        self._designers_at = 0.0
        self._session: aiohttp.ClientSession | None = None

    # -- listeners ----------------------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Event:
        """A new listener: its Event is set whenever a new snapshot is ready (at once if one is)."""
        ready = asyncio.Event()
        if self.text is not None:
            ready.set()
        self._listeners.add(ready)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return ready

    def unsubscribe(self, ready: asyncio.Event) -> None:
        """A listener went away; the last one leaving stops the checks (the task sees the empty set)."""
        self._listeners.discard(ready)

    @property
    def listeners(self) -> int:
        """How many consoles are listening now."""
        return len(self._listeners)

    async def close(self, _app: web.Application | None = None) -> None:
        """Wake every listener for the last time and stop (the app's on_shutdown: streams end, so the server
        does not wait for them)."""
        self.closing = True
        for ready in self._listeners:
            ready.set()
        if self._task is not None:
            self._task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- building -----------------------------------------------------------------------------------------
    async def build(self) -> dict[str, Any]:
        """A snapshot now: the database's part, the actors, the designers online and the recent errors."""
        now = time.time()
        await self._refresh_health(now, force=True)
        await self._refresh_designers(now)
        await self._refresh_errors()
        return await self._assemble(now)

    async def _assemble(self, now: float) -> dict[str, Any]:
        data = await self.state.read(console.snapshot, now)
        async with self._errors_lock:
            errors = self._errors.recent()
        data.update(actors=self._health, designers=self._designers, errors=errors)
        return data

    async def _run(self) -> None:
        last: tuple[Any, ...] | None = None
        slow: tuple[Any, ...] | None = None
        slow_at = 0.0
        try:
            while self._listeners and not self.closing:
                now = time.time()
                try:
                    if now - slow_at >= SLOW_EVERY_S:
                        slow, slow_at = await self.state.read(console.slow_changes, now), now
                    fingerprint = (await self.state.read(console.changes), slow)
                    moved = await self._refresh_health(now)
                    moved = await self._refresh_designers(now) or moved
                    moved = await self._refresh_errors() or moved
                    if fingerprint != last or moved or self.text is None:
                        self._publish(await self._assemble(now))
                        last = fingerprint
                except Exception:  # a database hiccup: the console keeps its last picture and tries again
                    log.exception("console: building the snapshot failed")
                await asyncio.sleep(TICK_S)
        finally:
            self._task = None

    def _publish(self, snapshot: dict[str, Any]) -> None:
        # Not sent through envelope(): mask secrets here (an error text may quote a URL with a key).
        text = redact(json.dumps(snapshot, ensure_ascii=False, default=str))
        if text == self.text:
            return
        self.text, self.version = text, self.version + 1
        for ready in self._listeners:
            ready.set()

    async def _refresh_errors(self) -> bool:
        async with self._errors_lock:  # file reads off the loop, one at a time
            return await asyncio.get_running_loop().run_in_executor(self.state.readers, self._errors.refresh)

    async def _refresh_health(self, now: float, force: bool = False) -> bool:
        if not force and now - self._health_at < HEALTH_EVERY_S:
            return False
        self._health_at = now
        report = await ask_health(self.state)
        if report is None:
            health = {"ok": False, "actors": self._health["actors"], "message": "Root did not answer"}
        else:
            health = {"ok": report.ok, "message": "ok" if report.ok else "some actors are not answering",
                      "actors": actor_rows(report.actors)}
        changed = health != self._health
        self._health = health
        return changed

    async def _refresh_designers(self, now: float) -> bool:
        s = self.state.settings
        if not s.TUHUI_DISPATCH_URL or now - self._designers_at < DESIGNERS_EVERY_S:
            return False
        self._designers_at = now
        if self._session is None:
            self._session = aiohttp.ClientSession()
        key = s.TUHUI_DISPATCH_KEY.get_secret_value() if s.TUHUI_DISPATCH_KEY else None
        client = DispatchClient(s.TUHUI_DISPATCH_URL, key, self._session, timeout_s=DESIGNERS_TIMEOUT_S)
        try:
            designers = {"online": sorted(await client.online_designers()), "error": None}
        except DispatchError as exc:
            designers = {"online": None, "error": f"dispatch API: {exc}"}
        changed = designers != self._designers
        self._designers = designers
        return changed
