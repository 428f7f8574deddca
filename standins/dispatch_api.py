"""Designer dispatch (图绘派单) stand-in: a loopback server speaking the API of SPEC §4.

API (``X-API-Key`` required when the server has a key; 401 otherwise):

``GET /online/designers``            ``["橘子", "婷婷"]``
``GET /dispatch/queue``              ``{"pending_tasks": {"count", "tasks": [{task_id, task_name, description,
                                     key}]}, "online_designers": {"count", "designers"}, "suggestion"}``; the
                                     suggestion is the online designer with the fewest open (assigned) tasks,
                                     ties by name, null when nobody is online
``POST /tasks``                      ``{"task_name", "description", "task_type", "priority"}`` → ``{"task_id"}``
                                     (8 hex digits); a request with ``Idempotency-Key: k`` answers the task
                                     made for ``k`` the first time instead of making another
``POST /tasks/{id}/assign``          ``{"designer_name", "notes"}`` → ``{"success": true}``; 400 when the
                                     designer is unknown or offline, 404 for an unknown task, 409 once completed
``GET /tasks/{id}``                  ``{"task_id", "task_name", "description", "task_type", "priority", "status":
                                     "pending" | "assigned" | "completed", "assigned_to", "notes", "created_at",
                                     "completed_at", "key"}``
``POST /tasks/{id}/complete``        ``{"notes"}`` → ``{"success": true}``; 409 while the task is unassigned

Control API (no key, JSON):

``POST /control/designers``          ``{"online": [names], "offline": [names]}``; unknown names are added
``GET /control/tasks``               every task, oldest first
``GET /control/requests``            the API request log: ``{seq, at, method, path, status, idempotency_key}``
``POST /control/tasks/{id}/complete`` ``{"notes"}``: a designer finishing the task
``POST /control/reset``              forget tasks and the log; designers as configured at start
``POST /control/latency``            ``{"seconds"}``: answer every API call that much later

Every answer is JSON, errors ``{"success": false, "error": "..."}``. With ``state_path`` the designers and
tasks are kept in that JSON file and restored when the stand-in starts again.

Run it with ``python -m standins.dispatch_api --port 6074 [--key K] [--designers 橘子,婷婷]
[--state-path F] [--log F] [--ready-file F]``; the ready file receives ``{"url", "control_url"}`` once
listening. In-process, :class:`DispatchStandin` starts on the caller's event loop or in a thread of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.dispatch import DEFAULT_PRIORITY, TASK_TYPE

__all__ = ["DEFAULT_DESIGNERS", "DispatchStandin", "main"]

log = logging.getLogger("shop.standins.dispatch")

DEFAULT_DESIGNERS = ("橘子", "婷婷")
CONTROL_PREFIX = "/control/"
STATE_VERSION = 1

_M = TypeVar("_M", bound=BaseModel)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Strict(BaseModel):
    # Strict on purpose: a field our client misspells should fail here, not in production.
    model_config = ConfigDict(extra="forbid")


class CreateTaskBody(_Strict):
    """Body of ``POST /tasks``."""

    task_name: str = Field(min_length=1, max_length=200, description="short title")
    description: str = Field(default="", max_length=10_000, description="what the designer reads")
    task_type: str = Field(default=TASK_TYPE, min_length=1, description="kind of work")
    priority: int = Field(default=DEFAULT_PRIORITY, ge=0, le=10, description="larger is more urgent")


class AssignBody(_Strict):
    """Body of ``POST /tasks/{id}/assign``."""

    designer_name: str = Field(min_length=1, description="an online designer")
    notes: str = Field(default="", max_length=10_000, description="what the designer should know")


class CompleteBody(_Strict):
    """Body of ``POST /tasks/{id}/complete``."""

    notes: str = Field(default="", max_length=10_000, description="the designer's closing notes")


class DesignersBody(_Strict):
    """Body of ``POST /control/designers``."""

    online: list[str] = Field(default_factory=list, description="designers to mark online (added if unknown)")
    offline: list[str] = Field(default_factory=list, description="designers to mark offline (added if unknown)")


class _LatencyRequest(BaseModel):
    """Body of ``POST /control/latency``."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, le=30, description="delay before every API answer")


