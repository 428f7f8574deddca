"""Bad input at the Tianwang API: a clear 4xx in the envelope, and nothing stored changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Launcher, http, task_body

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
KEY = "k-secret-123"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("bad"), {"TIANWANG_API_KEY": KEY})
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


GOOD = task_body("T_GOOD", "cust_1", {"type": "customer_reply", "keyword": "好的"})

BAD_BODIES = [
    (b"{not json", "malformed JSON"),
    (b"[1, 2]", "JSON object"),
    ({**GOOD, "timeout_hours": "abc"}, "timeout_hours"),
    ({**GOOD, "trigger": {"type": "customer_dance"}}, "trigger.type"),
    ({**GOOD, "action": {"type": "send_fax", "message": "x"}}, "action.type"),
    ({**GOOD, "priority": "asap"}, "priority"),
    ({k: v for k, v in GOOD.items() if k != "customer"}, "customer"),
    ({**GOOD, "trigger": {"type": "customer_reply"}}, "trigger.keyword"),
    ({**GOOD, "trigger": {"type": "time_reach", "time": "tomorrow 9am"}}, "trigger.time"),
    ({**GOOD, "action": {"type": "send_file"}}, "action.file_url"),
    ({**GOOD, "task_id": ""}, "task_id"),
    ({**GOOD, "surprise": 1}, "surprise"),
]


def _stored(shop: Launcher) -> list[tuple]:
    return shop.query("SELECT task_id, status, updated_at FROM task ORDER BY task_id")


@pytest.mark.parametrize(("body", "names"), BAD_BODIES)
def test_bad_task_bodies_are_refused_and_change_nothing(shop: Launcher, body: object, names: str) -> None:
    before = _stored(shop)
    raw = body if isinstance(body, bytes) else None
    status, answer = http("POST", f"{shop.api}/api/task/receive", None if raw else body, raw=raw,
                          headers={"X-API-Key": KEY})
    assert status == 400
    assert answer["code"] == 400 and names in answer["message"] and answer["data"] is None
    assert _stored(shop) == before


def test_huge_body_unknown_path_and_wrong_method(shop: Launcher) -> None:
    before = _stored(shop)
    status, answer = http("POST", f"{shop.api}/api/task/receive", raw=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                          headers={"X-API-Key": KEY})
    assert status == 413 and answer["code"] == 413 and "limit" in answer["message"]
    status, answer = http("GET", f"{shop.api}/api/nothing/here", headers={"X-API-Key": KEY})
    assert status == 404 and answer["code"] == 404 and "/api/nothing/here" in answer["message"]
    status, answer = http("GET", f"{shop.api}/api/task/receive", headers={"X-API-Key": KEY})
    assert status == 405 and "POST" in answer["message"]
    status, answer = http("GET", f"{shop.api}/api/task/list?page=0", headers={"X-API-Key": KEY})
    assert status == 400 and "page" in answer["message"]
    assert _stored(shop) == before


def test_api_key_is_required_and_never_echoed(shop: Launcher) -> None:
    status, answer = shop.post_task(GOOD)
    assert status == 401 and answer["code"] == 401 and KEY not in str(answer)
    status, answer = shop.post_task(GOOD, headers={"X-API-Key": "wrong"})
    assert status == 401
    status, answer = shop.post_task(GOOD, headers={"X-API-Key": KEY})
    assert status == 200
    status, health = http("GET", f"{shop.api}/api/health")
    assert status == 200 and KEY not in str(health)
    assert KEY not in shop.output()
    assert KEY not in (shop.data_dir / "logs" / "shop.log").read_text()
