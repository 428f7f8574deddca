"""Chaos: SIGKILL every actor kind in turn under a steady flow of tasks and customer messages.

Checks, from the database and the simulator's record, that nothing acknowledged was lost and
nothing reached a customer twice, and that no process is left behind.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.client import HTTPException
from pathlib import Path

import pytest

from tests.harness import Launcher, http, task_body, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

VICTIMS = ["ingress", "scheduler", "gateway", "conversations", "conversation", "root", "admin"]


class Load:
    """Tianwang posts tasks; each task's customer then replies with the task's own keyword."""

    def __init__(self, shop: Launcher) -> None:
        self.shop = shop
        self.accepted: list[int] = []
        self.replied: list[int] = []
        self.errors = Counter[str]()
        self.stop = threading.Event()
        self.posting_done = threading.Event()  # the replier answers every task accepted, the last one included
        self.threads = [threading.Thread(target=self._tasks, daemon=True),
                        threading.Thread(target=self._replies, daemon=True)]

    def _tasks(self) -> None:
        i = 0
        while not self.stop.is_set():
            body = task_body(f"T_CH_{i}", f"cc_{i % 25}", {"type": "customer_reply", "keyword": f"ok{i}"},
                             {"type": "send_message", "message": f"m{i}"})
            # Tianwang re-posts until it gets an answer (receive is idempotent), even once the load stops: a post
            # whose answer was lost to a kill may be stored, and a stored task's customer must get the reply.
            sent = False
            while not self.posting_done.is_set() and (sent or not self.stop.is_set()):
                try:
                    status, _ = self.shop.post_task(body)
                except (OSError, HTTPException) as exc:
                    self.errors[type(exc).__name__] += 1
                    sent = True
                    time.sleep(0.05)
                    continue
                if status == 200:
                    self.accepted.append(i)
                    break
                self.errors[f"HTTP {status}"] += 1
                time.sleep(0.05)
            i += 1
            time.sleep(0.04)

    def _replies(self) -> None:
        done = 0
        while not self.posting_done.is_set() or done < len(self.accepted):
            if done >= len(self.accepted):
                time.sleep(0.02)
                continue
            i = self.accepted[done]
            try:
                self.shop.customer_says(f"cc_{i % 25}", "text", f"ok{i}")
            except (OSError, HTTPException, AssertionError) as exc:
                self.errors[f"sim {type(exc).__name__}"] += 1
                time.sleep(0.05)
                continue
            self.replied.append(i)
            done += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        poster, replier = self.threads
        poster.join(30)  # a post in flight when stop was set may still be accepted
        self.posting_done.set()
        replier.join(30)


def _answers(shop: Launcher) -> bool:
    try:
        return http("GET", f"{shop.api}/api/task/stats", timeout=1)[0] == 200
    except (OSError, HTTPException):
        return False


def _victim_pid(shop: Launcher, victim: str) -> int:
    actors = shop.wait_healthy()["data"]["actors"]
    if victim == "admin":
        root = actors[0]["pid"]
        with open(f"/proc/{root}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    if victim == "conversation":
        return next(a["pid"] for a in actors if a["kind"] == "conversation" and a["pid"])
    return next(a["pid"] for a in actors if a["name"] == victim)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path / "chaos")
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def test_sigkill_each_actor_kind_under_load(shop: Launcher) -> None:
    recovery: dict[str, float] = {}
    with Load(shop) as load:
        time.sleep(1.5)
        for victim in VICTIMS:
            pid = _victim_pid(shop, victim)
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            time.sleep(0.01)
            wait_for(lambda: _answers(shop), 20, 0.01, f"HTTP answering after killing {victim}")
            recovery[victim] = time.monotonic() - killed
            shop.wait_healthy(30)
            time.sleep(1.0)
        time.sleep(1.0)
    print("\nHTTP answering again after SIGKILL of:", {k: f"{v * 1000:.0f} ms" for k, v in recovery.items()})
    print(f"tasks accepted {len(load.accepted)}, replies {len(load.replied)}, client-side errors {dict(load.errors)}")
    assert len(load.accepted) > 50

    # Every acknowledged task is stored and runs; every customer reply was stored and handled once.
    def all_completed() -> bool:
        rows = shop.query("SELECT task_id, status FROM task WHERE task_id LIKE 'T_CH_%'")
        return len(rows) >= len(load.accepted) and all(s == "completed" for _, s in rows)

    wait_for(all_completed, 90, 0.5, "every accepted task completed")
    stored = {r[0] for r in shop.query("SELECT task_id FROM task WHERE task_id LIKE 'T_CH_%'")}
    assert {f"T_CH_{i}" for i in load.accepted} <= stored
    wait_for(lambda: shop.sim_stats()["unacked"] == 0, 30, what="every customer message acknowledged")
    inbound = shop.query("SELECT COUNT(*), COUNT(DISTINCT msg_id), SUM(handled) FROM inboundmessage")[0]
    assert inbound[0] == inbound[1] == inbound[2] >= len(load.replied)
    handled_by_conversations = shop.query("SELECT SUM(messages) FROM conversation")[0][0]
    assert handled_by_conversations == inbound[0]

    # Each task's message reached its customer exactly once.
    deliveries = shop.deliveries()
    per_send = Counter(d["send_id"] for d in deliveries)
    assert all(n == 1 for n in per_send.values())
    delivered = Counter(d["content"] for d in deliveries if d["content"].startswith("m"))
    assert all(delivered[f"m{i}"] == 1 for i in load.accepted)
    print(f"deliveries {len(deliveries)}, duplicate send frames answered by the bridge: "
          f"{shop.sim_stats()['duplicate_sends']}")
    for victim in VICTIMS[:5]:
        assert recovery[victim] < 10

    shop.stop()
    assert shop.leftovers() == []
