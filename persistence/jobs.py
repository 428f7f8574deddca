"""Image-job store: jobs with their history, requirement changes, executor outcomes, render attempts, files.

A conversation commits a whole decision in one transaction: each job's new form (compare-and-set on
its version), its moves, its requirement changes, the inputs it consumed, and its effects as outbox
rows. Executors settle an effect and leave its outcome as a JobEvent in one transaction too.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from core import image_job as jm
from core import replies
from core.order import MailOrder, Order, key_of, order_key_for
from core.order import view as order_view
from persistence import handoffs, orders, outbox
from persistence.connection import atomic
from persistence.models import (
    Conversation,
    ImageJob,
    InboundMessage,
    JobEvent,
    JobTransition,
    Outbox,
    PublicFile,
    RenderAttempt,
    RequirementChange,
)
from protocol.im import MsgType
from protocol.image import TERMINAL_JOB_STATES, Analysis, Complexity, JobState, Operation


class StaleJob(Exception):
    """Another writer changed a job (or consumed an input) first: reload and decide again."""


# -- Job <-> row ----------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


_ENUMS: dict[str, type[Enum]] = {"state": JobState, "operation": Operation, "complexity": Complexity}


def job_json(job: jm.Job) -> str:
    """The job as JSON (enums as values, tuples as lists)."""
    return json.dumps({f.name: _plain(getattr(job, f.name)) for f in dataclasses.fields(job)}, ensure_ascii=False)


def job_from_row(row: ImageJob) -> jm.Job:
    """The core Job a row holds."""
    data = json.loads(row.data)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(jm.Job):
        if f.name not in data:
            continue  # a field added by a newer release keeps its default
        value = data[f.name]
        if isinstance(value, list):
            value = tuple(value)
        elif f.name in _ENUMS and value is not None:
            value = _ENUMS[f.name](value)
        kwargs[f.name] = value
    return jm.Job(**kwargs)


def active_jobs(customer_id: str) -> list[jm.Job]:
    """The customer's jobs that have not ended, oldest first."""
    rows = (ImageJob.select().where((ImageJob.customer_id == customer_id)
                                    & ImageJob.state.not_in([s.value for s in TERMINAL_JOB_STATES]))
            .order_by(ImageJob.created_at, ImageJob.job_id))
    return [job_from_row(r) for r in rows]


def last_job(customer_id: str) -> jm.Job | None:
    """The customer's newest job in any state, or None."""
    row = (ImageJob.select().where(ImageJob.customer_id == customer_id)
           .order_by(ImageJob.created_at.desc(), ImageJob.job_id.desc()).first())
    return job_from_row(row) if row else None


def load_job(job_id: str) -> jm.Job | None:
    """One job by id, or None."""
    row = ImageJob.get_or_none(ImageJob.job_id == job_id)
    return job_from_row(row) if row else None


def load_jobs(job_ids: list[str]) -> list[jm.Job]:
    """The jobs among these ids, oldest first."""
    if not job_ids:
        return []
    rows = ImageJob.select().where(ImageJob.job_id.in_(job_ids)).order_by(ImageJob.created_at, ImageJob.job_id)
    return [job_from_row(r) for r in rows]


@dataclass(frozen=True)
class Known:
    """What a burst is decided on: the live jobs, their orders (and the newest job's), the orders' ended photos."""

    active: list[jm.Job]
    orders: list[Order]
    others: list[jm.Job]
    last: jm.Job | None


def known(customer_id: str) -> Known:
    """A customer's live jobs with their orders, loaded for one decision."""
    active = active_jobs(customer_id)
    last = last_job(customer_id)
    found = orders.load({key_of(j) for j in [*active, *([last] if last else [])]})
    have = {j.job_id for j in active}
    others = load_jobs([j for o in found for j in o.job_ids if j not in have])
    return Known(active, found, others, last)


