"""Console operators (accounts with scrypt-hashed passwords), the audit trail, and `shop-admin user …`.

A hash is `scrypt$n=…,r=…,p=…$<salt>$<key>` (base64): the parameters travel with it, so they can be raised
later without invalidating stored passwords.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import json
import re
import secrets
import sys
import time
from typing import Any

import peewee

from persistence.admin import cli_operator
from persistence.connection import atomic
from persistence.models import AuditEntry, LoginFailure, Operator

SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_LEN = 2**15, 8, 1, 32  # ~32 MiB and ~0.1 s per hash
SALT_LEN = 16
PASSWORD_MIN, PASSWORD_MAX = 8, 1024
LOCAL_OPERATOR = "local"  # the console's operator on a fresh install reached from loopback; never an account
USERNAME = re.compile(r"^\w[\w.@-]{0,63}$")  # \w is Unicode: 小王 is a fine name
AUDIT_MAX = 500


class OperatorError(Exception):
    """An account command that cannot be done; the message says why."""


# -- passwords ----------------------------------------------------------------------------------------
def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_LEN, maxmem=256 * n * r + 2**20)


def hash_password(password: str) -> str:
    """A salted scrypt hash of the password, with its parameters."""
    salt = secrets.token_bytes(SALT_LEN)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt$n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(key)}"


def check_password(password: str, encoded: str) -> bool:
    """Whether the password matches the hash (compared in constant time); False for a malformed hash."""
    try:
        scheme, params, salt, key = encoded.split("$")
        opts = dict(part.split("=") for part in params.split(","))
        n, r, p = int(opts["n"]), int(opts["r"]), int(opts["p"])
        if scheme != "scrypt" or not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        expected = base64.b64decode(key, validate=True)
        given = _scrypt(password, base64.b64decode(salt, validate=True), n, r, p)
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(given, expected)


_dummy_hash: list[str] = []  # checked against for unknown names, so a wrong name costs as long as a wrong password


def _check_name(username: str) -> None:
    if not USERNAME.fullmatch(username):
        raise OperatorError(f"{username!r} is not a valid name: 1-64 letters, digits, '_', '.', '@' or '-', "
                            "starting with a letter or digit")
    if username == LOCAL_OPERATOR:
        raise OperatorError(f"{LOCAL_OPERATOR!r} is reserved for the console on a fresh install; choose another name")


def _check_password(password: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise OperatorError(f"a password needs {PASSWORD_MIN} to {PASSWORD_MAX} characters, got {len(password)}")


# -- accounts -----------------------------------------------------------------------------------------
def add_user(username: str, password: str, now: float | None = None) -> None:
    """Create an account; OperatorError if the name is taken or name or password is not acceptable."""
    _check_name(username)
    _check_password(password)
    hashed = hash_password(password)
    with atomic():
        inserted = (Operator.insert(username=username, password_hash=hashed, created_at=now or time.time())
                    .on_conflict_ignore().as_rowcount().execute())
    if inserted != 1:
        raise OperatorError(f"operator {username!r} already exists; use `shop-admin user passwd {username}`")


def _get(username: str) -> Operator:
    row = Operator.get_or_none(Operator.username == username)
    if row is None:
        raise OperatorError(f"no operator named {username!r}")
    return row


def set_password(username: str, password: str, now: float | None = None) -> None:
    """Change a password; every session of that operator ends."""
    _check_password(password)
    hashed = hash_password(password)
    with atomic():
        _get(username)
        Operator.update(password_hash=hashed, sessions_after=now or time.time()).where(
            Operator.username == username).execute()


def set_disabled(username: str, disabled: bool) -> None:
    """Lock (or unlock) an account without deleting it: a locked operator cannot log in, its sessions end."""
    with atomic():
        _get(username)
        Operator.update(disabled=disabled).where(Operator.username == username).execute()


def remove_user(username: str) -> None:
    """Delete an account (its audit entries stay)."""
    with atomic():
        _get(username)
        Operator.delete().where(Operator.username == username).execute()


def list_users() -> list[dict[str, Any]]:
    """Every account: name, created, locked or not (never the hash)."""
    return [{"username": r.username, "created_at": r.created_at, "disabled": r.disabled}
            for r in Operator.select().order_by(Operator.username)]


def verify(username: str, password: str) -> bool:
    """Whether these credentials log in: right password of an account that is not locked."""
    row = Operator.get_or_none(Operator.username == username)
    if row is None:
        if not _dummy_hash:
            _dummy_hash.append(hash_password(secrets.token_hex(8)))
        check_password(password, _dummy_hash[0])
        return False
    return check_password(password, row.password_hash) and not row.disabled


def any_users() -> bool:
    """Whether any account exists (locked ones too): then the console needs a login from everywhere."""
    return Operator.select().exists()


def session_valid(username: str, issued_at: float) -> bool:
    """Whether a session issued at that time still stands: the account exists, is not locked, and has not
    logged out or changed its password since."""
    row = Operator.get_or_none(Operator.username == username)
    return row is not None and not row.disabled and issued_at > row.sessions_after


def end_sessions(username: str, now: float | None = None) -> None:
    """Log an operator out everywhere: sessions issued until now are void."""
    with atomic():
        Operator.update(sessions_after=now or time.time()).where(Operator.username == username).execute()


# -- audit --------------------------------------------------------------------------------------------
def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _entry(row: AuditEntry) -> dict[str, Any]:
    return {"id": row.id, "at": row.at, "operator": row.operator, "action": row.action, "target": row.target,
            "before": None if row.before is None else json.loads(row.before),
            "after": None if row.after is None else json.loads(row.after), "ip": row.ip}


def recent_login_failures(ip: str, now: float, window_s: float = 60) -> list[float]:
    """When this client address failed to log in within the window, oldest first (every ingress process's)."""
    return [at for (at,) in LoginFailure.select(LoginFailure.at)
            .where((LoginFailure.ip == ip) & (LoginFailure.at > now - window_s)).order_by(LoginFailure.at).tuples()]


def login_failed(ip: str, now: float, window_s: float = 60) -> None:
    """Count a failed log-in (and forget the ones older than the window, anyone's)."""
    with atomic():
        LoginFailure.delete().where(LoginFailure.at <= now - window_s).execute()
        LoginFailure.create(ip=ip, at=now)


def login_succeeded(ip: str) -> None:
    """A good log-in clears the address's count."""
    LoginFailure.delete().where(LoginFailure.ip == ip).execute()


def audit(operator: str, action: str, target: str, before: Any, after: Any, ip: str,
          now: float | None = None) -> dict[str, Any]:
    """Record one operator action (inside the caller's transaction when there is one); the entry."""
    with atomic():
        row = AuditEntry.create(at=now or time.time(), operator=operator[:64], action=action[:64],
                                target=target[:256], before=_dump(before), after=_dump(after), ip=ip[:64])
    return _entry(row)


def recent_audit(limit: int = 50) -> list[dict[str, Any]]:
    """The latest audit entries, newest first."""
    rows = AuditEntry.select().order_by(AuditEntry.id.desc()).limit(max(1, min(limit, AUDIT_MAX)))
    return [_entry(r) for r in rows]


# -- shop-admin user … ---------------------------------------------------------------------------------
def _open_database() -> None:
    from persistence.admin import settings_from_env
    from persistence.db import open_database

    settings = settings_from_env(OperatorError)
    open_database(settings.DATABASE_URL, create=True)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise OperatorError("the two passwords differ; nothing changed")
    return first


def _run(args: argparse.Namespace) -> int:
    try:
        _open_database()
        name = getattr(args, "name", "")
        target = f"operator:{name}"
        if args.user_command == "list":
            users = list_users()
            for u in users:
                created = time.strftime("%Y-%m-%d %H:%M", time.localtime(u["created_at"]))
                print(f"{u['username']}\tcreated {created}{'  (locked)' if u['disabled'] else ''}")
            if not users:
                print("no operator accounts: the console is open on loopback only; add one with "
                      "`shop-admin user add NAME`")
            return 0
        if args.user_command == "add":
            _check_name(name)
            if Operator.get_or_none(Operator.username == name) is not None:  # said before asking for a password
                raise OperatorError(f"operator {name!r} already exists; use `shop-admin user passwd {name}`")
            add_user(name, _read_password(args))
            audit(cli_operator(), "user_add", target, None, {"exists": True}, "")
            print(f"operator {name} added: log in at /console/login")
        elif args.user_command == "passwd":
            _get(name)
            set_password(name, _read_password(args))
            audit(cli_operator(), "user_passwd", target, None, {"sessions": "ended"}, "")
            print(f"password of {name} changed; their sessions ended")
        elif args.user_command in ("disable", "enable"):
            disabled = args.user_command == "disable"
            before = _get(name).disabled
            set_disabled(name, disabled)
            audit(cli_operator(), f"user_{args.user_command}", target, {"disabled": before}, {"disabled": disabled},
                  "")
            print(f"operator {name} {'locked' if disabled else 'unlocked'}")
        elif args.user_command == "remove":
            remove_user(name)
            audit(cli_operator(), "user_remove", target, {"exists": True}, {"exists": False}, "")
            print(f"operator {name} removed")
        return 0
    except OperatorError as exc:
        print(f"shop-admin: {exc}", file=sys.stderr)
        return 1
    except peewee.DatabaseError as exc:
        print(f"shop-admin: the database cannot be used: {exc}", file=sys.stderr)
        return 1


def add_commands(subparsers: Any) -> None:
    """Register `shop-admin user add|passwd|remove|disable|enable|list`."""
    user = subparsers.add_parser("user", help="console operator accounts")
    sub = user.add_subparsers(dest="user_command", required=True)
    for command, text in (("add", "create an account"), ("passwd", "change a password (ends their sessions)")):
        p = sub.add_parser(command, help=text)
        p.add_argument("name")
        p.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of stdin instead of asking twice")
        p.set_defaults(run=_run)
    for command, text in (("remove", "delete an account"), ("disable", "lock an account"),
                          ("enable", "unlock an account")):
        p = sub.add_parser(command, help=text)
        p.add_argument("name")
        p.set_defaults(run=_run)
    sub.add_parser("list", help="list the accounts").set_defaults(run=_run)
