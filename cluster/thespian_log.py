"""Thespian's own log (`thesplog`, THESPLOG_FILE) masked like every other log, and kept under DATA_DIR.

Thespian writes its internal log with `thesplog()` straight to a file — by default /tmp/thespian.log, beside
every other user's — bypassing the logging handlers that mask secrets. Its modules import the function by
name, so each module's reference is replaced with one that masks the line first (core.redaction) and writes
nothing new. Called before the actor system forks, so every actor inherits it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from thespian.system import utilis

from core import redaction


def mask_and_keep(logs_dir: Path, name: str = "thespian.log") -> None:
    """Send Thespian's log to logs_dir/name (unless THESPLOG_FILE says where) and mask every line."""
    if "THESPLOG_FILE" not in os.environ:
        os.environ["THESPLOG_FILE"] = str(logs_dir / name)
        utilis._thesplog_file = None  # Thespian reads the variable at its first line
    original = getattr(utilis.thesplog, "__wrapped__", utilis.thesplog)

    def thesplog(msg: Any, *args: Any, **kw: Any) -> None:
        if kw.get("level", 20) < utilis._thesplog_control_settings[0]:
            return  # below THESPLOG_THRESHOLD: Thespian would not write it either
        try:
            text = str(msg % args)  # as Thespian renders it, "%%" included
        except (TypeError, ValueError):
            text = f"{msg} {args}"
        original(redaction.redact(text).replace("%", "%%"), **kw)

    thesplog.__wrapped__ = original  # type: ignore[attr-defined]
    for name, module in list(sys.modules.items()):
        if (name == "thespian" or name.startswith("thespian.")) and getattr(module, "thesplog", None) in (
                original, utilis.thesplog):
            module.thesplog = thesplog  # type: ignore[attr-defined]
