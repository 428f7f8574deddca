"""tests/clock/sitecustomize.py: how `make test-ahead` moves the wall clock of every process of a test run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.harness import REPO

PROBE = """
import datetime, os, threading, time
started = time.monotonic()
time.sleep(0.3)  # a process that reads its clock late reads the same clock as the others
threading.Event().wait(0.2)
child = os.fork()
if child == 0:
    print(time.time(), flush=True)
    os._exit(0)
os.waitpid(child, 0)
print(time.time(), datetime.datetime.now().timestamp(), time.monotonic() - started)
"""


def probe(days: str | None) -> tuple[list[float], float, float]:
    """A new process's readings (its fork's time, its time, its datetime, how long its waits took), and the
    machine's monotonic clock around it."""
    env = {k: v for k, v in os.environ.items() if k != "SHOP_TEST_CLOCK_SHIFT_DAYS"}
    env["PYTHONPATH"] = str(REPO / "tests" / "clock")
    if days is not None:
        env["SHOP_TEST_CLOCK_SHIFT_DAYS"] = days
    before = time.monotonic()
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return [float(v) for v in done.stdout.split()], before, time.monotonic()


def test_the_shift_moves_the_wall_clock_of_a_process_and_its_forks_by_the_days_asked_and_not_its_waits() -> None:
    (_, plain, _, _), _, _ = probe(None)
    (forked, wall, dated, waited), started, ended = probe("365")
    # Both processes started within the second run's span: their clocks differ by a year, give or take that span.
    span = ended - started + 1
    for reading in (forked, wall, dated):
        assert abs(reading - plain - 365 * 86400) < span
    assert 0.5 <= waited < 5  # a sleep and a timed wait take the machine's own time, not a year
