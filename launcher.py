"""The one command: starts the actor system (and the local stand-ins it needs) and watches over it.

Foreground watchdog: if the Thespian admin or Root dies, the whole system is killed by process
group and started again; SIGTERM/SIGINT shut everything down, leaving no process behind.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib
import json
import logging
import logging.handlers
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from urllib.parse import urlsplit

from cluster import placement
from cluster.processes import (
    LaunchError,
    RunningSystem,
    check_data_dir,
    check_port_free,
    kill_system,
    listen_address,
    load_settings,
    parent_of,
    ready_to_fork,
    refuse_weak_secrets,
    setup_logging,
    watch,
)
from imaging import cutout_weights
from observability import metrics_files
from protocol.messages import Pong, StartSystem
from protocol.settings import Settings

log = logging.getLogger("shop.launcher")


def claim_data_dir(data_dir: Path) -> int:
    """Hold DATA_DIR's lock while the launcher and its actors live: one service per DATA_DIR, and restore waits."""
    from persistence.maintenance import hold_service_lock, service_pid

    fd = hold_service_lock(data_dir)
    if fd is None:
        raise LaunchError(f"the service is already running on DATA_DIR {data_dir} (launcher pid "
                          f"{service_pid(data_dir)}); stop it first")
    return fd


def prepare_database(settings: Settings) -> None:
    """Create the tables once, then close: actors open their own connections after fork."""
    from persistence.db import DatabaseUrlError, close_database, open_database

    try:
        open_database(settings.DATABASE_URL, create=True)
    except DatabaseUrlError as exc:
        raise LaunchError(str(exc)) from None
    except Exception as exc:
        raise LaunchError(f"cannot open the database {settings.DATABASE_URL.split('@')[-1]}: {exc}") from None
    finally:
        close_database()


def standin_ports(settings: Settings, ports: tuple[tuple[str, str], ...]) -> Settings:
    """A stand-in's ports: as configured, or any free one where a default port is taken."""
    update = {}
    for name, what in ports:
        try:
            check_port_free("127.0.0.1", getattr(settings, name), what)
        except LaunchError:
            if name in settings.model_fields_set:
                raise  # a port the user chose must be honoured or refused, never silently moved
            log.warning("%s port %d is taken; a free port is used instead", what, getattr(settings, name))
            update[name] = 0
    return settings.model_copy(update=update) if update else settings


def _die_with_parent() -> None:
    # The simulator must not outlive a launcher that was killed with SIGKILL.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Standin:
    """A stand-in (`python -m module`'s main, in a process forked from the launcher); it writes its URLs to a
    ready file once it serves."""

    proc: BaseProcess
    ready: Path
    what: str

    def urls(self, timeout: float = 15) -> dict:
        """Wait for the ready file; the URLs in it. LaunchError if the stand-in exits or is not ready in time."""
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            if self.proc.exitcode is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise LaunchError(f"the {self.what} did not start (see its output above)")
            time.sleep(0.02)
        return json.loads(self.ready.read_text())


def _run_standin(module: str, argv: list[str]) -> None:
    """The forked stand-in: its own signals and logging, not the launcher's, then the module's command line."""
    _die_with_parent()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    logging.root.handlers.clear()
    importlib.import_module(module).main(argv)


def spawn_standin(settings: Settings, module: str, args: list[str], what: str) -> Standin:
    """Start a stand-in without waiting for it. It is forked once the launcher has loaded the actors' code, so
    it imports nothing again (a `python -m` of its own spent ~0.5 CPU-s on aiohttp and pydantic each start).

    Its output is not piped: the launcher runs no reader thread, since it forks the actor system.
    """
    ready = settings.DATA_DIR / "logs" / f"{module.rsplit('.', 1)[-1]}.ready"
    ready.unlink(missing_ok=True)
    proc = multiprocessing.get_context("fork").Process(
        target=_run_standin, args=(module, [*args, "--ready-file", str(ready)]), name=what)
    proc.start()
    return Standin(proc, ready, what)


def spawn_simulator(settings: Settings) -> Standin:
    """Start the IM bridge simulator (its ready file names its WebSocket URL and control URL)."""
    return spawn_standin(settings, "standins.im_bridge", [
        "--host", "127.0.0.1", "--ws-port", str(settings.IM_SIMULATOR_WS_PORT),
        "--http-port", str(settings.IM_SIMULATOR_HTTP_PORT),
        "--record", str(settings.DATA_DIR / "logs" / "im_bridge_frames.jsonl")], "IM bridge simulator")


