"""Chaos on hand-offs: SIGKILL the Dispatch actor and conversations mid-hand-off under a flow of hand-offs.

Twelve customers ask for a person (six about a quoted photo, six with no job) while the dispatch stand-in
answers every call 0.4 s late, so kills land between "task created" and "task assigned". Afterwards the
stand-in holds exactly one task per hand-off, each assigned, and every customer was told exactly once.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from standins.dispatch_api import DispatchStandin
from tests.chaos.test_image_chaos import _actor_pid
from tests.e2e.test_image_job import send_photo, texts, wait_text
from tests.harness import Launcher, photo_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

HANDED_OFF = "好的,已帮您安排设计师处理,请稍候"
WITH_JOB = [f"hj_{i:02d}" for i in range(6)]
WITHOUT_JOB = [f"hn_{i:02d}" for i in range(6)]
LATENCY_S = 0.4


@pytest.fixture
def designers() -> Iterator[DispatchStandin]:
    with DispatchStandin() as standin:
        standin.latency_s = LATENCY_S
        yield standin


@pytest.fixture
def shop(tmp_path: Path, designers: DispatchStandin) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path / "handoff-chaos", {"DEBOUNCE_S": "0.3", "TUHUI_DISPATCH_URL": designers.base_url})
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def _creating(designers: DispatchStandin) -> int:
    return sum(1 for r in designers.requests() if r["method"] == "POST" and r["path"] == "/tasks")


def test_kills_mid_hand_off_make_one_task_per_hand_off_and_tell_each_customer_once(
        shop: Launcher, designers: DispatchStandin) -> None:
    for n, customer in enumerate(WITH_JOB):
        send_photo(shop, customer, photo_png(seed=100 + n, size=(320, 240)))
    for customer in WITH_JOB:
        wait_text(shop, customer, "元", timeout=60)

    kills: list[tuple[str, float]] = []
    served_again: dict[str, float] = {}
    everyone = [c for pair in zip(WITH_JOB, WITHOUT_JOB, strict=True) for c in pair]
    for n, customer in enumerate(everyone):
        shop.customer_says(customer, "text", "转人工" if customer in WITH_JOB else "人工客服在吗")
        if n in (3, 8):  # a conversation killed right after its customer asked, before or while deciding
            pid = _actor_pid(shop, f"conversation:{customer}")
            if pid:
                os.kill(pid, signal.SIGKILL)
                kills.append((f"conversation:{customer}", time.time()))
        if n in (2, 6, 10):  # Dispatch killed while a call to the dispatch API is under way
            before = _creating(designers)
            wait_for(lambda b=before: _creating(designers) > b or len(designers.tasks()) >= len(everyone), 10, 0.02,
                     "a dispatch call")
            pid = _actor_pid(shop, "dispatch")
            assert pid, "the dispatch actor"
            os.kill(pid, signal.SIGKILL)
            killed_at = time.time()
            kills.append(("dispatch", killed_at))
            assigned = sum(t["status"] == "assigned" for t in designers.tasks())
            wait_for(lambda a=assigned: sum(t["status"] == "assigned" for t in designers.tasks()) > a
                     or all(t["status"] == "assigned" for t in designers.tasks()), 30, 0.05, "assigning again")
            served_again.setdefault("dispatch", time.time() - killed_at)
        time.sleep(0.25)

    for customer in everyone:
        wait_text(shop, customer, HANDED_OFF, timeout=90)
    time.sleep(2.0)  # room for a duplicate to show up, if there were one

    tasks = designers.tasks()
    per_customer = Counter(next(c for c in everyone if f"({c})" in t["description"]) for t in tasks)
    assert per_customer == Counter(everyone), per_customer  # exactly one task per hand-off
    assert all(t["status"] == "assigned" for t in tasks)
    keys = Counter(t["key"] for t in tasks)
    assert len(keys) == len(everyone) and set(keys.values()) == {1}
    for customer in everyone:
        assert texts(shop, customer).count(HANDED_OFF) == 1, (customer, texts(shop, customer))
    assert {k for k, _ in kills} >= {"dispatch"}
    creates = Counter(r["idempotency_key"] for r in designers.requests() if r["path"] == "/tasks")
    again = served_again.get("dispatch", 0.0)
    print(f"\nkills: {[k for k, _ in kills]}; POST /tasks repeated for {sum(v > 1 for v in creates.values())} "
          f"of {len(everyone)} hand-offs (same key, same task); assigning again {again:.2f} s after a dispatch kill")
