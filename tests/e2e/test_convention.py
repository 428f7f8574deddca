"""Two actor systems: a leader and a member that joined it (`launcher.py --join`), one database — on loopback, or
with SHOP_TEST_LINK=1 (`make test-link`) the member in another network namespace over a link (tests/link.py).

Conversations and renders run on the member while it lives. Under a flow of customer messages and paid image
jobs (the keyed path: the real SDK against the Gemini stand-in, each image call taking a second), the member's
whole process group is killed with SIGKILL: within 10 s the leader answers its customers itself; no message
is lost, nothing reaches a customer twice, and no stored render is asked of Gemini again. A member that
joins afterwards takes the new work. A member that freezes instead (a hung host, a partition) holds up nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from standins.fake_gemini import FakeGemini, FaultSpec
from tests import pg
from tests.e2e.test_image_job import ASK_EMAIL, assert_told_once, jobs_of, pay, texts, wait_text
from tests.harness import HEALTH_POLL_S, REPO, Launcher, photo_png, process_group_alive, wait_for
from tests.link import LINK_WANTED, Net, can_link, linked_net
from tests.member import Member

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RENDER_LATENCY_S = 1.0
ANSWERED = ("ok", "slow")  # the stand-in's log marks a late answer "slow"
FAILOVER_LIMIT_S = 10.0


@pytest.fixture
def gemini(net: Net) -> Iterator[FakeGemini]:
    with FakeGemini(host=net.leader_ip) as fake:  # across the link, where the members' render workers reach it
        fake.add_faults([FaultSpec(kind="slow", delay_s=RENDER_LATENCY_S) for _ in range(200)], model="image")
        yield fake


@pytest.fixture
def net() -> Iterator[Net]:
    """Where the hosts are: this one's loopback, or the leader here and every member across a link."""
    if not LINK_WANTED:
        yield Net()
        return
    if not can_link():
        pytest.skip("SHOP_TEST_LINK=1 needs root and iproute2 (network namespaces)")
    with linked_net() as made:
        yield made


@pytest.fixture
def database_url(tmp_path: Path, net: Net) -> str:
    """The shared database: a PostgreSQL database of its own where the server binaries are installed, else the
    leader's SQLite file (both systems run on this host); across the link, PostgreSQL listening there."""
    if net.server is not None:
        return net.database_url()
    try:
        return pg.shared_server().new_database()
    except pg.PgUnavailable:
        return f"sqlite:///{tmp_path / 'convention' / 'shop.db'}"


@pytest.fixture
def leader(tmp_path: Path, gemini: FakeGemini, database_url: str, net: Net) -> Iterator[Launcher]:
    shop = Launcher(tmp_path / "convention", {
        "GEMINI_API_KEY": "test-key", "GEMINI_BASE_URL": gemini.base_url, "DEBOUNCE_S": "0.3",
        "THESPIAN_BASE_IPADDR": net.leader_ip, "DATABASE_URL": database_url, "RENDER_CONCURRENCY": "3",
        **net.env(),
    }, database_url="" if database_url.startswith("sqlite") else database_url.replace(net.leader_ip, "127.0.0.1"))
    try:
        shop.start()
        yield shop
    finally:
        shop.stop()


@pytest.fixture
def members(leader: Launcher) -> Iterator[list[Member]]:
    """The members a test starts: stopped before the leader."""
    started: list[Member] = []
    try:
        yield started
    finally:
        for member in started:
            member.stop()


def _actors(shop: Launcher, kind: str) -> list[dict[str, Any]]:
    return [a for a in shop.health().get("data", {}).get("actors", []) if a["kind"] == kind]


def _system_of(shop: Launcher, name: str) -> str | None:
    return next((a["system"] for a in shop.health().get("data", {}).get("actors", []) if a["name"] == name), None)


def _workers_on(shop: Launcher, system: str) -> bool:
    workers = [a for a in _actors(shop, "render_worker") if a["state"] == "running"]
    return bool(workers) and all(a["system"] == system and a["pid"] for a in workers)


