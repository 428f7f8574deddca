"""Recent errors of every actor for the console, read from the shop's log as it grows.

Every actor process logs to DATA_DIR/logs/shop.log (through Thespian's logging), so its tail is the one place
that holds the errors of all of them. The file is read incrementally (only the bytes added since the last look,
at most READ_MAX at a time) and rotation is noticed by its inode or a shrinking size.
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from pathlib import Path
from typing import Any

KEEP = 50  # errors remembered
START_BACK = 1024 * 1024  # at the first look, how far back from the end to start
READ_MAX = 4 * 1024 * 1024  # bytes read per look: a burst of logging is skipped over, not read whole
LEVELS = ("ERROR", "CRITICAL")
MESSAGE_MAX = 500
PLAIN = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[,.]\d+)?) (\w+) (\S+?): (.*)$")


class ErrorLog:
    """The latest ERROR and CRITICAL records of a log file (plain or JSON lines), newest first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self._inode: int | None = None
        self._offset = 0
        self._rest = b""

    def refresh(self) -> bool:
        """Read what was appended since the last call; whether new errors were found."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        if self._inode != st.st_ino or st.st_size < self._offset:
            first = self._inode is None
            self._inode, self._rest = st.st_ino, b""
            self._offset = max(0, st.st_size - START_BACK) if first else 0
        if st.st_size == self._offset:
            return False
        if st.st_size - self._offset > READ_MAX:
            self._offset, self._rest = st.st_size - READ_MAX, b""
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read(st.st_size - self._offset)
        self._offset += len(chunk)
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()  # a line still being written
        before = len(self.errors), self.errors[0] if self.errors else None
        self._scan([raw.decode("utf-8", "replace") for raw in lines])
        return (len(self.errors), self.errors[0] if self.errors else None) != before

    def recent(self) -> list[dict[str, Any]]:
        """The errors found so far, newest first: at (as logged), level, logger, message, detail."""
        return list(self.errors)

    def _scan(self, lines: list[str]) -> None:
        current: dict[str, Any] | None = None
        for line in lines:
            if line.startswith("{"):
                current = None
                self._add(_json_record(line))
                continue
            m = PLAIN.match(line)
            if m:
                current = None
                if m.group(2) in LEVELS:
                    current = {"at": m.group(1), "level": m.group(2), "logger": m.group(3),
                               "message": m.group(4)[:MESSAGE_MAX], "detail": ""}
                    self._add(current)
            elif current is not None and line.strip():
                # A traceback: its last line (the exception and its text) is what an operator needs.
                current["detail"] = line.strip()[:MESSAGE_MAX]

    def _add(self, record: dict[str, Any] | None) -> None:
        if record is not None:
            self.errors.appendleft(record)


def _json_record(line: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    level = str(obj.get("level") or obj.get("levelname") or "").upper()
    if level not in LEVELS:
        return None
    exc = str(obj.get("exc_info") or obj.get("exception") or "").strip()
    return {"at": str(obj.get("time") or obj.get("ts") or obj.get("timestamp") or obj.get("asctime") or ""),
            "level": level, "logger": str(obj.get("logger") or obj.get("name") or ""),
            "message": str(obj.get("message") or obj.get("msg") or "")[:MESSAGE_MAX],
            "detail": exc.splitlines()[-1][:MESSAGE_MAX] if exc else ""}