def spawn_dispatch_standin(settings: Settings) -> Standin:
    """Start the designer dispatch stand-in, designers 橘子 and 婷婷 online (its ready file names its URLs)."""
    return spawn_standin(settings, "standins.dispatch_api", [
        "--host", "127.0.0.1", "--port", str(settings.DISPATCH_STANDIN_PORT),
        "--state-path", str(settings.DATA_DIR / "dispatch-standin.json")],
        "designer dispatch stand-in")


def start_system(settings: Settings, log_defs: dict) -> RunningSystem:
    """Start Thespian on the admin port and Root with every child; wait until Root answers."""
    from thespian.actors import ActorSystem

    ours = {settings.HTTP_API_PORT, settings.IM_SIMULATOR_WS_PORT, settings.IM_SIMULATOR_HTTP_PORT,
            settings.DISPATCH_STANDIN_PORT} - {0}
    if settings.THESPIAN_ADMIN_PORT in ours:
        raise LaunchError(f"THESPIAN_ADMIN_PORT {settings.THESPIAN_ADMIN_PORT} is also used by the HTTP API or the "
                          f"simulator; choose another")
    admin_port = settings.THESPIAN_ADMIN_PORT or _free_port(avoid=ours)
    check_port_free("127.0.0.1", admin_port, "Thespian admin")
    here = placement.system_id(os.environ.get("THESPIAN_BASE_IPADDR") or socket.gethostname(), admin_port)
    placement.set_here(here, "leader")  # before the fork: every actor knows its system (members may join)
    os.environ.setdefault("THESPIAN_BASE_IPADDR", "127.0.0.1")  # one host: every actor socket on loopback
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": admin_port, **placement.leader_capabilities(here)},
                       logDefs=log_defs, transientUnique=True)
    root = asys.createActor("actors.root.Root", globalName="root")
    pong = asys.ask(root, StartSystem(settings=settings, launcher_pid=os.getpid()), 30)
    if not isinstance(pong, Pong):
        raise LaunchError(f"Root did not start (answered {pong!r})")
    admin_pid = parent_of(pong.pid)
    return RunningSystem(asys, root, pong.pgid, admin_pid)


def _free_port(avoid: set[int]) -> int:
    """A free port that is none of ours (the HTTP API may not be listening yet)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line: none for the leader (the whole service); --join HOST:PORT for a member."""
    p = argparse.ArgumentParser(description="Run the retouch-shop service (or, with --join, a member host of it).")
    p.add_argument("--join", metavar="HOST:PORT", help="join the leader whose Thespian admin is at HOST:PORT and "
                   "take conversations and renders from it")
    p.add_argument("--offers", default=",".join(placement.OFFERS),
                   help="with --join: what this member hosts (default: %(default)s)")
    return p.parse_args(argv)


def main() -> int:
    """Run until SIGTERM/SIGINT; exit 2 when the launch is refused. With --join, run a convention member."""
    args = parse_args(sys.argv[1:])
    if args.join:
        from cluster import member

        return member.run(args.join, args.offers)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    standins: list[BaseProcess] = []
    try:
        settings = load_settings()
        refuse_weak_secrets(settings)
        check_data_dir(settings.DATA_DIR)
        claim_data_dir(settings.DATA_DIR)
        metrics_files.prepare(settings.DATA_DIR)  # before prometheus_client is imported and the actors fork
        # One host: loopback. Several: the address named for the convention (THESPIAN_BASE_IPADDR), private.
        trust = listen_address(os.environ.get("THESPIAN_BASE_IPADDR") or "127.0.0.1")
        log_defs = setup_logging(settings)
        if trust:
            log.warning(trust)
        prepare_database(settings)
        check_port_free(settings.HTTP_API_HOST, settings.HTTP_API_PORT, "HTTP API")
        on_defaults = settings.defaults_in_use()
        sim_control = dispatch_control = None
        dispatch = simulator = None
        import actors.root  # noqa: F401  (loaded before the fork, so every actor and stand-in shares these pages)

        if not settings.TUHUI_DISPATCH_URL:
            settings = standin_ports(settings, (("DISPATCH_STANDIN_PORT", "dispatch stand-in"),))
            dispatch = spawn_dispatch_standin(settings)
            standins.append(dispatch.proc)
        if not settings.IM_BRIDGE_URL:
            settings = standin_ports(settings, (("IM_SIMULATOR_WS_PORT", "IM simulator WebSocket"),
                                                ("IM_SIMULATOR_HTTP_PORT", "IM simulator control")))
            simulator = spawn_simulator(settings)
            standins.append(simulator.proc)
        ready_to_fork(settings)
        if dispatch is not None:
            urls = dispatch.urls()
            dispatch_control = urls["control_url"]
            settings = settings.model_copy(update={"TUHUI_DISPATCH_URL": urls["url"]})
        if simulator is not None:
            urls = simulator.urls()
            sim_control = urls["http_url"]
            # The simulator serves the photos a person uploads on its page: the renderer may fetch them.
            allowed = ",".join(filter(None, [settings.FETCH_ALLOW_HOSTS, urlsplit(sim_control).netloc]))
            settings = settings.model_copy(update={"IM_BRIDGE_URL": urls["ws_url"], "FETCH_ALLOW_HOSTS": allowed})

        gc.freeze()  # forked actors share the launcher's heap pages instead of copying them
        system = start_system(settings, log_defs)
    except LaunchError as exc:
        print(f"launcher: {exc}", file=sys.stderr)
        for proc in standins:
            proc.kill()
        return 2
    _banner(settings, sim_control, dispatch_control, on_defaults)
    try:
        system = watch(system, stop, lambda: start_system(settings, log_defs), "the whole actor system")
        if system is None:
            return 1
    finally:
        log.info("shutting down")
        if "system" in locals() and system is not None:
            kill_system(system, graceful=True)
        for proc in standins:
            proc.terminate()
        for proc in standins:
            proc.join(3)
            if proc.exitcode is None:
                proc.kill()
                proc.join(1)
        log.info("stopped")
    return 0


