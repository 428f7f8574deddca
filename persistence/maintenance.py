"""`shop-admin migrate | backup | restore`, and the lock by which a running service claims its DATA_DIR.

Backups of SQLite use its online backup API (a consistent copy while the service writes); of PostgreSQL,
pg_dump's custom format (pg_restore reads it back). A restore refuses while a launcher holds DATA_DIR's
lock (unless --force), and first keeps a copy of the database it replaces under DATA_DIR/backups.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from core.redaction import redact

LOCK_NAME = "launcher.lock"
SQLITE_MAGIC = b"SQLite format 3\x00"
COUNTED = (("task", "tasks"), ("inboundmessage", "messages"), ("conversation", "conversations"),
           ("imagejob", "image jobs"))


class MaintenanceError(Exception):
    """A maintenance command that cannot be done; the message says why and what to do."""


# -- the service's claim on DATA_DIR -----------------------------------------------------------------------
def hold_service_lock(data_dir: Path) -> int | None:
    """Take DATA_DIR's lock for this process and its forked children; None if a running service holds it.

    The lock is an flock on DATA_DIR/launcher.lock, so it is released by the kernel when the last process
    holding it exits, however it exits. The file names the launcher's pid for the messages that refuse.
    """
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def service_pid(data_dir: Path) -> int | None:
    """The pid of the launcher running on DATA_DIR, or None when none is."""
    path = data_dir / LOCK_NAME
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = path.read_text().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# -- helpers -------------------------------------------------------------------------------------------
def _settings() -> Any:
    from persistence.admin import settings_from_env

    return settings_from_env(MaintenanceError)


def shown_url(url: str) -> str:
    """A database URL fit to print: no password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}" if user else f"***@{netloc}"))


def _sqlite_file(url: str) -> Path | None:
    from persistence.db import sqlite_path

    path = sqlite_path(url)
    return Path(path).resolve() if path else None


def counts(path: Path) -> dict[str, int]:
    """Rows of the tables an operator cares about, in a SQLite file (missing tables count 0)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {label: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] if t in tables else 0
                for t, label in COUNTED}
    finally:
        con.close()


def _summary(found: dict[str, int]) -> str:
    return ", ".join(f"{n} {label}" for label, n in found.items())


def sqlite_schema_version(path: Path) -> int:
    """The schema version recorded in a SQLite file (0: made before versioning)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'schemaversion'").fetchone():
            return 0
        return con.execute("SELECT coalesce(max(version), 0) FROM schemaversion").fetchone()[0]
    finally:
        con.close()


def sqlite_copy(src: Path, dest: Path) -> None:
    """A consistent copy of a live SQLite database (online backup API) written to dest through dest.part."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)
    source = sqlite3.connect(src, timeout=30)
    target = sqlite3.connect(part)
    try:
        source.backup(target)  # one step: the copy is one snapshot even while the service writes
        target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
    finally:
        target.close()
        source.close()
    os.replace(part, dest)


def check_sqlite_backup(path: Path) -> None:
    """Refuse a file that is not a sound SQLite database of this service."""
    from persistence.migrations import LATEST

    if not path.is_file():
        raise MaintenanceError(f"{path} does not exist")
    with path.open("rb") as fh:
        if fh.read(16) != SQLITE_MAGIC:
            raise MaintenanceError(f"{path} is not a SQLite database (a PostgreSQL dump is restored with "
                                   f"DATABASE_URL set to postgresql://…)")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        verdict = con.execute("PRAGMA quick_check").fetchone()[0]
        has_tasks = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'task'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise MaintenanceError(f"{path} cannot be read as a database: {exc}") from None
    finally:
        con.close()
    if verdict != "ok":
        raise MaintenanceError(f"{path} is damaged: {verdict}")
    if not has_tasks:
        raise MaintenanceError(f"{path} is a SQLite database, but not one of this service (no task table)")
    version = sqlite_schema_version(path)
    if version > LATEST:
        raise MaintenanceError(f"{path} was made by a newer release (schema version {version}; this one knows "
                               f"up to {LATEST})")


def _pg_env(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without its password, and the environment carrying the password."""
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        host = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}@{host}" if user else host)
    return urlunsplit(parts._replace(scheme="postgresql")), env


def _pg_tool(args: list[str], env: dict[str, str]) -> None:
    tool = args[0]
    if shutil.which(tool) is None:
        raise MaintenanceError(f"{tool} is not installed (Debian: apt-get install postgresql-client)")
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise MaintenanceError(f"{tool} failed: {redact(done.stderr.strip()) or f'exit {done.returncode}'}")


# -- commands ------------------------------------------------------------------------------------------
def migrate_command(args: argparse.Namespace) -> int:
    """Show the schema version and the steps; with --apply, run the pending ones."""
    from persistence import migrations
    from persistence.db import close_database, open_database

    settings = _settings()
    db = open_database(settings.DATABASE_URL)
    try:
        with db.connection_context():
            new = migrations.is_new(db)
            todo = [] if new else migrations.pending(db)
            if args.apply:
                applied = migrations.upgrade(db)
                if new:
                    print(f"created a new database at schema version {migrations.LATEST}")
                for step in applied:
                    print(f"applied {step.version}: {step.name}")
                    print("    " + ("; ".join(step.changes) or "nothing to change: the database had it already"))
                if not new and not applied:
                    print(f"nothing to do: the database is at schema version {migrations.LATEST}")
                return 0
            done = {h["version"]: h for h in migrations.history(db)}
            print(f"database {shown_url(settings.DATABASE_URL)}")
            version = migrations.current_version(db)
            print(f"schema version {version}" + (" (no tables yet)" if new else "")
                  + f"; this release: {migrations.LATEST}")
            for step in migrations.MIGRATIONS:
                if step.version in done:
                    h = done[step.version]
                    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(h["applied_at"])))
                    mark = f"{h['how']} {when}"
                else:
                    mark = "pending"
                print(f"  {step.version}  {mark:<24} {step.name}")
            if todo:
                print(f"{len(todo)} pending: run `shop-admin migrate --apply` (the launcher also applies them "
                      f"when it starts)")
            return 0
    finally:
        close_database()


