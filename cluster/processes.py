"""What the launcher and a member (`launcher.py --join`) both do with their processes: read the settings, check
the data directory and ports, log, listen where they may, and start, watch, restart and stop an actor system."""

from __future__ import annotations

import contextlib
import errno
import logging
import logging.handlers
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from core import redaction
from protocol.messages import Ping, Pong
from protocol.settings import Settings
from protocol.validation import problems

log = logging.getLogger("shop.launcher")  # the launcher's and a member's lines keep the names they had

WATCH_INTERVAL_S = 0.5
PING_TIMEOUT_S = 2.0
MISSES_BEFORE_RESTART = 2
SHUTDOWN_GRACE_S = 6.0


class LaunchError(Exception):
    """The launcher cannot start: the message says what to fix."""


def load_settings() -> Settings:
    """Settings from the environment and .env, or a LaunchError naming the bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise LaunchError("configuration is not valid:\n" + "\n".join(f"  {p}" for p in problems(exc, "settings"))
                          ) from None


def check_data_dir(data_dir: Path) -> None:
    """DATA_DIR must exist (or be creatable) and be writable."""
    try:
        (data_dir / "logs").mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise LaunchError(f"DATA_DIR {data_dir} is not writable: {exc.strerror or exc}") from None


def check_port_free(host: str, port: int, what: str) -> None:
    """Refuse to start when a port we must listen on is taken."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            raise LaunchError(f"{what} port {host}:{port} {reason}; stop whatever holds it or choose another "
                              f"port") from None


def setup_logging(settings: Settings, log_name: str = "shop.log") -> dict:
    """Console + DATA_DIR/logs/shop.log (a member: its own file) for the launcher; the same as Thespian logDefs for
    the actors."""
    log_file = str(settings.DATA_DIR / "logs" / log_name)
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    style = "json" if settings.LOG_FORMAT == "json" else "plain"
    handlers = {
        "console": {"class": "logging.StreamHandler", "formatter": style, "stream": "ext://sys.stderr",
                    "level": settings.LOG_LEVEL},
        "file": {"class": "logging.handlers.RotatingFileHandler", "formatter": style, "filename": log_file,
                 "maxBytes": 20 * 1024 * 1024, "backupCount": 5, "encoding": "utf-8",
                 "level": settings.LOG_LEVEL},
    }
    log_defs = {
        "version": 1,
        "formatters": {"plain": {"format": fmt}, "json": {"()": "observability.json_logs.JsonFormatter"}},
        "handlers": handlers,
        "root": {"handlers": ["console", "file"], "level": settings.LOG_LEVEL},
        "loggers": {"peewee": {"level": "INFO"}, "asyncio": {"level": "WARNING"},
                    "websockets": {"level": "DEBUG" if settings.LOG_LEVEL == "DEBUG" else "INFO"}},
        "disable_existing_loggers": False,
    }
    import logging.config

    from observability.json_logs import bind_process, install_record_factory

    install_record_factory()  # before the fork: every actor process captures the ids it binds
    bind_process("launcher")
    redaction.configure(settings)
    redaction.add_filter(log_defs, settings)  # every handler, here and in Thespian's logging process
    logging.config.dictConfig(log_defs)
    return log_defs


@dataclass
class RunningSystem:
    """One incarnation of the actor system."""

    asys: object
    root: object
    pgid: int
    admin_pid: int


def ready_to_fork(settings: Settings, thespian_log_name: str = "thespian.log") -> None:
    """Load before the actor system forks what every actor should share rather than load on its own: RapidOCR's
    and onnxruntime's code, google-genai when keyed; Thespian's log masked under DATA_DIR, its sockets tuned."""
    from cluster import thespian_log
    from cluster.runtime import tune_thespian
    from imaging import cutout, ocr
    from integrations.gemini import load_sdk

    thespian_log.mask_and_keep(settings.DATA_DIR / "logs", thespian_log_name)
    ocr.preload()
    cutout.preload()
    if settings.GEMINI_API_KEY:
        load_sdk()  # for the render workers and phrasing: loaded once, shared by every fork
    tune_thespian(settings.THESPIAN_IDLE_SOCKET_MS)


