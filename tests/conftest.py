"""Session-wide test fixtures: the throwaway PostgreSQL server (tests/pg.py), started only when a test asks."""

from __future__ import annotations

import pytest

from tests import pg


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
