"""PostgreSQL: the database class, and the locks that stand in for SQLite's single writer.

On SQLite every write transaction holds the one write lock from its first read (persistence.db.atomic), so
read-then-write code is serialized. PostgreSQL runs writers concurrently (READ COMMITTED): a row read to be
rewritten is read FOR UPDATE, and a key that may not exist yet (a task id, a message id) is locked with a
transaction-scoped advisory lock before it is looked up. Compare-and-set updates (`UPDATE … WHERE status = …`)
need neither: PostgreSQL re-checks the WHERE on the row's newest version after waiting for its lock.
"""

from __future__ import annotations

from collections.abc import Iterable

import peewee
from playhouse.shortcuts import ReconnectMixin

from persistence.connection import database_proxy


class PostgresDatabase(ReconnectMixin, peewee.PostgresqlDatabase):
    """peewee's PostgreSQL database with float8 floats and a reconnect after the server restarted.

    peewee maps FloatField to REAL, which on PostgreSQL is float4: epoch seconds would lose minutes. Reconnect:
    one long-lived connection per process and thread; a query outside a transaction (and every BEGIN) that finds
    it dead reconnects once and runs again. Inside a transaction the error goes up (the work is redone whole).
    Chosen over playhouse.pool: a process keeps its connection for life, so a pool would add nothing to reuse and
    would still hand out a dead connection after a server restart.
    """

    field_types = {**peewee.PostgresqlDatabase.field_types, "FLOAT": "DOUBLE PRECISION"}
    reconnect_errors = (
        (peewee.OperationalError, "server closed the connection"),
        (peewee.OperationalError, "terminating connection"),
        (peewee.OperationalError, "connection to server"),
        (peewee.OperationalError, "could not receive data"),
        (peewee.OperationalError, "could not send data"),
        (peewee.OperationalError, "ssl syscall error"),
        (peewee.InterfaceError, "connection already closed"),
        (peewee.InterfaceError, "connection is closed"),
    )

    def rollback(self) -> None:
        """Roll back; on a connection the server dropped there is nothing left to roll back: close our end (the
        next use opens a new one) and let the error that ended the transaction be the one raised."""
        conn = self._state.conn
        if conn is not None and conn.closed and not self.in_transaction():
            self.close()
            return
        super().rollback()


def is_postgres(db: peewee.Database) -> bool:
    """Whether db runs concurrent writers (PostgreSQL), rather than SQLite's one."""
    return isinstance(db, peewee.PostgresqlDatabase)


def for_update(query: peewee.ModelSelect) -> peewee.ModelSelect:
    """The query with FOR UPDATE on PostgreSQL (rows read to be rewritten); unchanged on SQLite, whose write lock,
    taken before the transaction's first read, already keeps every other writer out."""
    return query.for_update() if is_postgres(database_proxy.obj) else query


def lock_keys(namespace: str, keys: Iterable[str]) -> None:
    """Hold, until this transaction ends, a lock per key of a namespace (rows that may not exist yet, so FOR UPDATE
    cannot lock them); PostgreSQL only, a no-op on SQLite. Taken in one fixed order: two batches never deadlock."""
    db = database_proxy.obj
    keys = sorted(set(keys))
    if not keys or not is_postgres(db):
        return
    db.execute_sql(
        "SELECT pg_advisory_xact_lock(hashtext(%s), h) FROM "
        "(SELECT DISTINCT hashtext(k) AS h FROM unnest(%s::text[]) AS k ORDER BY h) AS ordered",
        (namespace, keys))
