"""The service's claim on DATA_DIR, and `shop-admin migrate | backup | restore` as an operator meets them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from persistence import migrations
from persistence.maintenance import hold_service_lock, service_pid, shown_url
from tests.harness import REPO, wait_for


def admin(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env["DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "persistence.admin", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    assert service_pid(tmp_path) is None
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from persistence.maintenance import hold_service_lock; "
                               "assert hold_service_lock(Path(sys.argv[1])); print('held', flush=True); "
                               "time.sleep(60)", str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert service_pid(tmp_path) == holder.pid
        assert hold_service_lock(tmp_path) is None
    finally:
        holder.kill()
        holder.wait(5)
    wait_for(lambda: service_pid(tmp_path) is None, 5, what="the lock released")
    fd = hold_service_lock(tmp_path)
    assert fd is not None and service_pid(tmp_path) == os.getpid()
    os.close(fd)


def test_a_password_is_never_shown() -> None:
    assert shown_url("postgresql://shop:s3cr%40t@db:5432/shop") == "postgresql://shop:***@db:5432/shop"
    assert shown_url("sqlite:////var/lib/retouch-shop/shop.db") == "sqlite:////var/lib/retouch-shop/shop.db"


def test_migrate_shows_then_applies(tmp_path: Path) -> None:
    shown = admin(tmp_path, "migrate")
    assert shown.returncode == 0, shown.stderr
    assert f"schema version 0 (no tables yet); this release: {migrations.LATEST}" in shown.stdout
    applied = admin(tmp_path, "migrate", "--apply")
    assert applied.returncode == 0 and f"created a new database at schema version {migrations.LATEST}" in \
        applied.stdout
    again = admin(tmp_path, "migrate", "--apply")
    assert f"nothing to do: the database is at schema version {migrations.LATEST}" in again.stdout
    listed = admin(tmp_path, "migrate").stdout
    assert "pending" not in listed and listed.count(" created ") == migrations.LATEST


def test_backup_and_restore_refuse_what_they_should(tmp_path: Path) -> None:
    assert "there is no database" in admin(tmp_path, "backup", str(tmp_path / "b.db")).stderr
    admin(tmp_path, "migrate", "--apply")
    assert admin(tmp_path, "backup", str(tmp_path / "b.db")).returncode == 0
    again = admin(tmp_path, "backup", str(tmp_path / "b.db"))
    assert again.returncode == 1 and "exists; choose another name or pass --force" in again.stderr
    assert admin(tmp_path, "backup", "--force", str(tmp_path / "b.db")).returncode == 0
    (tmp_path / "junk.db").write_text("hello")
    junk = admin(tmp_path, "restore", str(tmp_path / "junk.db"))
    assert junk.returncode == 1 and "is not a SQLite database" in junk.stderr
    missing = admin(tmp_path, "restore", str(tmp_path / "nope.db"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


@pytest.mark.timeout(30)
def test_restore_waits_for_a_running_service_unless_forced(tmp_path: Path) -> None:
    admin(tmp_path, "migrate", "--apply")
    admin(tmp_path, "backup", str(tmp_path / "b.db"))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from persistence.maintenance import hold_service_lock; "
                               "hold_service_lock(Path(sys.argv[1])); time.sleep(60)", str(tmp_path)], cwd=REPO)
    try:
        wait_for(lambda: service_pid(tmp_path) == holder.pid, 10, what="the lock taken")
        refused = admin(tmp_path, "restore", str(tmp_path / "b.db"))
        assert refused.returncode == 1 and f"launcher pid {holder.pid}" in refused.stderr
        forced = admin(tmp_path, "restore", "--force", str(tmp_path / "b.db"))
        assert forced.returncode == 0, forced.stderr
    finally:
        holder.kill()
        holder.wait(5)
