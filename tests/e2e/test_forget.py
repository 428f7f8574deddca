"""Deleting a customer's data on request, through the launcher as the shop runs it (PIPL; persistence/forget.py).

A customer chats, sends a photo, pays, gets the result (the console shows its thumbnail), gives an e-mail address
and is mailed the file (no SMTP: an .eml under DATA_DIR); a Tianwang task fires on their words, another waits.
Then the shop's admin runs `shop-admin forget` while the service runs: the database, the files under DATA_DIR and
the log lines written after it hold none of their words, name, e-mail, photo or photo URL; the API no longer knows
them; the audit shows who asked; Tianwang's tasks keep their ids and statuses. Another customer is untouched.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

from persistence.forget import pseudonym
from persistence.models import ALL_MODELS
from tests.e2e.test_console_actions import Console
from tests.e2e.test_image_job import ASK_EMAIL, MAILED, jobs_of, pay, wait_text
from tests.harness import FileServer, Launcher, http, photo_png, task_body, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WHO, NAME, EMAIL = "tb_wxy_e2e_7731", "王小丫", "wangxiaoya.e2e@example.com"
WORDS = ("你好,我想修一张小丫毕业时的照片", "帮我变清晰一点,小丫急用", "好的,效果不错小丫很满意",
         f"邮箱 {EMAIL} 谢谢小丫")
OTHER, OTHER_WORDS = "tb_ldz_e2e_2290", "大壮的店铺门头帮我变清晰"
PASSWORD = "forget-console-pass"
NOT_THE_SHOPS = ("dispatch-standin.json",)  # the designer dispatch stand-in's own records: the outside world's


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, files: FileServer) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("forget") / "shop", {
        "DEBOUNCE_S": "1", "FETCH_ALLOW_HOSTS": f"127.0.0.1:{files.port}"})
    launcher.add_operator("amy", PASSWORD)
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def every_text(shop: Launcher) -> str:
    """Every value of every row of every table of the running shop's database, as text."""
    return "\n".join(str(value) for model in ALL_MODELS
                     for row in shop.query(f'SELECT * FROM "{model._meta.table_name}"') for value in row)


def traces(photo_url: str) -> list[str]:
    """Every string that would give the customer away."""
    return [WHO, NAME, EMAIL, photo_url, *WORDS]


def found_in(text: str, photo_url: str) -> list[str]:
    """The customer's traces found in text."""
    return [t for t in traces(photo_url) if t in text]


def logs(shop: Launcher) -> dict[Path, int]:
    """The service's log files and how long each is now."""
    paths = [shop.data_dir / "launcher.out", *(shop.data_dir / "logs").glob("*.log")]
    return {p: p.stat().st_size for p in paths if p.is_file()}


def thumbnail(console: Console, job_id: str, which: str) -> bytes:
    """The console's thumbnail of a job's photo or result, as the logged-in browser fetches it."""
    conn = HTTPConnection(console.host, console.port, timeout=30)
    try:
        conn.request("GET", f"/console/api/thumb/{job_id}?which={which}",
                     headers={"Cookie": "; ".join(f"{k}={v}" for k, v in console.cookies.items())})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body[:200]
        return body
    finally:
        conn.close()


