"""Deleting one customer's data on request (PIPL; SPEC §7), and `shop-admin forget CUSTOMER_ID`.

Everything the shop keeps of the customer goes: their messages and the events they made, their profile (name,
e-mail, last text, last photo), their image jobs and all that hangs on them (orders, history, requirement changes,
executors' outcomes, render attempts, published URLs, the find-image index, hand-offs), the outbox rows that concern
them (a pending send is not sent any more), and their photos, results, thumbnails and mailed `.eml` files.

Tianwang's tasks for the customer stay, since Tianwang asks about them by id: each keeps its id, type, status and
times, and loses the customer's name and every text that could quote them (the trigger's detail, the history's
reasons, the action's message). The customer id in them becomes the pseudonym the audit uses. A task still open is
cancelled as Tianwang's own cancel does, callback included. Audit entries about the customer keep who did what and
when, and lose the texts of their before and after.

The files go first and the rows after, in one transaction (as persistence.job_files does): a crash between leaves
rows naming missing files, and forgetting again finishes the work. The request is audited in that transaction: who
asked, the customer by pseudonym (sha256 of the id: no personal data, yet whoever knows the id can find the entry),
the counts of what went and of what is left. On SQLite the rows it deletes are overwritten with zeros, not merely
unlinked (secure_delete), and the write-ahead log is emptied afterwards, so the texts do not linger in the database's
files; older versions of rows that updates left in free space are zeroed only where SQLite zeroes freed space as it
goes (its SECURE_DELETE default, on in Debian's build).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import operator
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import peewee

from core.order import order_key_for
from persistence import job_files, operators, scheduling, tasks
from persistence.connection import atomic, database_proxy
from persistence.models import (
    AuditEntry,
    Conversation,
    CustomerEvent,
    Handoff,
    ImageJob,
    InboundMessage,
    IndexedImage,
    JobEvent,
    JobTransition,
    Outbox,
    PublicFile,
    RenderAttempt,
    RequirementChange,
    ShopOrder,
    Task,
    TaskTransition,
)
from persistence.postgres import for_update
from protocol.tianwang import FINISHED_STATUSES, TaskStatus

if TYPE_CHECKING:
    from protocol.settings import Settings

log = logging.getLogger("shop.forget")

CANCEL_REASON = "cancelled: the customer's data was deleted on request"
ERASED = "(erased: the customer's data was deleted on request)"
# Reasons the service itself writes into a task's history, which quote nobody; any other reason may.
PLAIN_REASONS = re.compile(r"received|trigger armed|sent to the customer|no trigger in time|gave up after \d+ retries|"
                           r"cancelled by Tianwang|[\w.@-]+ 在控制台取消|" + re.escape(CANCEL_REASON))
# A trigger's detail is "<event kind> event <id>: <the customer's words>" (persistence/scheduling.py).
EVENT_DETAIL = re.compile(r"\w+ event \d+(?::.*)?", re.DOTALL)
OPEN_TASKS = [s.value for s in TaskStatus if s not in FINISHED_STATUSES]
CHECKPOINT_WAIT_MS = 2000  # for the service's writers and readers to let the write-ahead log be emptied
COUNTED = ("photos", "results", "thumbnails", "mails", "messages", "customers")  # shop_deleted_total{why="forget"}
# What forget counts, in the order it is shown: rows and files deleted, tasks and audit entries stripped of texts.
KINDS = ("customers", "messages", "customer_events", "jobs", "orders", "job_history", "requirement_changes",
         "job_events", "render_attempts", "published_files", "indexed_images", "handoffs", "outbox_rows", "photos",
         "results", "thumbnails", "mails", "tasks", "audit_entries")


def pseudonym(customer_id: str) -> str:
    """How the audit, the log and the kept tasks name a forgotten customer: no personal data, yet whoever knows the
    id can find what was done."""
    return "sha256:" + hashlib.sha256(customer_id.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Forgotten:
    """What forgetting a customer did."""

    pseudonym: str
    removed: dict[str, int]  # rows and files deleted, and tasks and audit entries stripped of texts, by kind
    left: dict[str, int]  # what of the customer is still there afterwards, by kind: nothing when all went well
    cancelled: list[str]  # the Tianwang tasks it cancelled (the scheduler may drop them)


@dataclass(frozen=True)
class _Holdings:
    """Where the customer's data is: their jobs, the orders, refs and addresses that lead to the rest."""

    customer_id: str
    job_ids: list[str]
    order_keys: list[str]
    emails: frozenset[str]

    @property
    def refs(self) -> set[str]:
        """The outbox refs that are the customer's (their jobs, their orders, their conversation)."""
        return {*self.job_ids, *self.order_keys, f"customer:{self.customer_id}"}


