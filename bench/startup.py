"""What one start of the service costs: wall time until healthy and CPU seconds of the whole machine, start to
healthy and stop to gone, against the bare import of the actors' code that every start pays (the baseline).

The test suite starts the launcher some hundred times; `make run` once. CPU is read from /proc/stat (every
process on the machine), so run it on a quiet machine.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time

from bench.common import header, launcher, parser
from tests.harness import REPO


def _busy() -> float:
    """CPU seconds the machine has spent busy since boot (/proc/stat, every core)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / 100  # less idle and iowait; USER_HZ is 100 on Linux


def _import_cpu() -> float:
    """CPU seconds of a fresh interpreter importing what the launcher imports before it forks the actors."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "import actors.root"], cwd=REPO, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    """Start and stop the launcher a few times; print the medians and the ratio to the bare import."""
    args = parser(__doc__.splitlines()[0]).parse_args()
    rounds = 1 if args.quick else 7
    header("bench/startup.py")
    imports = statistics.median(_import_cpu() for _ in range(rounds))
    starts, stops, walls = [], [], []
    for _ in range(rounds):
        busy, began = _busy(), time.monotonic()
        shop = launcher()
        walls.append(time.monotonic() - began)
        starts.append(_busy() - busy)
        time.sleep(1.0)
        busy = _busy()
        shop.stop()
        stops.append(_busy() - busy)
    start = statistics.median(starts)
    print(f"start to healthy: {statistics.median(walls):.2f} s wall, {start:.2f} CPU-s (median of {rounds}); "
          f"stop: {statistics.median(stops):.2f} CPU-s")
    print(f"baseline: importing the actors' code {imports:.2f} CPU-s; ratio start/import {start / imports:.2f}")


if __name__ == "__main__":
    main()
