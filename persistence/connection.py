"""The database every store module writes through: the models' proxy, this process's open database, and write
transactions (persistence.db opens it).

SQLite writers take a process-shared file lock before BEGIN IMMEDIATE: a blocked writer then
wakes the moment the lock is released, instead of SQLite's busy handler sleeping in steps of up
to 100 ms.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator

import peewee

database_proxy = peewee.DatabaseProxy()

# What this process has open: set by persistence.db.open_database, read by the write lock.
opened: dict[str, object] = {"pid": None, "url": None, "db": None, "lock_path": None}
_thread_lock = threading.Lock()
_lock_fd: dict[int, int] = {}  # pid → fd of the write-lock file opened by that process


@contextlib.contextmanager
def _write_lock() -> Iterator[None]:
    pid = os.getpid()
    fd = _lock_fd.get(pid)
    if fd is None:  # opened per process: a lock inherited across fork would be shared with the parent
        fd = _lock_fd[pid] = os.open(str(opened["lock_path"]), os.O_RDWR | os.O_CREAT, 0o600)
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
    if not isinstance(db, peewee.SqliteDatabase) or db.transaction_depth() > 0 or not opened["lock_path"]:
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