class _Refused(Exception):
    """A call the API answers with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DispatchStandin:
    """The stand-in server. Control methods are thread-safe; start/stop belong to one loop or thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None,
                 designers: tuple[str, ...] | list[str] = DEFAULT_DESIGNERS, state_path: Path | None = None,
                 log_path: Path | None = None) -> None:
        """Configure; nothing is bound or read until :meth:`start`. Port 0 picks one.

        ``designers`` are online at start unless ``state_path`` holds a saved state, which then wins.
        ``log_path`` receives the API request log as JSON lines.
        """
        self.host = host
        self.port = port
        self.api_key = api_key or None
        self.state_path = state_path
        self.log_path = log_path
        self._initial_designers = list(dict.fromkeys(designers))
        self.latency_s = 0.0  # how late every API answer comes: lets a test kill the caller mid-call
        self._lock = threading.Lock()
        self._designers: dict[str, bool] = dict.fromkeys(self._initial_designers, True)
        self._tasks: dict[str, dict[str, Any]] = {}
        self._log: list[dict[str, Any]] = []
        self._seq = 0
        self._log_file: TextIO | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Restore the saved state, bind and serve on the running loop; afterwards :attr:`port` is real."""
        if self._runner is not None:
            raise RuntimeError("DispatchStandin already started")
        self._restore()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("a", encoding="utf-8")
        app = web.Application(middlewares=[self._middleware])
        app.add_routes([
            web.get("/online/designers", self._online_designers),
            web.get("/dispatch/queue", self._queue),
            web.post("/tasks", self._create),
            web.get("/tasks/{task_id}", self._get_task),
            web.post("/tasks/{task_id}/assign", self._assign),
            web.post("/tasks/{task_id}/complete", self._complete),
            web.post("/control/designers", self._control_designers),
            web.get("/control/tasks", self._control_tasks),
            web.get("/control/requests", self._control_requests),
            web.post("/control/tasks/{task_id}/complete", self._complete),
            web.post("/control/reset", self._control_reset),
            web.post("/control/latency", self._control_latency),
        ])
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        log.info("dispatch stand-in on %s", self.base_url)

    async def stop(self) -> None:
        """Stop serving and close the log file. Safe to call twice."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def start_thread(self) -> DispatchStandin:
        """Serve from a thread with its own event loop (for synchronous callers); returns self."""
        if self._thread is not None:
            raise RuntimeError("DispatchStandin already started")
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="dispatch-standin", daemon=True)
        self._thread.start()
        self._loop = loop
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
        except BaseException:
            self.stop_thread()
            raise
        return self

    def stop_thread(self) -> None:
        """Stop a server started by :meth:`start_thread` and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> DispatchStandin:
        return self.start_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    async def __aenter__(self) -> DispatchStandin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """What to configure as ``TUHUI_DISPATCH_URL``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def control_url(self) -> str:
        """Base URL of the control API (no trailing slash)."""
        return self.base_url + CONTROL_PREFIX.rstrip("/")

    # ------------------------------------------------------------------ control

    def set_designers(self, online: list[str] | None = None, offline: list[str] | None = None) -> dict[str, bool]:
        """Mark designers online / offline (unknown names are added); every designer's state afterwards."""
        with self._lock:
            for name in online or []:
                self._designers[name] = True
            for name in offline or []:
                self._designers[name] = False
            self._save()
            return dict(self._designers)

    def designers(self) -> dict[str, bool]:
        """Every known designer and whether they are online."""
        with self._lock:
            return dict(self._designers)

    def tasks(self) -> list[dict[str, Any]]:
        """Every task, oldest first."""
        with self._lock:
            return [dict(task) for task in self._tasks.values()]

    def requests(self) -> list[dict[str, Any]]:
        """The API request log, oldest first (control calls are not logged)."""
        with self._lock:
            return [dict(entry) for entry in self._log]

    def complete(self, task_id: str, notes: str = "") -> dict[str, Any]:
        """A designer finishing ``task_id``: what ``POST /tasks/{id}/complete`` does; the task afterwards."""
        with self._lock:
            return dict(self._complete_locked(task_id, notes))

    def reset(self) -> None:
        """Forget tasks and the in-memory log; designers as configured (``seq`` keeps counting)."""
        with self._lock:
            self._tasks.clear()
            self._log.clear()
            self._designers = dict.fromkeys(self._initial_designers, True)
            self._save()

    # ------------------------------------------------------------------ state

    def _restore(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            designers = {str(name): bool(on) for name, on in state["designers"].items()}
            tasks = {str(task["task_id"]): dict(task) for task in state["tasks"]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # A stand-in should come up rather than block the launcher; keep the bad file to look at.
            aside = self.state_path.with_suffix(self.state_path.suffix + ".corrupt")
            self.state_path.replace(aside)
            log.warning("dispatch stand-in state %s unreadable (%s); moved to %s, starting empty",
                        self.state_path, exc, aside)
            return
        with self._lock:
            self._designers, self._tasks = designers, tasks

    def _save(self) -> None:
        """Write the state file whole, then rename, so a kill never leaves half a file. Caller holds the lock."""
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(self.state_path.suffix + ".tmp")
        state = {"version": STATE_VERSION, "designers": self._designers, "tasks": list(self._tasks.values())}
        tmp.write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, self.state_path)

    # ------------------------------------------------------------------ plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Key check, JSON errors for everything (aiohttp's own 404/405 included) and the request log."""
        control = request.path.startswith(CONTROL_PREFIX)
        if not control and self.api_key is not None and not hmac.compare_digest(
                request.headers.get("X-API-Key", "").encode(), self.api_key.encode()):
            given = "X-API-Key" in request.headers
            response: web.StreamResponse = _error(401, "invalid API key" if given else "missing X-API-Key header")
        else:
            if not control and self.latency_s:
                await asyncio.sleep(self.latency_s)
            try:
                response = await handler(request)
            except _Refused as exc:
                response = _error(exc.status, exc.message)
            except web.HTTPException as exc:
                response = _error(exc.status, exc.reason)
            except Exception:
                log.exception("dispatch stand-in failed on %s %s", request.method, request.path)
                response = _error(500, "internal error")
        if not control:
            self._record(request, response.status)
        return response

    def _record(self, request: web.Request, status: int) -> None:
        with self._lock:
            self._seq += 1
            entry = {"seq": self._seq, "at": time.time(), "method": request.method, "path": request.path,
                     "status": status, "idempotency_key": request.headers.get("Idempotency-Key")}
            self._log.append(entry)
            if self._log_file is not None:
                self._log_file.write(json.dumps(entry, ensure_ascii=False) + "\n")
                self._log_file.flush()

    def _open_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self._designers, 0)
        for task in self._tasks.values():
            if task["status"] == "assigned" and task["assigned_to"] in counts:
                counts[task["assigned_to"]] += 1
        return counts

    def _task_locked(self, task_id: str) -> dict[str, Any]:
        task = self._tasks.get(task_id)
        if task is None:
            raise _Refused(404, f"task {task_id} not found")
        return task

    def _complete_locked(self, task_id: str, notes: str) -> dict[str, Any]:
        task = self._task_locked(task_id)
        if task["status"] == "completed":
            return task  # a designer pressing "done" twice
        if task["status"] != "assigned":
            raise _Refused(409, f"task {task_id} is {task['status']}, not assigned to anyone")
        task.update(status="completed", notes=notes, completed_at=_now())
        self._save()
        return task

    # ------------------------------------------------------------------ the API

    async def _online_designers(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response([name for name, on in self._designers.items() if on])

    async def _queue(self, request: web.Request) -> web.Response:
        with self._lock:
            pending = [{"task_id": t["task_id"], "task_name": t["task_name"], "description": t["description"],
                        "key": t["key"]} for t in self._tasks.values() if t["status"] == "pending"]
            online = [name for name, on in self._designers.items() if on]
            counts = self._open_counts()
        suggestion = min(online, key=lambda name: (counts[name], name)) if online else None
        return web.json_response({
            "pending_tasks": {"count": len(pending), "tasks": pending},
            "online_designers": {"count": len(online), "designers": online},
            "suggestion": suggestion,
        })

    async def _create(self, request: web.Request) -> web.Response:
        body = await _parse(request, CreateTaskBody)
        key = request.headers.get("Idempotency-Key") or None
        with self._lock:
            if key is not None:
                for task in self._tasks.values():
                    if task["key"] == key:
                        return web.json_response({"task_id": task["task_id"]})
            task_id = secrets.token_hex(4)
            while task_id in self._tasks:
                task_id = secrets.token_hex(4)
            self._tasks[task_id] = {
                "task_id": task_id, "task_name": body.task_name, "description": body.description,
                "task_type": body.task_type, "priority": body.priority, "status": "pending", "assigned_to": None,
                "notes": None, "created_at": _now(), "completed_at": None, "key": key,
            }
            self._save()
        log.info("dispatch task %s created (key %s)", task_id, key)
        return web.json_response({"task_id": task_id})

    async def _get_task(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(dict(self._task_locked(request.match_info["task_id"])))

    async def _assign(self, request: web.Request) -> web.Response:
        body = await _parse(request, AssignBody)
        with self._lock:
            task = self._task_locked(request.match_info["task_id"])
            online = self._designers.get(body.designer_name)
            if online is None:
                raise _Refused(400, f"unknown designer {body.designer_name}")
            if not online:
                raise _Refused(400, f"designer {body.designer_name} is offline")
            if task["status"] == "completed":
                raise _Refused(409, f"task {task['task_id']} is already completed")
            task.update(status="assigned", assigned_to=body.designer_name, notes=body.notes)
            self._save()
        return web.json_response({"success": True})

    async def _complete(self, request: web.Request) -> web.Response:
        body = await _parse(request, CompleteBody)
        with self._lock:
            self._complete_locked(request.match_info["task_id"], body.notes)
        return web.json_response({"success": True})

    # ------------------------------------------------------------------ control over HTTP

    async def _control_designers(self, request: web.Request) -> web.Response:
        body = await _parse(request, DesignersBody)
        designers = self.set_designers(body.online, body.offline)
        return web.json_response({"designers": designers,
                                  "online": [name for name, on in designers.items() if on]})

    async def _control_tasks(self, request: web.Request) -> web.Response:
        return web.json_response(self.tasks())

    async def _control_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests())

    async def _control_latency(self, request: web.Request) -> web.Response:
        body = await _parse(request, _LatencyRequest)
        self.latency_s = body.seconds
        return web.json_response({"latency_s": self.latency_s})

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"success": True})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"success": False, "error": message}, status=status)


