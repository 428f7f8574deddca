"""Versioned schema migrations: a `schemaversion` table and the ordered steps from any older release to this one.

A new database gets every table at once and is stamped with the latest version. An older one (with no
`schemaversion` table: made before versioning) runs every step; each step only creates what is missing,
so it is a no-op on a database that already has it, and re-running a step is always safe. Each step
and its version row commit in one transaction. The same steps run on SQLite and PostgreSQL (peewee's
playhouse.migrate). A change to the models needs a new step here: tests/persistence/test_migrations.py
checks that a migrated database has the same tables, columns and indexes as a new one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import peewee
from playhouse.migrate import SchemaMigrator

from persistence import models as m
from persistence.connection import atomic, database_proxy


class SchemaVersion(peewee.Model):
    """One applied migration step."""

    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=200)
    applied_at = peewee.DoubleField()  # PostgreSQL REAL would round epoch seconds to minutes
    how = peewee.CharField(max_length=16)  # migrated | created (stamped on a new database)

    class Meta:
        database = database_proxy
        table_name = "schemaversion"


class SchemaTooNew(Exception):
    """The database was migrated by a newer release than this one."""


class Schema:
    """What a step works with: the database, its migrator, and a list of what the step changed."""

    def __init__(self, db: peewee.Database) -> None:
        self.db = db
        self.migrator = SchemaMigrator.from_database(db)
        self.changes: list[str] = []

    def create_tables(self, *models: type[peewee.Model]) -> None:
        """Create the tables (with their indexes) that do not exist yet."""
        for model in models:
            if not self.db.table_exists(model._meta.table_name):
                self.db.create_tables([model])
                self.changes.append(f"table {model._meta.table_name}")

    def add_columns(self, model: type[peewee.Model], *names: str) -> list[str]:
        """Add these fields' columns (nullable or with a default: old rows stay valid) where missing; those added."""
        table = model._meta.table_name
        present = {c.name for c in self.db.get_columns(table)}
        added = []
        for name in names:
            f = model._meta.fields[name]
            if f.column_name not in present:
                self.migrator.migrate(*_flat(self.migrator.add_column(table, f.column_name, f)))
                added.append(f.column_name)
                self.changes.append(f"column {table}.{f.column_name}")
        return added

    def ensure_index(self, model: type[peewee.Model], columns: tuple[str, ...], unique: bool = False) -> None:
        """Create the index on these columns unless an index on exactly them exists."""
        table = model._meta.table_name
        if not any(tuple(i.columns) == columns for i in self.db.get_indexes(table)):
            self.migrator.migrate(self.migrator.add_index(table, columns, unique))
            self.changes.append(f"index {table}({', '.join(columns)})")

    def drop_index(self, table: str, name: str) -> None:
        """Drop an index an older release made, if it is there."""
        if any(i.name == name for i in self.db.get_indexes(table)):
            self.migrator.migrate(self.migrator.drop_index(table, name))
            self.changes.append(f"dropped index {name}")


def _flat(ops: object) -> list:
    return list(ops) if isinstance(ops, list | tuple) else [ops]


@dataclass(frozen=True)
class Migration:
    """One step: its version (1, 2, …), what it is for, and the function that applies it."""

    version: int
    name: str
    apply: Callable[[Schema], None] = field(repr=False)


def _spine(s: Schema) -> None:
    s.create_tables(m.Task, m.TaskTransition, m.InboundMessage, m.Conversation, m.CustomerEvent, m.Outbox, m.Timer)
    s.add_columns(m.Task, "transitions")
    s.add_columns(m.CustomerEvent, "consumed_at")
    # The scheduler's earliest-timer query wants (owner, due_at) together, not one index on each.
    s.drop_index("timer", "timer_owner")
    s.drop_index("timer", "timer_due_at")
    s.ensure_index(m.Timer, ("owner", "due_at"))


def _image_jobs(s: Schema) -> None:
    if s.add_columns(m.InboundMessage, "processed_at"):
        # Messages an older release handled are not new work for the image-job machine.
        s.db.execute_sql("UPDATE inboundmessage SET processed_at = handled_at WHERE handled")
    s.add_columns(m.Conversation, "email", "email_status")
    s.create_tables(m.ImageJob, m.JobTransition, m.RequirementChange, m.JobEvent, m.RenderAttempt, m.PublicFile)


def _designers(s: Schema) -> None:
    s.add_columns(m.Conversation, "paused_until", "paused_by", "pause_reason")
    s.create_tables(m.Handoff, m.IndexedImage)


def _console(s: Schema) -> None:
    s.create_tables(m.Operator, m.AuditEntry)


def _double_floats(s: Schema) -> None:
    # Older releases let PostgreSQL store FloatField as REAL (4 bytes): epoch seconds rounded to minutes.
    if not isinstance(s.db, peewee.PostgresqlDatabase):
        return
    for model in m.ALL_MODELS:
        table = model._meta.table_name
        for f in model._meta.sorted_fields:
            if not isinstance(f, peewee.FloatField) or isinstance(f, peewee.DoubleField):
                continue
            kind = s.db.execute_sql("SELECT data_type FROM information_schema.columns WHERE table_schema = "
                                    "current_schema() AND table_name = %s AND column_name = %s",
                                    (table, f.column_name)).fetchone()
            if kind and kind[0] == "real":
                s.db.execute_sql(f'ALTER TABLE "{table}" ALTER COLUMN "{f.column_name}" TYPE double precision')
                s.changes.append(f"column {table}.{f.column_name} as double precision")


