"""Root on a real multiprocTCPBase system: supervision, restart counts, address book, health."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from thespian.actors import ActorSystem

from persistence.db import close_database, open_database
from protocol.messages import HealthQuery, HealthReport, Pong, StartSystem
from protocol.settings import Settings
from tests.harness import free_port, process_group_alive, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

PLACED = ("render_worker", "conversation")  # actors a placing actor reports besides the top-level ones


@pytest.fixture
def system(tmp_path: Path) -> Iterator[tuple[ActorSystem, object]]:
    settings = Settings(_env_file=None, DATA_DIR=tmp_path, HTTP_API_PORT=free_port(), IM_BRIDGE_URL="ws://127.0.0.1:9",
                        SWEEP_INTERVAL_S=1)
    open_database(settings.DATABASE_URL, create=True)
    close_database()
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": free_port()}, transientUnique=True)
    pgid = None
    try:
        root = asys.createActor("actors.root.Root")
        pong = asys.ask(root, StartSystem(settings=settings), 30)
        assert isinstance(pong, Pong)
        pgid = pong.pgid
        yield asys, root
    finally:
        asys.shutdown()
        if pgid is not None:
            for pid in process_group_alive(pgid):
                with contextlib.suppress(ProcessLookupError):  # it may exit between the look and the kill
                    os.kill(pid, signal.SIGKILL)


def _health(asys: ActorSystem, root: object) -> HealthReport:
    report = asys.ask(root, HealthQuery(request_id=7), 10)
    assert isinstance(report, HealthReport) and report.request_id == 7
    return report


def _by_name(report: HealthReport) -> dict[str, object]:
    return {a.name: a for a in report.actors}


def test_every_child_is_up_and_reported(system: tuple[ActorSystem, object]) -> None:
    asys, root = system
    report = wait_for(lambda: (r := _health(asys, root)).ok and r, 20, what="all children up")
    top = [a for a in report.actors if a.kind not in PLACED]
    assert {a.name for a in top} == {"root", "scheduler", "gateway", "conversations", "renderer", "dispatch", "ingress"}
    assert all(a.state == "running" and a.pid for a in top)
    # The render workers the pool placed (all here: no member joined), and the one system of the convention.
    workers = [a for a in report.actors if a.kind == "render_worker"]
    assert len(workers) == 4 and {a.system for a in workers} == {a.system for a in top}
    assert [m["role"] for m in report.members] == ["leader"]


@pytest.mark.parametrize("victim", ["scheduler", "conversations", "ingress"])
def test_a_killed_child_is_restarted_once_and_counted(system: tuple[ActorSystem, object], victim: str) -> None:
    asys, root = system
    old = _by_name(wait_for(lambda: (r := _health(asys, root)).ok and r, 20, what="all children up"))[victim]
    os.kill(old.pid, signal.SIGKILL)
    started = time.monotonic()

    def replaced() -> object | None:
        report = _health(asys, root)
        child = _by_name(report)[victim]
        return child if report.ok and child.pid != old.pid else None

    new = wait_for(replaced, 20, 0.05, f"{victim} restarted")
    print(f"{victim} serving again after {time.monotonic() - started:.3f}s")
    # ChildActorExited can arrive several times for one death: it still counts as one restart.
    time.sleep(0.5)
    assert _by_name(_health(asys, root))[victim].restarts == new.restarts == 1
