"""Recovery: SIGKILL each actor kind again and again under light load; then a cold start with 10,000 open tasks.

For each kill, the time until that actor's work is served again: the HTTP API answers (ingress),
a task received after the kill is armed (scheduler), a customer message sent after the kill is
stored and routed (gateway, conversations, conversation). Kinds are killed in rotation so every
victim has been serving for a while when it dies, as in a real crash rather than a crash loop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from http.client import HTTPException
from itertools import count

from bench.common import header, launcher, parser, percentile
from tests.harness import Launcher, http, task_body

KINDS = ["ingress", "scheduler", "gateway", "conversations", "conversation"]


class LightLoad:
    """A task every 100 ms and a customer message every 100 ms, until stopped."""

    def __init__(self, shop: Launcher) -> None:
        self.shop, self.stop, self.ids = shop, threading.Event(), count()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            i = next(self.ids)
            try:
                self.shop.post_task(task_body(f"L{i}", f"load{i % 20}", {"type": "customer_payment"}))
                self.shop.customer_says(f"load{i % 20}", "text", f"在吗 {i}")
            except (OSError, HTTPException, AssertionError):
                pass


def _until(check: Callable[[], bool], timeout: float = 30.0, what: str = "", interval: float = 0.003) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"{what or 'the system'} did not come back within {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - started


def _pids(shop: Launcher) -> dict[str, int]:
    deadline = time.monotonic() + 30
    while True:  # right after the router restarts, its conversations have not reported their pids yet
        actors = shop.wait_healthy(60)["data"]["actors"]
        pids = {a["name"]: a["pid"] for a in actors if a["pid"]}
        busy = [a["pid"] for a in actors if a["kind"] == "conversation" and a["pid"]]
        if busy:
            pids["conversation"] = busy[-1]  # the most recently used
            return pids
        if time.monotonic() > deadline:
            raise SystemExit("no conversation actor reported its pid within 30 s")
        time.sleep(0.02)


def served(shop: Launcher, kind: str, n: int) -> Callable[[], bool]:
    """A probe that turns true once the killed kind's work is being done again."""
    if kind == "ingress":
        return lambda: _answers(shop)
    if kind == "scheduler":
        body = task_body(f"R{n}", "probe", {"type": "customer_payment"})

        def armed() -> bool:
            rows = shop.query("SELECT status FROM task WHERE task_id = ?", f"R{n}")
            if not rows:  # receive is idempotent: post until it is stored
                with contextlib.suppress(OSError, HTTPException):
                    shop.post_task(body)
                return False
            return rows[0][0] == "waiting"

        return armed
    customer = "load1" if kind == "conversation" else "probe"
    msg_id = shop.customer_says(customer, "text", f"probe {n}")
    return lambda: bool((shop.query("SELECT handled FROM inboundmessage WHERE msg_id = ?", msg_id) or [(0,)])[0][0])


def _answers(shop: Launcher) -> bool:
    try:
        return http("GET", f"{shop.api}/api/task/stats", timeout=1)[0] == 200
    except (OSError, HTTPException):
        return False


def kill_rounds(shop: Launcher, rounds: int) -> dict[str, list[float]]:
    """rounds kills of each kind, in rotation; seconds until each was served again."""
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    n = count()
    for _ in range(rounds):
        for kind in KINDS:
            pid = _pids(shop)[kind]
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            probe = served(shop, kind, next(n)) if kind != "ingress" else (lambda: _answers(shop))
            _until(probe, what=f"{kind} (kill {len(times[kind]) + 1})")
            times[kind].append(time.monotonic() - killed)
            time.sleep(0.25)  # light load between crashes; a victim serves a while before its next death
    return times


def _texts(shop: Launcher, customer: str) -> int:
    return sum(1 for d in shop.deliveries(customer) if d["msg_type"] == 0)


