"""LOG_FORMAT=json through the launcher: each line of DATA_DIR/logs/shop.log is a JSON object naming what it concerns.

A Tianwang task runs for one customer and a paid image job (local renderer) for another; an operator
pipes the log through `jq 'select(.task_id == "T_JSON")'` and finds the task's story, and likewise
for the customer and the job.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_image_job import ASK_EMAIL, jobs_of, pay, send_photo, wait_text
from tests.harness import REPO, Launcher, photo_png, task_body, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("jsonlogs") / "shop", {"LOG_FORMAT": "json", "DEBOUNCE_S": "0.5"})
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def log_lines(shop: Launcher) -> list[dict[str, Any]]:
    """Every line of the log file, parsed; fails on the first line that is not one JSON object."""
    text = (shop.data_dir / "logs" / "shop.log").read_text(encoding="utf-8")
    lines = []
    for n, raw in enumerate(text.splitlines(), 1):
        try:
            line = json.loads(raw)
        except ValueError:
            raise AssertionError(f"line {n} of shop.log is not JSON: {raw!r}") from None
        assert isinstance(line, dict), raw
        lines.append(line)
    return lines


def test_every_line_is_json_and_carries_the_ids_it_concerns(shop: Launcher) -> None:
    shop.post_task(task_body("T_JSON", "j_tw", {"type": "customer_reply", "keyword": "好的"}))
    shop.wait_status("T_JSON", "waiting")
    shop.customer_says("j_tw", "text", "好的")
    shop.wait_status("T_JSON", "completed")

    send_photo(shop, "j_img", photo_png(seed=51))
    shop.customer_says("j_img", "text", "帮我变清晰")
    wait_text(shop, "j_img", "元")
    pay(shop, "j_img")
    wait_text(shop, "j_img", ASK_EMAIL)
    job_id = jobs_of(shop, "j_img")[0]["job_id"]

    lines = wait_for(lambda: (ls := log_lines(shop)) and any(line.get("task_id") == "T_JSON" for line in ls)
                     and any(line.get("job_id") == job_id and "completed" not in line["message"] for line in ls)
                     and ls, 10, 0.2, "the task's and the job's lines in shop.log")
    for line in lines:
        assert {"time", "level", "logger", "message", "process"} <= set(line), line

    task_lines = [line for line in lines if "T_JSON" in line["message"]]
    assert {line["message"].split(" (")[0] for line in task_lines} >= {"task T_JSON running",
                                                                      "task T_JSON completed: sent to the customer"}
    assert all(line.get("task_id") == "T_JSON" and line.get("customer_id") == "j_tw" for line in task_lines)

    job_lines = [line for line in lines if job_id in line["message"]]
    assert any("pending → paid" in line["message"] for line in job_lines), job_lines
    assert all(line.get("job_id") == job_id and line.get("customer_id") == "j_img" for line in job_lines), job_lines
    # The customer's own actor names them on every line it writes.
    assert all(line.get("customer_id") == "j_img" for line in lines if line.get("actor") == "conversation:j_img")
    assert "conversation:j_img" in {line.get("actor") for line in lines}


@pytest.mark.timeout(60)
def test_an_unknown_log_format_is_refused_with_the_values_it_takes(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path / "d")
    launcher.data_dir.mkdir(parents=True)
    result = subprocess.run([sys.executable, str(REPO / "launcher.py")], env={**launcher.env(), "LOG_FORMAT": "xml"},
                            cwd=launcher.data_dir, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "LOG_FORMAT" in result.stderr and "'text' or 'json'" in result.stderr
