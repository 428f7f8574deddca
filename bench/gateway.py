"""Customer messages through the gateway: bridge → ack → conversation → customer event at the scheduler.

The bridge simulator (in this process) pushes messages for 500 distinct customers to the launcher's
system. Prints messages/s (as fast as possible), then p50/p99 from frame sent to the bridge's ack and
to the scheduler event at a steady 200 msg/s; and, as the baseline in the same run, raw Thespian
fan-out of the same number of small messages from one actor to as many actors.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

from thespian.actors import ActorSystem

from bench.common import header, launcher, parser, percentile
from standins.im_bridge import BridgeSimulator, CustomerMessageRequest
from tests.harness import free_port, process_group_alive


class TimedBridge(BridgeSimulator):
    """The simulator, noting when each message frame went out and when its ack came back."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_at: dict[str, float] = {}
        self.acked_at: dict[str, float] = {}

    def _record(self, direction: str, frame: dict[str, Any], error: str = "") -> None:
        t = time.time()
        if direction == "out" and frame.get("type") == "message":
            self.sent_at.setdefault(frame["msg_id"], t)
        elif direction == "in" and frame.get("type") == "ack":
            self.acked_at.setdefault(frame["msg_id"], t)
        super()._record(direction, frame, error)


class BridgeThread:
    """Runs the simulator's loop in a thread; the benchmark drives it from the main thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.bridge = TimedBridge()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.bridge.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def say(self, customer: str, text: str, msg_id: str) -> None:
        req = CustomerMessageRequest(customer_id=customer, name=customer, kind="text", content=text, msg_id=msg_id)
        asyncio.run_coroutine_threadsafe(self.bridge.post_customer_message(req), self.loop)

    def close(self) -> None:
        self.call(self.bridge.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def raw_fanout(n_messages: int, n_actors: int) -> float:
    """Messages/s of one actor telling n_messages small messages spread over n_actors actors."""
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": free_port()}, transientUnique=True)
    pgid = None
    try:
        sender = asys.createActor("bench.fanout.Sender")
        assert asys.ask(sender, ("create", n_actors), 300)[0] == "created"
        pgid = os.getpgid(_child_pid_of_admin())
        time.sleep(1)
        answer = asys.ask(sender, ("go", n_messages), 300)
        return n_messages / answer[1]
    finally:
        asys.shutdown()
        if pgid is not None:
            for pid in process_group_alive(pgid):
                os.kill(pid, signal.SIGKILL)


def _child_pid_of_admin() -> int:
    # The admin is the only process of ours in another session; any process of its group will do.
    me = os.getsid(0)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and os.getsid(int(entry.name)) != me:
                return int(entry.name)
    raise RuntimeError("no admin process found")


def consumed(shop: Any, prefix: str) -> dict[str, float]:
    """msg_id → when the scheduler matched its event."""
    rows = shop.query("SELECT source, consumed_at FROM customerevent WHERE consumed = 1 AND source LIKE ?",
                      f"{prefix}%")
    return {source: at for source, at in rows}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    customers = 20 if args.quick else 500
    burst = 100 if args.quick else 3000
    steady_rate, steady_s = (100, 0.5) if args.quick else (200, 10.0)
    header("bench/gateway.py")

    base = raw_fanout(burst, customers)
    print(f"(baseline) raw Thespian fan-out, {burst} msgs to {customers} actors: {base:8.0f} msg/s", flush=True)

    bridge = BridgeThread()
    # The cap is raised to hold every customer live: a cyclic pattern over more customers than the
    # cap makes every message an activation (measured: 16 msg/s at the default cap of 200).
    shop = launcher({"IM_BRIDGE_URL": bridge.bridge.ws_url, "SWEEP_INTERVAL_S": "30",
                     "CONVERSATIONS_MAX_LIVE": str(customers + 100)})
    try:
        for c in range(customers):  # activate each customer's conversation once, as a warm shop would have
            bridge.say(f"g{c}", "你好", f"warm-{c}")
        _wait(lambda: len(consumed(shop, "warm-")) >= customers, 120)

        started = time.time()
        for i in range(burst):
            bridge.say(f"g{i % customers}", f"要修图 {i}", f"burst-{i}")
        _wait(lambda: len(consumed(shop, "burst-")) >= burst, 300)
        done = consumed(shop, "burst-")
        rate = burst / (max(done.values()) - started)
        print(f"(ours) bridge → scheduler event, {burst} msgs, {customers} customers: {rate:8.0f} msg/s", flush=True)
        print(f"ratio ours/raw fan-out: {rate / base:.2f}  (goal >= 0.70)")

        n = int(steady_rate * steady_s)
        t0 = time.monotonic()
        for i in range(n):
            bridge.say(f"g{i % customers}", f"第{i}条", f"steady-{i}")
            delay = t0 + (i + 1) / steady_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        _wait(lambda: len(consumed(shop, "steady-")) >= n, 120)
        done = consumed(shop, "steady-")
        sent = bridge.bridge.sent_at
        acks = [bridge.bridge.acked_at[m] - sent[m] for m in done if m in bridge.bridge.acked_at]
        events = [at - sent[m] for m, at in done.items() if m in sent]
        print(f"at {steady_rate} msg/s: ack p50 {percentile(acks, 50) * 1000:.1f} ms p99 "
              f"{percentile(acks, 99) * 1000:.1f} ms; scheduler event p50 {percentile(events, 50) * 1000:.1f} ms "
              f"p99 {percentile(events, 99) * 1000:.1f} ms  (goal p99 <= 25 ms)")
    finally:
        shop.stop()
        bridge.close()


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the system")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
