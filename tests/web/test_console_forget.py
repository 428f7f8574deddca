"""Deleting a customer's data from the console (POST /console/api/conversations/{customer_id}/forget): the ingress's
real aiohttp app on a real SQLite file, driven like a browser by a logged-in operator.

Only a logged-in operator with the session's CSRF token may do it; it deletes the customer's messages, profile,
job and photo, cancels their open Tianwang task (the scheduler is told), answers with what went, and is audited
by that operator with the customer by pseudonym; a customer of whom nothing is kept is a 404, not audited.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import image_job as jm
from persistence import forget, jobs, messages, operators, scheduling, tasks
from persistence.db import close_database, open_database
from persistence.models import AuditEntry
from protocol.im import MessageFrame
from protocol.tianwang import TaskIn
from tests.harness import photo_png
from tests.web.test_console_auth import PASSWORD, Browser, run

pytestmark = pytest.mark.timeout(60)

CUSTOMER, NAME, EMAIL = "tb_zhou_3107", "周小舟", "zhouxz@example.com"
WORDS = ("帮小舟把证件照背景换成白色", f"邮箱 {EMAIL}")
PATH = f"/console/api/conversations/{CUSTOMER}/forget"
T0 = 1_800_000_000.0


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """DATA_DIR with a database (opened as the ingress opens it) holding amy's account and the customer's story."""
    open_database(f"sqlite:///{tmp_path}/shop.db", create=True)
    try:
        operators.add_user("amy", PASSWORD)
        for n, text in enumerate(WORDS, start=1):
            frame = MessageFrame(msg_id=f"m{n}", customer={"id": CUSTOMER, "name": NAME}, kind="text", content=text)
            ((item, _),) = messages.store_inbound([frame], T0 + n)
            messages.handle_customer_messages(CUSTOMER, [item], T0 + n)
        photo = tmp_path / "images" / "J0123456789ab"
        photo.parent.mkdir()
        photo.write_bytes(photo_png(seed=5))
        jobs.commit(jobs.Decision(customer_id=CUSTOMER, cause="m:m1",
                                  steps=[jm.start_job("J0123456789ab", CUSTOMER, "http://photos.example/z.png", T0)],
                                  extras={"J0123456789ab": {"source_path": str(photo)}}), T0)
        tasks.receive_many([TaskIn(task_id="T_WEB", type="follow_up", customer={"id": CUSTOMER, "name": NAME},
                                   trigger={"type": "customer_reply", "keyword": "好的"},
                                   action={"type": "send_message", "message": f"{NAME},文件在这里"})],
                           T0, "Asia/Shanghai", callbacks=False)
        scheduling.register(scheduling.pending_tasks(), T0, "Asia/Shanghai", False)
        yield tmp_path
    finally:
        close_database()


def test_a_logged_in_operator_deletes_the_customers_data_and_the_audit_names_them(data_dir: Path) -> None:
    answers: dict[str, Any] = {}

    async def scenario(b: Browser, posted: list[Any]) -> None:
        stranger = await b.go("POST", PATH)
        assert stranger.status == 401  # accounts exist: no session, no action
        await b.login("amy", PASSWORD)
        assert (await b.go("POST", PATH)).status == 403  # the session's CSRF token is missing
        csrf = (await b.me()).body["data"]["csrf"]
        done = await b.go("POST", PATH, csrf=csrf, json={})
        assert done.status == 200, done.text
        answers["done"] = done.body
        assert ("tasks_changed", "T_WEB") in posted
        assert (await b.go("GET", f"/api/conversation/{CUSTOMER}")).status == 404
        again = await b.go("POST", PATH, csrf=csrf)
        assert again.status == 404 and CUSTOMER in again.body["message"]
        audit = await b.go("GET", "/console/api/audit?limit=10")
        answers["audit"] = audit.body["data"]

    run(data_dir, scenario)
    body = answers["done"]
    alias = forget.pseudonym(CUSTOMER)
    assert body["message"] == "客户数据已删除" and body["data"]["customer"] == alias
    removed = body["data"]["removed"]
    assert (removed["customers"], removed["messages"], removed["jobs"], removed["photos"]) == (1, 2, 1, 1)
    assert body["data"]["cancelled_tasks"] == ["T_WEB"] and not any(body["data"]["left"].values())
    assert not (data_dir / "images" / "J0123456789ab").exists()
    assert tasks.get("T_WEB", "Asia/Shanghai")["status"] == "cancelled"

    (entry,) = [e for e in answers["audit"] if e["action"] == "forget"]  # the 404 was not audited
    assert (entry["operator"], entry["target"], entry["ip"]) == ("amy", f"customer:{alias}", "127.0.0.1")
    assert entry["before"] == removed
    shown = json.dumps(answers["audit"], ensure_ascii=False) + "".join(
        str(r) for r in AuditEntry.select().tuples())
    assert [t for t in (CUSTOMER, NAME, EMAIL, *WORDS) if t in shown] == []
