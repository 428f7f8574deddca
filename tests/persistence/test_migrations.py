"""Schema migrations and the database commands, from a database made by the previous release.

tests/fixtures/release6.db was made by the previous release's own code (git b789f4c, issue 6) with
tests/fixtures/make_release6_db.py (its docstring says how): four Tianwang tasks (waiting, completed,
cancelled, a time_reach far ahead), texts, an order, and two image jobs, one paid, rendered and mailed.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from persistence import migrations
from persistence.db import close_database, open_database
from persistence.maintenance import check_sqlite_backup
from tests import pg
from tests.harness import REPO, Launcher, http, wait_for

FIXTURE = REPO / "tests" / "fixtures" / "release6.db"


def rows(path: Path, only: dict[str, list[str]] | None = None) -> dict[str, list[tuple]]:
    """Every row of every table (or of these tables, these columns), in a stable order."""
    con = sqlite3.connect(path)
    try:
        tables = only or {t: [c[1] for c in con.execute(f'PRAGMA table_info("{t}")')]
                          for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        out = {}
        for table, columns in tables.items():
            names = ", ".join(f'"{c}"' for c in columns)
            out[table] = sorted(con.execute(f'SELECT {names} FROM "{table}"'), key=repr)
        return out
    finally:
        con.close()


def schema(path: Path) -> dict[str, tuple]:
    """Per table: its columns (name, type, not null, primary key) and its indexes (columns, unique)."""
    con = sqlite3.connect(path)
    try:
        out = {}
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            columns = sorted((c[1], c[2], c[3], c[5]) for c in con.execute(f'PRAGMA table_info("{table}")'))
            indexes = sorted((tuple(i[2] for i in con.execute(f'PRAGMA index_info("{ix[1]}")')), ix[2])
                             for ix in con.execute(f'PRAGMA index_list("{table}")') if ix[3] == "c")
            out[table] = (columns, indexes)
        return out
    finally:
        con.close()


@pytest.fixture
def old_db(tmp_path: Path) -> Iterator[Path]:
    """A copy of the previous release's database; closed after the test."""
    path = tmp_path / "shop.db"
    shutil.copy(FIXTURE, path)
    try:
        yield path
    finally:
        close_database()


def moved_to_now(path: Path) -> None:
    """Shift every time in the database at path by one amount, so that its last transition was a minute ago.

    The fixture was made on one day; its waiting task's 24-hour timeout would overtake it a day later. Moved, the
    copy reads as a database the old release left just now, on any date, with every interval in it kept.
    """
    con = sqlite3.connect(path)
    try:
        (made,) = con.execute("SELECT MAX(at) FROM (SELECT at FROM tasktransition UNION ALL "
                              "SELECT at FROM jobtransition)").fetchone()
        shift = time.time() - 60 - made
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            times = [c[1] for c in con.execute(f'PRAGMA table_info("{table}")') if c[2] == "REAL"
                     and c[1] != "timeout_hours"]
            if times:
                con.execute(f'UPDATE "{table}" SET ' + ", ".join(f'"{c}" = "{c}" + ?' for c in times),
                            [shift] * len(times))
        con.commit()
    finally:
        con.close()


def migrate(path: Path) -> list[migrations.Applied]:
    """Open with this release's code, as the launcher does; the steps applied."""
    db = open_database(f"sqlite:///{path}")
    with db.connection_context():
        applied = migrations.upgrade(db)
    close_database()
    return applied