def _render_systems(shop: Launcher, customer: str) -> set[str]:
    job = jobs_of(shop, customer)[0]["job_id"]
    return {s for (s,) in shop.query("SELECT system FROM renderattempt WHERE render_id LIKE ?", f"{job}%")}


def _at(delivery: dict[str, Any]) -> float:
    return datetime.fromisoformat(delivery["at"]).timestamp()


def _state(shop: Launcher, customer: str) -> str | None:
    jobs = jobs_of(shop, customer)
    return jobs[0]["state"] if jobs else None


class Chatter(threading.Thread):
    """Customers taking turns asking for an original image, one message every interval; each burst is answered."""

    def __init__(self, shop: Launcher, customers: list[str], interval: float) -> None:
        super().__init__(daemon=True)
        self.shop, self.customers, self.interval = shop, customers, interval
        self.sent: list[tuple[str, str, float]] = []  # customer, msg_id, when
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            customer = self.customers[n % len(self.customers)]
            n += 1
            at = time.time()
            self.sent.append((customer, self.shop.customer_says(customer, "text", f"有原图吗 {n}"), at))
            self.halt.wait(self.interval)

    def answered_after(self, customer: str, t: float) -> float | None:
        """When the first reply to customer delivered after t arrived (None: none yet)."""
        later = [_at(d) for d in self.shop.deliveries(customer) if d["msg_type"] == 0 and _at(d) > t]
        return min(later) if later else None


def _quoted_on_member(net: Net, shop: Launcher, member: Member, customers: list[str],
                      photos: dict[str, bytes]) -> None:
    for customer in customers:
        net.send_photo(shop, customer, photos[customer])
    for customer in customers:
        wait_text(shop, customer, "元", timeout=40)
        assert _system_of(shop, f"conversation:{customer}") == member.system


