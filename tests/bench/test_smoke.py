"""The benchmarks still run: each script once with --quick, as `make bench` runs it (figures not judged)."""

from __future__ import annotations

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
])
def test_benchmark_runs(bench: str, expect: str) -> None:
    result = subprocess.run([sys.executable, "-m", f"bench.{bench}", "--quick"], cwd=REPO, capture_output=True,
                            text=True, timeout=230)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert expect in result.stdout
