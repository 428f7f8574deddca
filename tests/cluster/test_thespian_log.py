"""Thespian's own log (cluster/thespian_log.py): under DATA_DIR, and masked like every other log."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.harness import REPO

pytestmark = pytest.mark.timeout(30)

SECRET = "gm-key-0123456789abcdef"
# In its own process: the patch changes Thespian's modules for good, and THESPLOG_FILE is read once.
SCRIPT = textwrap.dedent(f"""
    import logging, sys
    from pathlib import Path
    from thespian.system import utilis
    from thespian.system.transport import TCPTransport
    from cluster import thespian_log
    from core import redaction
    from protocol.settings import Settings

    redaction.configure(Settings(_env_file=None, DATA_DIR=sys.argv[1], GEMINI_API_KEY="{SECRET}"))
    thespian_log.mask_and_keep(Path(sys.argv[1]))
    TCPTransport.thesplog("sending to %s with key %s", "admin", "{SECRET}", level=logging.WARNING)
    utilis.thesplog("100%% done, key {SECRET}", level=logging.ERROR)
    utilis.thesplog("below the threshold {SECRET}", level=logging.DEBUG)
""")


def test_thespians_log_is_kept_under_data_dir_and_masked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "THESPLOG_FILE"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "thespian.log").read_text()
    assert "sending to admin with key" in written and "100% done" in written
    assert SECRET not in written and "below the threshold" not in written