def order_context(job: jm.Job) -> tuple[list[jm.Job], list[Order]]:
    """A job with the other photos of its order, and the order (none stored for a job from before orders)."""
    found = orders.load([key_of(job)])
    members = load_jobs([j for o in found for j in o.job_ids if j != job.job_id])
    return [job, *members], found


# -- committing a decision ------------------------------------------------------------------------
@dataclass
class Decision:
    """Everything a conversation decided for one burst of messages or one executor outcome."""

    customer_id: str
    cause: str  # stable id of what caused it ("m:<first msg_id>" or "e:<job event id>"): keys its effects
    steps: list[jm.Step]
    loose_effects: tuple[Any, ...] = ()
    before: dict[str, int] = field(default_factory=dict)  # job id → version loaded (absent: a new job)
    message_ids: list[int] = field(default_factory=list)  # InboundMessage rows consumed
    event_ids: list[int] = field(default_factory=list)  # JobEvent rows consumed
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id → ImageJob columns to set
    orders: list[Order] = field(default_factory=list)  # orders changed, in their final form
    orders_before: dict[str, int] = field(default_factory=dict)  # order key → version loaded (absent: new)


@dataclass
class Committed:
    """What the commit queued, by executor, so the actor knows whom to nudge."""

    kinds: set[str] = field(default_factory=set)


def commit(decision: Decision, now: float) -> Committed:
    """Write a decision in one transaction; StaleJob if another writer got there first."""
    out = Committed()
    with atomic():
        _consume(decision, now)
        final: dict[str, jm.Job] = {}
        for step in decision.steps:
            final[step.job.job_id] = step.job
        for job_id, job in final.items():
            _save_job(job, decision.before.get(job_id), decision.extras.get(job_id, {}), now)
        for job_id, extras in decision.extras.items():
            if job_id not in final:
                ImageJob.update(**extras, updated_at=now).where(ImageJob.job_id == job_id).execute()
        for order in decision.orders:
            try:
                orders.save(order, decision.orders_before.get(order.order_key), now)
            except orders.StaleOrder as exc:
                raise StaleJob(str(exc)) from None
        conv = Conversation.get_or_none(Conversation.customer_id == decision.customer_id)
        to = _Recipient(decision.customer_id, conv.acc_id if conv else "", conv.acc_type if conv else "",
                        paused=bool(conv and conv.paused_until is not None and conv.paused_until > now))
        n = 0
        for step in decision.steps:
            for move in step.moves:
                JobTransition.create(job_id=step.job.job_id, at=move.at, from_state=_plain(move.from_state),
                                     to_state=_plain(move.to_state), event=move.event)
            for effect in step.effects:
                n += 1
                _effect(effect, step.job, decision, n, to, now, out)
        for effect in decision.loose_effects:
            n += 1
            _effect(effect, None, decision, n, to, now, out)
    return out


@dataclass(frozen=True)
class _Recipient:
    """Whom a decision's sends go to; paused: a person has taken the conversation over, the AI stays silent."""

    customer_id: str
    acc_id: str
    acc_type: str
    paused: bool


def _consume(decision: Decision, now: float) -> None:
    if decision.message_ids:
        claimed = (InboundMessage.update(processed_at=now)
                   .where(InboundMessage.id.in_(decision.message_ids) & InboundMessage.processed_at.is_null())
                   .execute())
        if claimed != len(set(decision.message_ids)):
            raise StaleJob(f"messages of {decision.customer_id} were processed by another writer")
    if decision.event_ids:
        claimed = (JobEvent.update(processed_at=now)
                   .where(JobEvent.id.in_(decision.event_ids) & JobEvent.processed_at.is_null()).execute())
        if claimed != len(set(decision.event_ids)):
            raise StaleJob(f"job events of {decision.customer_id} were processed by another writer")


