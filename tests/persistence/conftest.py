"""Fixtures for the persistence tests: a real database per test, on SQLite and on PostgreSQL, opened the way the
actors open it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from persistence.db import close_database, open_database
from tests import pg


@pytest.fixture(scope="session")
def pg_shop(pg_server: pg.PgServer) -> str:
    """The URL of a PostgreSQL database at this release's schema, emptied for each test that uses it."""
    url = pg_server.new_database()
    open_database(url, create=True)
    close_database()
    return url


def _emptied(url: str) -> str:
    # Emptying the tables (ids from 1 again) is ten times faster than a new database and its migrations.
    con = pg.connect_url(url)
    try:
        cursor = con.cursor()
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schemaversion'")
        tables = ", ".join(f'"{name}"' for (name,) in cursor.fetchall())
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        con.close()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database with every table (a new SQLite file, or the session's PostgreSQL database emptied); its
    URL. Closed after the test."""
    url = f"sqlite:///{tmp_path}/t.db" if request.param == "sqlite" else _emptied(request.getfixturevalue("pg_shop"))
    open_database(url, create=True)
    try:
        yield url
    finally:
        close_database()
