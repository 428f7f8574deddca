"""Conversations at scale: 10,000 distinct customers, 3 messages each, through the launcher's system.

Prints peak total PSS of all the system's processes, live conversation actors at peak, activation
p50/p99 (createActor → the actor's first answer, as the router measures it), and the naive figure
of 10,000 × the PSS of one live conversation actor.
"""

from __future__ import annotations

import threading
import time
from http.client import HTTPException

from bench.common import header, launcher, parser
from bench.gateway import BridgeThread
from tests.harness import Launcher, process_group_alive


def pss_kib(pid: int) -> int:
    """Proportional set size of one process, KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler:
    """Samples total PSS of the launcher and its actor group, and the router's figures, until stopped."""

    def __init__(self, shop: Launcher) -> None:
        self.shop = shop
        self.peak_kib = 0
        self.peak_live = 0
        self.router: dict = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def pids(self) -> list[int]:
        assert self.shop.proc is not None
        return [self.shop.proc.pid] + [p for g in self.shop.pgids for p in process_group_alive(g)]

    def _run(self) -> None:
        last_health = 0.0
        while not self.stop.wait(0.5):
            self.peak_kib = max(self.peak_kib, sum(pss_kib(p) for p in self.pids()))
            if time.monotonic() - last_health > 1.0:
                last_health = time.monotonic()
                try:
                    actors = self.shop.health()["data"]["actors"]
                except (KeyError, TypeError, OSError, HTTPException):
                    continue
                self.router = next((a["detail"] for a in actors if a["name"] == "conversations"), self.router)
                self.peak_live = max(self.peak_live, self.router.get("live", 0))


def one_conversation_pss(shop: Launcher) -> int:
    """PSS of one live conversation actor, KiB."""
    actors = shop.wait_healthy()["data"]["actors"]
    pids = [a["pid"] for a in actors if a["kind"] == "conversation" and a["pid"]]
    return sum(pss_kib(p) for p in pids) // max(1, len(pids))


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    # The smoke run still passivates: it caps live actors below its number of customers.
    customers, cap = (100, 40) if args.quick else (10_000, 200)
    window = min(100, cap)  # customers in flight at once: the bridge paces like a real shop's traffic
    header("bench/conversations.py")
    bridge = BridgeThread()
    shop = launcher({"IM_BRIDGE_URL": bridge.bridge.ws_url, "SWEEP_INTERVAL_S": "5",
                     "CONVERSATIONS_MAX_LIVE": str(cap)})
    sampler = Sampler(shop)
    try:
        started = time.monotonic()
        naive_kib = 0
        handled = 0
        for c in range(customers):
            for k in range(3):
                bridge.say(f"s{c}", f"第{k}条 想修图", f"s{c}-{k}")
            while (c + 1) * 3 - handled > window * 3:
                time.sleep(0.05)
                handled = shop.query("SELECT COUNT(*) FROM inboundmessage WHERE handled = 1")[0][0]
            if c == min(150, customers // 2):
                naive_kib = one_conversation_pss(shop)
        deadline = time.monotonic() + 600
        while handled < customers * 3 and time.monotonic() < deadline:
            time.sleep(0.2)
            handled = shop.query("SELECT COUNT(*) FROM inboundmessage WHERE handled = 1")[0][0]
        elapsed = time.monotonic() - started
        time.sleep(1.5)
        conversations = shop.query("SELECT COUNT(*), SUM(messages) FROM conversation")[0]
        print(f"messages handled {handled} of {customers * 3} in {elapsed:.1f}s ({handled / elapsed:.0f} msg/s); "
              f"conversations {conversations[0]} with {conversations[1]} messages")
        print(f"peak total PSS {sampler.peak_kib / 1024:.0f} MiB (goal <= 3072 MiB); live conversation actors at "
              f"peak {sampler.peak_live}; activations {sampler.router.get('activated')}, passivated "
              f"{sampler.router.get('passivated')}")
        print(f"activation p50 {sampler.router.get('activation_p50_ms')} ms, p99 "
              f"{sampler.router.get('activation_p99_ms')} ms (last 1000)")
        print(f"naive: {customers} × {naive_kib / 1024:.1f} MiB (one live conversation actor) = "
              f"{customers * naive_kib / 1024 / 1024:.1f} GiB")
        if handled < customers * 3:
            raise SystemExit("not every message was handled")
    finally:
        sampler.stop.set()
        shop.stop()
        bridge.close()


if __name__ == "__main__":
    main()
