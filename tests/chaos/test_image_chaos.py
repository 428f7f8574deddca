"""Chaos on the image job: SIGKILL the renderer pool, a render worker mid-render and a conversation mid-flow.

Ten customers each send a photo and pay, on the keyed path (the real SDK against the Gemini stand-in,
whose image calls take about a second). Afterwards every paid job is awaiting confirmation, every customer
got exactly one quote and one result image, nothing was delivered twice, and no stored render was asked
of Gemini again: a render is repeated only when a kill cut its first call off.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from standins.fake_gemini import FakeGemini, FaultSpec
from tests.e2e.test_image_job import ASK_EMAIL, assert_told_once, jobs_of, pay, send_photo, wait_text
from tests.harness import HEALTH_POLL_S, Launcher, photo_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CUSTOMERS = [f"ic_{i}" for i in range(10)]
RENDER_LATENCY_S = 1.0
# The stand-in answers a "slow" fault normally, only late: its log marks such a call "slow" rather than "ok".
ANSWERED = ("ok", "slow")
SETTLED = ("awaiting_confirm", "completed")


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        # Every image call is slow (faults are consumed one per call), so kills land mid-render.
        fake.add_faults([FaultSpec(kind="slow", delay_s=RENDER_LATENCY_S) for _ in range(200)], model="image")
        yield fake


@pytest.fixture
def shop(tmp_path: Path, gemini: FakeGemini) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path / "image-chaos", {
        "GEMINI_API_KEY": "test-key", "GEMINI_BASE_URL": gemini.base_url, "DEBOUNCE_S": "0.3",
    })
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def _actor_pid(shop: Launcher, name: str) -> int | None:
    actors = shop.health().get("data", {}).get("actors", [])
    return next((a["pid"] for a in actors if a["name"] == name and a["pid"]), None)


def _rendering(shop: Launcher) -> dict[str, int]:
    """Render key (the stand-in's render_key) → worker pid of attempts under way in a live worker."""
    rows = shop.query("SELECT render_id, attempt, pid FROM renderattempt WHERE status = 'started'")
    return {f"{r}#{n}": pid for r, n, pid in rows if pid and Path(f"/proc/{pid}").exists()}


def _stored(shop: Launcher, keys: set[str]) -> bool:
    done = {f"{r}#{n}" for r, n in shop.query("SELECT render_id, attempt FROM renderattempt WHERE status = 'done'")}
    return keys <= done


def _state(shop: Launcher, customer: str) -> str | None:
    jobs = jobs_of(shop, customer)
    return jobs[0]["state"] if jobs else None


@dataclass
class Kill:
    """One SIGKILL: of what, when (wall clock, as the stand-in's log), and the renders it cut off."""

    what: str
    at: float
    hit: set[str] = field(default_factory=set)


def _kill(pid: int, kills: list[Kill], what: str) -> Kill:
    os.kill(pid, signal.SIGKILL)
    kill = Kill(what, time.time())
    kills.append(kill)
    return kill


def _handed_out_again(gemini: FakeGemini, kill: Kill) -> list[str]:
    """Renders the kill cut off that a worker has asked Gemini for again since."""
    calls = [c for c in gemini.requests() if c["kind"] == "image" and c["render_key"] in kill.hit]
    return [key for key in kill.hit
            if len(mine := [c for c in calls if c["render_key"] == key]) > 1 and mine[-1]["at"] > kill.at]


def test_kills_during_image_jobs_lose_nothing_and_repeat_no_paid_render(shop: Launcher, gemini: FakeGemini) -> None:
    kills: list[Kill] = []
    recovery: dict[str, float] = {}
    first, second = CUSTOMERS[:6], CUSTOMERS[6:]

    # A conversation killed between the photo and its quote; the others send theirs once it answered again.
    photos = {c: photo_png(seed=40 + n, size=(400, 300)) for n, c in enumerate(CUSTOMERS)}
    victim = first[0]
    send_photo(shop, victim, photos[victim])
    pid = wait_for(lambda: _actor_pid(shop, f"conversation:{victim}"), 10, 0.02, "the conversation actor")
    killed = _kill(pid, kills, "conversation")
    wait_text(shop, victim, "元", timeout=30)
    recovery["conversation"] = time.time() - killed.at
    for customer in first[1:] + second:
        send_photo(shop, customer, photos[customer])

    # A render worker killed while its render is under way.
    for customer in first:
        wait_text(shop, customer, "元", timeout=30)
        pay(shop, customer)
    key, pid = wait_for(lambda: next(iter(_rendering(shop).items()), None), 30, 0.02, "a render under way")
    wait_for(lambda: any(c["render_key"] == key for c in gemini.requests()), 10, 0.01, "its Gemini call")
    killed = _kill(pid, kills, "render worker")
    killed.hit.add(key)
    wait_for(lambda: _handed_out_again(gemini, killed), 30, 0.02, "the render handed out again")
    recovery["render worker"] = time.time() - killed.at

    # The whole pool killed while the second batch renders (the first one done, so each kill hits its own renders).
    for customer in first:
        wait_for(lambda c=customer: _state(shop, c) in SETTLED + ("failed",), 60, 0.1, f"{customer}'s job settled")
    for customer in second:
        wait_text(shop, customer, "元", timeout=30)
        pay(shop, customer)
    wait_for(lambda: _rendering(shop), 30, 0.02, "renders under way")
    old_pool = _actor_pid(shop, "renderer")
    assert old_pool is not None
    under_way = set(_rendering(shop))
    killed = _kill(old_pool, kills, "renderer pool")
    # Its workers outlive it: each finishes the paid call it has under way and settles it (then stops),
    # and the new pool does not hand those renders out again while their worker lives.
    wait_for(lambda: _stored(shop, under_way), 30, 0.02, "the renders under way stored")
    recovery["renderer pool"] = time.time() - killed.at
    wait_for(lambda: _actor_pid(shop, "renderer") not in (None, old_pool), 30, HEALTH_POLL_S, "the new pool in health")

    # Every paid job ends awaiting confirmation, each customer told once and shown one result.
    for customer in CUSTOMERS:
        wait_for(lambda c=customer: _state(shop, c) in SETTLED + ("failed",), 90, 0.2, f"{customer}'s job settled")
    print("\nwork served again after SIGKILL of:", {k: f"{v * 1000:.0f} ms" for k, v in recovery.items()})
    assert {c: _state(shop, c) for c in CUSTOMERS} == {c: "awaiting_confirm" for c in CUSTOMERS}
    for customer in CUSTOMERS:
        wait_text(shop, customer, ASK_EMAIL, timeout=10)
    assert_told_once(shop, CUSTOMERS)

    # No stored render asked for again; a render repeated only as often as kills cut it off.
    calls: dict[str, list[float]] = {}
    for c in gemini.requests():
        if c["kind"] == "image" and c["outcome"] in ANSWERED:
            calls.setdefault(c["render_key"], []).append(c["at"])
    stored = {f"{r}#{n}": at for r, n, at in shop.query(
        "SELECT render_id, attempt, finished_at FROM renderattempt WHERE status = 'done'")}
    repeats: dict[str, list[str]] = {}
    for key, starts in calls.items():
        done_at = stored.get(key)
        assert done_at is not None, f"{key} was rendered but never stored"
        assert [t for t in starts if t > done_at] == [], f"{key} asked again after its result was stored"
        cut_off = sum(1 for k in kills if key in k.hit)
        assert len(starts) <= 1 + cut_off, (key, starts, done_at, kills)
        if len(starts) > 1:
            repeats[key] = [f"{t - kills[0].at:.2f}" for t in starts] + [f"stored {done_at - kills[0].at:.2f}"]
    renders = {c: jobs_of(shop, c)[0]["job_id"] for c in CUSTOMERS}
    assert all(any(k.startswith(job) for k in calls) for job in renders.values())
    extra = sum(map(len, calls.values())) - len(calls)
    print(f"image calls {extra + len(calls)} for {len(CUSTOMERS)} jobs; kills at (s), renders cut off:",
          {k.what: (f"{k.at - kills[0].at:.2f}", len(k.hit)) for k in kills}, "; repeated (call starts):", repeats)
    assert extra <= 1  # only the render whose worker was killed mid-call

    shop.stop()
    assert shop.leftovers() == []
