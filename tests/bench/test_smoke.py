"""The benchmarks still run: each script once with --quick, as `make bench` runs it (figures not judged)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.harness import REPO

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("bench", "expect"), [
    ("ingress", "ratio ingress/bare"),
    ("gateway", "ratio ours/raw fan-out"),
    ("conversations", "peak total PSS"),
    ("recovery", "cold start with"),
    ("render", "photo -> quote"),
    ("operations", "ratio local/stand-in"),
    ("convention", "ratio two/one"),
    ("startup", "ratio start/import"),
    ("retention", "ratio with/without"),
])
def test_benchmark_runs(bench: str, expect: str) -> None:
    # Its own process group: on a timeout the bench and the launcher it started go together (the
    # actor system then stops itself once its launcher is gone).
    proc = subprocess.Popen([sys.executable, "-m", f"bench.{bench}", "--quick"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=230)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert expect in out
