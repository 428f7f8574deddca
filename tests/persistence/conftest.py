"""Fixtures for the persistence tests: a real SQLite file per test, opened the way the actors open it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from persistence.db import close_database, open_database


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite database file with every table; its URL. Closed after the test."""
    url = f"sqlite:///{tmp_path}/t.db"
    open_database(url, create=True)
    try:
        yield url
    finally:
        close_database()