def forget(customer_id: str, data_dir: Path, now: float, by: str, *, tz: str, callbacks: bool, ip: str = "",
           only_if_found: bool = False) -> Forgotten | None:
    """Delete everything the shop keeps of a customer, strip their Tianwang tasks and audit entries of texts, and
    audit the request as `forget` by `by`; what was done. With only_if_found, None (and no audit) when nothing of
    the customer was there. tz and callbacks are the task store's (SHOP_TIMEZONE, whether callbacks are sent)."""
    if not customer_id:
        raise ValueError("a customer id is needed")
    alias = pseudonym(customer_id)
    found = _holdings(customer_id)
    files = _files(data_dir, found)
    gone = job_files.delete_files(data_dir, files)
    for path in _mails(data_dir, found):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            gone["mails"] += 1
    with _zeroing_deletes(), atomic():
        for_update(Conversation.select().where(Conversation.customer_id == customer_id)).first()
        # Taken again under the lock: a decision committed since the first look may have added a job or an order.
        found = _holdings(customer_id, found.emails)
        cancelled = _cancel_open_tasks(customer_id, now, tz, callbacks)
        for what, (model, where) in _rows(found, files).items():
            gone[what] += model.delete().where(where).execute()
        outbox_ids = _outbox_rows(found)
        gone["outbox_rows"] += Outbox.delete().where(Outbox.id.in_(outbox_ids)).execute() if outbox_ids else 0
        stripped = _strip_tasks(customer_id, alias)
        gone["tasks"] += len(stripped)
        gone["audit_entries"] += _strip_audit(found, stripped, alias)
        removed = {what: gone[what] for what in KINDS}
        if only_if_found and not any(removed.values()):
            return None
        left = _left(data_dir, found, files)
        operators.audit(by, "forget", f"customer:{alias}", removed, left, ip, now)
    _empty_wal()
    _count(removed)
    log.info("forgot customer %s: %s; left: %s", alias, describe(removed) or "nothing was kept",
             describe(left) or "nothing")
    return Forgotten(alias, removed, left, cancelled)


def describe(counts: dict[str, int]) -> str:
    """The counts that are not 0, as one line: "messages=4, photos=1, …"."""
    return ", ".join(f"{what}={n}" for what, n in counts.items() if n)


def _holdings(customer_id: str, emails: Iterable[str] = ()) -> _Holdings:
    """The customer's jobs and orders as stored now, and every address the shop has for them."""
    jobs = list(ImageJob.select(ImageJob.job_id, ImageJob.data).where(ImageJob.customer_id == customer_id))
    orders = list(ShopOrder.select(ShopOrder.order_key, ShopOrder.data).where(ShopOrder.customer_id == customer_id))
    addresses = {e.lower() for e in emails}
    for row in (*jobs, *orders):
        addresses.add(str(json.loads(row.data).get("email") or "").lower())
    conv = Conversation.get_or_none(Conversation.customer_id == customer_id)
    addresses.add(((conv.email if conv else "") or "").lower())
    job_ids = [j.job_id for j in jobs]
    keys = sorted({*(o.order_key for o in orders), *(order_key_for(j) for j in job_ids)})
    held = _Holdings(customer_id, job_ids, keys, frozenset())
    for row in Outbox.select(Outbox.payload).where((Outbox.kind == "mail") & Outbox.ref.in_(sorted(held.refs))):
        addresses.add(str(json.loads(row.payload).get("to") or "").lower())
    return _Holdings(customer_id, job_ids, keys, frozenset(addresses - {""}))


def _files(data_dir: Path, found: _Holdings) -> list[Path]:
    """The customer's photos and results under DATA_DIR: their jobs' files, and the photos they sent to find an
    image by (executors/find.py keeps each as images/find-<sha256 of its outbox key, 16 hex digits>)."""
    finds = [row.key for row in Outbox.select(Outbox.key).where(
        (Outbox.kind == "find") & Outbox.id.in_(_outbox_rows(found)))]
    references = [job_files.find_reference(data_dir, key) for key in finds]
    return [*(p for ps in job_files.files_of(data_dir, found.job_ids).values() for p in ps),
            *(p for p in references if p.is_file())]


