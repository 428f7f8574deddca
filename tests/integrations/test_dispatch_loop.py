"""The Dispatch loop (integrations/dispatch_loop.py) against a real WeChat robot stand-in and a real SQLite file.

What staff see: a burst of events reaches the group robot merged into few messages, within its limit
of 20 a minute, and none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from integrations.dispatch_loop import DispatchLoop
from persistence import outbox
from persistence.connection import atomic
from persistence.db import close_database, open_database
from persistence.models import Outbox
from protocol.settings import Settings
from standins.webhook_recorder import WebhookRecorder

pytestmark = pytest.mark.timeout(60)


def test_a_hundred_staff_events_in_a_minute_reach_the_robot_in_at_most_twenty_messages(tmp_path: Path) -> None:
    open_database(f"sqlite:///{tmp_path}/t.db", create=True)
    try:
        asyncio.run(_burst_of_events(tmp_path))
    finally:
        close_database()


async def _burst_of_events(tmp_path: Path) -> None:
    async with WebhookRecorder(per_minute=20) as robot:
        settings = Settings(DATA_DIR=tmp_path, WECHAT_WEBHOOK=robot.url(), TUHUI_DISPATCH_URL=None)
        loop = DispatchLoop(settings, post=lambda item: None)
        runner = asyncio.create_task(loop.run())
        try:
            started = time.monotonic()
            for burst in range(10):  # 100 events over about 5 s, ten at a time
                with atomic():
                    for i in range(10):
                        n = burst * 10 + i
                        outbox.add(key=f"staff:test:{n}", kind="staff", ref=f"customer:c{n}", now=time.time(),
                                   payload={"event": "mail_failed", "text": f"事件 {n:03d} 请处理",
                                            "customer_id": f"c{n}", "job_id": None})
                loop.wake()
                await asyncio.sleep(0.5)
            while Outbox.select().where((Outbox.kind == "staff") & (Outbox.status != "delivered")).exists():
                assert time.monotonic() - started < 40, "staff notifications still pending"
                await asyncio.sleep(0.2)
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        accepted = robot.accepted()
        assert 1 <= len(accepted) <= 20
        assert all(m["errcode"] == 0 for m in robot.messages)  # never refused for going over the limit
        everything = "\n".join(m["content"] for m in accepted)
        assert all(f"事件 {n:03d} 请处理" in everything for n in range(100))
        assert all(len(m["content"].encode()) <= 4096 for m in accepted)
