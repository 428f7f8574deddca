"""Retention through the launcher: with RETENTION_DAYS=1 and the clock two days ahead, the daily sweep deletes a
finished job's photo, results, thumbnails and mailed file, keeps its row and history, and touches nothing of a job
still in progress.

The shop runs a day as usual (one customer's job finished and mailed through the file mailer, another's photo
quoted and not paid), stops, and starts again with every process's wall clock two days later
(tests/clock/sitecustomize.py): the sweep, due a day after the first start, is overdue and runs at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_image_job import ASK_EMAIL, MAILED, images, jobs_of, pay, send_photo, wait_text
from tests.harness import REPO, FileServer, Launcher, http, photo_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, files: FileServer) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("retention") / "shop", {
        "DEBOUNCE_S": "0.5", "RETENTION_DAYS": "1", "FETCH_ALLOW_HOSTS": f"127.0.0.1:{files.port}"})
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def job_files(data_dir: Path, job_id: str) -> list[Path]:
    """The job's photo and results on disk."""
    return sorted([*(data_dir / "images").glob(f"{job_id}*"), *(data_dir / "results").glob(f"{job_id}-*")])


def deleted(shop: Launcher, what: str) -> float:
    """shop_deleted_total{what, why="retention"} from /metrics."""
    status, text = http("GET", f"{shop.api}/metrics")
    assert status == 200
    found = re.search(rf'^shop_deleted_total\{{[^}}]*what="{what}"[^}}]*why="retention"[^}}]*\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_two_days_later_a_finished_jobs_files_are_gone_and_its_story_and_work_in_progress_stay(
        shop: Launcher) -> None:
    send_photo(shop, "ada", photo_png(seed=11))
    shop.customer_says("ada", "text", "帮我变清晰一点")
    wait_text(shop, "ada", "元")
    pay(shop, "ada")
    wait_text(shop, "ada", ASK_EMAIL)
    shop.customer_says("ada", "text", "我的邮箱是 ada.keeps@example.com 谢谢")
    wait_text(shop, "ada", MAILED)
    (done,) = wait_for(lambda: [j for j in jobs_of(shop, "ada") if j["state"] == "completed"], 20, what="completed")
    send_photo(shop, "bo", photo_png(seed=12))
    shop.customer_says("bo", "text", "帮我变清晰一点")
    wait_text(shop, "bo", "元")
    (waiting,) = jobs_of(shop, "bo")
    assert waiting["state"] == "pending"

    result_url = images(shop, "ada")[0]
    assert http("HEAD", result_url)[0] == 200
    done_files = job_files(shop.data_dir, done["job_id"])
    waiting_files = job_files(shop.data_dir, waiting["job_id"])
    mails = list((shop.data_dir / "outbox-mail").glob("*.eml"))
    assert len(done_files) >= 3 and len(waiting_files) == 1 and len(mails) == 1
    shop.stop()

    assert "a daily sweep deletes finished jobs' files after 1 d, messages after 180 d" in shop.output()
    # Two days on from whatever clock the suite runs on (`make test-ahead` has every process a year ahead already).
    ahead = float(os.environ.get("SHOP_TEST_CLOCK_SHIFT_DAYS") or 0) + 2
    shop.env_extra.update(PYTHONPATH=str(REPO / "tests" / "clock"), SHOP_TEST_CLOCK_SHIFT_DAYS=f"{ahead:g}")
    shop.start()
    wait_for(lambda: not job_files(shop.data_dir, done["job_id"]) and not any(p.exists() for p in mails), 30,
             what="the finished job's files to be deleted")
    assert all(p.exists() for p in waiting_files)

    status, after = http("GET", f"{shop.api}/api/jobs/{done['job_id']}")
    assert status == 200 and after["data"]["state"] == "completed"
    assert [h["to"] for h in after["data"]["history"]] == [h["to"] for h in done["history"]]
    assert after["data"]["result_url"] is None
    assert http("HEAD", result_url)[0] == 404
    (still,) = jobs_of(shop, "bo")
    assert (still["state"], still["price"]) == ("pending", waiting["price"])
    assert deleted(shop, "photos") >= 1 and deleted(shop, "results") >= 2 and deleted(shop, "mails") == 1
