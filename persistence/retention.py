"""Keeping no more than the shop needs: the daily sweep that deletes what is past its time, in small steps.

Finished jobs lose their photos and results after RETENTION_DAYS (their rows and history stay); customers'
messages go after MESSAGE_RETENTION_DAYS; delivered outbox rows, consumed events, old login failures and files no
row leads to go after COMPACTION_DAYS. The sweep is due once a day by a durable timer; each step deletes at most
BATCH things in one short transaction, so the write lock is never held long and the scheduler that runs it stays
responsive between steps. Every stage can be run again: a sweep cut short by a crash starts over from the first
stage when the service is back, and finds done what was done.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import peewee

from observability.metrics import DELETED, DELETED_SERIES
from persistence import job_files, scheduling, timers
from persistence.connection import atomic
from persistence.models import (
    Conversation,
    CustomerEvent,
    ImageJob,
    InboundMessage,
    IndexedImage,
    JobEvent,
    LoginFailure,
    Outbox,
    PublicFile,
    RenderAttempt,
    Task,
)
from protocol.image import TERMINAL_JOB_STATES
from protocol.settings import Settings

log = logging.getLogger("shop.retention")

OWNER = "retention"  # the owner of the sweep's durable timer
TIMER_KEY = "retention:sweep"
DAY_S = 86_400.0
BATCH = 100  # rows, jobs or files one step deletes: a short transaction, a short pause for everyone else
STEP_PAUSE_S = 0.05  # between two steps of one sweep: the scheduler's own work goes in between
SETTLED_OUTBOX = ("delivered", "cancelled", "skipped")  # failed rows stay for the operators


@dataclass(frozen=True)
class Limits:
    """The cut-off ages, in seconds."""

    files_s: float
    messages_s: float
    compaction_s: float

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """RETENTION_DAYS, MESSAGE_RETENTION_DAYS and COMPACTION_DAYS as seconds."""
        return cls(settings.RETENTION_DAYS * DAY_S, settings.MESSAGE_RETENTION_DAYS * DAY_S,
                   settings.COMPACTION_DAYS * DAY_S)


Stage = Callable[[Path, Limits, float], Counter[tuple[str, str]]]


def finished_jobs_files(data_dir: Path, limits: Limits, now: float) -> Counter[tuple[str, str]]:
    """Photos and results of up to BATCH jobs finished more than RETENTION_DAYS ago; rows and history stay."""
    ids = [row.job_id for row in ImageJob.select(ImageJob.job_id).where(
        ImageJob.state.in_([s.value for s in TERMINAL_JOB_STATES]) & (ImageJob.updated_at < now - limits.files_s)
        & (ImageJob.source_path.is_null(False) | ImageJob.result_path.is_null(False))).limit(BATCH)]
    if not ids:
        return Counter()
    gone = job_files.drop(data_dir, ids)
    return Counter({(what, "retention"): n for what, n in gone.items()} | {("jobs", "retention"): len(ids)})


def old_mails(data_dir: Path, limits: Limits, now: float) -> Counter[tuple[str, str]]:
    """Up to BATCH mails of the file outbox (.eml, results attached) written more than RETENTION_DAYS ago."""
    return Counter({("mails", "retention"): _unlink_older(data_dir / job_files.MAILS, now - limits.files_s, "*.eml")})


def old_messages(data_dir: Path, limits: Limits, now: float) -> Counter[tuple[str, str]]:
    """Up to BATCH customers' messages (already taken into account) received more than MESSAGE_RETENTION_DAYS ago,
    the customer events they made, and the last message a profile quotes when it is that old."""
    cutoff = now - limits.messages_s
    taken = InboundMessage.processed_at.is_null(False)
    messages = _Found(InboundMessage, (InboundMessage.received_at < cutoff) & taken)
    events = _Found(CustomerEvent, (CustomerEvent.created_at < cutoff) & (CustomerEvent.consumed == True))  # noqa: E712
    with atomic():
        quoted = Conversation.update(last_text=None).where(
            (Conversation.last_seen < cutoff) & Conversation.last_text.is_null(False)).execute()
        return Counter({("messages", "retention"): messages.delete(), ("customer_events", "retention"): events.delete(),
                        ("profile_texts", "retention"): quoted})


def quoted_words(data_dir: Path, limits: Limits, now: float) -> Counter[tuple[str, str]]:
    """The customer's words that up to BATCH Tianwang tasks fired more than MESSAGE_RETENTION_DAYS ago quote in
    their trigger detail and history ("customer_reply event 12: 好的"): the message is gone, so is the quote."""
    quoting = Task.trigger_detail.contains(scheduling.WORDS_SEP)
    ids = [t.task_id for t in Task.select(Task.task_id).where(
        (Task.triggered_at < now - limits.messages_s) & quoting).limit(BATCH)]
    with atomic():
        return Counter({("task_quotes", "retention"): scheduling.forget_words(ids) if ids else 0})


def settled_rows(data_dir: Path, limits: Limits, now: float) -> Counter[tuple[str, str]]:
    """Up to BATCH each of outbox rows settled, job events and customer events consumed, and failed logins, all more
    than COMPACTION_DAYS ago: their work is done and nothing reads them again. What the shop said to a customer
    (im_send) is a message and stays as long as theirs; a job's mails stay as long as its files."""
    cutoff = now - limits.compaction_s
    found = {
        ("outbox_rows", "compaction"): _Found(Outbox, Outbox.status.in_(SETTLED_OUTBOX) & (
            ((Outbox.kind == "im_send") & (Outbox.updated_at < now - limits.messages_s))
            | ((Outbox.kind == "mail") & (Outbox.updated_at < now - limits.files_s))
            | (Outbox.kind.not_in(["im_send", "mail"]) & (Outbox.updated_at < cutoff)))),
        ("job_events", "compaction"): _Found(JobEvent, JobEvent.processed_at < cutoff),
        ("customer_events", "compaction"): _Found(
            CustomerEvent, (CustomerEvent.consumed == True) & (CustomerEvent.consumed_at < cutoff)),  # noqa: E712
        ("login_failures", "compaction"): _Found(LoginFailure, LoginFailure.at < cutoff),
    }
    with atomic():
        return Counter({kind: rows.delete() for kind, rows in found.items()})


