"""The conversations router on the real system: one actor per customer, LRU cap, idle passivation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Launcher, process_group_alive, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path / "conv", {"CONVERSATIONS_MAX_LIVE": "3", "CONVERSATION_IDLE_S": "2",
                                                       "DEBOUNCE_S": "0.5", "RENDER_CONCURRENCY": "1"})
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def _router(shop: Launcher) -> dict:
    return next(a for a in shop.wait_healthy()["data"]["actors"] if a["name"] == "conversations")["detail"]


def test_live_actors_are_capped_idle_ones_passivated_and_nothing_is_lost(shop: Launcher) -> None:
    for round_ in range(2):
        for c in range(8):
            shop.customer_says(f"cap_{c}", "text", f"第{round_}轮 消息", name=f"客户{c}")
    wait_for(lambda: shop.query("SELECT COUNT(*) FROM inboundmessage WHERE handled = 1")[0][0] == 16, 20,
             what="all 16 messages handled")
    detail = _router(shop)
    assert detail["live"] <= 3 and detail["passivated"] >= 5
    profiles = shop.query("SELECT customer_id, name, messages FROM conversation ORDER BY customer_id")
    assert profiles == [(f"cap_{c}", f"客户{c}", 2) for c in range(8)]
    wait_for(lambda: _router(shop)["live"] == 0, 15, 0.2, "idle conversations passivated")
    live = [a for a in shop.wait_healthy()["data"]["actors"] if a["kind"] == "conversation"]
    assert live == []
    # Passivated actors' processes are gone: admin, logger, root, its six children and one render worker remain.
    wait_for(lambda: len(process_group_alive(next(iter(shop.pgids)))) == 10, 10, what="only 10 processes left")


def test_a_killed_conversation_actor_is_replaced_and_its_customer_still_answered(shop: Launcher) -> None:
    import os
    import signal

    shop.customer_says("victim", "text", "第一条")
    def victim_pid() -> int | None:
        return next((a["pid"] for a in shop.wait_healthy()["data"]["actors"] if a["name"] == "conversation:victim"),
                    None)

    pid = wait_for(victim_pid, 10, what="the victim's conversation actor")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _router(shop)["died"] == 1, 10, what="the router to see the death")
    shop.customer_says("victim", "text", "第二条")
    wait_for(lambda: shop.query("SELECT messages FROM conversation WHERE customer_id = 'victim'") == [(2,)], 10,
             what="the second message handled by a fresh actor")
    assert wait_for(victim_pid, 10, what="a fresh actor") != pid


def test_one_writer_per_customer_when_actors_are_evicted_mid_burst(tmp_path: Path) -> None:
    """With room for one live actor, every message evicts the other customer's actor while its burst is
    open: the old and the new actor of a customer overlap, yet each photo is quoted exactly once."""
    from tests.e2e.test_image_job import send_photo, texts

    launcher = Launcher(tmp_path / "overlap", {"CONVERSATIONS_MAX_LIVE": "1", "DEBOUNCE_S": "0.4",
                                               "RENDER_CONCURRENCY": "2"})
    try:
        launcher.start()
        from tests.harness import photo_png

        customers = [f"ov_{i}" for i in range(4)]
        for i, c in enumerate(customers):
            send_photo(launcher, c, photo_png(seed=40 + i))
        for c in customers:
            launcher.customer_says(c, "text", "帮我去背景")
            launcher.customer_says(c, "text", "再加个白边")
        for c in customers:
            wait_for(lambda c=c: any("元" in t for t in texts(launcher, c)), 60, what=f"{c}'s quote")
        wait_for(lambda: launcher.query("SELECT COUNT(*) FROM inboundmessage WHERE processed_at IS NULL")[0][0] == 0,
                 20, what="every message taken by the job machine")
        for c in customers:
            # One quote ("…元,拍下付款…"); words that come after it get "好的,改成…,还是…元", not a second quote.
            assert len([t for t in texts(launcher, c) if "拍下付款" in t]) == 1, texts(launcher, c)
            assert launcher.query("SELECT COUNT(*), MIN(state) FROM imagejob WHERE customer_id = ?", c) == [
                (1, "pending")]
    finally:
        launcher.stop()
