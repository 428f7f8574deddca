"""Database setup: one connection set per process, opened after fork; SQLite WAL or PostgreSQL by URL, created or
migrated to this release's schema (persistence.migrations) on request.

Acknowledging processes commit with synchronous=FULL; the rest with NORMAL, which in WAL mode survives any
process crash and, on power loss, loses only a suffix of commits that is re-derived from the durable state before
it (every side effect is keyed, so redoing one is safe). Writes go through persistence.connection.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

import peewee

from persistence.connection import database_proxy, opened
from persistence.migrations import upgrade
from persistence.postgres import PostgresDatabase

# Connections inherited across fork are kept referenced, never closed: closing them in the
# child could disturb the parent's SQLite locks, or end the parent's PostgreSQL session (libpq
# would say goodbye on the socket they share).
_inherited: list[peewee.Database] = []


class DatabaseUrlError(ValueError):
    """DATABASE_URL names no database we can open."""


def sqlite_path(url: str) -> str | None:
    """The file of a sqlite:/// URL, or None for another scheme."""
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        return None
    if url.startswith("sqlite:////"):
        return "/" + unquote(parsed.path).lstrip("/")
    path = unquote(parsed.path)
    return path[1:] if path.startswith("/") else path


def make_database(url: str, durable: bool = True) -> peewee.Database:
    """A peewee database for sqlite:///path or postgresql://user:pass@host:port/name."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = sqlite_path(url)
        if not path:
            raise DatabaseUrlError("DATABASE_URL sqlite:/// needs a file path")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pragmas = {"journal_mode": "wal", "synchronous": "full" if durable else "normal", "busy_timeout": 15000,
                   "foreign_keys": 1, "cache_size": -8000}
        return peewee.SqliteDatabase(path, pragmas=pragmas, timeout=15, check_same_thread=False)
    if parsed.scheme in ("postgres", "postgresql"):
        return PostgresDatabase(
            parsed.path.lstrip("/"),
            user=unquote(parsed.username or "") or None,
            password=unquote(parsed.password or "") or None,
            host=parsed.hostname or None,
            port=parsed.port or None,
            **{"connect_timeout": "10", **dict(parse_qsl(parsed.query))},  # ?sslmode=…: libpq's own options
        )
    raise DatabaseUrlError(f"DATABASE_URL scheme {parsed.scheme!r} is not sqlite or postgresql")


def open_database(url: str, create: bool = False, durable: bool = True) -> peewee.Database:
    """Bind the models to this process's own database (reopened after a fork); with create, create or migrate it
    to this release's schema (persistence.migrations).

    durable: commit with synchronous=FULL (for processes that acknowledge to the outside world).
    """
    pid = os.getpid()
    if opened["pid"] == pid and opened["url"] == url:
        return opened["db"]  # type: ignore[return-value]
    if opened["db"] is not None:
        _inherited.append(opened["db"])  # type: ignore[arg-type]
    db = make_database(url, durable)
    database_proxy.initialize(db)
    path = sqlite_path(url)
    opened.update(pid=pid, url=url, db=db, lock_path=f"{path}.write-lock" if path else None)
    if create:
        with db.connection_context():
            upgrade(db)
    return db


def close_database() -> None:
    """Close this process's connection (the launcher does, before it forks the actor system)."""
    db = opened["db"]
    if db is not None and opened["pid"] == os.getpid():
        db.close()  # type: ignore[attr-defined]
    opened.update(pid=None, url=None, db=None, lock_path=None)
    database_proxy.initialize(None)  # a query after close fails loudly instead of reopening silently
