"""Free loopback ports for tests: never handed out twice in a run, even across pytest-xdist workers."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands to sockets bound to port 0 (Linux's default where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Test ports come from below the kernel's ephemeral range: a socket bound to port 0 (an actor's, a client's) can
# then never take one between the moment it is handed out and the moment its server binds it. Under pytest-xdist
# each worker walks its own residue class, so two workers never hand out the same port; a random start keeps two
# test runs on one machine apart.
PORT_FLOOR = 10000
EPHEMERAL_FLOOR = _ephemeral_floor()
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_stride = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_ports = iter(range(PORT_FLOOR + int(_worker.removeprefix("gw") or 0)
                    + _stride * random.randrange((EPHEMERAL_FLOOR - PORT_FLOOR) // _stride // 2),
                    EPHEMERAL_FLOOR, _stride))


def free_port() -> int:
    """A TCP port nobody listens on right now, never one this process (or another xdist worker) handed out before.

    The kernel may give back a port just released, so picking by binding port 0 could return one number twice
    (seen: the admin and the HTTP API on one port).
    """
    for port in _ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free test port left below {EPHEMERAL_FLOOR}")