def refuse_weak_secrets(settings: Settings) -> None:
    """LaunchError when a secret is shorter than redaction.MIN_SECRET_LEN: too short to be safe, and too short to
    be masked in logs without mangling ordinary words."""
    weak = redaction.weak_secrets(settings)
    if weak:
        raise LaunchError(f"{', '.join(weak)}: shorter than {redaction.MIN_SECRET_LEN} characters, too short to be "
                          f"safe (and to be masked in logs); use a longer one")


def listen_address(address: str) -> str:
    """Check the address the actor system will listen on and bind every actor socket to it alone (LaunchError
    for a public one); the warning to log for a private one, else ""."""
    from cluster import thespian_bind

    try:
        warning = thespian_bind.check_address(address)
    except thespian_bind.PublicAddress as exc:
        raise LaunchError(str(exc)) from None
    thespian_bind.bind_where_reached()
    return warning


def _proc_stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, …); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def parent_of(pid: int) -> int:
    fields = _proc_stat(pid)
    if fields is None:
        raise LaunchError(f"process {pid} vanished while the system was starting")
    return int(fields[1])


def _alive(pid: int) -> bool:
    fields = _proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def kill_system(system: RunningSystem, graceful: bool) -> None:
    """Stop an incarnation; whatever does not stop in time is killed by process group."""
    if graceful:
        done = threading.Event()

        def _shutdown() -> None:
            with contextlib.suppress(Exception):
                system.asys.shutdown()
            done.set()

        threading.Thread(target=_shutdown, daemon=True).start()
        # shutdown() can linger after every actor has gone: the empty process group is the signal.
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while not done.wait(0.05) and time.monotonic() < deadline and group_members(system.pgid):
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(system.pgid, signal.SIGKILL)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and group_members(system.pgid):
        time.sleep(0.02)


def group_members(pgid: int) -> list[int]:
    """Pids of the group's processes still running (zombies awaiting their parent do not count)."""
    pids = []
    for entry in os.scandir("/proc"):
        fields = _proc_stat(entry.name) if entry.name.isdigit() else None
        if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def healthy(system: RunningSystem, nonce: int) -> bool:
    """Admin alive and Root answering a ping."""
    if not _alive(system.admin_pid):
        log.error("the Thespian admin (pid %d) is gone", system.admin_pid)
        return False
    try:
        answer = system.asys.ask(system.root, Ping(nonce=nonce), PING_TIMEOUT_S)
    except Exception as exc:
        log.error("Root did not answer: %s", exc)
        return False
    return isinstance(answer, Pong)


def watch(system: RunningSystem, stop: threading.Event, start: Callable[[], RunningSystem],
          what: str) -> RunningSystem | None:
    """Ping Root until stop; restart the system (with backoff) when it stops answering or its admin dies.

    The system running when stop is set, or None if stop came while a restart was still failing.
    """
    nonce, misses = 0, 0
    while not stop.wait(WATCH_INTERVAL_S):
        nonce += 1
        if healthy(system, nonce):
            misses = 0
            continue
        misses += 1
        if misses < MISSES_BEFORE_RESTART and _alive(system.admin_pid):
            continue
        log.error("restarting %s", what)
        kill_system(system, graceful=False)
        started = time.monotonic()
        restarted = _start_with_retry(start, stop, what)
        if restarted is None:
            return None
        system, misses = restarted, 0
        log.warning("%s restarted in %.2fs", what, time.monotonic() - started)
        from observability.metrics import ACTOR_RESTARTS  # imported once the metrics directory is set up

        ACTOR_RESTARTS.labels("system").inc()
    return system


def _start_with_retry(start: Callable[[], RunningSystem], stop: threading.Event, what: str) -> RunningSystem | None:
    delay = 0.2
    while not stop.is_set():
        try:
            return start()
        except Exception as exc:
            log.error("%s did not start (%s); retrying in %.1fs", what, exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, 10)
    return None