def backup_command(args: argparse.Namespace) -> int:
    """Write a consistent backup of the database to FILE (the service may keep running)."""
    settings = _settings()
    dest = Path(args.file).resolve()
    if dest.exists() and not args.force:
        raise MaintenanceError(f"{dest} exists; choose another name or pass --force to overwrite it")
    db_file = _sqlite_file(settings.DATABASE_URL)
    started = time.monotonic()
    if db_file is None:
        uri, env = _pg_env(settings.DATABASE_URL)
        _pg_tool(["pg_dump", "--format=custom", "--no-owner", f"--file={dest}", f"--dbname={uri}"], env)
        print(f"backed up {shown_url(settings.DATABASE_URL)} to {dest} ({dest.stat().st_size} bytes) "
              f"in {time.monotonic() - started:.1f}s")
        return 0
    if not db_file.is_file():
        raise MaintenanceError(f"there is no database at {db_file} yet (DATA_DIR={settings.DATA_DIR})")
    sqlite_copy(db_file, dest)
    print(f"backed up {db_file} to {dest} ({dest.stat().st_size} bytes, schema version "
          f"{sqlite_schema_version(dest)}) in {time.monotonic() - started:.1f}s: {_summary(counts(dest))}")
    return 0


def restore_command(args: argparse.Namespace) -> int:
    """Replace the database with FILE, keeping a copy of the current one; refused while the service runs."""
    settings = _settings()
    source = Path(args.file).resolve()
    pid = service_pid(settings.DATA_DIR)
    if pid is not None and not args.force:
        raise MaintenanceError(f"the service is running on {settings.DATA_DIR} (launcher pid {pid}): stop it first "
                               f"(systemctl stop retouch-shop, or Ctrl-C), or pass --force to restore under it")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    keep_dir = settings.DATA_DIR / "backups"
    db_file = _sqlite_file(settings.DATABASE_URL)
    if db_file is None:
        if not source.is_file():
            raise MaintenanceError(f"{source} does not exist")
        uri, env = _pg_env(settings.DATABASE_URL)
        kept = keep_dir / f"shop-{stamp}-before-restore.pgdump"
        keep_dir.mkdir(parents=True, exist_ok=True)
        _pg_tool(["pg_dump", "--format=custom", "--no-owner", f"--file={kept}", f"--dbname={uri}"], env)
        print(f"kept the current database in {kept}")
        _pg_tool(["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction", f"--dbname={uri}",
                  str(source)], env)
        print(f"restored {shown_url(settings.DATABASE_URL)} from {source}")
        return 0
    check_sqlite_backup(source)
    if db_file.is_file():
        kept = keep_dir / f"shop-{stamp}-before-restore.db"
        sqlite_copy(db_file, kept)
        print(f"kept the current database in {kept} ({_summary(counts(kept))})")
    _sqlite_restore(source, db_file)
    version = sqlite_schema_version(db_file)
    from persistence.migrations import LATEST

    note = "" if version == LATEST else f"; the service migrates it to {LATEST} when it starts"
    print(f"restored {db_file} from {source} (schema version {version}{note}): {_summary(counts(db_file))}")
    return 0


def _sqlite_restore(source: Path, db_file: Path) -> None:
    """Copy source into the database through SQLite itself, so its WAL and any open reader stay consistent."""
    db_file.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(db_file, timeout=30)
    try:
        with contextlib.suppress(sqlite3.DatabaseError):
            dst.execute("PRAGMA journal_mode = WAL")
        src.backup(dst)
        dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError as exc:
        raise MaintenanceError(f"cannot write the database {db_file}: {exc}") from None
    finally:
        dst.close()
        src.close()


def _guarded(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except MaintenanceError as exc:
            print(f"shop-admin {args.command}: {exc}", file=sys.stderr)
            return 1

    return run


def add_commands(subparsers: Any) -> None:
    """Register `shop-admin migrate`, `backup FILE` and `restore FILE`."""
    p = subparsers.add_parser("migrate", help="show the database's schema version and pending migrations",
                              description="Show the schema version and every migration step; --apply runs the "
                                          "pending ones (the launcher also runs them when it starts).")
    p.add_argument("--apply", action="store_true", help="apply the pending migrations")
    p.set_defaults(run=_guarded(migrate_command))
    p = subparsers.add_parser("backup", help="back up the database to FILE (safe while the service runs)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.set_defaults(run=_guarded(backup_command))
    p = subparsers.add_parser("restore", help="replace the database with a backup (the service must be stopped)",
                              description="Replace the database with FILE. The current database is kept under "
                                          "DATA_DIR/backups first. Refused while the service runs on DATA_DIR.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--force", action="store_true", help="restore even though the service is running")
    p.set_defaults(run=_guarded(restore_command))
