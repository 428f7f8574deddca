"""Chaos on the image job: SIGKILL the renderer pool, a render worker mid-render and a conversation mid-flow.

A dozen customers each send a photo and pay, on the keyed path (the real SDK against the Gemini stand-in,
whose image calls take about a second). Afterwards every paid job is awaiting confirmation, every customer
got exactly one quote and one result image, nothing was delivered twice, and no stored render was asked
of Gemini again: a render is repeated only when a kill cut its first call off.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from standins.fake_gemini import FakeGemini, FaultSpec
from tests.e2e.test_image_job import ASK_EMAIL, images, jobs_of, pay, send_photo, texts, wait_text
from tests.harness import Launcher, photo_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CUSTOMERS = [f"ic_{i}" for i in range(10)]
RENDER_LATENCY_S = 1.0
# The stand-in answers a "slow" fault normally, only late: its log marks such a call "slow" rather than "ok".
ANSWERED = ("ok", "slow")
SETTLED = ("awaiting_confirm", "completed")
RENDERS_IN_FLIGHT = 3  # RENDER_CONCURRENCY 4, one worker kept for analyses


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        # Every image call is slow (faults are consumed one per call), so kills land mid-render.
        fake.add_faults([FaultSpec(kind="slow", delay_s=RENDER_LATENCY_S) for _ in range(200)], model="image")
        yield fake


@pytest.fixture
def shop(tmp_path: Path, gemini: FakeGemini) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path / "image-chaos", {
        "GEMINI_API_KEY": "test", "GEMINI_BASE_URL": gemini.base_url, "DEBOUNCE_S": "0.3",
    })
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def _actor_pid(shop: Launcher, name: str) -> int | None:
    actors = shop.health().get("data", {}).get("actors", [])
    return next((a["pid"] for a in actors if a["name"] == name and a["pid"]), None)


def _rendering(shop: Launcher) -> list[tuple[str, int, int]]:
    """(render_id, attempt, worker pid) of attempts under way in a live worker, from the database."""
    rows = shop.query("SELECT render_id, attempt, pid FROM renderattempt WHERE status = 'started'")
    return [(r, n, pid) for r, n, pid in rows if pid and Path(f"/proc/{pid}").exists()]


def _state(shop: Launcher, customer: str) -> str | None:
    jobs = jobs_of(shop, customer)
    return jobs[0]["state"] if jobs else None


def _kill(pid: int, kills: list[tuple[str, float]], what: str) -> float:
    os.kill(pid, signal.SIGKILL)
    at = time.time()
    kills.append((what, at))
    return at


def _calls_after(gemini: FakeGemini, at: float, key: str | None = None) -> list[dict[str, Any]]:
    return [c for c in gemini.requests() if c["kind"] == "image" and c["at"] > at
            and (key is None or c["render_key"] == key)]


def test_kills_during_image_jobs_lose_nothing_and_repeat_no_paid_render(shop: Launcher, gemini: FakeGemini) -> None:
    kills: list[tuple[str, float]] = []
    recovery: dict[str, float] = {}
    first, second = CUSTOMERS[:6], CUSTOMERS[6:]

    # A conversation killed between the photo and its quote; the others send theirs once it answered again.
    photos = {c: photo_png(seed=40 + n, size=(400, 300)) for n, c in enumerate(CUSTOMERS)}
    victim = first[0]
    send_photo(shop, victim, photos[victim])
    pid = wait_for(lambda: _actor_pid(shop, f"conversation:{victim}"), 10, 0.02, "the conversation actor")
    killed = _kill(pid, kills, "conversation")
    wait_text(shop, victim, "元", timeout=30)
    recovery["conversation"] = time.time() - killed
    for customer in first[1:] + second:
        send_photo(shop, customer, photos[customer])

    # A render worker killed while its render is under way.
    for customer in first:
        wait_text(shop, customer, "元", timeout=30)
        pay(shop, customer)
    render_id, attempt, pid = wait_for(lambda: next(iter(_rendering(shop)), None), 30, 0.02, "a render under way")
    wait_for(lambda: _calls_after(gemini, 0, f"{render_id}#{attempt}"), 10, 0.01, "its Gemini call")
    killed = _kill(pid, kills, "render worker")
    wait_for(lambda: _calls_after(gemini, killed, f"{render_id}#{attempt}"), 30, 0.02, "the render handed out again")
    recovery["render worker"] = time.time() - killed

    # The whole pool killed while the second batch renders.
    for customer in second:
        wait_text(shop, customer, "元", timeout=30)
        pay(shop, customer)
    wait_for(lambda: [r for r in _rendering(shop) if r[0] != render_id], 30, 0.02, "renders under way")
    old_pool = _actor_pid(shop, "renderer")
    assert old_pool is not None
    killed = _kill(old_pool, kills, "renderer pool")
    wait_for(lambda: (pid := _actor_pid(shop, "renderer")) and pid != old_pool, 30, 0.05, "a new pool")
    wait_for(lambda: _calls_after(gemini, killed), 30, 0.02, "an image call from the new pool")
    recovery["renderer pool"] = time.time() - killed

    # Every paid job ends awaiting confirmation, each customer told once and shown one result.
    for customer in CUSTOMERS:
        wait_for(lambda c=customer: _state(shop, c) in SETTLED + ("failed",), 90, 0.2, f"{customer}'s job settled")
    settled_at = time.time()
    print("\nwork served again after SIGKILL of:", {k: f"{v * 1000:.0f} ms" for k, v in recovery.items()})
    assert {c: _state(shop, c) for c in CUSTOMERS} == {c: "awaiting_confirm" for c in CUSTOMERS}
    for customer in CUSTOMERS:
        wait_text(shop, customer, ASK_EMAIL, timeout=10)
    time.sleep(1.5)  # room for a late duplicate to show up
    for customer in CUSTOMERS:
        said = texts(shop, customer)
        assert len([t for t in said if "元" in t]) == 1, (customer, said)
        assert len(images(shop, customer)) == 1, (customer, shop.deliveries(customer))
    per_send = Counter(d["send_id"] for d in shop.deliveries())
    assert [s for s, n in per_send.items() if n > 1] == []

    # No stored render asked for again; a render repeated only as often as kills cut it off.
    calls: dict[str, list[float]] = {}
    for c in gemini.requests():
        if c["kind"] == "image" and c["outcome"] in ANSWERED:
            calls.setdefault(c["render_key"], []).append(c["at"])
    stored = {f"{r}#{n}": at for r, n, at in shop.query(
        "SELECT render_id, attempt, finished_at FROM renderattempt WHERE status = 'done'")}
    kill_times = [at for _, at in kills if at < settled_at]
    repeats: dict[str, list[str]] = {}
    for key, starts in calls.items():
        done_at = stored.get(key)
        assert done_at is not None, f"{key} was rendered but never stored"
        assert [t for t in starts if t > done_at] == [], f"{key} asked again after its result was stored"
        cut_off = sum(1 for k in kill_times if starts[0] <= k <= done_at)
        assert len(starts) <= 1 + cut_off, (key, starts, done_at, kills)
        if len(starts) > 1:
            repeats[key] = [f"{t - kills[0][1]:.2f}" for t in starts] + [f"stored {done_at - kills[0][1]:.2f}"]
    renders = {c: jobs_of(shop, c)[0]["job_id"] for c in CUSTOMERS}
    assert all(any(k.startswith(job) for k in calls) for job in renders.values())
    extra = sum(map(len, calls.values())) - len(calls)
    print(f"image calls {extra + len(calls)} for {len(CUSTOMERS)} jobs; kills at",
          {what: f"{at - kills[0][1]:.2f}" for what, at in kills}, "; repeated (call starts, s):", repeats)
    assert extra <= 1 + RENDERS_IN_FLIGHT  # the worker's render and those the pool had out
