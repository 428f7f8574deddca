"""A second host on this machine, for the tests: a network namespace joined to this one by a veth pair (this
VM's kernel has no WireGuard; what the tests check — which address takes connections — is the same over wg0).

`Net` says where a test's hosts are: one host on loopback (the default), or, with SHOP_TEST_LINK=1
(`make test-link`), the leader on this side of the link and every member in the namespace, PostgreSQL on the
link too — the README's second host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from tests import pg
from tests.e2e.test_image_job import send_photo
from tests.harness import REPO, FileServer, Launcher
from tests.member import Member

LINK_WANTED = os.environ.get("SHOP_TEST_LINK") == "1"


def can_link() -> bool:
    """Whether this machine lets a test make network namespaces (root and iproute2)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass(frozen=True)
class Link:
    """A namespace `ns` joined to this one: `here` is this side's address, `there` the namespace's."""

    ns: str
    here: str
    there: str


@contextlib.contextmanager
def link() -> Iterator[Link]:
    """A fresh namespace and veth pair, removed afterwards (addresses unique to this process)."""
    n, tag = os.getpid() % 250, os.getpid()
    made = Link(f"shop16-{tag}", f"10.216.{n}.1", f"10.216.{n}.2")
    host_if, peer_if = f"s16h{tag}"[:15], f"s16p{tag}"[:15]
    _ip("netns", "add", made.ns)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _ip("link", "set", peer_if, "netns", made.ns)
        _ip("addr", "add", f"{made.here}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", made.ns, "ip", "addr", "add", f"{made.there}/24", "dev", peer_if)
        _ip("netns", "exec", made.ns, "ip", "link", "set", peer_if, "up")
        _ip("netns", "exec", made.ns, "ip", "link", "set", "lo", "up")
        yield made
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", made.ns], capture_output=True, timeout=10)


class LinkedMember(Member):
    """`launcher.py --join` run in the namespace: a member on another host, reached over the link."""

    def __init__(self, leader: Launcher, where: Link, env_extra: dict[str, str] | None = None) -> None:
        super().__init__(leader, {"THESPIAN_IDLE_SOCKET_MS": "1000", **(env_extra or {})})
        self.where = where

    @property
    def system(self) -> str:
        return f"{self.where.there}:{self.admin_port}"

    def env(self) -> dict[str, str]:
        return {**super().env(), "THESPIAN_BASE_IPADDR": self.where.there}

    def start(self, wait: bool = True) -> LinkedMember:
        log = open(self.leader.data_dir / f"member-{self.admin_port}.out", "ab")  # noqa: SIM115 (the child writes it)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.where.ns, sys.executable, str(REPO / "launcher.py"), "--join",
             f"{self.where.here}:{self.leader.admin_port}"],
            cwd=self.leader.data_dir, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.pgids.add(self.proc.pid)
        if wait:
            self.wait_alive()
        return self


@dataclass
class Net:
    """Where a test's leader and members run: the leader's address, and how a member is started."""

    leader_ip: str = "127.0.0.1"
    where: Link | None = None
    server: pg.PgServer | None = None
    photos: FileServer | None = None  # where customers' photos are served from, on the link (the simulator's
    # uploads are on the leader's loopback, out of a member's reach: across hosts a real bridge serves them)

    def env(self) -> dict[str, str]:
        """What a leader on this net needs beyond its own settings."""
        if self.where is None or self.photos is None:
            return {}
        return {"THESPIAN_IDLE_SOCKET_MS": "1000", "FETCH_ALLOW_HOSTS": f"{self.leader_ip}:{self.photos.port}"}

    def member(self, leader: Launcher, env_extra: dict[str, str] | None = None) -> Member:
        """A member of this net (not started)."""
        if self.where is None:
            return Member(leader, env_extra or {})
        return LinkedMember(leader, self.where, env_extra)

    def send_photo(self, leader: Launcher, customer: str, png: bytes) -> None:
        """The customer sends a photo: uploaded to the simulator, or across the link served where members reach it."""
        if self.photos is None:
            send_photo(leader, customer, png)
            return
        leader.customer_says(customer, "image", self.photos.put(f"{customer}-{len(self.photos.files)}.png", png))

    def database_url(self) -> str:
        """A new database every host reaches (on the link: PostgreSQL listening there too)."""
        assert self.server is not None
        return self.server.new_database().replace("127.0.0.1", self.leader_ip)


@contextlib.contextmanager
def linked_net() -> Iterator[Net]:
    """A link and a PostgreSQL server listening on it; removed afterwards."""
    with link() as where:
        server = pg.PgServer().init().start(also_on=where.here)
        try:
            with FileServer(host=where.here) as photos:
                yield Net(where.here, where, server, photos)
        finally:
            server.stop()
            server.remove()
