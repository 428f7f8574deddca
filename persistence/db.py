"""Database setup: one connection set per process, opened after fork; SQLite WAL or PostgreSQL by URL.

SQLite writers take a process-shared file lock before BEGIN IMMEDIATE: a blocked writer then
wakes the moment the lock is released, instead of SQLite's busy handler sleeping in steps of up
to 100 ms. Acknowledging processes commit with synchronous=FULL; the rest with NORMAL, which in
WAL mode survives any process crash and, on power loss, loses only a suffix of commits that is
re-derived from the durable state before it (every side effect is keyed, so redoing one is safe).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

import peewee

database_proxy = peewee.DatabaseProxy()

_opened: dict[str, object] = {"pid": None, "url": None, "db": None, "lock_path": None}
# Connections inherited across fork are kept referenced, never closed: closing them in the
# child could disturb the parent's SQLite locks, or end the parent's PostgreSQL session (libpq
# would say goodbye on the socket they share).
_inherited: list[peewee.Database] = []
_thread_lock = threading.Lock()
_lock_fd: dict[int, int] = {}  # pid → fd of the write-lock file opened by that process


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
        from persistence.postgres import PostgresDatabase

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
    if _opened["pid"] == pid and _opened["url"] == url:
        return _opened["db"]  # type: ignore[return-value]
    if _opened["db"] is not None:
        _inherited.append(_opened["db"])  # type: ignore[arg-type]
    db = make_database(url, durable)
    database_proxy.initialize(db)
    path = sqlite_path(url)
    _opened.update(pid=pid, url=url, db=db, lock_path=f"{path}.write-lock" if path else None)
    if create:
        from persistence.migrations import upgrade

        with db.connection_context():
            upgrade(db)
    return db


def close_database() -> None:
    """Close this process's connection (the launcher does, before it forks the actor system)."""
    db = _opened["db"]
    if db is not None and _opened["pid"] == os.getpid():
        db.close()  # type: ignore[attr-defined]
    _opened.update(pid=None, url=None, db=None, lock_path=None)
    database_proxy.initialize(None)  # a query after close fails loudly instead of reopening silently


@contextlib.contextmanager
def _write_lock() -> Iterator[None]:
    pid = os.getpid()
    fd = _lock_fd.get(pid)
    if fd is None:  # opened per process: a lock inherited across fork would be shared with the parent
        fd = _lock_fd[pid] = os.open(str(_opened["lock_path"]), os.O_RDWR | os.O_CREAT, 0o600)
    with _thread_lock:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic() -> Iterator[None]:
    """A write transaction (a savepoint when nested) that never waits in SQLite's busy handler."""
    db = database_proxy.obj
    if not isinstance(db, peewee.SqliteDatabase) or db.transaction_depth() > 0 or not _opened["lock_path"]:
        with db.atomic():
            yield
        return
    with _write_lock(), db.atomic("IMMEDIATE"):
        yield


def bulk_insert(model: type[peewee.Model], rows: list[dict], on_conflict: str = "error",
                conflict_key: str = "", update: tuple[str, ...] = ()) -> None:
    """Insert many rows with one prepared statement (executemany), far cheaper than peewee's insert_many.

    on_conflict: "error", "ignore" (keep the existing row), or "update" (set update's columns from
    the new row where conflict_key clashes). Call inside a transaction.
    """
    if not rows:
        return
    db = database_proxy.obj
    columns = list(rows[0])
    fields = [model._meta.fields[c].column_name for c in columns]
    marks = ", ".join([db.param] * len(columns))
    names = ", ".join(f'"{f}"' for f in fields)
    sql = f'INSERT INTO "{model._meta.table_name}" ({names}) VALUES ({marks})'
    if on_conflict == "ignore":
        sql += " ON CONFLICT DO NOTHING"
    elif on_conflict == "update":
        sets = ", ".join(f'"{c}" = excluded."{c}"' for c in update)
        sql += f' ON CONFLICT ("{conflict_key}") DO UPDATE SET {sets}'
    params = [tuple(r[c] for c in columns) for r in rows]
    if isinstance(db, peewee.PostgresqlDatabase):
        from psycopg2.extras import execute_batch

        execute_batch(db.cursor(), sql, params, page_size=200)  # psycopg2's executemany is a round trip per row
        return
    db.cursor().executemany(sql, params)