def _convention(s: Schema) -> None:
    s.add_columns(m.RenderAttempt, "system")


def _render_cost(s: Schema) -> None:
    s.add_columns(m.RenderAttempt, "operation", "model_calls")


def _orders(s: Schema) -> None:
    s.create_tables(m.ShopOrder)


def _login_failures(s: Schema) -> None:
    s.create_tables(m.LoginFailure)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "Tianwang tasks and IM messages (the first releases)", _spine),
    Migration(2, "image jobs: jobs, renders, requirement changes, result files, e-mail (issue 6)", _image_jobs),
    Migration(3, "designers and takeover: hand-offs, find-image index, conversation pause (issue 7)", _designers),
    Migration(4, "console: operator accounts and the audit trail (issue 8)", _console),
    Migration(5, "PostgreSQL: timestamps as double precision, not real", _double_floats),
    Migration(6, "convention: the actor system each render attempt runs on (issue 9)", _convention),
    Migration(7, "render cost: each attempt's operation and image-model calls (issue 14)", _render_cost),
    Migration(8, "orders: the photos a customer sends together, quoted and paid as one (issue 15)", _orders),
    Migration(9, "failed console log-ins in the database: one throttle for every ingress process (issue 16)",
              _login_failures),
)
LATEST = MIGRATIONS[-1].version


@dataclass
class Applied:
    """A step run by `upgrade`, with what it changed (empty: the database had it already)."""

    version: int
    name: str
    changes: list[str]


def current_version(db: peewee.Database) -> int:
    """The database's schema version; 0 for one made before versioning (or an empty one)."""
    if not db.table_exists(SchemaVersion._meta.table_name):
        return 0
    return SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar() or 0


def is_new(db: peewee.Database) -> bool:
    """No table of ours at all: a database to create, not to migrate."""
    return not any(db.table_exists(model._meta.table_name) for model in m.ALL_MODELS)


def pending(db: peewee.Database) -> list[Migration]:
    """The steps this database still needs, in order; SchemaTooNew if a newer release migrated it."""
    version = current_version(db)
    if version > LATEST:
        raise SchemaTooNew(f"the database is at schema version {version}, newer than this release's {LATEST}: "
                           f"run the newer release, or restore a backup made for this one")
    return [step for step in MIGRATIONS if step.version > version]


def upgrade(db: peewee.Database) -> list[Applied]:
    """Bring the database (bound to the models) to LATEST; the steps applied. Safe to run again and concurrently."""
    with _one_migrator(db):
        return _upgrade(db)


@contextlib.contextmanager
def _one_migrator(db: peewee.Database) -> Iterator[None]:
    # PostgreSQL: even `CREATE TABLE IF NOT EXISTS` races between processes (pg_type's unique index),
    # so hosts starting together take turns for the whole upgrade. SQLite: atomic() below serialises.
    if not isinstance(db, peewee.PostgresqlDatabase):
        yield
        return
    db.execute_sql("SELECT pg_advisory_lock(hashtext('shop schema'))")
    try:
        yield
    finally:
        db.execute_sql("SELECT pg_advisory_unlock(hashtext('shop schema'))")


def _upgrade(db: peewee.Database) -> list[Applied]:
    db.create_tables([SchemaVersion], safe=True)
    if is_new(db):
        with atomic():
            _lock(db)
            if is_new(db):  # nobody created it while we waited for the lock
                db.create_tables(m.ALL_MODELS)
                now = time.time()
                for step in MIGRATIONS:
                    SchemaVersion.create(version=step.version, name=step.name, applied_at=now, how="created")
                return []
    applied = []
    for step in pending(db):
        with atomic():
            _lock(db)
            if current_version(db) >= step.version:
                continue  # another process applied it while we waited
            schema = Schema(db)
            step.apply(schema)
            SchemaVersion.create(version=step.version, name=step.name, applied_at=time.time(), how="migrated")
        applied.append(Applied(step.version, step.name, schema.changes))
    return applied


def _lock(db: peewee.Database) -> None:
    # SQLite: atomic() already holds the write lock (BEGIN IMMEDIATE). PostgreSQL: one migrator at a time.
    if isinstance(db, peewee.PostgresqlDatabase):
        db.execute_sql('LOCK TABLE "schemaversion" IN ACCESS EXCLUSIVE MODE')


def history(db: peewee.Database) -> list[dict[str, object]]:
    """Every step recorded in the database, oldest first."""
    if not db.table_exists(SchemaVersion._meta.table_name):
        return []
    return [{"version": r.version, "name": r.name, "applied_at": r.applied_at, "how": r.how}
            for r in SchemaVersion.select().order_by(SchemaVersion.version)]