def _save_job(job: jm.Job, before: int | None, extras: dict[str, Any], now: float) -> None:
    values = {"state": job.state.value, "version": job.version, "data": job_json(job), "updated_at": now, **extras}
    if before is None:
        inserted = (ImageJob.insert(job_id=job.job_id, customer_id=job.customer_id, created_at=now, **values)
                    .on_conflict_ignore().as_rowcount().execute())
        if inserted != 1:
            raise StaleJob(f"job {job.job_id} already exists")
        return
    changed = ImageJob.update(**values).where((ImageJob.job_id == job.job_id) & (ImageJob.version == before)).execute()
    if changed != 1:
        raise StaleJob(f"job {job.job_id} changed since version {before}")


def _send(key: str, ref: str, to: _Recipient, msg_type: MsgType, content: str, now: float, out: Committed,
          rephrase: bool = False) -> None:
    payload: dict[str, Any] = {"send_id": key, "acc_id": to.acc_id, "acc_type": to.acc_type,
                               "customer_id": to.customer_id, "msg_type": int(msg_type), "content": content}
    if rephrase:
        payload["rephrase"] = True
    # Kept, not sent, while a person has the conversation: operators see what the AI would have said.
    outbox.add(key=key, kind="im_send", ref=ref, now=now, payload=payload,
               status="suppressed" if to.paused else "pending")
    if not to.paused:
        out.kinds.add("im_send")


def _mail_queued(d: Decision, to: str, out: Committed) -> None:
    """A mail is in the outbox: the profile keeps the address it goes to, and the dispatch actor is nudged."""
    Conversation.update(email=to, email_status="given").where(Conversation.customer_id == d.customer_id).execute()
    out.kinds.add("mail")


def _effect(effect: Any, job: jm.Job | None, d: Decision, n: int, to: _Recipient, now: float,
            out: Committed) -> None:
    ref = job.job_id if job else f"customer:{d.customer_id}"
    key = f"{d.cause}:{n}"
    if isinstance(effect, jm.Reply):
        _send(key, ref, to, MsgType.TEXT, effect.text, now, out, rephrase=effect.text not in replies.VERBATIM)
    elif isinstance(effect, jm.SendImage):
        _send(key, ref, to, MsgType.IMAGE, effect.url, now, out)
    elif isinstance(effect, jm.SendFile):
        _send(key, ref, to, MsgType.FILE, effect.url, now, out)
    elif isinstance(effect, jm.HandOff):
        handoffs.add(key=f"handoff:{job.job_id}" if job else f"handoff:{key}", customer_id=d.customer_id,
                     job_id=job.job_id if job else None, rule=effect.rule, reason=effect.reason,
                     image_url=(job.source_url if job else ""), now=now)
        out.kinds.add("handoff")
    elif isinstance(effect, jm.FindImage):
        outbox.add(key=f"find:{key}", kind="find", ref=ref, now=now, payload={
            "customer_id": d.customer_id, "reference_url": effect.reference_url, "job_id": effect.job_id})
        out.kinds.add("find")
    elif isinstance(effect, jm.Analyze):
        assert job is not None
        outbox.add(key=f"analyze:{job.job_id}", kind="analyze", ref=ref, now=now,
                   payload={"job_id": job.job_id, "customer_id": d.customer_id, "url": effect.url})
        out.kinds.add("analyze")
    elif isinstance(effect, jm.Render):
        assert job is not None
        row = ImageJob.get(ImageJob.job_id == job.job_id)
        outbox.add(key=effect.render_id, kind="render", ref=ref, now=now, payload={
            "job_id": job.job_id, "customer_id": d.customer_id, "render_id": effect.render_id,
            "source_path": row.source_path, "operation": _plain(effect.operation), "notes": list(effect.notes),
            "revision_notes": list(effect.revision_notes), "aspect_ratio": effect.aspect_ratio,
            "perspective_fix": effect.perspective_fix,
        })
        out.kinds.add("render")
    elif isinstance(effect, jm.Mail):
        assert job is not None
        row = ImageJob.get(ImageJob.job_id == job.job_id)
        mail_key = f"mail:{job.job_id}:{effect.seq}"
        outbox.add(key=mail_key, kind="mail", ref=ref, now=now, payload={
            "job_id": job.job_id, "customer_id": d.customer_id, "seq": effect.seq, "to": effect.to,
            "attachment": row.result_path, "message_id": f"<{mail_key.replace(':', '.')}@retouch-shop>",
        })
        _mail_queued(d, effect.to, out)
    elif isinstance(effect, MailOrder):
        rows = {r.job_id: r for r in ImageJob.select().where(ImageJob.job_id.in_([j for j, _ in effect.jobs]))}
        mail_key = f"mail:{effect.order_key}:{effect.seq}"
        outbox.add(key=mail_key, kind="mail", ref=effect.order_key, now=now, payload={
            "order_key": effect.order_key, "job_id": "", "customer_id": d.customer_id, "seq": effect.seq,
            "to": effect.to, "message_id": f"<{mail_key.replace(':', '.')}@retouch-shop>",
            "attachments": [{"job_id": j, "number": n, "path": rows[j].result_path} for j, n in effect.jobs],
        })
        _mail_queued(d, effect.to, out)
    elif isinstance(effect, jm.NotifyStaff):
        outbox.add(key=f"staff:{key}", kind="staff", ref=ref, now=now, payload={
            "event": effect.event, "text": effect.text, "customer_id": d.customer_id,
            "job_id": job.job_id if job else None,
        })
        out.kinds.add("staff")
    elif isinstance(effect, jm.RecordChange):
        RequirementChange.create(task=job.job_id if job else "", type=_plain(effect.type), old=effect.old,
                                 new=effect.new, at=now, by=effect.by, accepted=effect.accepted)
    else:
        raise TypeError(f"no outbox form for effect {type(effect).__name__}")