async def _parse(request: web.Request, model: type[_M]) -> _M:
    """The request's JSON body (empty = ``{}``) as ``model``, or a 400 saying what is wrong."""
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise _Refused(400, f"invalid body: {problems}") from None


# ---------------------------------------------------------------------- command line

async def _run(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT."""
    designers = [name.strip() for name in args.designers.split(",") if name.strip()]
    standin = DispatchStandin(args.host, args.port, api_key=args.key, designers=designers,
                              state_path=args.state_path, log_path=args.log)
    await standin.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        print(f"dispatch stand-in: {standin.base_url}  control {standin.control_url}", flush=True)
        if args.ready_file is not None:
            # Written whole then renamed, so a process polling for it never reads half a file.
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"url": standin.base_url, "control_url": standin.control_url}))
            tmp.replace(args.ready_file)
        await stop.wait()
    finally:
        await standin.stop()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m standins.dispatch_api [--host H] [--port N] ...``."""
    parser = argparse.ArgumentParser(prog="python -m standins.dispatch_api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port, 0 = any (default 0)")
    parser.add_argument("--key", default=None, help="require this X-API-Key (default: no key)")
    parser.add_argument("--designers", default=",".join(DEFAULT_DESIGNERS),
                        help="comma-separated designers online at start (default 橘子,婷婷)")
    parser.add_argument("--state-path", type=Path, default=None, help="keep tasks and designers in this JSON file")
    parser.add_argument("--log", type=Path, default=None, help="append the request log to this JSON-lines file")
    parser.add_argument("--ready-file", type=Path, default=None, help="write {url, control_url} here once listening")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
