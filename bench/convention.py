"""One actor system against two (a leader and a member that joined it): conversations/s, renders/s, failover.

(1) Conversations/s: C=150 new customers each ask for an original image at once; customers answered per
second, from the first message to the last answer. With two systems the member hosts every conversation actor.
(2) Renders/s: J quoted jobs paid at once, the Gemini stand-in answering every image call after L; paid jobs
per second until the last result reached its customer. One system: N render workers on the leader; two: N on
the member (the leader keeps none while a member offers renderer).
(3) Failover: the member's whole process group killed with SIGKILL while customers talk; how long until the
leader declares it lost, and until it answers a customer (whose conversation was on the member) a message
sent right after the kill. A new member joins before the next round.

Both systems run on this machine (loopback, one shared database: PostgreSQL when its server binaries are
installed, else SQLite), so two systems share the same cores: the ratio shows what the convention costs
here, not what a second machine adds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import header, parser, temp_dir
from standins.fake_gemini import FakeGemini, FaultSpec
from tests import pg
from tests.e2e.test_image_job import ASK_EMAIL, pay, send_photo, texts
from tests.harness import HEALTH_POLL_S, Launcher, photo_png, wait_for
from tests.member import Member

LATENCY_S = 0.5
WORKERS = 4


def database_url(data_dir: Path) -> str:
    """A fresh PostgreSQL database where the server binaries are installed, else SQLite under data_dir."""
    try:
        return pg.shared_server().new_database()
    except pg.PgUnavailable:
        return f"sqlite:///{data_dir / 'shop.db'}"


class Convention:
    """A leader, and with two systems a member that hosts conversations and every render worker."""

    def __init__(self, systems: int, fake: FakeGemini) -> None:
        data_dir = temp_dir("bench-convention-")
        url = database_url(data_dir)
        self.leader = Launcher(data_dir, {
            "GEMINI_API_KEY": "bench-key", "GEMINI_BASE_URL": fake.base_url, "DEBOUNCE_S": "0.1",
            "PHRASE_REPLIES": "false", "THESPIAN_BASE_IPADDR": "127.0.0.1", "RENDER_CONCURRENCY": str(WORKERS),
            "DATABASE_URL": url, "SWEEP_INTERVAL_S": "5",  # the default (the test harness sweeps every second)
        }, database_url="" if url.startswith("sqlite") else url)
        self.members: list[Member] = []
        self.systems = systems

    def __enter__(self) -> Convention:
        try:
            self.leader.start()
            if self.systems == 2:
                self.join()
        except BaseException:
            self.__exit__()
            raise
        return self

    def join(self) -> Member:
        """A new member, once the leader has moved the render workers to it."""
        member = Member(self.leader, {"RENDER_CONCURRENCY": str(WORKERS)})
        self.members.append(member)
        member.start()
        wait_for(lambda: self.workers_on(member.system), 60, HEALTH_POLL_S, "the render workers on the member")
        return member

    def workers_on(self, system: str) -> bool:
        actors = self.leader.health().get("data", {}).get("actors", [])
        workers = [a for a in actors if a["kind"] == "render_worker" and a["state"] == "running"]
        return len(workers) == WORKERS and all(a["system"] == system and a["pid"] for a in workers)

    def system_of(self, name: str) -> str | None:
        actors = self.leader.health().get("data", {}).get("actors", [])
        return next((a["system"] for a in actors if a["name"] == name), None)

    def __exit__(self, *exc: object) -> None:
        for member in self.members:
            member.stop()
        self.leader.stop()


def _until(predicate: Callable[[], object], timeout: float, what: str) -> float:
    started = time.monotonic()
    wait_for(predicate, timeout, 0.05, what)
    return time.monotonic() - started


def conversations(shop: Launcher, customers: int, tag: str) -> float:
    """Customers answered per second: each asks once, all at once."""
    names = [f"cv{tag}_{i}" for i in range(customers)]
    started = time.monotonic()
    for name in names:
        shop.customer_says(name, "text", "有原图吗")

    def answered() -> bool:
        told = {d["customer_id"] for d in shop.deliveries() if d["msg_type"] == 0}
        return all(n in told for n in names)

    wait_for(answered, 300, 0.1, "every customer answered")
    return customers / (time.monotonic() - started)


def renders(shop: Launcher, jobs: int, tag: str) -> float:
    """Paid jobs per second: every quoted job paid at once, until the last result reached its customer."""
    names = [f"rd{tag}_{i}" for i in range(jobs)]
    for i, name in enumerate(names):
        send_photo(shop, name, photo_png(seed=200 + i, size=(320, 240)))
    for name in names:
        wait_for(lambda n=name: any("元" in t for t in texts(shop, n)), 120, 0.1, f"{name}'s quote")
    started = time.monotonic()
    for name in names:
        pay(shop, name)
    for name in names:
        wait_for(lambda n=name: ASK_EMAIL in texts(shop, n), 300, 0.05, f"{name}'s result")
    return jobs / (time.monotonic() - started)


def failover(convention: Convention, rounds: int) -> list[tuple[float, float]]:
    """(declared lost, first answer by the leader) seconds after each SIGKILL of the member."""
    shop, results = convention.leader, []
    for r in range(rounds):
        member = convention.members[-1]
        customer = f"fo_{r}"
        shop.customer_says(customer, "text", "有原图吗")
        wait_for(lambda c=customer: texts(shop, c), 30, 0.05, "the member's answer")
        assert convention.system_of(f"conversation:{customer}") == member.system
        killed_at = member.kill()
        shop.customer_says(customer, "text", "有原图吗 again")
        wait_for(lambda c=customer: len(texts(shop, c)) >= 2, 60, 0.02, "the leader's answer")
        answered = time.time() - killed_at
        lost = next(m["lost_at"] for m in shop.health()["data"]["members"] if m["system"] == member.system)
        results.append((lost - killed_at, answered))
        if r + 1 < rounds:
            convention.join()
    return results


def main() -> None:
    """Run every measurement, one system then two, and print the figures and the ratios."""
    args = parser(__doc__.splitlines()[0]).parse_args()
    # Fewer customers than CONVERSATIONS_MAX_LIVE (200): activations and answers, no passivation in the way.
    customers, jobs, rounds = (6, 2, 1) if args.quick else (150, WORKERS * 6, 5)
    header("bench/convention.py")
    figures: dict[int, tuple[float, float]] = {}
    kills: list[tuple[float, float]] = []
    try:
        with FakeGemini() as fake:
            fake.add_faults([FaultSpec(kind="slow", delay_s=LATENCY_S) for _ in range(jobs * 8)], model="image")
            for systems in (1, 2):
                with Convention(systems, fake) as convention:
                    db = convention.leader.env()["DATABASE_URL"].split(":", 1)[0]
                    conv = conversations(convention.leader, customers, str(systems))
                    rend = renders(convention.leader, jobs, str(systems))
                    figures[systems] = (conv, rend)
                    if systems == 2:
                        kills = failover(convention, rounds)
    finally:
        pg.stop_shared()
    (c1, r1), (c2, r2) = figures[1], figures[2]
    print(f"database: {db}, both systems on this machine (loopback)")
    print(f"conversations: one system {c1:.1f}/s, two systems {c2:.1f}/s: ratio two/one {c2 / c1:.2f} "
          f"({customers} customers at once, each one message and its answer; two: conversations on the member)")
    print(f"renders: one system {r1:.2f} jobs/s, two systems {r2:.2f} jobs/s: ratio two/one {r2 / r1:.2f} "
          f"({jobs} paid jobs at once, N={WORKERS} workers on the leader / on the member, image call L={LATENCY_S}s)")
    lost, answered = [k[0] for k in kills], [k[1] for k in kills]
    print(f"failover after SIGKILL of the member ({rounds} rounds): declared lost after p50 "
          f"{statistics.median(lost):.2f} s (max {max(lost):.2f}); first answer by the leader p50 "
          f"{statistics.median(answered):.2f} s (max {max(answered):.2f}; goal < 10 s)")


if __name__ == "__main__":
    main()