def _banner(settings: Settings, sim_control: str | None, dispatch_control: str | None, on_defaults: list[str]) -> None:
    lines = [
        "retouch-shop service is up",
        f"  Tianwang API   {settings.api_base_url}/api/task/receive  (health: {settings.api_base_url}/api/health)"
        + (f"; {settings.INGRESS_PROCESSES} processes on the port" if settings.INGRESS_PROCESSES > 1 else ""),
        f"  console        {settings.api_base_url}/console  (operators, live; log-ins: `shop-admin user add NAME`)",
        f"  API docs       {settings.api_base_url}/api/docs  (OpenAPI 3.1: /api/openapi.json; Prometheus: /metrics)",
        f"  IM bridge      {settings.IM_BRIDGE_URL}",
    ]
    if sim_control:
        lines.append(f"  play customer  {sim_control}/  (IM bridge simulator: send a photo, pay, get the result)")
    renderer = (f"Gemini {settings.GEMINI_IMAGE_MODEL} + local finishing" if settings.GEMINI_API_KEY
                else "local renderer")
    lines.append(f"  image jobs     {'on' if settings.IMAGE_MODULE_ENABLED else 'paused (payments go to staff)'}; "
                 f"{renderer}, {settings.RENDER_CONCURRENCY} workers; results at {settings.public_base_url}/files/")
    weights = cutout_weights.weights_path()
    lines.append(f"  cut-outs       U²-Net on the CPU ({weights})" if weights.is_file() else
                 f"  cut-outs       MISSING {weights}: run `python -m imaging.cutout_weights`; until then cut-out "
                 "and layered orders fail their render and go to a designer")
    from persistence import job_files

    mail = (f"SMTP {settings.SMTP_HOST}:{settings.SMTP_PORT}" if settings.SMTP_HOST
            else f"files under {settings.DATA_DIR / job_files.MAILS}")
    lines.append(f"  result e-mail  {mail}")
    lines.append(f"  designers      dispatch API {settings.TUHUI_DISPATCH_URL}"
                 + (f" (stand-in; designers and tasks at {dispatch_control})" if dispatch_control else "")
                 + f"; a staff message pauses the AI for {settings.TAKEOVER_MINUTES:g} min")
    lines.append(f"  find-image     archive of originals and results, and {settings.asset_dir}")
    from persistence.maintenance import shown_url

    lines.append(f"  database       {shown_url(settings.DATABASE_URL)}")
    lines.append(f"  data           {settings.DATA_DIR}")
    lines.append(f"  retention      a daily sweep deletes finished jobs' files after {settings.RETENTION_DAYS:g} d, "
                 f"messages after {settings.MESSAGE_RETENTION_DAYS:g} d, settled rows after "
                 f"{settings.COMPACTION_DAYS:g} d; photos declined as ID or bank cards are not kept")
    lines.append("  on embedded defaults: " + ("; ".join(on_defaults) or "none"))
    lines.append("  stop with Ctrl-C (or SIGTERM)")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
