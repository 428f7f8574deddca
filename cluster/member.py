"""The member side of the launcher: `launcher.py --join HOST:PORT` joins a leader's convention and offers capacity.

A member runs an actor system of its own on THESPIAN_ADMIN_PORT (0: any free port) whose capabilities
name the leader's admin address (Thespian's `Convention Address.IPv4`) and what it offers: conversation
actors and render workers. The leader places those here and keeps everything else. A member needs few
settings of its own: the shared database as this host reaches it (DATABASE_URL), the leader's DATA_DIR
mounted at the same path (DATA_DIR), this host's address (THESPIAN_BASE_IPADDR, by default the interface
facing the leader), its admin port and how many render workers it runs (RENDER_CONCURRENCY). The rest
comes from the leader with each actor it places here.

Like the leader's launcher it is a watchdog: if its admin dies or stops answering, the member's process
group is killed and a new system joins again; SIGTERM/SIGINT leave the convention and stop everything.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

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
from observability import metrics_files
from protocol.messages import Pong
from protocol.settings import LOOPBACK_HOSTS, Settings

log = logging.getLogger("shop.member")


def parse_leader(value: str) -> tuple[str, int]:
    """HOST:PORT of the leader's admin, or a LaunchError saying what is wrong."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LaunchError(f"--join {value!r}: give the leader's admin address as HOST:PORT (its THESPIAN_ADMIN_PORT)")
    return host, int(port)


def parse_offers(value: str) -> tuple[str, ...]:
    """The comma-separated --offers, each one of placement.OFFERS."""
    offers = tuple(o.strip() for o in value.split(",") if o.strip())
    unknown = [o for o in offers if o not in placement.OFFERS]
    if unknown or not offers:
        raise LaunchError(f"--offers {value!r}: choose from {', '.join(placement.OFFERS)}")
    return offers


def facing_address(leader_host: str) -> str:
    """This host's address on the route to the leader (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((leader_host, 9))
            return s.getsockname()[0]
        except OSError as exc:
            raise LaunchError(f"no route to the leader {leader_host}: {exc.strerror or exc}") from None


def check_database(settings: Settings, leader_host: str) -> None:
    """The shared database must be reachable and at this release's schema (the leader migrates it)."""
    from persistence import migrations
    from persistence.db import DatabaseUrlError, close_database, open_database
    from persistence.maintenance import shown_url

    if settings.DATABASE_URL.startswith("sqlite") and leader_host not in LOOPBACK_HOSTS:
        raise LaunchError("a member on another host shares the leader's database: set DATABASE_URL to the "
                          "PostgreSQL server both reach (SQLite serves one host only)")
    try:
        db = open_database(settings.DATABASE_URL)
        with db.connection_context():
            version = migrations.current_version(db)
    except DatabaseUrlError as exc:
        raise LaunchError(str(exc)) from None
    except Exception as exc:
        raise LaunchError(f"cannot open the database {shown_url(settings.DATABASE_URL)}: {exc}") from None
    finally:
        close_database()
    if version != migrations.LATEST:
        raise LaunchError(f"the database {shown_url(settings.DATABASE_URL)} is at schema version {version}, this "
                          f"release's is {migrations.LATEST}: start the leader (of this release) first")


def start_member(settings: Settings, log_defs: dict, leader: tuple[str, int], offers: tuple[str, ...],
                 system: str) -> RunningSystem:
    """Start this member's actor system, joining the leader's convention, and its agent; wait until it answers."""
    from thespian.actors import ActorSystem

    from actors.member_agent import MemberAgent
    from protocol.convention import StartMember

    port = int(system.rsplit(":", 1)[1])
    check_port_free("127.0.0.1", port, "Thespian admin")
    # Before the fork: every actor here inherits it.
    placement.set_here(system, "member", settings.DATABASE_URL, str(settings.DATA_DIR))
    capabilities = placement.member_capabilities(system, leader, offers, settings.RENDER_CONCURRENCY)
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": port, **capabilities}, logDefs=log_defs,
                       transientUnique=True)
    agent = asys.createActor(MemberAgent, targetActorRequirements={placement.CAP_SYSTEM: system})
    pong = asys.ask(agent, StartMember(launcher_pid=os.getpid()), 30)
    if not isinstance(pong, Pong):
        raise LaunchError(f"the member's actor system did not start (its agent answered {pong!r})")
    return RunningSystem(asys, agent, pong.pgid, parent_of(pong.pid))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leader_reachable(leader: tuple[str, int]) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(leader, timeout=2):
        return True
    return False


def run(join: str, offers_arg: str) -> int:
    """Run a member until SIGTERM/SIGINT; exit 2 when the launch is refused."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    metrics_dir = Path(tempfile.mkdtemp(prefix="shop-member-"))
    try:
        leader = parse_leader(join)
        offers = parse_offers(offers_arg)
        settings = load_settings()
        refuse_weak_secrets(settings)
        check_data_dir(settings.DATA_DIR)
        # Its counters stay on this host: DATA_DIR is shared, and the leader's metrics directory is its own.
        metrics_files.prepare(metrics_dir)
        address = os.environ.get("THESPIAN_BASE_IPADDR") or facing_address(leader[0])
        os.environ["THESPIAN_BASE_IPADDR"] = address  # Thespian advertises this address to the leader, binds only it
        trust = listen_address(address)
        # One port for this launcher's whole run, so the member keeps its id (and log) across its restarts.
        system = placement.system_id(address, settings.THESPIAN_ADMIN_PORT or _free_port())
        log_defs = setup_logging(settings, log_name=f"member-{system.replace(':', '-')}.log")
        if trust:
            log.warning(trust)
        check_database(settings, leader[0])
        import actors.conversation  # noqa: F401  (loaded before the fork: the actors placed here share it)
        import actors.render_worker  # noqa: F401
        ready_to_fork(settings, f"thespian-{system.replace(':', '-')}.log")
        gc.freeze()
        running = start_member(settings, log_defs, leader, offers, system)
    except LaunchError as exc:
        print(f"launcher: {exc}", file=sys.stderr)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        return 2
    _banner(settings, leader, offers, system, _leader_reachable(leader))
    try:
        return _watch(running, settings, log_defs, leader, offers, system, stop)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _watch(running: RunningSystem, settings: Settings, log_defs: dict, leader: tuple[str, int],
           offers: tuple[str, ...], system: str, stop: threading.Event) -> int:
    current: RunningSystem | None = running
    try:
        current = watch(running, stop, lambda: start_member(settings, log_defs, leader, offers, system),
                        "the member's actor system")
        return 0 if current is not None else 1
    finally:
        log.info("leaving the convention")
        if current is not None:
            kill_system(current, graceful=True)
        log.info("stopped")


def _banner(settings: Settings, leader: tuple[str, int], offers: tuple[str, ...], system: str, reachable: bool) -> None:
    from persistence.maintenance import shown_url

    renders = f" ({settings.RENDER_CONCURRENCY} render workers)" if "renderer" in offers else ""
    lines = [
        "retouch-shop member is up",
        f"  joins          the leader at {leader[0]}:{leader[1]}"
        + ("" if reachable else " (not reachable yet: it keeps trying)"),
        f"  this system    {system}",
        f"  offers         {', '.join(offers)}{renders}",
        f"  database       {shown_url(settings.DATABASE_URL)}",
        f"  data           {settings.DATA_DIR} (the leader's DATA_DIR: the same storage at the same path)",
        "  stop with Ctrl-C (or SIGTERM)",
    ]
    print("\n".join(lines), flush=True)