def _mails(data_dir: Path, found: _Holdings) -> list[Path]:
    """The file mailer's .eml files that went to the customer: to one of their addresses, or with a Message-ID of
    one of their jobs or orders (<mail.{job or order}.{seq}[.p{part}]@retouch-shop>)."""
    folder = data_dir / job_files.MAILS
    prefixes = tuple(f"mail.{key}." for key in (*found.job_ids, *found.order_keys))
    theirs = []
    for path in sorted(folder.glob("*.eml")) if folder.is_dir() else []:
        try:
            with path.open("rb") as fh:
                headers = BytesHeaderParser(policy=policy.compat32).parse(fh)
        except OSError:
            continue
        to = {address.lower() for _, address in getaddresses([str(v) for v in headers.get_all("To", [])])}
        local = str(headers.get("Message-ID", "")).strip().strip("<>").partition("@")[0]
        if to & found.emails or (prefixes and local.startswith(prefixes)):
            theirs.append(path)
    return theirs


def _rows(found: _Holdings, files: list[Path]) -> dict[str, tuple[type[peewee.Model], peewee.Expression]]:
    """Each kind of row that is the customer's (or leads to one of their files): its table and which rows."""
    cid, job_ids = found.customer_id, found.job_ids
    attempts: Any = functools.reduce(operator.or_, (RenderAttempt.render_id.startswith(f"{j}-r") for j in job_ids),
                                     RenderAttempt.id.in_([]))  # render ids are <job_id>-r<n>
    return {
        "customers": (Conversation, Conversation.customer_id == cid),
        "messages": (InboundMessage, InboundMessage.customer_id == cid),
        "customer_events": (CustomerEvent, CustomerEvent.customer_id == cid),
        "jobs": (ImageJob, (ImageJob.customer_id == cid) | ImageJob.job_id.in_(job_ids)),
        "orders": (ShopOrder, (ShopOrder.customer_id == cid) | ShopOrder.order_key.in_(found.order_keys)),
        "job_history": (JobTransition, JobTransition.job_id.in_(job_ids)),
        "requirement_changes": (RequirementChange, RequirementChange.task.in_(job_ids)),
        "job_events": (JobEvent, (JobEvent.customer_id == cid) | JobEvent.job_id.in_(job_ids)),
        "render_attempts": (RenderAttempt, attempts),
        "published_files": (PublicFile, PublicFile.job_id.in_(job_ids) | PublicFile.path.in_([str(p) for p in files])),
        "indexed_images": (IndexedImage, IndexedImage.job_id.in_(job_ids)),
        "handoffs": (Handoff, (Handoff.customer_id == cid) | Handoff.job_id.in_(job_ids)),
    }


def _outbox_rows(found: _Holdings) -> list[int]:
    """Ids of the outbox rows that concern the customer: by ref, by the customer id in the payload, or by one of
    their addresses in it. Tianwang's callbacks stay: they name a task and a status, and Tianwang waits for them."""
    marker = json.dumps(found.customer_id, ensure_ascii=False)  # as payloads are written (persistence/outbox.py)
    # LIKE matches a superset (an id's '_' or '%' match more, PostgreSQL's ILIKE ignores case): checked below.
    near = Outbox.ref.in_(sorted(found.refs)) | Outbox.payload.contains(marker)
    for email in found.emails:
        near |= Outbox.payload.contains(email)
    ids = []
    for row in Outbox.select(Outbox.id, Outbox.ref, Outbox.payload).where((Outbox.kind != "callback") & near):
        payload = json.loads(row.payload)
        text = row.payload.lower()
        if (row.ref in found.refs or payload.get("customer_id") == found.customer_id
                or any(email in text for email in found.emails)):
            ids.append(row.id)
    return ids


def _cancel_open_tasks(customer_id: str, now: float, tz: str, callbacks: bool) -> list[str]:
    """Cancel the customer's tasks still open as Tianwang's cancel does (history, callback, unsent sends dropped)."""
    cancelled = []
    for (task_id,) in Task.select(Task.task_id).where((Task.customer_id == customer_id)
                                                      & Task.status.in_(OPEN_TASKS)).tuples():
        with contextlib.suppress(tasks.TaskFinished):  # finished meanwhile (PostgreSQL: another writer)
            tasks.cancel(task_id, CANCEL_REASON, now, tz, callbacks)
            cancelled.append(task_id)
    return cancelled


