"""Session-wide test fixtures and the order of the run.

The throwaway PostgreSQL server (tests/pg.py) is started only when a test asks. Under pytest-xdist
(`make test` runs `-n 4 --dist loadfile`) a file is the unit of work: the files whose tests start launchers
and actor systems are handed out first, so the long ones do not end the run alone on one worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from cluster import thespian_bind
from standins.fake_gemini import FakeGemini
from tests import pg
from tests.ports import free_port

# The actor systems tests start in their own process listen on loopback only, as the launcher's do.
os.environ.setdefault("THESPIAN_BASE_IPADDR", thespian_bind.LOOPBACK)
thespian_bind.bind_where_reached()

# Longest first: each starts several launchers or actor systems (a benchmark, a member, a kill under load).
FIRST = ("tests/bench/", "tests/e2e/test_convention.py", "tests/chaos/", "tests/e2e/", "tests/actors/")


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return next((i for i, prefix in enumerate(FIRST) if path.startswith(prefix)), len(FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long files first; within a rank, the order of collection (a stable sort). Every test has its own id."""
    for item in items:
        # schemathesis names its tests by operation (`test_x[GET /api/…]`) but leaves them one node id, which
        # xdist takes for one test: give each the id its name says.
        if item.parent is not None and item.nodeid.rpartition("::")[2] != item.name:
            item._id = item.parent.id.child(item.name)  # how pytest itself names a node
    items.sort(key=_rank)


@pytest.fixture(scope="session")
def pg_server() -> pg.PgServer:
    """This session's PostgreSQL server; the test is skipped where the server binaries are not installed."""
    try:
        return pg.shared_server()
    except pg.PgUnavailable as exc:
        pytest.skip(str(exc))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the PostgreSQL server (it was started by a fixture or by the e2e harness)."""
    pg.stop_shared()


@pytest.fixture(scope="module")
def fake_gemini_server() -> Iterator[FakeGemini]:
    """The Gemini stand-in on a free loopback port, one per test module."""
    with FakeGemini(port=free_port()) as fake:
        yield fake


@pytest.fixture()
def fake_gemini(fake_gemini_server: FakeGemini) -> FakeGemini:
    """The module's stand-in reset for this test: no faults, default answers, an empty log."""
    fake_gemini_server.reset()
    return fake_gemini_server
