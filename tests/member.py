"""A convention member as a user runs it: `launcher.py --join` in a session of its own, beside a test's leader.

It shares the leader's DATA_DIR and database (one host: the same directory and file, or the same PostgreSQL
database), listens on a free admin port of 127.0.0.1, and is killed by process group: its launcher's
session and its actor system's group (the Thespian admin starts one of its own).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tests.harness import HEALTH_POLL_S, REPO, Launcher, free_port, process_group_alive, sigterm_and_wait, wait_for


def _die_with_parent() -> None:
    # In a session of its own the member escapes a test's killpg: it stops when the test process dies.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Member:
    """`launcher.py --join 127.0.0.1:<the leader's admin port>` in a subprocess."""

    leader: Launcher
    env_extra: dict[str, str] = field(default_factory=dict)
    admin_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    pgids: set[int] = field(default_factory=set)

    @property
    def system(self) -> str:
        """Its id in the convention (the leader's health report names it so)."""
        return f"127.0.0.1:{self.admin_port}"

    def env(self) -> dict[str, str]:
        env = self.leader.env()
        env.update(THESPIAN_ADMIN_PORT=str(self.admin_port), THESPIAN_BASE_IPADDR="127.0.0.1", **self.env_extra)
        return env

    def start(self, wait: bool = True) -> Member:
        """Start it; with wait, until the leader reports it alive."""
        log = open(self.leader.data_dir / f"member-{self.admin_port}.out", "ab")  # noqa: SIM115 (the child writes it)
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "launcher.py"), "--join", f"127.0.0.1:{self.leader.admin_port}"],
            cwd=self.leader.data_dir, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent)
        log.close()
        self.pgids.add(self.proc.pid)
        if wait:
            self.wait_alive()
        return self

    def output(self) -> str:
        """What the member printed."""
        path = self.leader.data_dir / f"member-{self.admin_port}.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def view(self) -> dict[str, Any] | None:
        """This member as the leader's /api/health shows it (None when not listed)."""
        members = self.leader.health().get("data", {}).get("members", [])
        return next((m for m in members if m["system"] == self.system and m["state"] != "lost"), None)

    def wait_alive(self, timeout: float = 40) -> dict[str, Any]:
        def alive() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"member exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            view = self.view()
            if view is not None and view["state"] == "alive":
                self.pgids.add(view["pgid"])
                return view
            return None

        return wait_for(alive, timeout, HEALTH_POLL_S, f"member {self.system} alive")

    def kill(self) -> float:
        """SIGKILL every process of the member at once, as if its host died; the time it happened."""
        for pgid in self.pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        killed = time.time()
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        return killed

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (it leaves the convention), wait; whatever is left is killed."""
        try:
            sigterm_and_wait(self.proc, timeout)
        finally:
            self.kill()

    def leftovers(self) -> list[int]:
        """Processes of this member still running."""
        return [p for g in self.pgids for p in process_group_alive(g)]