def _strip_tasks(customer_id: str, alias: str) -> list[str]:
    """Keep the customer's tasks without their name or any text that may quote them; their ids."""
    rows = list(Task.select(Task.task_id, Task.trigger_detail, Task.action).where(Task.customer_id == customer_id))
    for row in rows:
        action = json.loads(row.action)
        action.pop("message", None)
        Task.update(customer_id=alias, customer_name="", trigger_detail=_detail(row.trigger_detail),
                    action=json.dumps(action, ensure_ascii=False)).where(Task.task_id == row.task_id).execute()
        for step in TaskTransition.select(TaskTransition.id, TaskTransition.reason).where(
                TaskTransition.task_id == row.task_id):
            reason = _reason(step.reason)
            if reason != step.reason:
                TaskTransition.update(reason=reason).where(TaskTransition.id == step.id).execute()
    return [row.task_id for row in rows]


def _detail(detail: str | None) -> str | None:
    """A trigger's detail without the words that fired it ("customer_reply event 12: 好的" → "customer_reply event
    12")."""
    if detail is None or detail == "time reached":
        return detail
    return scheduling.without_words(detail) if EVENT_DETAIL.fullmatch(detail) else ERASED


def _reason(reason: str) -> str:
    """A history reason without anything that may quote the customer (an operator's or Tianwang's words)."""
    if reason.startswith("triggered: "):
        return "triggered: " + (_detail(reason.removeprefix("triggered: ")) or "")
    return reason if PLAIN_REASONS.fullmatch(reason) else ERASED


def _strip_audit(found: _Holdings, task_ids: list[str], alias: str) -> int:
    """Audit entries about the customer, their jobs or these tasks of theirs keep who, what and when, and of before
    and after only what is no text (flags, numbers, times); the conversation's are retargeted to the pseudonym. How
    many."""
    conversation = f"conversation:{found.customer_id}"
    targets = [conversation, *(f"job:{j}" for j in found.job_ids), *(f"task:{t}" for t in task_ids)]
    rows = list(AuditEntry.select(AuditEntry.id, AuditEntry.target, AuditEntry.before, AuditEntry.after)
                .where(AuditEntry.target.in_(targets)))
    for row in rows:
        target = f"conversation:{alias}" if row.target == conversation else row.target
        AuditEntry.update(target=target, before=_no_texts(row.before), after=_no_texts(row.after)).where(
            AuditEntry.id == row.id).execute()
    return len(rows)


def _no_texts(value: str | None) -> str | None:
    """A before/after of the audit with only its flags, numbers and times (a dropped text is no key, not null)."""
    data = json.loads(value) if value is not None else None
    if not isinstance(data, dict):
        return None
    return json.dumps({k: v for k, v in data.items() if isinstance(v, bool | int | float)})


def _left(data_dir: Path, found: _Holdings, files: list[Path]) -> dict[str, int]:
    """What of the customer is still there, by kind (thumbnails are found from their photos, which are gone)."""
    left = {what: model.select().where(where).count() for what, (model, where) in _rows(found, files).items()}
    left["outbox_rows"] = len(_outbox_rows(found))
    there = {*(p for ps in job_files.files_of(data_dir, found.job_ids).values() for p in ps),
             *(p for p in files if p.is_file())}
    left["photos"] = sum(p.parent.name == job_files.IMAGES for p in there)
    left["results"] = len(there) - left["photos"]
    left["mails"] = len(_mails(data_dir, found))
    left["tasks"] = Task.select().where(Task.customer_id == found.customer_id).count()
    left["audit_entries"] = AuditEntry.select().where(AuditEntry.target == f"conversation:{found.customer_id}").count()
    return left


@contextlib.contextmanager
def _zeroing_deletes() -> Any:
    """On SQLite, deleted rows are overwritten with zeros (secure_delete) on this connection while inside."""
    db = database_proxy.obj
    if not isinstance(db, peewee.SqliteDatabase):
        yield
        return
    (before,) = db.execute_sql("PRAGMA secure_delete").fetchone()
    db.execute_sql("PRAGMA secure_delete = 1")
    try:
        yield
    finally:
        db.execute_sql(f"PRAGMA secure_delete = {int(before)}")