def _asked(shop: Launcher, customer: str, words: str) -> float:
    """Seconds from a customer's question ("能帮我抠图吗": answered at once, no job) to its answer."""
    told = _texts(shop, customer)
    started = time.monotonic()
    shop.customer_says(customer, "text", words)
    _until(lambda: _texts(shop, customer) > told, what=f"{customer}'s answer", interval=0.005)
    return time.monotonic() - started


def answered_after_router_kills(kills: int) -> tuple[list[float], list[float]]:
    """(answer times with nothing killed, answer times right after each SIGKILL of the conversations router),
    under the light load, a burst window of 0.1 s; customers whose conversations were live when it died."""
    shop = launcher({"DEBOUNCE_S": "0.1", "PHRASE_REPLIES": "false"})
    load = LightLoad(shop)
    try:
        baseline = [_asked(shop, f"ask{i % 3}", f"能帮我抠图吗 {i}") for i in range(6)]
        after = []
        for k in range(kills):
            customer = f"ask{k % 3}"
            router = next(a["pid"] for a in shop.wait_healthy()["data"]["actors"] if a["name"] == "conversations")
            os.kill(router, signal.SIGKILL)
            after.append(_asked(shop, customer, f"能帮我抠图吗 kill {k}"))
            time.sleep(1.0)
        return baseline, after
    finally:
        load.stop.set()
        shop.stop()


def cold_start(tasks: int) -> tuple[float, float]:
    """Seconds from launch to HTTP answering, and to every open task armed again, with tasks open."""
    shop = launcher()
    try:
        for i in range(tasks):
            shop.post_task(task_body(f"C{i}", f"cold{i % 1000}", {"type": "customer_reply", "keyword": "好的"}))
        _until(lambda: shop.query("SELECT COUNT(*) FROM task WHERE status = 'waiting'")[0][0] >= tasks, 120)
        shop.stop()
        shop.start(wait=False)
        http_up = _until(lambda: _answers(shop), 60)
        # /api/health asks every actor: read at 20 Hz, not at the probes' 300, or the reading slows what it times.
        armed = _until(lambda: _scheduler_waiting(shop) >= tasks, 60, interval=0.05)
        return http_up, http_up + armed
    finally:
        shop.stop()


def _scheduler_waiting(shop: Launcher) -> int:
    try:
        actors = shop.health()["data"]["actors"]
    except (KeyError, TypeError, OSError, HTTPException):
        return 0
    return next((a["detail"].get("waiting", 0) for a in actors if a["name"] == "scheduler"), 0)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    rounds, open_tasks = (1, 50) if args.quick else (50, 10_000)
    header("bench/recovery.py")
    shop = launcher()
    load = LightLoad(shop)
    try:
        time.sleep(1.5)
        times = kill_rounds(shop, rounds)
    finally:
        load.stop.set()
        shop.stop()
    for kind, values in times.items():
        print(f"SIGKILL {kind:<14} x{len(values)}: served again p50 {percentile(values, 50) * 1000:6.0f} ms   "
              f"p99 {percentile(values, 99) * 1000:6.0f} ms   max {max(values) * 1000:6.0f} ms  (goal p99 <= 1000 ms)")
    baseline, after = answered_after_router_kills(1 if args.quick else 19)
    print(f"customer answered after SIGKILL of the conversations router x{len(after)}: p50 "
          f"{percentile(after, 50) * 1000:.0f} ms, p99 {percentile(after, 99) * 1000:.0f} ms, max "
          f"{max(after) * 1000:.0f} ms (goal p99 <= 500 ms); nothing killed: p50 {percentile(baseline, 50) * 1000:.0f}"
          f" ms; ratio {percentile(after, 50) / percentile(baseline, 50):.2f}")
    http_up, armed = cold_start(open_tasks)
    print(f"cold start with {open_tasks} open tasks: HTTP answering after {http_up:.2f}s, every task armed "
          f"after {armed:.2f}s (goal <= 5 s)")


if __name__ == "__main__":
    main()