# -- executors' outcomes --------------------------------------------------------------------------
def settle(key: str, status: str, event_kind: str, customer_id: str, job_id: str, payload: dict[str, Any],
           now: float, error: str | None = None, extras: dict[str, Any] | None = None) -> int | None:
    """Settle an outbox row (delivered / failed) and record its outcome for the conversation, in one transaction;
    the JobEvent id, or None if the row was settled before (a re-drive after a crash)."""
    with atomic():
        row = outbox._mark(key, status, now, error)
        if row is None:
            return None
        if extras:
            ImageJob.update(**extras, updated_at=now).where(ImageJob.job_id == job_id).execute()
        ev = JobEvent.create(customer_id=customer_id, job_id=job_id, kind=event_kind, source=key,
                             payload=json.dumps(payload, ensure_ascii=False), created_at=now)
        return ev.id


def unprocessed_events(customer_id: str | None = None, older_than: float | None = None,
                       limit: int = 1000) -> list[JobEvent]:
    """Executor outcomes no conversation has taken yet, oldest first."""
    query = JobEvent.select().where(JobEvent.processed_at.is_null())
    if customer_id is not None:
        query = query.where(JobEvent.customer_id == customer_id)
    if older_than is not None:
        query = query.where(JobEvent.created_at <= older_than)
    return list(query.order_by(JobEvent.id).limit(limit))


def publish(path: Path, mime: str, job_id: str, now: float) -> str:
    """Make a stored file reachable at an unguessable URL path (/files/<token>/<name>); call inside a transaction."""
    token = secrets.token_urlsafe(18)
    PublicFile.create(token=token, path=str(path), mime=mime, name=path.name, job_id=job_id, created_at=now)
    return f"/files/{token}/{path.name}"


def public_file(token: str) -> PublicFile | None:
    """The file behind a token, or None."""
    return PublicFile.get_or_none(PublicFile.token == token)


