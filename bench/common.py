"""What the benchmarks share: argument parsing, percentiles, the launcher, a result line."""

from __future__ import annotations

import argparse
import atexit
import platform
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import Launcher  # noqa: E402  (bench scripts run as files, from any directory)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) of values; 0 when there are none."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(p) - 1))]


def machine() -> str:
    """One line naming this machine, for RESULTS.md."""
    import os

    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def header(name: str) -> None:
    """The first lines every benchmark prints."""
    print(f"# {name} — {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} — {machine()}", flush=True)


def parser(description: str) -> argparse.ArgumentParser:
    """Arguments common to every benchmark (--quick for the smoke test)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny run for the smoke test")
    return p


def temp_dir(prefix: str) -> Path:
    """A new temporary directory, removed when the benchmark exits (its launchers are stopped by then)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def launcher(env: dict[str, str] | None = None) -> Launcher:
    """A launcher on free ports in a fresh DATA_DIR, started and healthy."""
    shop = Launcher(temp_dir("bench-"), env or {})
    try:
        return shop.start()
    except BaseException:
        shop.stop()  # a launcher that did not come up healthy must not outlive the benchmark
        raise