def _empty_wal() -> None:
    """On SQLite, copy the write-ahead log into the database and empty it: its older frames hold the rows as they
    were before they were deleted."""
    db = database_proxy.obj
    if not isinstance(db, peewee.SqliteDatabase):
        return
    (patience,) = db.execute_sql("PRAGMA busy_timeout").fetchone()
    db.execute_sql(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")  # the console's writer thread waits no longer
    try:
        busy, _, _ = db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        db.execute_sql(f"PRAGMA busy_timeout = {int(patience)}")
    if busy:
        log.warning("forget: the write-ahead log could not be emptied now (readers kept it busy); its older frames "
                    "may hold the deleted rows until the log is written over")


def _count(removed: dict[str, int]) -> None:
    """Count what went on /metrics."""
    # Imported here: `shop-admin forget` first points prometheus_client at the running service's counter files.
    from observability.metrics import DELETED

    for what in COUNTED:
        if removed[what]:
            DELETED.labels(what, "forget").inc(removed[what])


# -- shop-admin forget ----------------------------------------------------------------------------------
class ForgetError(Exception):
    """The command cannot be done; the message says why."""


def _open() -> Settings:
    """The settings, with the database they name opened (and brought to this release's schema)."""
    from observability.metrics_files import ENV
    from persistence.admin import settings_from_env
    from persistence.db import open_database, sqlite_path
    from persistence.maintenance import service_pid

    settings = settings_from_env(ForgetError)
    path = sqlite_path(settings.DATABASE_URL)
    if path is not None and not Path(path).is_file():
        raise ForgetError(f"there is no database at {path} (DATA_DIR={settings.DATA_DIR}): check DATA_DIR and "
                          "DATABASE_URL")
    metrics_dir = settings.DATA_DIR / "metrics"
    if service_pid(settings.DATA_DIR) is not None and metrics_dir.is_dir():
        os.environ.setdefault(ENV, str(metrics_dir))  # the counts join the running service's on /metrics
    open_database(settings.DATABASE_URL, create=True)
    return settings


def forget_command(args: argparse.Namespace) -> int:
    """Forget one customer and print what went; the service may be running or not."""
    from core.redaction import redact
    from persistence.admin import cli_operator

    by = (args.by or cli_operator()).strip()
    try:
        if not args.customer_id:
            raise ForgetError("the customer id is empty")
        if not by or len(by) > 64:
            raise ForgetError("--by needs a name of 1 to 64 characters")
        settings = _open()
        done = forget(args.customer_id, settings.DATA_DIR, time.time(), by, tz=settings.SHOP_TIMEZONE,
                      callbacks=bool(settings.TIANWANG_CALLBACK_URL))
    except ForgetError as exc:
        print(f"shop-admin forget: {exc}", file=sys.stderr)
        return 1
    except peewee.DatabaseError as exc:
        print(f"shop-admin forget: the database cannot be used: {redact(str(exc))}", file=sys.stderr)
        return 1
    assert done is not None
    what = describe(done.removed)
    print(f"customer {done.pseudonym}: " + (f"deleted {what}" if what else
                                            "nothing was kept (forgotten before, or never seen)"))
    if done.cancelled:
        print(f"cancelled Tianwang tasks: {', '.join(done.cancelled)}")
    print(f"audited as forget by {by}")
    if any(done.left.values()):
        print(f"shop-admin forget: still there, run it again: {describe(done.left)}", file=sys.stderr)
        return 1
    return 0


def add_commands(subparsers: Any) -> None:
    """Register `shop-admin forget CUSTOMER_ID [--by NAME]`."""
    p = subparsers.add_parser(
        "forget", help="delete everything kept of one customer (PIPL: deletion on request)",
        description="Delete the customer's photos, results, mailed files, messages, profile and e-mail. Their "
                    "Tianwang tasks keep their ids and statuses without texts; open ones are cancelled. The request "
                    "is audited with who asked and the customer by a pseudonym. Safe while the service runs, and "
                    "safe to run again.")
    p.add_argument("customer_id", metavar="CUSTOMER_ID", help="the customer's id as the IM bridge knows it")
    p.add_argument("--by", default="", metavar="NAME",
                   help="who asked for it, for the audit (default: shop-admin:<your user>)")
    p.set_defaults(run=forget_command)