# -- render attempts ------------------------------------------------------------------------------
def attempts(render_id: str) -> dict[int, RenderAttempt]:
    """A render request's attempts so far, by number."""
    return {a.attempt: a for a in RenderAttempt.select().where(RenderAttempt.render_id == render_id)}


def started_attempts(render_ids: list[str]) -> list[tuple[str, str, int]]:
    """(render id, system, pid) of attempts recorded as started and not finished, for these render requests."""
    if not render_ids:
        return []
    return list(RenderAttempt.select(RenderAttempt.render_id, RenderAttempt.system, RenderAttempt.pid)
                .where(RenderAttempt.render_id.in_(render_ids) & (RenderAttempt.status == "started")).tuples())


def start_attempt(render_id: str, attempt: int, source: str, pid: int, now: float, system: str = "",
                  operation: str = "") -> None:
    """Record an attempt before its (paid) call, so a crash leaves a trace and a stored result is never re-asked.

    pid and system (the actor system's id, in a convention of several) name the process making the call."""
    with atomic():
        RenderAttempt.insert(render_id=render_id, attempt=attempt, source=source, status="started", started_at=now,
                             pid=pid, system=system, operation=operation).on_conflict(
            conflict_target=[RenderAttempt.render_id, RenderAttempt.attempt],
            update={RenderAttempt.status: "started", RenderAttempt.started_at: now, RenderAttempt.pid: pid,
                    RenderAttempt.system: system},
        ).execute()


def count_model_call(render_id: str, attempt: int) -> None:
    """Count an image-model call that answered with an image (a billed one) against its attempt."""
    RenderAttempt.update(model_calls=RenderAttempt.model_calls + 1).where(
        (RenderAttempt.render_id == render_id) & (RenderAttempt.attempt == attempt)).execute()


def finish_attempt(render_id: str, attempt: int, now: float, path: str | None = None, preview_path: str | None = None,
                   mime: str | None = None, score: int | None = None, error: str | None = None) -> None:
    """Record how an attempt ended: its stored result and score, or its error."""
    with atomic():
        RenderAttempt.update(status="done" if error is None else "failed", finished_at=now, path=path,
                             preview_path=preview_path, mime=mime, score=score, error=error).where(
            (RenderAttempt.render_id == render_id) & (RenderAttempt.attempt == attempt)).execute()


# -- views ----------------------------------------------------------------------------------------
def _attempt_view(a: RenderAttempt) -> dict[str, Any]:
    return {"attempt": a.attempt, "source": a.source, "status": a.status, "score": a.score, "error": a.error,
            "image_model_calls": a.model_calls, "started_at": a.started_at, "finished_at": a.finished_at}


