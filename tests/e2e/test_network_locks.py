"""The actors' doors seen from another machine (issue 16): a second network namespace joined to this one by a veth
pair plays a host on the shop's network. This kernel has no WireGuard (CONFIG_WIREGUARD is not set), so the
link is a plain veth pair; what is checked — which address takes connections — is the same over wg0.

On one host the service runs as `make run` starts it; from the other namespace every port it listens on is
tried at this host's address on the link: each connection is refused, so no pickle is ever read. Across hosts
the leader runs here and a member in the other namespace, each bound to its own link address only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pg
from tests.harness import REPO, Launcher, listening_addresses, process_group_alive, wait_for
from tests.member import Member

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


class LinkedMember(Member):
    """`launcher.py --join` run in the other namespace: a member on another host, reached over the link."""

    def __init__(self, leader: Launcher, ns: str, here: str, there: str, database_url: str) -> None:
        super().__init__(leader, {"DATABASE_URL": database_url, "THESPIAN_IDLE_SOCKET_MS": "1000"})
        self.ns, self.here, self.there = ns, here, there

    def env(self) -> dict[str, str]:
        return {**super().env(), "THESPIAN_BASE_IPADDR": self.there}

    @property
    def system(self) -> str:
        return f"{self.there}:{self.admin_port}"

    def start(self, wait: bool = True) -> LinkedMember:
        log = open(self.leader.data_dir / f"member-{self.admin_port}.out", "ab")  # noqa: SIM115 (the child writes it)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, str(REPO / "launcher.py"), "--join",
             f"{self.here}:{self.leader.admin_port}"],
            cwd=self.leader.data_dir, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.pgids.add(self.proc.pid)
        if wait:
            self.wait_alive()
        return self


def _in_namespace(pids: list[int]) -> set[str]:
    """Listening addresses of these processes, read in their own network namespace (/proc/<pid>/net/tcp)."""
    found: set[str] = set()
    for pid in pids:
        inodes = set()
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(fd.path)
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/tcp") as table:
            for line in table.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:
                    host_hex, port_hex = parts[1].rsplit(":", 1)
                    found.add(".".join(str(b) for b in reversed(bytes.fromhex(host_hex))) + f":{int(port_hex, 16)}")
    return found


@pytest.mark.timeout(150)
def test_a_member_on_another_host_listens_on_its_link_address_only_and_serves_customers(
        tmp_path: Path, other_host: tuple[str, str, str]) -> None:
    """README's second host, over the link: the leader's actors listen on its link address, the member's on its
    own, nothing on the wildcard; a customer's conversation placed on the member is answered."""
    ns, here, there = other_host
    try:
        server = pg.PgServer().init().start(also_on=here)
    except pg.PgUnavailable as exc:
        pytest.skip(str(exc))
    leader = member = None
    try:
        url = server.new_database()
        on_link = url.replace("127.0.0.1", here)  # settings travel with the actors placed: every host reaches it
        leader = Launcher(tmp_path / "leader", {"THESPIAN_BASE_IPADDR": here, "DATABASE_URL": on_link,
                                                "THESPIAN_IDLE_SOCKET_MS": "1000", "DEBOUNCE_S": "0.3"},
                          database_url=url).start()
        member = LinkedMember(leader, ns, here, there, on_link).start()
        assert "keep that network private and trusted" in leader.output()
        customer = "c_linked"
        leader.customer_says(customer, "text", "有原图吗")
        wait_for(lambda: [d for d in leader.deliveries(customer) if d["msg_type"] == 0], 30, 0.1, "an answer")
        placed = next(a["system"] for a in leader.health()["data"]["actors"] if a["name"] == f"conversation:{customer}")
        assert placed == member.system
        assert leader.proc is not None
        ours = listening_addresses([p for g in leader.pgids for p in process_group_alive(g)])
        api = f"127.0.0.1:{leader.api_port}"  # the Tianwang API: HTTP_API_HOST, loopback by default
        assert api in ours and {a.rsplit(":", 1)[0] for a in ours - {api}} == {here}, ours
        theirs = _in_namespace(member.leftovers())
        assert len(theirs) >= 3 and {a.rsplit(":", 1)[0] for a in theirs} == {there}, theirs
    finally:
        if member is not None:
            member.stop()
        if leader is not None:
            leader.stop()
        server.stop()
        server.remove()
