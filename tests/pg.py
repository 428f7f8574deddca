"""A throwaway PostgreSQL server for the tests: Debian's server binaries, initdb in a temp dir, a free loopback port.

One server per test session (started on first use, stopped at session end and at exit); every test gets a new,
empty database of its own. As root the server runs as the `postgres` system user (PostgreSQL refuses root).
Every wait has a timeout: a server that does not come up fails the test with its log, it never hangs.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.ports import free_port

SUPERUSER = "shop"
INITDB_GLOB = "/usr/lib/postgresql/*/bin/initdb"


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def bin_dir() -> Path | None:
    """The newest installed server's bin directory (Debian keeps it off PATH), or one on PATH, or None."""
    found = sorted(glob.glob(INITDB_GLOB), key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


class PgServer:
    """One postgres server in a temporary directory, on a free port of 127.0.0.1, trust auth for SUPERUSER."""

    def __init__(self) -> None:
        found = bin_dir()
        if found is None:
            raise PgUnavailable("PostgreSQL server binaries not installed (apt-get install postgresql)")
        self.bin = found
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="shop-pg-"))
        self.data = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:  # postgres refuses to run as root: hand the directory to its system user
            user = pwd.getpwnam("postgres") if _has_user("postgres") else pwd.getpwnam("nobody")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        self._count = 0
        self._lock = threading.Lock()

    def url(self, dbname: str) -> str:
        """The DATABASE_URL of one database on this server."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def init(self, timeout: float = 90) -> PgServer:
        """initdb: a new cluster, UTF-8, C locale, nothing synced to disk (a test server)."""
        result = subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
             "--locale=C", "--no-sync"],
            cwd=self.dir, capture_output=True, text=True, timeout=timeout, **self._run_as)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr[-2000:]}")
        return self

    def start(self, timeout: float = 30, also_on: str = "") -> PgServer:
        """Start postgres and wait until it accepts connections; also_on: one more address it listens on, taking
        its /24 (a second host of a test's network) with trust auth too."""
        if also_on:
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {also_on}/24 trust\n")
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 (the server writes it)
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.dir), "-p", str(self.port),
             "-c", f"listen_addresses={','.join(filter(None, ['127.0.0.1', also_on]))}", "-c", "fsync=off",
             "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "shared_buffers=64MB",
             "-c", "max_connections=400"],  # one per live conversation actor (CONVERSATIONS_MAX_LIVE 200), and more
            cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **self._run_as)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                self.connect("postgres").close()
                return self
            except Exception as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres did not accept connections in {timeout}s ({exc}):\n"
                                       f"{self.log()[-3000:]}") from None
                time.sleep(0.05)

    def connect(self, dbname: str) -> Any:
        """A psycopg2 connection (autocommit) to one database."""
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=dbname, connect_timeout=3)
        con.autocommit = True
        return con

    def new_database(self, template: str = "template0") -> str:
        """A new database, empty or a copy of template (a database nobody is connected to); its URL."""
        with self._lock:
            self._count += 1
            name = f"t{os.getpid()}_{self._count}"
        con = self.connect("postgres")
        try:
            con.cursor().execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            con.close()
        return self.url(name)

    def stop(self, timeout: float = 10, fast: bool = False) -> None:
        """Immediate shutdown (SIGQUIT, `pg_ctl stop -m immediate`), or with fast a clean one that keeps every
        commit (SIGINT, `-m fast`: this server does not sync commits); SIGKILL if it does not go."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT if fast else signal.SIGQUIT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        """What the server printed."""
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def connect_url(url: str) -> Any:
    """A psycopg2 connection (autocommit) to the database of a postgresql:// URL."""
    import psycopg2

    con = psycopg2.connect(url, connect_timeout=3)
    con.autocommit = True
    return con


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


_shared: dict[str, PgServer] = {}
_shared_lock = threading.Lock()


def shared_server() -> PgServer:
    """This test session's server, started on first use; PgUnavailable without the server binaries."""
    with _shared_lock:
        if "server" not in _shared:
            server = PgServer()
            try:
                server.init().start()
            except BaseException:
                server.remove()
                raise
            _shared["server"] = server
            atexit.register(stop_shared)
        return _shared["server"]


def stop_shared() -> None:
    """Stop and remove the session's server, if one was started."""
    with _shared_lock:
        server = _shared.pop("server", None)
    if server is not None:
        server.remove()


def wanted() -> bool:
    """Whether this run puts the launcher (e2e flows) on PostgreSQL: SHOP_TEST_DB=postgresql."""
    return os.environ.get("SHOP_TEST_DB", "sqlite").lower() in ("postgresql", "postgres", "pg")
