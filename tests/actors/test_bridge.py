"""The thread bridge: every posted item reaches the actor thread, and no wake-up is ever lost."""

from __future__ import annotations

import asyncio
import select
import sys
import threading

import pytest

from actors.bridge import ThreadBridge

pytestmark = pytest.mark.timeout(60)


def test_no_item_waits_for_a_wakeup_that_never_comes() -> None:
    bridge = ThreadBridge("test")
    total = 50_000
    done = threading.Event()

    async def producer() -> None:
        for i in range(total):
            bridge.post(i)
            if i % 7 == 0:
                await asyncio.sleep(0)
        done.set()
        await asyncio.Event().wait()

    received: list[int] = []
    fd = bridge.watch().filenos[0]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to hit every interleaving
    bridge.start(producer)
    try:
        while len(received) < total:
            ready, _, _ = select.select([fd], [], [], 2.0)
            # Only the watched socket may wake us, as in an actor: a lost wake-up shows as a stall.
            assert ready, f"stalled with {total - len(received)} items posted but not signalled"
            received.extend(bridge.drain())
    finally:
        sys.setswitchinterval(switch)
        bridge.stop()
    assert received == list(range(total))
