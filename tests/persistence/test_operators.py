"""Console operators and the audit trail (persistence/operators.py), on real SQLite files; `shop-admin user` as a
shell user runs it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from persistence import operators
from persistence.models import Operator

T0 = 1_800_000_000.0
SHOP_ADMIN = str(Path(sys.executable).with_name("shop-admin"))  # the command `pip install` made, as users run it


def test_a_password_round_trips_through_scrypt_and_a_wrong_one_fails() -> None:
    encoded = operators.hash_password("correct horse battery")
    scheme, params, salt, key = encoded.split("$")
    assert scheme == "scrypt" and params == "n=32768,r=8,p=1" and "correct" not in encoded
    assert operators.check_password("correct horse battery", encoded)
    assert not operators.check_password("correct horse batterY", encoded)
    assert not operators.check_password("", encoded)
    again = operators.hash_password("correct horse battery")
    assert again != encoded  # a salt of its own each time


def test_a_hash_keeps_its_parameters_and_a_damaged_one_never_matches() -> None:
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    key = hashlib.scrypt(b"old-params-pass", salt=salt, n=2**14, r=8, p=1, dklen=32)
    old = f"scrypt$n=16384,r=8,p=1${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"
    assert operators.check_password("old-params-pass", old)  # made with other parameters: still checks
    for damaged in ("", "plain", old.replace("scrypt", "md5"), old.replace("n=16384", "n=lots"),
                    old.replace("n=16384", "n=1073741824"), old[:-8] + "!!!!!!!!"):
        assert not operators.check_password("old-params-pass", damaged)


def test_accounts_are_added_verified_changed_locked_and_removed(db_url: str) -> None:
    assert not operators.any_users()
    operators.add_user("amy", "s3cret-pass", T0)
    assert operators.any_users()
    assert operators.verify("amy", "s3cret-pass")
    assert not operators.verify("amy", "wrong-pass")
    assert not operators.verify("bob", "s3cret-pass")  # no such name: the same answer
    stored = Operator.get(Operator.username == "amy").password_hash
    assert stored.startswith("scrypt$") and "s3cret" not in stored

    with pytest.raises(operators.OperatorError, match="already exists"):
        operators.add_user("amy", "another-pass")
    for bad_name in ("", "a b", "x" * 65, "-dash", "local"):
        with pytest.raises(operators.OperatorError):
            operators.add_user(bad_name, "long-enough")
    with pytest.raises(operators.OperatorError, match="8 to 1024"):
        operators.add_user("bob", "short")
    operators.add_user("小王", "password-小王")
    assert [u["username"] for u in operators.list_users()] == ["amy", "小王"]
    assert "password_hash" not in operators.list_users()[0]

    assert operators.session_valid("amy", T0 + 10)
    operators.set_password("amy", "new-pass-123", T0 + 20)
    assert not operators.verify("amy", "s3cret-pass") and operators.verify("amy", "new-pass-123")
    assert not operators.session_valid("amy", T0 + 10)  # a password change ends older sessions
    assert operators.session_valid("amy", T0 + 30)
    operators.end_sessions("amy", T0 + 40)
    assert not operators.session_valid("amy", T0 + 30) and operators.session_valid("amy", T0 + 41)

    operators.set_disabled("amy", True)
    assert not operators.verify("amy", "new-pass-123") and not operators.session_valid("amy", T0 + 50)
    operators.set_disabled("amy", False)
    assert operators.verify("amy", "new-pass-123")

    operators.remove_user("amy")
    assert not operators.verify("amy", "new-pass-123") and not operators.session_valid("amy", T0 + 60)
    with pytest.raises(operators.OperatorError, match="no operator named 'amy'"):
        operators.remove_user("amy")
    with pytest.raises(operators.OperatorError, match="no operator"):
        operators.set_password("amy", "whatever-123")


def test_the_audit_keeps_who_what_and_before_after_newest_first(db_url: str) -> None:
    operators.audit("amy", "pause", "conversation:c1", {"paused": False}, {"paused": True, "reason": "投诉"},
                    "127.0.0.1", T0)
    operators.audit("bob", "cancel_task", "task:t1", {"status": "pending"}, {"status": "cancelled"}, "10.0.0.7",
                    T0 + 1)
    entries = operators.recent_audit(10)
    assert [e["action"] for e in entries] == ["cancel_task", "pause"]
    assert entries[1] == {"id": entries[1]["id"], "at": T0, "operator": "amy", "action": "pause",
                          "target": "conversation:c1", "before": {"paused": False},
                          "after": {"paused": True, "reason": "投诉"}, "ip": "127.0.0.1"}
    assert len(operators.recent_audit(1)) == 1


def test_failed_logins_are_counted_in_the_database_so_every_ingress_process_throttles_alike(db_url: str) -> None:
    from web.console_auth import LoginThrottle

    first, second = LoginThrottle(per_minute=3), LoginThrottle(per_minute=3)  # as two ingress processes hold them
    for n in range(3):
        (first if n % 2 else second).failed("10.0.0.7", T0 + n)
    assert second.wait_s("10.0.0.7", T0 + 3) == pytest.approx(57) and first.wait_s("10.0.0.8", T0 + 3) == 0
    assert first.wait_s("10.0.0.7", T0 + 61) == 0  # a minute after the first failure, the address may try again
    second.failed("10.0.0.7", T0 + 62)
    first.succeeded("10.0.0.7")
    assert operators.recent_login_failures("10.0.0.7", T0 + 62) == []


def _shop_admin(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CONSOLE_SECRET")}
    env["DATA_DIR"] = str(data_dir)
    return subprocess.run([SHOP_ADMIN, *args], input=stdin, capture_output=True, text=True, env=env, cwd=data_dir,
                          timeout=60)


def test_shop_admin_user_commands_work_on_the_settings_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    added = _shop_admin(data, "user", "add", "amy", "--password-stdin", stdin="pass-of-amy\n")
    assert added.returncode == 0, added.stderr
    assert "amy" in added.stdout and "pass-of-amy" not in added.stdout + added.stderr

    twice = _shop_admin(data, "user", "add", "amy", "--password-stdin", stdin="other-pass\n")
    assert twice.returncode == 1 and "already exists" in twice.stderr

    short = _shop_admin(data, "user", "add", "bob", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "8 to 1024" in short.stderr

    listed = _shop_admin(data, "user", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("amy\t")

    con = sqlite3.connect(data / "shop.db")
    try:
        (hashed,) = con.execute("SELECT password_hash FROM operator WHERE username = 'amy'").fetchone()
        audit = con.execute("SELECT operator, action, target FROM auditentry ORDER BY id").fetchall()
    finally:
        con.close()
    assert operators.check_password("pass-of-amy", hashed)
    assert [(a, t) for _, a, t in audit] == [("user_add", "operator:amy")] and audit[0][0].startswith("shop-admin")

    changed = _shop_admin(data, "user", "passwd", "amy", "--password-stdin", stdin="new-pass-of-amy\n")
    assert changed.returncode == 0, changed.stderr
    missing = _shop_admin(data, "user", "passwd", "nobody", "--password-stdin", stdin="whatever-123\n")
    assert missing.returncode == 1 and "no operator named 'nobody'" in missing.stderr
    removed = _shop_admin(data, "user", "remove", "amy")
    assert removed.returncode == 0, removed.stderr
    assert "no operator accounts" in _shop_admin(data, "user", "list").stdout


def test_the_password_never_comes_from_the_command_line(tmp_path: Path) -> None:
    result = _shop_admin(tmp_path, "user", "add", "amy", "--password", "on-the-command-line")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr
