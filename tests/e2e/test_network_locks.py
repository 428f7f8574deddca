"""The actors' doors seen from another machine (issue 16): a second network namespace joined to this one by a veth
pair plays a host on the shop's network. This kernel has no WireGuard (CONFIG_WIREGUARD is not set), so the
link is a plain veth pair; what is checked — which address takes connections — is the same over wg0.

On one host the service runs as `make run` starts it; from the other namespace every port it listens on is
tried at this host's address on the link: each connection is refused, so no pickle is ever read. Across hosts
the leader runs here and a member in the other namespace, each bound to its own link address only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pg
from tests.harness import Launcher, listening_addresses, process_group_alive, wait_for
from tests.link import Link, Net, can_link, link, linked_net

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not can_link(), reason="network namespaces need root and iproute2")]

@pytest.fixture
def other_host() -> Iterator[Link]:
    """Another host: a namespace over a veth pair, removed afterwards."""
    with link() as where:
        yield where


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


def test_no_actor_port_takes_a_connection_from_another_host(tmp_path: Path, other_host: Link) -> None:
    ns, here = other_host.ns, other_host.here
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


@pytest.fixture
def net() -> Iterator[Net]:
    """A link with PostgreSQL listening on it (skipped without the server binaries)."""
    try:
        with linked_net() as made:
            yield made
    except pg.PgUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.timeout(150)
def test_a_member_on_another_host_listens_on_its_link_address_only_and_serves_customers(tmp_path: Path,
                                                                                        net: Net) -> None:
    """README's second host, over the link: the leader's actors listen on its link address, the member's on its
    own, nothing on the wildcard; a customer's conversation placed on the member is answered."""
    leader = member = None
    try:
        url = net.database_url()  # settings travel with the actors placed: every host reaches it
        leader = Launcher(tmp_path / "leader", {"THESPIAN_BASE_IPADDR": net.leader_ip, "DATABASE_URL": url,
                                                "THESPIAN_IDLE_SOCKET_MS": "1000", "DEBOUNCE_S": "0.3"},
                          database_url=url.replace(net.leader_ip, "127.0.0.1")).start()
        member = net.member(leader, {"DATABASE_URL": url}).start()
        assert "keep that network private and trusted" in leader.output()
        customer = "c_linked"
        leader.customer_says(customer, "text", "有原图吗")
        wait_for(lambda: [d for d in leader.deliveries(customer) if d["msg_type"] == 0], 30, 0.1, "an answer")
        placed = next(a["system"] for a in leader.health()["data"]["actors"] if a["name"] == f"conversation:{customer}")
        assert placed == member.system
        ours = listening_addresses([p for g in leader.pgids for p in process_group_alive(g)])
        api = f"127.0.0.1:{leader.api_port}"  # the Tianwang API: HTTP_API_HOST, loopback by default
        assert api in ours and {a.rsplit(":", 1)[0] for a in ours - {api}} == {net.leader_ip}, ours
        theirs = listening_addresses(member.leftovers())
        assert net.where is not None
        assert len(theirs) >= 3 and {a.rsplit(":", 1)[0] for a in theirs} == {net.where.there}, theirs
    finally:
        if member is not None:
            member.stop()
        if leader is not None:
            leader.stop()