def test_member_takes_the_work_and_the_leader_takes_it_back_when_the_member_dies(
        leader: Launcher, members: list[Member], gemini: FakeGemini, database_url: str, net: Net) -> None:
    shop = leader
    print(f"\nshared database: {database_url.split(':', 1)[0]}")
    first = net.member(shop, {"RENDER_CONCURRENCY": "3"})
    members.append(first)
    view = first.start().wait_alive()
    wait_for(lambda: _workers_on(shop, first.system), 20, HEALTH_POLL_S, "the render workers moved to the member")

    # While the member lives, conversations and renders run there: in its process group, on its system.
    photos = {f"cv_{i}": photo_png(seed=60 + i, size=(360, 270)) for i in range(10)}
    early, paid = ["cv_0", "cv_1"], [f"cv_{i}" for i in range(2, 8)]
    _quoted_on_member(net, shop, first, early, photos)
    for customer in early:
        pay(shop, customer)
    for customer in early:
        wait_text(shop, customer, ASK_EMAIL, timeout=40)
        assert _render_systems(shop, customer) == {first.system}
    placed = _actors(shop, "conversation") + _actors(shop, "render_worker")
    assert placed and {a["system"] for a in placed} == {first.system}
    assert {os.getpgid(a["pid"]) for a in placed if a["pid"]} == {view["pgid"]}
    top = [a for a in shop.health()["data"]["actors"] if a["kind"] not in ("conversation", "render_worker")]
    assert {a["system"] for a in top} == {f"{net.leader_ip}:{shop.admin_port}"}  # ingress, gateway, scheduler…

    # A flow of messages and paid renders; the member dies with renders under way on it.
    chatters = [f"ch_{i}" for i in range(5)]
    chatter = Chatter(shop, chatters, 0.15)
    chatter.start()
    _quoted_on_member(net, shop, first, paid, photos)
    wait_for(lambda: all(_system_of(shop, f"conversation:{c}") == first.system for c in chatters), 20, HEALTH_POLL_S,
             "the chatters' conversations on the member")
    for customer in paid:
        pay(shop, customer)
    rendering = wait_for(lambda: {f"{r}#{n}" for r, n in shop.query(
        "SELECT render_id, attempt FROM renderattempt WHERE status = 'started' AND system = ?", first.system)},
        30, 0.02, "renders under way on the member")
    wait_for(lambda: any(c["render_key"] in rendering for c in gemini.requests()), 10, 0.01, "their Gemini calls")
    killed_at = first.kill()
    cut_off = {f"{r}#{n}" for r, n in shop.query(
        "SELECT render_id, attempt FROM renderattempt WHERE status = 'started' AND system = ?", first.system)}

    # Within 10 s the leader answers a customer whose conversation was on the member, to a message sent after.
    victim = chatters[0]
    shop.customer_says(victim, "text", "有原图吗 after the kill")
    asked_at = time.time()
    replied_at = wait_for(lambda: chatter.answered_after(victim, asked_at), 30, 0.02, "the leader's answer")
    failover = replied_at - killed_at
    leader_system = f"{net.leader_ip}:{shop.admin_port}"
    wait_for(lambda: _system_of(shop, f"conversation:{victim}") == leader_system, 10, HEALTH_POLL_S,
             "the victim's conversation listed on the leader")
    time.sleep(2)  # the flow goes on, served by the leader
    chatter.halt.set()
    chatter.join(5)
    lost_at = next(m["lost_at"] for m in shop.health()["data"]["members"] if m["system"] == first.system)
    print(f"member killed: declared lost after {lost_at - killed_at:.2f} s; first answer by the leader to a "
          f"message sent after the kill {failover:.2f} s after it; renders cut off: {len(cut_off)}")
    assert failover < FAILOVER_LIMIT_S

    # Nothing lost: every paid job ends with its one result; every message handled and the last ones answered.
    for customer in early + paid:
        wait_for(lambda c=customer: _state(shop, c) in ("awaiting_confirm", "failed"), 90, 0.2, f"{customer} settled")
    assert {c: _state(shop, c) for c in early + paid} == {c: "awaiting_confirm" for c in early + paid}
    for customer in paid:
        wait_text(shop, customer, ASK_EMAIL, timeout=20)
    last_sent = {c: max(t for who, _, t in chatter.sent if who == c) for c in chatters}
    for customer in chatters:
        wait_for(lambda c=customer: chatter.answered_after(c, last_sent[c]), 30, 0.1, f"{customer}'s last answer")
    msg_ids = [m for _, m, _ in chatter.sent]
    marks = ",".join("?" * len(msg_ids))
    stored = shop.query(f"SELECT COUNT(*) FROM inboundmessage WHERE msg_id IN ({marks})", *msg_ids)[0][0]
    assert stored == len(msg_ids)
    # A reply to an earlier burst may arrive after a customer's last message: wait for that message's own turn.
    wait_for(lambda: shop.query(f"SELECT msg_id FROM inboundmessage WHERE msg_id IN ({marks}) AND (NOT handled OR "
                                f"processed_at IS NULL)", *msg_ids) == [], 30, 0.2, "every message handled")
    assert_told_once(shop, early + paid)

    # No stored render asked of Gemini again; a render repeated only when the kill cut its call off.
    calls: dict[str, list[float]] = {}
    for c in gemini.requests():
        if c["kind"] == "image" and c["outcome"] in ANSWERED:
            calls.setdefault(c["render_key"], []).append(c["at"])
    finished = {f"{r}#{n}": at for r, n, at in shop.query(
        "SELECT render_id, attempt, finished_at FROM renderattempt WHERE status = 'done'")}
    for key, starts in calls.items():
        assert key in finished, f"{key} was rendered but never stored"
        assert [t for t in starts if t > finished[key]] == [], f"{key} asked again after its result was stored"
        assert len(starts) <= 1 + (key in cut_off), (key, starts)
    repeated = sum(len(s) - 1 for s in calls.values())
    print(f"image calls {sum(map(len, calls.values()))} for {len(early + paid)} jobs, {repeated} repeated "
          f"(the kill cut {len(cut_off)} off)")

    # A member that joins takes the new work: render workers move to it, new conversations start there.
    second = net.member(shop, {"RENDER_CONCURRENCY": "2"})
    members.append(second)
    second.start()
    wait_for(lambda: _workers_on(shop, second.system), 30, HEALTH_POLL_S, "the render workers moved to the new member")
    late = ["cv_8", "cv_9"]
    _quoted_on_member(net, shop, second, late, photos)
    for customer in late:
        pay(shop, customer)
    for customer in late:
        wait_text(shop, customer, ASK_EMAIL, timeout=40)
        assert _render_systems(shop, customer) == {second.system}
    # The leader-hosted conversations stay where they are until they are passivated.
    assert _system_of(shop, f"conversation:{victim}") == f"{net.leader_ip}:{shop.admin_port}"

    second.stop()
    shop.stop()
    assert shop.leftovers() == [] and first.leftovers() == [] and second.leftovers() == []
    assert "Pending Actor create" not in (shop.data_dir / "logs" / "shop.log").read_text()