def unreferenced_files(data_dir: Path, limits: Limits, now: float) -> Counter[tuple[str, str]]:
    """Up to BATCH photos and results older than COMPACTION_DAYS that no row leads to (attempts that broke the
    order's contract, files of jobs that are gone), and console thumbnails as old (made again when looked at)."""
    cutoff = now - limits.compaction_s
    named = _named_paths()
    candidates = [p for folder in (job_files.IMAGES, job_files.RESULTS) for p in _older(data_dir / folder, cutoff)
                  if str(p) not in named][:BATCH]
    gone = job_files.delete_files(data_dir, candidates)
    counts = Counter({(what, "compaction"): n for what, n in gone.items()})
    counts["thumbnails", "compaction"] += _unlink_older(data_dir / job_files.THUMBS, cutoff, "*.jpg")
    return counts


STAGES: tuple[Stage, ...] = (finished_jobs_files, old_mails, old_messages, quoted_words, settled_rows,
                             unreferenced_files)


class _Found:
    """Up to BATCH rows of a model matching a condition, found before the transaction that deletes them: the search
    reads without the write lock, and the delete holds it only for rows it names by id."""

    def __init__(self, model: type[peewee.Model], where: peewee.Expression) -> None:
        self.model, self.where = model, where
        self.ids = [row.id for row in model.select(model.id).where(where).limit(BATCH)]

    def delete(self) -> int:
        """Delete the rows found that still match (one may have changed since); how many went."""
        if not self.ids:
            return 0
        return self.model.delete().where(self.model.id.in_(self.ids) & self.where).execute()


def _named_paths() -> set[str]:
    """Every file path a row names: the jobs' photos and results, attempts, published files, the index."""
    named: set[str] = set()
    for query in (ImageJob.select(ImageJob.source_path, ImageJob.result_path),
                  RenderAttempt.select(RenderAttempt.path, RenderAttempt.preview_path),
                  PublicFile.select(PublicFile.path), IndexedImage.select(IndexedImage.path)):
        for row in query.tuples().iterator():
            named.update(p for p in row if p)
    return named


def _older(folder: Path, cutoff: float, pattern: str = "*") -> list[Path]:
    """Files directly in folder last written before cutoff."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file() and entry.stat().st_mtime < cutoff and Path(entry.name).match(pattern):
                    found.append(Path(entry.path))
    return sorted(found)


def _unlink_older(folder: Path, cutoff: float, pattern: str) -> int:
    """Delete up to BATCH files of folder matching pattern last written before cutoff; how many went."""
    removed = 0
    for path in _older(folder, cutoff, pattern)[:BATCH]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


class Sweep:
    """The daily sweep as its owner runs it: one step per call, and when the next call is due."""

    def __init__(self, data_dir: Path, limits: Limits) -> None:
        self.data_dir, self.limits = data_dir, limits
        self.stage = 0
        self.counts: Counter[tuple[str, str]] = Counter()  # this sweep's deletions so far

    def first_delay(self, now: float) -> float:
        """Seconds until the sweep is due; a shop's first start arms it for now (an empty sweep costs nothing)."""
        due = timers.next_due(OWNER)
        if due is None:
            with atomic():
                timers.arm(OWNER, TIMER_KEY, now)
            due = now
        return max(0.0, due - now)

    def step(self, now: float) -> float:
        """Run the current stage once (a stage that found less than a full batch is done) and say how many
        seconds until the next step: a pause within a sweep, a day after the last stage, and the time left
        when the sweep is not due yet."""
        if self.stage == 0:  # a sweep starts only when due; once started, it runs to its end
            due = timers.next_due(OWNER)
            if due is not None and due > now:
                return due - now
        counts = STAGES[self.stage](self.data_dir, self.limits, now)
        for (what, why), n in counts.items():
            if n and (what, why) in DELETED_SERIES:  # jobs and profile texts are in the log line only
                DELETED.labels(what, why).inc(n)
        self.counts.update(counts)
        if max(counts.values(), default=0) < BATCH:
            self.stage += 1
        if self.stage < len(STAGES):
            return STEP_PAUSE_S
        done = {f"{what}/{why}": n for (what, why), n in sorted(self.counts.items()) if n}
        log.info("retention sweep done: %s", done or "nothing to delete")
        self.stage, self.counts = 0, Counter()
        with atomic():
            timers.arm(OWNER, TIMER_KEY, now + DAY_S)
        return DAY_S