def test_the_fixture_is_small_and_from_before_versioning() -> None:
    assert FIXTURE.stat().st_size < 1024 * 1024
    con = sqlite3.connect(FIXTURE)
    try:
        tables = {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()
    assert "schemaversion" not in tables and {"task", "inboundmessage", "imagejob"} <= tables


def test_the_previous_release_database_is_migrated_keeping_every_row(old_db: Path) -> None:
    columns = {t: [c[0] for c in cols] for t, (cols, _) in schema(old_db).items()}
    before = rows(old_db, columns)
    assert len(before["task"]) == 4 and len(before["inboundmessage"]) == 9 and len(before["imagejob"]) == 2

    open_database(f"sqlite:///{old_db}", create=True)  # what the launcher does at start
    close_database()

    assert rows(old_db, {"schemaversion": ["version", "how"]})["schemaversion"] == [
        (v, "migrated") for v in range(1, migrations.LATEST + 1)]
    assert rows(old_db, columns) == before  # every task, message, job, transition, outbox row: same content
    conv = rows(old_db, {"conversation": ["customer_id", "paused_until", "paused_by", "pause_reason"]})
    assert conv["conversation"] == sorted([(c, None, "", "") for c in ("old_ann", "old_bo", "old_dee", "old_eve")],
                                          key=repr)


def test_a_migrated_database_has_the_schema_of_a_new_one(old_db: Path, tmp_path: Path) -> None:
    migrate(old_db)
    fresh = tmp_path / "fresh.db"
    open_database(f"sqlite:///{fresh}", create=True)
    close_database()
    assert rows(fresh, {"schemaversion": ["version", "how"]})["schemaversion"] == [
        (v, "created") for v in range(1, migrations.LATEST + 1)]
    assert schema(old_db) == schema(fresh)


def test_migrations_are_idempotent(old_db: Path) -> None:
    first = migrate(old_db)
    assert [a.version for a in first] == list(range(1, migrations.LATEST + 1))
    assert "column conversation.paused_until" in first[2].changes and "table handoff" in first[2].changes
    shape, content = schema(old_db), rows(old_db)

    assert migrate(old_db) == []  # nothing pending
    con = sqlite3.connect(old_db)
    con.execute("DELETE FROM schemaversion")  # forget every step: each runs again and finds nothing to do
    con.commit()
    con.close()
    again = migrate(old_db)
    assert [a.version for a in again] == list(range(1, migrations.LATEST + 1))
    assert all(a.changes == [] for a in again)
    assert schema(old_db) == shape
    assert {t: r for t, r in rows(old_db).items() if t != "schemaversion"} == \
        {t: r for t, r in content.items() if t != "schemaversion"}


def test_a_database_of_a_newer_release_is_refused(old_db: Path) -> None:
    migrate(old_db)
    con = sqlite3.connect(old_db)
    con.execute("INSERT INTO schemaversion VALUES (?, 'from the future', 0, 'migrated')", (migrations.LATEST + 1,))
    con.commit()
    con.close()
    with pytest.raises(migrations.SchemaTooNew, match=f"schema version {migrations.LATEST + 1}"):
        open_database(f"sqlite:///{old_db}", create=True)


def test_the_first_release_timer_indexes_are_replaced(tmp_path: Path) -> None:
    """The spine release indexed timer.owner and timer.due_at apart; the scheduler's query wants them together."""
    path = tmp_path / "spine.db"
    open_database(f"sqlite:///{path}", create=True)
    close_database()
    con = sqlite3.connect(path)
    con.executescript("""
        DROP INDEX timer_owner_due_at; CREATE INDEX timer_owner ON timer (owner);
        CREATE INDEX timer_due_at ON timer (due_at); ALTER TABLE task DROP COLUMN transitions;
        DROP TABLE schemaversion; INSERT INTO timer (owner, key, due_at, payload) VALUES ('scheduler', 'k', 1, '{}');
    """)
    con.close()
    applied = migrate(path)
    assert applied[0].changes == ["column task.transitions", "dropped index timer_owner",
                                  "dropped index timer_due_at", "index timer(owner, due_at)"]
    assert rows(path, {"timer": ["owner", "key", "due_at"]})["timer"] == [("scheduler", "k", 1.0)]
    fresh = tmp_path / "fresh.db"
    open_database(f"sqlite:///{fresh}", create=True)
    close_database()
    assert {t: s for t, s in schema(path).items() if t != "schemaversion"} == \
        {t: s for t, s in schema(fresh).items() if t != "schemaversion"}


def test_a_backup_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    from persistence.maintenance import MaintenanceError

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all")
    with pytest.raises(MaintenanceError, match="not a SQLite database"):
        check_sqlite_backup(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(MaintenanceError, match="not one of this service"):
        check_sqlite_backup(other)


# -- the service on an upgraded database, and the CLI around it ----------------------------------------------
def shop_admin(launcher: Launcher, *args: str) -> subprocess.CompletedProcess[str]:
    """`shop-admin …` as an operator runs it, with the service's environment."""
    script = Path(sys.executable).with_name("shop-admin")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "persistence.admin"]
    return subprocess.run([*command, *args], env=launcher.env(), cwd=launcher.data_dir, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_service_runs_on_an_upgraded_database_and_backup_restore_keeps_everything(tmp_path: Path) -> None:
    shop = Launcher(tmp_path / "shop", {"DEBOUNCE_S": "0.5", "DATABASE_URL": f"sqlite:///{tmp_path}/shop/shop.db"})
    shop.data_dir.mkdir(parents=True)
    shutil.copy(FIXTURE, shop.db_path)
    moved_to_now(shop.db_path)
    old_columns = {t: [c[0] for c in cols] for t, (cols, _) in schema(FIXTURE).items()}
    before = rows(shop.db_path, old_columns)
    backup = tmp_path / "saved" / "shop-backup.db"
    try:
        shop.start()
        assert shop.task("OLD_DONE")["status"] == "completed"
        waiting = shop.task("OLD_WAIT")
        assert waiting["status"] == "waiting" and [h["to"] for h in waiting["history"]] == ["pending", "waiting"]
        status, conv = http("GET", f"{shop.api}/api/conversation/old_dee")
        assert status == 200, conv
        assert [m["content"] for m in conv["data"]["history"] if m["kind"] == "text"] == [
            "帮我变清晰", "邮箱 dee@example.com"]
        (job,) = conv["data"]["jobs"]
        assert job["state"] == "completed" and job["operation"] == "enhance" and job["result_url"]
        assert conv["data"]["profile"]["email"] == "dee@example.com"
        status, one = http("GET", f"{shop.api}/api/jobs/{job['job_id']}")
        assert status == 200 and len(one["data"]["renders"]) == 1

        # A task of the old release still fires after the upgrade.
        shop.customer_says("old_ann", "text", "好的")
        shop.wait_status("OLD_WAIT", "completed")

        done = shop_admin(shop, "backup", str(backup))  # while the service writes
        assert done.returncode == 0, done.stderr
        assert "4 tasks" in done.stdout and "2 image jobs" in done.stdout
        refused = shop_admin(shop, "restore", str(backup))
        assert refused.returncode == 1 and "the service is running" in refused.stderr
        assert f"launcher pid {shop.proc.pid}" in refused.stderr  # type: ignore[union-attr]
        other = Launcher(shop.data_dir, shop.env_extra)  # a second launcher on the same DATA_DIR, other ports
        second = subprocess.run([sys.executable, str(REPO / "launcher.py")], env=other.env(), cwd=shop.data_dir,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and "already running on DATA_DIR" in second.stderr

        assert shop.post_task({"task_id": "AFTER_BACKUP", "type": "t", "customer": {"id": "x", "name": ""},
                               "trigger": {"type": "customer_reply", "keyword": "好"},
                               "action": {"type": "send_message", "message": "hi"}})[0] == 200
    finally:
        shop.stop()
    saved = rows(backup)
    assert saved["task"] != rows(shop.db_path)["task"]  # the task received after the backup

    restored = shop_admin(shop, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert rows(shop.db_path) == saved
    kept = list((shop.data_dir / "backups").glob("shop-*-before-restore.db"))
    assert len(kept) == 1 and any(r[0] == "AFTER_BACKUP" for r in rows(kept[0])["task"])
    # The backup holds every message, job and history row of the old release, and every task.
    for table in ("inboundmessage", "imagejob", "jobtransition", "tasktransition", "renderattempt", "publicfile",
                  "task_requirement_changes"):
        now = rows(shop.db_path, {table: old_columns[table]})[table]
        assert all(r in now for r in before[table]), table
    old_tasks = rows(FIXTURE, {"task": ["task_id"]})["task"]
    assert len(old_tasks) == 4 and set(old_tasks) <= set(rows(shop.db_path, {"task": ["task_id"]})["task"])
    shown = shop_admin(shop, "migrate")
    assert shown.returncode == 0 and f"schema version {migrations.LATEST}; this release: {migrations.LATEST}" in \
        shown.stdout

    shop.start()  # and the service starts on the restored database
    wait_for(lambda: shop.task("OLD_WAIT")["status"] == "completed", 10, what="the restored task")
    shop.stop()


# -- the same on PostgreSQL ------------------------------------------------------------------------------------
ADDED_SINCE_RELEASE6 = ("handoff", "indexedimage", "operator", "auditentry")


def pg_schema(url: str) -> dict[str, tuple]:
    """Per table: columns (name, type, nullable) and index definitions, from PostgreSQL's catalogue."""
    con = pg.connect_url(url)
    try:
        cur = con.cursor()
        cur.execute("SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
                    "WHERE table_schema = 'public'")
        columns: dict[str, list] = {}
        for table, column, kind, nullable in cur.fetchall():
            columns.setdefault(table, []).append((column, kind, nullable))
        cur.execute("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'")
        indexes: dict[str, list] = {}
        for table, definition in cur.fetchall():
            # The index's name says how it was made, not what it is: compare what it covers.
            indexes.setdefault(table, []).append(definition.split(" USING ", 1)[1] + str("UNIQUE" in definition))
        return {t: (sorted(columns[t]), sorted(indexes.get(t, []))) for t in columns}
    finally:
        con.close()


def release6_on_postgresql(url: str) -> dict[str, list[tuple]]:
    """A PostgreSQL database of the previous release's shape holding the fixture's rows; those rows."""
    open_database(url, create=True)
    close_database()
    con = pg.connect_url(url)
    lite = sqlite3.connect(FIXTURE)
    try:
        cur = con.cursor()
        cur.execute("DROP TABLE schemaversion, " + ", ".join(ADDED_SINCE_RELEASE6))
        cur.execute("ALTER TABLE conversation DROP COLUMN paused_until, DROP COLUMN paused_by, "
                    "DROP COLUMN pause_reason")
        # Added by migration 6 (issue 9) and migration 7 (issue 14).
        cur.execute("ALTER TABLE renderattempt DROP COLUMN system, DROP COLUMN operation, DROP COLUMN model_calls")
        kept = {}
        for (table,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            names = [c[1] for c in lite.execute(f'PRAGMA table_info("{table}")')]
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                        "AND data_type = 'boolean'", (table,))
            flags = {r[0] for r in cur.fetchall()}
            found = [tuple(bool(v) if n in flags and v is not None else v for n, v in zip(names, row, strict=True))
                     for row in lite.execute(f'SELECT * FROM "{table}"')]
            cur.executemany(f'INSERT INTO "{table}" ({", ".join(names)}) VALUES ({", ".join(["%s"] * len(names))})',
                            found)
            kept[table] = (names, sorted(found, key=repr))
        return kept
    finally:
        lite.close()
        con.close()


def pg_rows(url: str, table: str, names: list[str]) -> list[tuple]:
    con = pg.connect_url(url)
    try:
        cur = con.cursor()
        cur.execute(f'SELECT {", ".join(names)} FROM "{table}"')
        return sorted(cur.fetchall(), key=repr)
    finally:
        con.close()


def test_postgresql_the_previous_release_is_migrated_keeping_every_row(pg_server: pg.PgServer) -> None:
    url = pg_server.new_database()
    kept = release6_on_postgresql(url)
    try:
        db = open_database(url, create=True)
        with db.connection_context():
            assert [h["version"] for h in migrations.history(db)] == list(range(1, migrations.LATEST + 1))
            assert migrations.upgrade(db) == []
    finally:
        close_database()
    for table, (names, rows_before) in kept.items():
        assert pg_rows(url, table, names) == rows_before, table
    fresh = pg_server.new_database()
    open_database(fresh, create=True)
    close_database()
    assert {t: v for t, v in pg_schema(url).items() if t != "schemaversion"} == \
        {t: v for t, v in pg_schema(fresh).items() if t != "schemaversion"}


@pytest.mark.timeout(120)
def test_postgresql_backup_and_restore_with_the_cli(pg_server: pg.PgServer, tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump / pg_restore not installed (apt-get install postgresql-client)")
    url = pg_server.new_database()
    kept = release6_on_postgresql(url)
    shop = Launcher(tmp_path / "shop", {"DATABASE_URL": url})
    shop.data_dir.mkdir(parents=True)
    backup = tmp_path / "shop.pgdump"
    done = shop_admin(shop, "backup", str(backup))
    assert done.returncode == 0, done.stderr
    con = pg.connect_url(url)
    con.cursor().execute("DELETE FROM task; DELETE FROM inboundmessage")
    con.close()
    assert pg_rows(url, "task", ["task_id"]) == []
    restored = shop_admin(shop, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    for table, (names, rows_before) in kept.items():
        assert pg_rows(url, table, names) == rows_before, table
    assert list((shop.data_dir / "backups").glob("shop-*-before-restore.pgdump"))