def test_a_frozen_member_holds_up_nothing_and_its_old_actors_go_when_it_thaws(
        leader: Launcher, members: list[Member], net: Net) -> None:
    """SIGSTOP is a hung host or a network partition: no TCP reset, sends to it just wait. The leader answers the
    member's customers itself within 10 s; when the member thaws, the actors it hosted for the leader stop (their
    creators disowned them) and the member takes new work again."""
    shop = leader
    member = net.member(shop)
    members.append(member)
    member.start()
    chatters = [f"fz_{i}" for i in range(12)]
    for customer in chatters:
        shop.customer_says(customer, "text", "有原图吗")
    wait_for(lambda: all(texts(shop, c) for c in chatters), 30, 0.1, "every customer answered")
    hosted = {a["pid"] for a in _actors(shop, "conversation") if a["system"] == member.system and a["pid"]}
    assert len(hosted) == len(chatters)

    for pgid in member.pgids:
        os.killpg(pgid, signal.SIGSTOP)
    frozen_at = time.time()
    try:
        for round_ in range(3):  # more sends to the frozen actors than Thespian lets one sender have in flight
            for customer in chatters:
                shop.customer_says(customer, "text", f"有原图吗 {round_}")
        wait_for(lambda: all(len(texts(shop, c)) >= 2 for c in chatters), 30, 0.05, "the leader's answers")
        took = time.time() - frozen_at
        print(f"\nmember frozen: every customer answered by the leader {took:.2f} s after")
        assert took < FAILOVER_LIMIT_S
        assert {_system_of(shop, f"conversation:{c}") for c in chatters} == {f"{net.leader_ip}:{shop.admin_port}"}
    finally:
        for pgid in member.pgids:
            os.killpg(pgid, signal.SIGCONT)

    # Thawed: it joins again, its old conversation actors stop, and new customers go to it.
    wait_for(lambda: (v := member.view()) is not None and v["state"] == "alive", 30, HEALTH_POLL_S, "the member back")
    wait_for(lambda: not [p for p in hosted if Path(f"/proc/{p}").exists()], 30, 0.2, "the old actors gone")
    shop.customer_says("fz_new", "text", "有原图吗")
    wait_for(lambda: texts(shop, "fz_new"), 30, 0.1, "the new customer answered")
    assert _system_of(shop, "conversation:fz_new") == member.system
    time.sleep(1)
    per_send = Counter(d["send_id"] for d in shop.deliveries())
    assert [s for s, n in per_send.items() if n > 1] == []


def test_a_member_that_does_not_share_data_dir_takes_no_work(leader: Launcher, members: list[Member],
                                                              tmp_path: Path, net: Net) -> None:
    member = net.member(leader, {"DATA_DIR": str(tmp_path / "not-shared")})
    members.append(member)
    member.start(wait=False)
    view = wait_for(lambda: (v := member.view()) is not None and v["state"] == "unusable" and v, 40, HEALTH_POLL_S,
                    "the member reported unusable")
    assert "DATA_DIR" in view["problem"] and str(leader.data_dir) in view["problem"]
    leader.customer_says("nd_1", "text", "有原图吗")
    wait_for(lambda: texts(leader, "nd_1"), 30, 0.1, "the answer")
    assert _system_of(leader, "conversation:nd_1") == f"{net.leader_ip}:{leader.admin_port}"
    assert {a["system"] for a in _actors(leader, "render_worker")} == {f"{net.leader_ip}:{leader.admin_port}"}