def test_shop_admin_forget_leaves_no_trace_of_a_customer_while_the_service_runs(shop: Launcher,
                                                                              files: FileServer) -> None:
    photo = photo_png(seed=31)
    photo_url = files.put("xiaoya-graduation.png", photo)
    for task_id, trigger in (("T_FG_REPLY", {"type": "customer_reply", "keyword": "好的"}),
                             ("T_FG_WAIT", {"type": "customer_keyword", "keywords": ["发票"]})):
        body = task_body(task_id, WHO, trigger, {"type": "send_message", "message": f"{NAME}您好,设计师给您留了话"})
        body["customer"]["name"] = NAME
        status, answer = shop.post_task(body)
        assert status == 200, answer

    # The customer's story: words, a photo, the quote, payment, the result, the task firing, the mailed file.
    shop.customer_says(WHO, "text", WORDS[0], name=NAME)
    shop.customer_says(WHO, "image", photo_url, name=NAME)
    shop.customer_says(WHO, "text", WORDS[1], name=NAME)
    quote = wait_text(shop, WHO, "元")[0]
    pay(shop, WHO, int(re.search(r"(\d+)\s*元", quote).group(1)))  # type: ignore[union-attr]
    wait_text(shop, WHO, ASK_EMAIL, timeout=90)
    shop.customer_says(WHO, "text", WORDS[2], name=NAME)
    shop.wait_status("T_FG_REPLY", "completed", timeout=30)
    shop.customer_says(WHO, "text", WORDS[3], name=NAME)
    wait_text(shop, WHO, MAILED, timeout=60)
    (job,) = jobs_of(shop, WHO)
    wait_for(lambda: jobs_of(shop, WHO)[0]["state"] == "completed", 20, 0.2, "the job completed")
    mails = wait_for(lambda: [p for p in (shop.data_dir / "outbox-mail").glob("*.eml")
                              if EMAIL.encode() in p.read_bytes()], 20, 0.2, "the mail in the file outbox")
    amy = Console(shop.api)
    amy.login("amy", PASSWORD)
    for which in ("source", "result"):
        assert thumbnail(amy, job["job_id"], which).startswith(b"\xff\xd8")  # a JPEG, cached under DATA_DIR/thumbs
    assert (shop.data_dir / "thumbs").is_dir() and any((shop.data_dir / "thumbs").iterdir())

    # Another customer is in the middle of their own order.
    shop.customer_says(OTHER, "image", files.put("dazhuang.png", photo_png(seed=32)), name="李大壮")
    shop.customer_says(OTHER, "text", OTHER_WORDS, name="李大壮")
    wait_text(shop, OTHER, "元")
    before = every_text(shop)
    assert found_in(before, photo_url) == traces(photo_url) and OTHER_WORDS in before
    assert mails and photo in (shop.data_dir / "images" / job["job_id"]).read_bytes()
    time.sleep(1.5)  # the last outcomes settle: nothing of theirs is still on its way when the admin acts
    written = logs(shop)

    done = shop.shop_admin("forget", WHO, "--by", "店长小艾")

    assert done.returncode == 0, done.stderr
    alias = pseudonym(WHO)
    assert f"customer {alias}: deleted customers=1, messages=" in done.stdout and "photos=1" in done.stdout
    assert "mails=1" in done.stdout and "T_FG_WAIT" in done.stdout and "audited as forget by 店长小艾" in done.stdout
    assert found_in(done.stdout + done.stderr, photo_url) == []
    # The service keeps going meanwhile: the other customer pays, their result is made and sent.
    pay(shop, OTHER)
    wait_text(shop, OTHER, ASK_EMAIL, timeout=90)
    time.sleep(2)  # sweeps and timers run (SWEEP_INTERVAL_S=1): whatever the service logs about them

    # The API knows them no more; the database holds nothing of them, and all of the other customer.
    assert http("GET", f"{shop.api}/api/conversation/{WHO}")[0] == 404
    assert http("GET", f"{shop.api}/api/jobs/{job['job_id']}")[0] == 404
    after = every_text(shop)
    assert found_in(after, photo_url) == []
    assert OTHER_WORDS in after and http("GET", f"{shop.api}/api/conversation/{OTHER}")[0] == 200

    # No file under DATA_DIR holds their photo, words or address (the logs are read below: only what came after).
    kept: dict[Path, bytes] = {}
    for path in shop.data_dir.rglob("*"):
        if path.is_file() and "logs" not in path.relative_to(shop.data_dir).parts \
                and path.name not in ("launcher.out", *NOT_THE_SHOPS) and not path.name.startswith("shop.db"):
            kept[path] = path.read_bytes()
    assert [p for p, b in kept.items() if photo[300:600] in b or job["job_id"] in p.name] == []
    assert [p for p, b in kept.items() if found_in(b.decode("utf-8", "replace"), photo_url)] == []
    assert not any(p.exists() for p in mails)

    # The log lines the service wrote after the forget name none of it.
    for path, size in written.items():
        with path.open("rb") as fh:
            fh.seek(size)
            tail = fh.read().decode("utf-8", "replace")
        assert found_in(tail, photo_url) == [], (path, tail[-2000:])

    # Tianwang's tasks keep their ids, types and statuses: the open one was cancelled; their texts are gone.
    fired, waiting = shop.task("T_FG_REPLY"), shop.task("T_FG_WAIT")
    assert (fired["status"], waiting["status"]) == ("completed", "cancelled")
    assert fired["customer"] == {"id": alias, "name": ""} and [h["to"] for h in fired["history"]] == [
        "pending", "waiting", "running", "completed"]
    assert found_in(str(fired) + str(waiting), photo_url) == []

    # What went is counted on /metrics with the service's own counters.
    status, scraped = http("GET", f"{shop.api}/metrics")
    assert status == 200 and 'shop_deleted_total{what="photos",why="forget"} 1.0' in scraped
    assert 'shop_deleted_total{what="mails",why="forget"} 1.0' in scraped

    # The audit shows who asked, and the customer only by pseudonym.
    status, _, audit = amy.request("GET", "/console/api/audit?limit=50")
    assert status == 200
    (entry,) = [e for e in audit["data"] if e["action"] == "forget"]
    assert (entry["operator"], entry["target"]) == ("店长小艾", f"customer:{alias}")
    assert entry["before"]["photos"] == 1 and not any(entry["after"].values())
    assert found_in(str(audit["data"]), photo_url) == []


def test_forgetting_someone_nobody_knows_is_harmless_and_audited(shop: Launcher) -> None:
    done = shop.shop_admin("forget", "never-seen-here")
    assert done.returncode == 0, done.stderr
    assert "nothing was kept" in done.stdout
    rows: list[Any] = shop.query("SELECT operator, target FROM auditentry WHERE target = ?",
                                 f"customer:{pseudonym('never-seen-here')}")
    assert len(rows) == 1 and rows[0][0].startswith("shop-admin:")
