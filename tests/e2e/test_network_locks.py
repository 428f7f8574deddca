"""The actors' doors seen from another machine (issue 16): a second network namespace joined to this one by a veth
pair plays a host on the shop's network. This kernel has no WireGuard (CONFIG_WIREGUARD is not set), so the
link is a plain veth pair; what is checked — which address takes connections — is the same over wg0.

The service runs in this namespace as `make run` starts it; from the other one, every port it listens on is
tried at this host's address on the link: each connection is refused, so no pickle is ever read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Launcher, listening_addresses, process_group_alive

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                 reason="network namespaces need root and iproute2")]

HOST_IP, PEER_IP = "10.216.{n}.1", "10.216.{n}.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def other_host() -> Iterator[tuple[str, str, str]]:
    """(namespace, this host's address on the link, the other host's address); removed afterwards."""
    n = os.getpid() % 250
    ns, here, there = f"shop16-{os.getpid()}", HOST_IP.format(n=n), PEER_IP.format(n=n)
    host_if, peer_if = f"s16h{os.getpid()}"[:15], f"s16p{os.getpid()}"[:15]
    ip("netns", "add", ns)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        ip("link", "set", peer_if, "netns", ns)
        ip("addr", "add", f"{here}/24", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{there}/24", "dev", peer_if)
        ip("netns", "exec", ns, "ip", "link", "set", peer_if, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, here, there
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


PROBE = textwrap.dedent("""
    import json, pickle, socket, sys
    host, ports = sys.argv[1], json.loads(sys.argv[2])
    outcome = {}
    for port in ports:
        s = socket.socket()
        s.settimeout(3)
        try:
            s.connect((host, port))
            s.sendall(pickle.dumps(("hello", "from the other host")))
            outcome[port] = "accepted"
        except ConnectionRefusedError:
            outcome[port] = "refused"
        except OSError as exc:
            outcome[port] = type(exc).__name__
        finally:
            s.close()
    print(json.dumps(outcome))
""")


def test_no_actor_port_takes_a_connection_from_another_host(tmp_path: Path, other_host: tuple[str, str, str]) -> None:
    ns, here, _ = other_host
    shop = Launcher(tmp_path / "d").start()
    try:
        assert shop.proc is not None
        pids = [shop.proc.pid, *(p for g in shop.pgids for p in process_group_alive(g))]
        ports = sorted({int(a.rsplit(":", 1)[1]) for a in listening_addresses(pids)})
        assert len(ports) >= 10
        probe = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", PROBE, here, json.dumps(ports)],
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr
        outcome = json.loads(probe.stdout)
        assert set(outcome.values()) == {"refused"}, outcome
        shop.customer_says("c_net", "text", "在吗")  # the service itself is untouched by the probe
    finally:
        shop.stop()