@pytest.mark.timeout(90)
def test_a_member_refuses_to_start_without_what_it_needs(tmp_path: Path) -> None:
    def join(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        data_dir = tmp_path / "member"
        data_dir.mkdir(exist_ok=True)
        return subprocess.run([sys.executable, str(REPO / "launcher.py"), *args], cwd=data_dir, text=True,
                              capture_output=True, timeout=60, env={**os.environ, "DATA_DIR": str(data_dir),
                                                                    "THESPIAN_ADMIN_PORT": "0", **env})

    bad = join("--join", "leader-without-port")
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
    bad = join("--join", "127.0.0.1:9", "--offers", "coffee")
    assert bad.returncode == 2 and "conversations, renderer" in bad.stderr
    # Its own empty database, not the leader's: nothing there was migrated by a leader of this release.
    bad = join("--join", "127.0.0.1:9", DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    assert bad.returncode == 2 and "schema version 0" in bad.stderr and "start the leader" in bad.stderr
    # Across hosts the database is PostgreSQL: a leader elsewhere and SQLite here is refused.
    bad = join("--join", "192.0.2.10:1900", DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}",
               THESPIAN_BASE_IPADDR="127.0.0.1")
    assert bad.returncode == 2 and "PostgreSQL" in bad.stderr


def test_members_rejoin_a_restarted_leader_and_drop_what_the_old_one_placed(leader: Launcher,
                                                                           members: list[Member], net: Net) -> None:
    member = net.member(leader)
    members.append(member)
    view = member.start().wait_alive()
    for i in range(4):
        leader.customer_says(f"rj_{i}", "text", "有原图吗")
    wait_for(lambda: all(texts(leader, f"rj_{i}") for i in range(4)), 30, 0.1, "every customer answered")
    # An actor just placed reports its pid a moment later.
    placed = wait_for(lambda: None not in (pids := {a["pid"] for a in _actors(leader, "conversation")
                                                    + _actors(leader, "render_worker")}) and pids,
                      10, HEALTH_POLL_S, "the placed actors' pids")
    assert {os.getpgid(p) for p in placed} == {view["pgid"]}

    root = leader.pid_of("root")
    os.kill(root, signal.SIGKILL)  # the leader's launcher restarts its whole actor system
    wait_for(lambda: (h := leader.health()).get("code") == 200 and h["data"]["actors"][0]["pid"] != root, 60, 0.2,
             "the leader's system restarted")
    wait_for(lambda: (v := member.view()) is not None and v["state"] == "alive", 30, 0.2, "the member joined again")
    leader.customer_says("rj_0", "text", "有原图吗 again")
    wait_for(lambda: len(texts(leader, "rj_0")) >= 2, 30, 0.1, "the answer after the restart")
    assert _system_of(leader, "conversation:rj_0") == member.system
    # What the old leader placed there stops by itself: its creators are gone.
    wait_for(lambda: not [p for p in placed if Path(f"/proc/{p}").exists()], 40, 0.5, "the old actors gone")


def test_a_member_whose_launcher_is_killed_takes_its_actors_down(leader: Launcher, members: list[Member],
                                                                 net: Net) -> None:
    member = net.member(leader)
    members.append(member)
    view = member.start().wait_alive()
    assert member.proc is not None
    os.kill(member.proc.pid, signal.SIGKILL)
    member.proc.wait(5)
    wait_for(lambda: not process_group_alive(view["pgid"]), 15, 0.2, "the member's actors gone")
    wait_for(lambda: member.view() is None, 15, 0.2, "the member declared lost")
