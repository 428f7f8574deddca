"""Database setup: one connection set per process, opened after fork; SQLite WAL or PostgreSQL by URL."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import peewee

database_proxy = peewee.DatabaseProxy()

_opened: dict[str, object] = {"pid": None, "url": None, "db": None}
# Connections inherited across fork are kept referenced, never closed: closing them in the
# child could disturb the parent's SQLite locks.
_inherited: list[peewee.Database] = []

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "full",
    "busy_timeout": 15000,
    "foreign_keys": 1,
    "cache_size": -8000,
}


class DatabaseUrlError(ValueError):
    """DATABASE_URL names no database we can open."""


def make_database(url: str) -> peewee.Database:
    """A peewee database for sqlite:///path or postgresql://user:pass@host:port/name."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        if url.startswith("sqlite:////"):
            path = "/" + path.lstrip("/")
        elif url.startswith("sqlite:///"):
            path = path[1:] if path.startswith("/") else path
        if not path:
            raise DatabaseUrlError("DATABASE_URL sqlite:/// needs a file path")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=15, check_same_thread=False)
    if parsed.scheme in ("postgres", "postgresql"):
        return peewee.PostgresqlDatabase(
            parsed.path.lstrip("/"),
            user=unquote(parsed.username or "") or None,
            password=unquote(parsed.password or "") or None,
            host=parsed.hostname or None,
            port=parsed.port or None,
        )
    raise DatabaseUrlError(f"DATABASE_URL scheme {parsed.scheme!r} is not sqlite or postgresql")


def open_database(url: str, create: bool = False) -> peewee.Database:
    """Bind the models to this process's own database (reopened after a fork); create tables if asked."""
    pid = os.getpid()
    if _opened["pid"] == pid and _opened["url"] == url:
        return _opened["db"]  # type: ignore[return-value]
    if _opened["db"] is not None:
        _inherited.append(_opened["db"])  # type: ignore[arg-type]
    db = make_database(url)
    database_proxy.initialize(db)
    _opened.update(pid=pid, url=url, db=db)
    if create:
        from persistence.models import ALL_MODELS

        with db.connection_context():
            db.create_tables(ALL_MODELS, safe=True)
    return db


def close_database() -> None:
    """Close this process's connection (the launcher does, before it forks the actor system)."""
    db = _opened["db"]
    if db is not None and _opened["pid"] == os.getpid():
        db.close()  # type: ignore[attr-defined]
    _opened.update(pid=None, url=None, db=None)
    database_proxy.initialize(None)  # a query after close fails loudly instead of reopening silently


def atomic() -> peewee._atomic:
    """A write transaction that takes SQLite's write lock up front (no upgrade deadlocks)."""
    db = database_proxy.obj
    if isinstance(db, peewee.SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()