def job_view(job_id: str, base_url: str) -> dict[str, Any] | None:
    """One job for operators: state, quote, history, requirement changes, render attempts, result URL, mails."""
    row = ImageJob.get_or_none(ImageJob.job_id == job_id)
    if row is None:
        return None
    job = job_from_row(row)
    data = json.loads(row.data)
    renders = [f"{job_id}-r{i}" for i in range(1, job.renders + 1)]
    attempts_by: dict[str, list[dict[str, Any]]] = {}
    for a in (RenderAttempt.select().where(RenderAttempt.render_id.in_(renders))
              .order_by(RenderAttempt.render_id, RenderAttempt.attempt)):
        attempts_by.setdefault(a.render_id, []).append(_attempt_view(a))
    # A URL is shown while it serves: the retention sweep deletes finished jobs' files and their URLs.
    served = {p.token for p in PublicFile.select(PublicFile.token).where(PublicFile.job_id == job_id)}
    mails = [{"seq": json.loads(m.payload)["seq"], "to": json.loads(m.payload)["to"], "status": m.status,
              "error": m.error, "at": m.updated_at}
             for m in Outbox.select().where((Outbox.kind == "mail") & (Outbox.ref == job_id)).order_by(Outbox.id)]
    return {
        "job_id": job_id, "customer_id": row.customer_id, "state": row.state, "version": row.version,
        "operation": data.get("operation"), "price": data.get("price"), "complexity": data.get("complexity"),
        "has_text": data.get("has_text"), "notes": data.get("notes", []),
        "revision_notes": data.get("revision_notes", []), "paid": data.get("paid"),
        "order_id": data.get("order_id"), "source_url": data.get("source_url"),
        "result_url": absolute(base_url, _serving(data.get("result_url"), served)),
        "preview_url": absolute(base_url, _serving(data.get("preview_url"), served)), "email": data.get("email"),
        "analysis": json.loads(row.analysis) if row.analysis else None,
        "created_at": row.created_at, "updated_at": row.updated_at,
        "history": [{"at": t.at, "from": t.from_state, "to": t.to_state, "event": t.event}
                    for t in JobTransition.select().where(JobTransition.job_id == job_id).order_by(JobTransition.id)],
        "requirement_changes": [
            {"type": c.type, "old": c.old, "new": c.new, "at": c.at, "by": c.by, "accepted": c.accepted}
            for c in RequirementChange.select().where(RequirementChange.task == job_id).order_by(RequirementChange.id)
        ],
        "renders": [{"render_id": r, "attempts": attempts_by.get(r, [])} for r in renders],
        "image_model_calls": sum(a["image_model_calls"] for found in attempts_by.values() for a in found),
        "mails": mails,
        "risk": {"verdict": data.get("risk") or None, "reason": data.get("risk_reason", "")},
        "handoff": {"rule": data.get("handoff_rule"), "reason": data.get("handoff_reason"),
                    "status": data.get("handoff_status"), "designer": data.get("designer"),
                    "tasks": handoffs.of_job(job_id)} if data.get("handoff_rule") else None,
        "done_by": data.get("done_by") or None,
        "order": {"order_key": key_of(job), "number": job.number},
    }


def _serving(url: str | None, tokens: set[str]) -> str | None:
    """url unless it is one of the shop's published files (…/files/<token>/<name>) no longer served."""
    if url and "/files/" in url and url.split("/files/", 1)[1].split("/")[0] not in tokens:
        return None
    return url


def absolute(base_url: str, url: str | None) -> str | None:
    """A stored URL made absolute against base_url (stored file URLs are paths)."""
    if not url or not url.startswith("/"):
        return url
    return base_url.rstrip("/") + url


def customer_orders(customer_id: str) -> list[dict[str, Any]]:
    """Every order of a customer, newest first: its photos by number, what is owed, paid, waiting, refundable."""
    found = orders.of_customer(customer_id)
    members = {j.job_id: j for j in load_jobs([j for o in found for j in o.job_ids])}
    return [order_view(o, members) for o in found]


def job_orders(rows: list[ImageJob]) -> dict[str, dict[str, Any]]:
    """Job id → the view of its stored order (owed, paid, its photos), for job rows listed together."""
    keys = {r.job_id: json.loads(r.data).get("order_key") or order_key_for(r.job_id) for r in rows}
    found = orders.load(set(keys.values()))
    members = {j.job_id: j for j in load_jobs([j for o in found for j in o.job_ids])}
    views = {o.order_key: order_view(o, members) for o in found}
    return {job_id: views[key] for job_id, key in keys.items() if key in views}


def customer_jobs(customer_id: str, base_url: str) -> list[dict[str, Any]]:
    """Every job of a customer, newest first, with its history."""
    ids = [r.job_id for r in ImageJob.select(ImageJob.job_id).where(ImageJob.customer_id == customer_id)
           .order_by(ImageJob.created_at.desc())]
    return [v for v in (job_view(i, base_url) for i in ids) if v is not None]


def analysis_of(row: ImageJob) -> Analysis | None:
    """The stored analysis of a job's photo."""
    return Analysis.model_validate_json(row.analysis) if row.analysis else None
