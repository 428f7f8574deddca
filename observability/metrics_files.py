"""Where counters of the forked actor processes meet: prometheus-client's multiprocess directory.

prometheus-client picks its value store when it is first imported, from PROMETHEUS_MULTIPROC_DIR,
so the launcher calls :func:`prepare` before anything imports it; every actor process it forks
then writes its counters to files of its own in that directory, and /metrics adds them up.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(data_dir: Path) -> Path:
    """Empty DATA_DIR/metrics and point prometheus-client at it; the directory.

    Counters start from zero at each launcher start (Prometheus reads that as a reset); files of
    processes that died since stay and keep counting, so a restarted actor loses nothing.
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess directory was set")
    path = data_dir / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[ENV] = str(path)
    return path
