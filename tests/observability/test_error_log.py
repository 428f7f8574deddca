"""Recent errors for the console (observability/error_log.py), read from a real log file as it grows."""

from __future__ import annotations

import json
import os
from pathlib import Path

from observability.error_log import KEEP, START_BACK, ErrorLog


def write(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def test_errors_of_plain_lines_with_the_last_line_of_their_traceback(tmp_path: Path) -> None:
    log = tmp_path / "shop.log"
    write(log, "2026-02-26 10:00:00,001 INFO shop.gateway: connected\n"
               "2026-02-26 10:00:01,002 ERROR shop.dispatch: mail failed for J1\n"
               "Traceback (most recent call last):\n"
               '  File "x.py", line 1, in <module>\n'
               "smtplib.SMTPServerDisconnected: Connection unexpectedly closed\n"
               "2026-02-26 10:00:02,003 WARNING shop.scheduler: slow\n")
    errors = ErrorLog(log)
    assert errors.refresh()
    assert errors.recent() == [{"at": "2026-02-26 10:00:01,002", "level": "ERROR", "logger": "shop.dispatch",
                                "message": "mail failed for J1",
                                "detail": "smtplib.SMTPServerDisconnected: Connection unexpectedly closed"}]
    assert not errors.refresh()  # nothing new


def test_json_lines_a_half_written_line_and_newest_first(tmp_path: Path) -> None:
    log = tmp_path / "shop.log"
    write(log, "")
    errors = ErrorLog(log)
    errors.refresh()
    line = {"time": "2026-02-26T10:00:00.000+08:00", "level": "ERROR", "logger": "shop.renderer",
            "message": "render J2 failed", "job_id": "J2", "exception": "Traceback…\nValueError: bad"}
    text = json.dumps(line) + "\n"
    write(log, text[:20])
    assert not errors.refresh()  # half a line waits for the rest
    write(log, text[20:] + "2026-02-26 10:00:05,000 CRITICAL root: out of disk\n")
    assert errors.refresh()
    newest, older = errors.recent()
    assert newest["level"] == "CRITICAL" and newest["message"] == "out of disk"
    assert older == {"at": line["time"], "level": "ERROR", "logger": "shop.renderer", "message": "render J2 failed",
                     "detail": "ValueError: bad"}


def test_a_rotated_log_is_read_from_its_start_and_only_the_latest_are_kept(tmp_path: Path) -> None:
    log = tmp_path / "shop.log"
    write(log, "2026-02-26 10:00:00,000 ERROR a: first\n")
    errors = ErrorLog(log)
    errors.refresh()
    os.replace(log, tmp_path / "shop.log.1")
    write(log, "".join(f"2026-02-26 10:01:{i % 60:02},000 ERROR b: n{i}\n" for i in range(KEEP + 10)))
    assert errors.refresh()
    recent = errors.recent()
    assert len(recent) == KEEP and recent[0]["message"] == f"n{KEEP + 9}" and recent[-1]["message"] == "n10"


def test_a_long_log_is_read_only_from_near_its_end_at_the_first_look(tmp_path: Path) -> None:
    log = tmp_path / "shop.log"
    write(log, "2026-02-26 10:00:00,000 ERROR a: long ago\n")
    write(log, "2026-02-26 10:00:01,000 INFO a: " + "x" * START_BACK + "\n")
    write(log, "2026-02-26 10:00:02,000 ERROR a: lately\n")
    errors = ErrorLog(log)
    errors.refresh()
    assert [e["message"] for e in errors.recent()] == ["lately"]
    assert not ErrorLog(tmp_path / "missing.log").refresh()
