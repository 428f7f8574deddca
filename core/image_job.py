"""The image job's state machine (SPEC §2): step(job, event, now) -> Step, and a customer's burst of messages.

Pure: no I/O, no clock, no randomness. The caller persists the Step's job (compare-and-set on `version`),
its moves and its effects in one transaction, then executors perform the effects.

State × event → next state, effects (R = Reply, anything not listed raises IllegalJobEvent):

  (new)            start_job(url)             → quoting           Analyze(url)
  quoting          Analyzed                   → pending           R(quote with price, operation, text-heavy or not)
                   Analyzed, paid while quoting → pending, paid, processing   Render, R(paid)
                   Analyzed, risk decline     → cancelled         R(polite refusal by rule)   (paid: hand-off instead)
                   Analyzed, risk human       → transferred       HandOff(risk_human)
                   AnalysisFailed(reason)     → failed            R(photo unreadable, hint by reason)
                                              → transferred       HandOff(analysis_failed) when paid
                   PaymentReceived            (stays)             paid, order_id, R(paid while quoting)
                   PaymentReceived, paused    → transferred       HandOff(payment_manual)
                   CustomerText, unpaid       (stays)             RecordChange(add_note) (a size or shape in
                                                                  the words counts); operation word ≠ current:
                                                                  + RecordChange(modify_operation, accepted);
                                                                  no reply (the quote follows)
                   Superseded (unpaid only)   → cancelled         R(new photo replaces the unpaid one)
  pending          PaymentReceived            → paid, processing  R(paid), Render
                   PaymentReceived, paused    → paid, transferred HandOff(payment_manual)
                   CustomerText               (stays)             as in quoting, with R(operation changed / note taken)
                   Superseded                 → cancelled         R(new photo replaces the unpaid one)
  paid, processing CustomerText               (stays)             operation word ≠ fixed one: RecordChange(
  (quoting once paid)                                             modify_operation, refused) + R(refusal); other
                                                                  text: RecordChange(add_requirement) + R(noted)
  processing       RenderDone(current id)     → awaiting_confirm  SendImage(preview), R(ask e-mail) [+ Mail when
                                                                  the e-mail is known]
                   RenderDone, QA failed      → awaiting_confirm  as above + NotifyStaff(qa_failed): the best
                                                                  attempt is sent and staff are asked to check it
                   RenderFailed(current id)   → transferred       HandOff(render_failed | safety_blocked)
  awaiting_confirm CustomerText with e-mail   (stays)             Mail(seq = mails + 1, to)
                   CustomerText, revision     → revision          R(ask what to change)
                   CustomerText, operation ≠ fixed one (stays)    RecordChange(modify_operation, refused) + R(refusal)
                   CustomerText, other        (stays)             R(reminder to send the e-mail)
                   MailSent                   → completed         R(mailed)
  revision         CustomerText / PhotoAsNote → processing        RecordChange(add_requirement), R(redo), Render
  completed        CustomerText, done by staff (stays)            nothing (the designer answers)
                   CustomerText with e-mail   (stays)             Mail(seq = mails + 1, to)   (another address)
                   CustomerText, revision     → revision          R(ask what to change)
                   CustomerText, other        (stays)             nothing
                   MailSent                   (stays)             R(mailed)
  any non-terminal Cancel                     → cancelled         nothing
                   Transfer(rule, reason)     → transferred       HandOff(rule, reason)   (rule operator: a console
                                                                  operator's hand-off; refused once ended)
  transferred      HandOffQueued              (stays)             R(no designer online, queued)
                   HandOffAssigned(designer)  (stays)             R(SPEC's hand-off phrase) unless told when queued
                   HandOffCompleted           → completed         done_by staff (the designer delivered)
  failed, cancelled Analyzed / AnalysisFailed (stays)             nothing (a late analysis of a replaced photo)
  any              PaymentReceived on a paid job                  nothing (a repeated notice)
                   RenderDone / RenderFailed with another render id  nothing (stale)
                   MailFailed with seq < mails                    nothing (a newer address is on its way)
  awaiting_confirm, completed, processing, revision:
                   MailFailed(seq = mails)    (stays)             email forgotten, R(mail failed),
                                                                  NotifyStaff(mail_failed)
  processing, revision: MailSent              (stays)             nothing (an earlier result's mail; the revised
                                                                  result is mailed again when it is ready)
  awaiting_confirm, completed: Revise(note)   → revision          R(ask what to change); with a note at once
                                                                  → processing, as a revision note
  revision         Revise(note)               → processing        the note, as a revision note
  awaiting_confirm OrderMailed                → completed         nothing (the order says it once)
  completed, processing, revision, transferred: OrderMailed (stays) nothing
  any              Numbered(n)                (stays)             number = n

A job that is one of several photos of an order (number > 0) is quiet where the order speaks once for all
(core.burst): no quote, refusal or unreadable-photo reply, no "paid", no operation-changed reply; its result is
sent numbered ("第2张做好了") with no e-mail question, and its mails are the order's. Analyzed(quote=False) keeps
a lone photo's quote back too (a payment waits for it).

An e-mail in any state before the result (quoting … revision) is remembered (R(noted) except in quoting, and
unless the rest of the message asks something: that rest is then handled as if sent alone) and mailed with the
result. Small talk (好的, 嗯, emoji …) does nothing in any state. In paid, processing,
revision and the unpaid states, aspect-ratio and perspective words also set those fields.
MailSent / MailFailed for a seq the job never issued (outside 1..mails) is illegal everywhere.
A step bumps `version` by 1 unless it is a no-op (no effects, no moves, job unchanged).

A hand-off is the Dispatch actor's work (HandOff): it creates one designer task, assigns it and tells staff; its
outcome comes back as HandOffQueued / HandOffAssigned, which tell the customer once. Hand-offs and look-ups tied to
no job (payment without a photo, "转人工" with no job, find-image) are loose effects; loose_outcome() answers theirs.

core.burst routes one customer's messages, and executors' outcomes, to these events and speaks for orders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from core import pricing, replies, words
from protocol.image import TERMINAL_JOB_STATES, Analysis, ChangeType, Complexity, JobState, Operation, RiskVerdict

_S = JobState

MOVES: dict[JobState, frozenset[JobState]] = {
    _S.QUOTING: frozenset({_S.PENDING, _S.FAILED, _S.CANCELLED, _S.TRANSFERRED}),
    _S.PENDING: frozenset({_S.PAID, _S.CANCELLED, _S.TRANSFERRED}),
    _S.PAID: frozenset({_S.PROCESSING, _S.CANCELLED, _S.TRANSFERRED}),
    _S.PROCESSING: frozenset({_S.AWAITING_CONFIRM, _S.FAILED, _S.CANCELLED, _S.TRANSFERRED}),
    _S.AWAITING_CONFIRM: frozenset({_S.COMPLETED, _S.REVISION, _S.CANCELLED, _S.TRANSFERRED}),
    _S.REVISION: frozenset({_S.PROCESSING, _S.CANCELLED, _S.TRANSFERRED}),
    _S.COMPLETED: frozenset({_S.REVISION}),
    _S.FAILED: frozenset(),
    _S.TRANSFERRED: frozenset({_S.COMPLETED}),
    _S.CANCELLED: frozenset(),
}
ENDED: frozenset[JobState] = frozenset({_S.FAILED, _S.TRANSFERRED, _S.CANCELLED})  # nothing the customer says reaches
UNPAID: frozenset[JobState] = frozenset({_S.QUOTING, _S.PENDING})
BEFORE_RESULT: frozenset[JobState] = frozenset({_S.QUOTING, _S.PENDING, _S.PAID, _S.PROCESSING, _S.REVISION})


class IllegalJobEvent(Exception):
    """An event arrived in a state where the table does not allow it."""

    def __init__(self, job_id: str, state: JobState, event_name: str) -> None:
        super().__init__(f"job {job_id} in state {state.value!r} cannot take {event_name}")
        self.job_id, self.state, self.event_name = job_id, state, event_name


# -- the job -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One photo's job: what was asked, quoted and paid, how far rendering and delivery got."""

    job_id: str
    customer_id: str
    state: JobState = _S.QUOTING
    operation: Operation = Operation.ENHANCE
    operation_explicit: bool = False  # the customer named it (rather than the default)
    source_url: str = ""
    price: int | None = None
    complexity: Complexity | None = None
    has_text: bool = False
    notes: tuple[str, ...] = ()  # add_note before payment, add_requirement after
    revision_notes: tuple[str, ...] = ()
    aspect_ratio: str = ""  # the shape the customer asked for ("16:9"); empty: the photo's own
    perspective_fix: bool = False
    paid: bool = False
    order_id: str = ""
    renders: int = 0  # render requests issued so far
    result_url: str | None = None
    preview_url: str | None = None
    email: str | None = None
    mails: int = 0  # mail requests issued so far
    version: int = 0
    manual: bool = False  # paid while the image module was paused: staff render it, never the machine
    risk: str = ""  # risk verdict of the analysis: accept | human | decline ("" before it)
    risk_reason: str = ""
    handoff_rule: str = ""  # why a person has it: render_failed, qa_failed, risk_human, customer_asked, …
    handoff_reason: str = ""
    handoff_status: str = ""  # "" | asked | queued | assigned | done
    designer: str = ""
    done_by: str = ""  # "staff" when a designer completed it
    order_key: str = ""  # the order it belongs to (core.order); "" for a job from before orders
    number: int = 0  # its number in an order of several (1, 2, …); 0 when it is the order's only photo

    @classmethod
    def new(cls, job_id: str, customer_id: str, url: str) -> Job:
        """A job for a photo just received, before any step (version 0)."""
        return cls(job_id=job_id, customer_id=customer_id, source_url=url)


def render_id(job: Job) -> str:
    """Id of the job's latest render request (stable: the renderer's idempotency key)."""
    return f"{job.job_id}-r{job.renders}"


# -- events ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhotoReceived:
    """A customer photo: only ever starts a job (start_job)."""

    name: ClassVar[str] = "photo_received"
    url: str


@dataclass(frozen=True)
class Analyzed:
    """The photo's analysis is in."""

    name: ClassVar[str] = "analyzed"
    analysis: Analysis
    quote: bool = True  # say the quote; False when the order speaks for it (several photos, a payment waiting)


@dataclass(frozen=True)
class AnalysisFailed:
    """The photo could not be read; reason: not_image, too_large, download_failed, blocked_url, bomb, timeout."""

    name: ClassVar[str] = "analysis_failed"
    reason: str


@dataclass(frozen=True)
class CustomerText:
    """Something the customer wrote that reached this job."""

    name: ClassVar[str] = "customer_text"
    text: str


@dataclass(frozen=True)
class PhotoAsNote:
    """A photo sent while a revision is asked for: it shows what to change."""

    name: ClassVar[str] = "photo_as_note"
    url: str


@dataclass(frozen=True)
class PaymentReceived:
    """A payment notice for this job; image_enabled is IMAGE_MODULE_ENABLED at that moment."""

    name: ClassVar[str] = "payment_received"
    order_id: str
    amount: float
    image_enabled: bool = True


@dataclass(frozen=True)
class RenderDone:
    """The renderer finished a render request (QA included)."""

    name: ClassVar[str] = "render_done"
    render_id: str
    result_url: str
    preview_url: str
    score: int
    qa_passed: bool


@dataclass(frozen=True)
class RenderFailed:
    """The renderer gave up on a render request; kind: safety | exhausted | error."""

    name: ClassVar[str] = "render_failed"
    render_id: str
    reason: str
    kind: str


@dataclass(frozen=True)
class MailSent:
    """Mail number seq went out."""

    name: ClassVar[str] = "mail_sent"
    seq: int


@dataclass(frozen=True)
class MailFailed:
    """Mail number seq could not be delivered."""

    name: ClassVar[str] = "mail_failed"
    seq: int
    error: str = ""


@dataclass(frozen=True)
class Superseded:
    """A new photo arrived while this one was unpaid: the new one replaces it."""

    name: ClassVar[str] = "superseded"


@dataclass(frozen=True)
class Cancel:
    """Cancel the job (by customer or staff)."""

    name: ClassVar[str] = "cancel"
    reason: str = ""
    by: str = "staff"


@dataclass(frozen=True)
class Transfer:
    """Hand the job to a human designer; rule names why (customer_asked, operator from the console, staff, …),
    reason says it for staff."""

    name: ClassVar[str] = "transfer"
    rule: str = "staff"
    reason: str = ""


@dataclass(frozen=True)
class Numbered:
    """The job's order now holds several photos: this one is number `number`."""

    name: ClassVar[str] = "numbered"
    number: int


@dataclass(frozen=True)
class Revise:
    """The customer named this photo's result as wrong ("第二张颜色不对"): note is what to change, or "" to ask."""

    name: ClassVar[str] = "revise"
    note: str = ""


@dataclass(frozen=True)
class OrderMailed:
    """The order's mail carrying this job's result went out."""

    name: ClassVar[str] = "order_mailed"


@dataclass(frozen=True)
class HandOffQueued:
    """No designer was online: the dispatch task waits in the queue."""

    name: ClassVar[str] = "handoff_queued"


@dataclass(frozen=True)
class HandOffAssigned:
    """The dispatch task was assigned to a designer."""

    name: ClassVar[str] = "handoff_assigned"
    designer: str
    task_id: str = ""


@dataclass(frozen=True)
class HandOffCompleted:
    """The designer completed the dispatch task."""

    name: ClassVar[str] = "handoff_completed"
    notes: str = ""


Event = (
    PhotoReceived | Analyzed | AnalysisFailed | CustomerText | PhotoAsNote | PaymentReceived | RenderDone
    | RenderFailed | MailSent | MailFailed | Superseded | Cancel | Transfer | HandOffQueued | HandOffAssigned
    | HandOffCompleted | Numbered | Revise | OrderMailed
)


# -- effects -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """Text to the customer."""

    kind: ClassVar[str] = "reply"
    text: str


@dataclass(frozen=True)
class SendImage:
    """An image (URL) to the customer."""

    kind: ClassVar[str] = "send_image"
    url: str


@dataclass(frozen=True)
class Analyze:
    """Download and analyse the photo."""

    kind: ClassVar[str] = "analyze"
    url: str


@dataclass(frozen=True)
class Render:
    """Render the job; render_id is the idempotency key."""

    kind: ClassVar[str] = "render"
    render_id: str
    operation: Operation
    notes: tuple[str, ...]
    revision_notes: tuple[str, ...]
    aspect_ratio: str
    perspective_fix: bool


@dataclass(frozen=True)
class Mail:
    """Mail the result to `to`; seq numbers the job's mails from 1."""

    kind: ClassVar[str] = "mail"
    seq: int
    to: str


@dataclass(frozen=True)
class NotifyStaff:
    """Tell the shop's people something they must act on (text names customer, job and what to do)."""

    kind: ClassVar[str] = "notify_staff"
    event: str
    text: str


@dataclass(frozen=True)
class RecordChange:
    """A row of task_requirement_changes."""

    kind: ClassVar[str] = "record_change"
    type: ChangeType
    old: str | None
    new: str | None
    by: str
    accepted: bool


@dataclass(frozen=True)
class HandOff:
    """Give the work to a human designer (SPEC §3 workflow 3); rule is a code, reason says it for staff."""

    kind: ClassVar[str] = "handoff"
    rule: str
    reason: str


@dataclass(frozen=True)
class FindImage:
    """Look an image up in the shop's archive and assets (SPEC §3 workflow 1), by a reference photo or a past job."""

    kind: ClassVar[str] = "find_image"
    reference_url: str | None
    job_id: str | None


@dataclass(frozen=True)
class SendFile:
    """A file (URL) to the customer."""

    kind: ClassVar[str] = "send_file"
    url: str


Effect = Reply | SendImage | SendFile | Analyze | Render | Mail | NotifyStaff | RecordChange | HandOff | FindImage


@dataclass(frozen=True)
class Move:
    """One state change, for the job's history."""

    from_state: JobState | None
    to_state: JobState
    event: str
    at: float


@dataclass(frozen=True)
class Step:
    """What one event did: the job's new form, the effects to perform, the moves made."""

    job: Job
    effects: tuple[Effect, ...] = ()
    moves: tuple[Move, ...] = ()


# -- stepping ----------------------------------------------------------------------------------------
class _Draft:
    """The job being changed by one event: field changes, effects and moves, folded into a Step at the end."""

    def __init__(self, job: Job, event: Event, now: float) -> None:
        self.job, self.event, self.now = job, event, now
        self.changes: dict[str, Any] = {}
        self.effects: list[Effect] = []
        self.moves: list[Move] = []

    def get(self, name: str) -> Any:
        return self.changes.get(name, getattr(self.job, name))

    def set(self, **changes: Any) -> None:
        self.changes.update(changes)

    def move(self, to: JobState) -> None:
        current = self.get("state")
        if to not in MOVES[current]:
            raise IllegalJobEvent(self.job.job_id, current, self.event.name)
        self.moves.append(Move(current, to, self.event.name, self.now))
        self.set(state=to)

    def emit(self, *effects: Effect) -> None:
        self.effects.extend(effects)

    def say(self, text: str) -> None:
        self.emit(Reply(text))

    def illegal(self) -> IllegalJobEvent:
        return IllegalJobEvent(self.job.job_id, self.job.state, self.event.name)

    def step(self) -> Step:
        job = replace(self.job, **self.changes)
        if job == self.job and not self.effects and not self.moves:
            return Step(self.job)
        return Step(replace(job, version=self.job.version + 1), tuple(self.effects), tuple(self.moves))


def start_job(job_id: str, customer_id: str, url: str, now: float) -> Step:
    """A new job for a customer's photo: quoting, with the photo's analysis requested."""
    job = replace(Job.new(job_id, customer_id, url), version=1)
    return Step(job, (Analyze(url),), (Move(None, _S.QUOTING, PhotoReceived.name, now),))


def step(job: Job, event: Event, now: float) -> Step:
    """Apply one event to a job; IllegalJobEvent when the table has no row for (job.state, event)."""
    draft = _Draft(job, event, now)
    _HANDLERS[type(event)](draft, event)
    return draft.step()


def _alone(d: _Draft) -> bool:
    """Whether the job speaks for itself: the only photo of its order (an order of several speaks once for all)."""
    return d.job.number == 0


def _staff(d: _Draft, event: str, what: str) -> None:
    d.emit(NotifyStaff(event, f"客户 {d.job.customer_id} 的图片单 {d.job.job_id}:{what}"))


def _start_render(d: _Draft) -> None:
    renders = d.get("renders") + 1
    d.set(renders=renders)
    d.move(_S.PROCESSING)
    d.emit(Render(render_id=f"{d.job.job_id}-r{renders}", operation=d.get("operation"), notes=d.get("notes"),
                  revision_notes=d.get("revision_notes"), aspect_ratio=d.get("aspect_ratio"),
                  perspective_fix=d.get("perspective_fix")))


def _mail(d: _Draft, to: str) -> None:
    seq = d.get("mails") + 1
    d.set(email=to, mails=seq)
    d.emit(Mail(seq=seq, to=to))


def _photo_received(d: _Draft, e: PhotoReceived) -> None:
    raise d.illegal()  # a photo starts a job (start_job); it is never an event of one


def _hand_off(d: _Draft, rule: str, reason: str) -> None:
    d.move(_S.TRANSFERRED)
    d.set(handoff_rule=rule, handoff_reason=reason, handoff_status="asked")
    d.emit(HandOff(rule, reason))


def _analyzed(d: _Draft, e: Analyzed) -> None:
    a = e.analysis
    if d.job.state in ENDED:
        if d.job.state is _S.TRANSFERRED:  # handed over while quoting: the designer still sees the measures
            d.set(price=pricing.quote(a), complexity=a.complexity, has_text=a.has_text, risk=a.risk.value,
                  risk_reason=a.risk_reason)
        return
    if d.job.state is not _S.QUOTING:
        raise d.illegal()
    d.set(risk=a.risk.value, risk_reason=a.risk_reason)
    if a.risk is RiskVerdict.DECLINE and not d.job.paid:
        d.move(_S.CANCELLED)
        if _alone(d):
            d.say(replies.risk_declined(a.risk_rule))
        return
    if a.risk is not RiskVerdict.ACCEPT:  # a person decides (and refunds, when a declined photo was paid for)
        _hand_off(d, "risk_" + a.risk.value, f"风险评估:{a.risk_reason}")
        return
    price = pricing.quote(a)
    d.set(price=price, complexity=a.complexity, has_text=a.has_text)
    d.move(_S.PENDING)
    if not d.job.paid:
        if e.quote and _alone(d):
            d.say(replies.quote(d.job.operation, price, e.analysis.has_text))
        return
    d.move(_S.PAID)
    if not d.job.manual:
        if _alone(d):
            d.say(replies.PAID)
        _start_render(d)


def _analysis_failed(d: _Draft, e: AnalysisFailed) -> None:
    if d.job.state in ENDED:
        return
    if d.job.state is not _S.QUOTING:
        raise d.illegal()
    if d.job.paid:
        _hand_off(d, "analysis_failed", f"已付款(订单 {d.job.order_id}),但图片读不了({e.reason}),请联系客户要图或退款")
        return
    d.move(_S.FAILED)
    if _alone(d):
        d.say(replies.photo_unreadable(e.reason))


def _layout(d: _Draft, text: str) -> None:
    ratio = words.aspect_ratio(text)
    if ratio is not None:
        d.set(aspect_ratio=ratio)
    if words.wants_perspective_fix(text):
        d.set(perspective_fix=True)


def _revision_note(d: _Draft, note: str) -> None:
    _layout(d, note)
    d.set(revision_notes=(*d.job.revision_notes, note))
    d.emit(RecordChange(ChangeType.ADD_REQUIREMENT, None, note, "customer", True))
    d.say(replies.REDO)
    _start_render(d)


def _revise(d: _Draft, e: Revise) -> None:
    if d.job.done_by == "staff":
        return  # a designer delivered this job; the designer answers
    if d.job.state is _S.REVISION and e.note:
        _revision_note(d, e.note)
        return
    if d.job.state not in (_S.AWAITING_CONFIRM, _S.COMPLETED):
        raise d.illegal()
    d.move(_S.REVISION)
    if e.note:
        _revision_note(d, e.note)
    else:
        d.say(replies.ASK_REVISION)


def _numbered(d: _Draft, e: Numbered) -> None:
    if e.number < 1:
        raise d.illegal()
    d.set(number=e.number)


def _order_mailed(d: _Draft, e: OrderMailed) -> None:
    if d.job.state is _S.AWAITING_CONFIRM:
        d.move(_S.COMPLETED)
    elif d.job.state not in (_S.COMPLETED, _S.PROCESSING, _S.REVISION, _S.TRANSFERRED):
        raise d.illegal()


def _customer_text(d: _Draft, e: CustomerText) -> None:
    state, text = d.job.state, e.text
    if state in ENDED:
        raise d.illegal()
    if d.job.done_by == "staff":
        return  # a designer delivered this job; what the customer says about it is theirs to answer
    email = words.find_email(text)
    if state in (_S.AWAITING_CONFIRM, _S.COMPLETED):
        if email is not None:
            _mail(d, email)
        elif words.is_revision(text):
            d.move(_S.REVISION)
            d.say(replies.ASK_REVISION)
        elif (state is _S.AWAITING_CONFIRM and not words.is_smalltalk(text)
              and not _refuse_operation(d, words.detect_operation(text))):
            d.say(replies.REMIND_EMAIL)
        return
    if email is not None:
        d.set(email=email)
        text = words.without_email(text)  # "改尺寸 800x600 邮箱 a@b.com": the rest still counts
        if not text or words.is_smalltalk(text):
            if state is not _S.QUOTING:  # in quoting the quote answers shortly
                d.say(replies.EMAIL_NOTED)
            return
    if words.is_smalltalk(text):
        return
    if state is _S.REVISION:
        _revision_note(d, text)
        return
    _layout(d, text)
    wanted = words.detect_operation(text)
    if not d.job.paid:
        _unpaid_text(d, text, wanted)
        return
    if _refuse_operation(d, wanted):
        return
    d.set(notes=(*d.job.notes, text))
    d.emit(RecordChange(ChangeType.ADD_REQUIREMENT, None, text, "customer", True))
    d.say(replies.REQUIREMENT_TAKEN)


def _refuse_operation(d: _Draft, wanted: Operation | None) -> bool:
    """After payment the operation is fixed: record and politely refuse a different one; False if none was asked."""
    if wanted is None or wanted is d.job.operation:
        return False
    d.emit(RecordChange(ChangeType.MODIFY_OPERATION, d.job.operation.value, wanted.value, "customer", False))
    d.say(replies.operation_refused(d.job.operation))
    return True


def _unpaid_text(d: _Draft, text: str, wanted: Operation | None) -> None:
    pending = d.job.state is _S.PENDING
    # The words are kept as a note even when they change the operation: "改一下尺寸 800x600" names the size too.
    d.set(notes=(*d.job.notes, text))
    d.emit(RecordChange(ChangeType.ADD_NOTE, None, text, "customer", True))
    if wanted is not None and wanted is not d.job.operation:
        d.emit(RecordChange(ChangeType.MODIFY_OPERATION, d.job.operation.value, wanted.value, "customer", True))
        d.set(operation=wanted, operation_explicit=True)
        if pending and _alone(d):
            d.say(replies.operation_changed(wanted, d.job.price))
        return
    if wanted is not None:
        d.set(operation_explicit=True)
    if pending:
        d.say(replies.NOTE_TAKEN)


def _photo_as_note(d: _Draft, e: PhotoAsNote) -> None:
    if d.job.state is not _S.REVISION:
        raise d.illegal()
    _revision_note(d, f"参考图: {e.url}")


def _payment(d: _Draft, e: PaymentReceived) -> None:
    if d.job.paid:
        return  # a repeated notice
    if d.job.state not in UNPAID:
        raise d.illegal()
    d.set(paid=True, order_id=e.order_id)
    if not e.image_enabled:
        d.set(manual=True)
        if d.job.state is _S.PENDING:
            d.move(_S.PAID)
        _hand_off(d, "payment_manual", f"已付款(订单 {e.order_id},{e.amount:g}元),自动处理已暂停,请设计师处理")
    elif d.job.state is _S.QUOTING:
        if _alone(d):
            d.say(replies.PAID_WHILE_QUOTING)
    else:
        d.move(_S.PAID)
        if _alone(d):
            d.say(replies.PAID)
        _start_render(d)


def _render_done(d: _Draft, e: RenderDone) -> None:
    if e.render_id != render_id(d.job):
        return  # stale: a render this job no longer waits for
    if d.job.state is not _S.PROCESSING:
        raise d.illegal()
    d.set(result_url=e.result_url, preview_url=e.preview_url)
    if not e.qa_passed:  # SPEC §2: the best of the last attempts still goes out, and staff check it
        _staff(d, "qa_failed", f"结果质检没过(最好一次得分 {e.score}),已发给客户,请检查效果,需要时跟进或重做")
    d.move(_S.AWAITING_CONFIRM)
    if not _alone(d):  # numbered; the order asks for the e-mail once every result is out
        d.say(replies.result_numbered(d.job.number))
        d.emit(SendImage(e.preview_url))
        return
    d.emit(SendImage(e.preview_url))
    if d.job.email is not None:
        d.say(replies.RESULT_AND_MAILING)
        _mail(d, d.job.email)
    else:
        d.say(replies.ASK_EMAIL)


def _render_failed(d: _Draft, e: RenderFailed) -> None:
    if e.render_id != render_id(d.job):
        return  # stale
    if d.job.state is not _S.PROCESSING:
        raise d.illegal()
    rule = "safety_blocked" if e.kind == "safety" else "render_failed"
    _hand_off(d, rule, f"自动处理失败({e.kind}: {e.reason}),请设计师手工处理")


def _check_seq(d: _Draft, seq: int) -> None:
    if not 1 <= seq <= d.job.mails:
        raise d.illegal()  # a mail this job never asked for


def _mail_sent(d: _Draft, e: MailSent) -> None:
    _check_seq(d, e.seq)
    if d.job.state is _S.AWAITING_CONFIRM:
        d.move(_S.COMPLETED)
        d.say(replies.MAILED)
    elif d.job.state is _S.COMPLETED:
        d.say(replies.MAILED)
    elif d.job.state not in (_S.PROCESSING, _S.REVISION):
        raise d.illegal()


def _mail_failed(d: _Draft, e: MailFailed) -> None:
    _check_seq(d, e.seq)
    if e.seq < d.job.mails:
        return  # stale: the customer gave another address since
    if d.job.state not in (_S.AWAITING_CONFIRM, _S.COMPLETED, _S.PROCESSING, _S.REVISION):
        raise d.illegal()
    address = d.job.email
    d.set(email=None)
    d.say(replies.MAIL_FAILED)
    _staff(d, "mail_failed", f"结果邮件发不出去(邮箱 {address}: {e.error}),请确认客户邮箱")


def _superseded(d: _Draft, e: Superseded) -> None:
    if d.job.state not in UNPAID or d.job.paid:
        raise d.illegal()
    d.move(_S.CANCELLED)
    d.say(replies.NEW_PHOTO_REPLACES)


def _cancel(d: _Draft, e: Cancel) -> None:
    if d.job.state in TERMINAL_JOB_STATES:
        raise d.illegal()
    d.move(_S.CANCELLED)


def _transfer(d: _Draft, e: Transfer) -> None:
    if d.job.state in TERMINAL_JOB_STATES:
        raise d.illegal()
    _hand_off(d, e.rule, e.reason)


def _handoff_queued(d: _Draft, e: HandOffQueued) -> None:
    if d.job.state is not _S.TRANSFERRED:
        raise d.illegal()
    if d.job.handoff_status == "asked":
        d.set(handoff_status="queued")
        d.say(replies.HANDOFF_QUEUED)


def _handoff_assigned(d: _Draft, e: HandOffAssigned) -> None:
    if d.job.state is not _S.TRANSFERRED:
        raise d.illegal()
    if d.job.handoff_status not in ("asked", "queued"):
        return  # a repeated outcome
    if d.job.handoff_status == "asked":  # a customer told "queued" is not told again
        d.say(replies.HANDED_OFF)
    d.set(handoff_status="assigned", designer=e.designer)


def _handoff_completed(d: _Draft, e: HandOffCompleted) -> None:
    if d.job.state is _S.COMPLETED and d.job.done_by == "staff":
        return  # a repeated outcome
    if d.job.state is not _S.TRANSFERRED:
        raise d.illegal()
    d.move(_S.COMPLETED)
    d.set(handoff_status="done", done_by="staff")


_HANDLERS: dict[type, Callable[[_Draft, Any], None]] = {
    PhotoReceived: _photo_received,
    Analyzed: _analyzed,
    AnalysisFailed: _analysis_failed,
    CustomerText: _customer_text,
    PhotoAsNote: _photo_as_note,
    PaymentReceived: _payment,
    RenderDone: _render_done,
    RenderFailed: _render_failed,
    MailSent: _mail_sent,
    MailFailed: _mail_failed,
    Superseded: _superseded,
    Cancel: _cancel,
    Transfer: _transfer,
    HandOffQueued: _handoff_queued,
    HandOffAssigned: _handoff_assigned,
    HandOffCompleted: _handoff_completed,
    Numbered: _numbered,
    Revise: _revise,
    OrderMailed: _order_mailed,
}


# -- outcomes tied to no job ------------------------------------------------------------------------
def loose_outcome(kind: str, payload: dict[str, Any]) -> tuple[Effect, ...]:
    """What an executor's outcome tied to no job means for the customer (hand-offs and image look-ups)."""
    if kind == "handoff_queued":
        return (Reply(replies.HANDOFF_QUEUED),)
    if kind == "handoff_assigned":
        return () if payload.get("after_queue") else (Reply(replies.HANDED_OFF),)
    if kind == "find_done":
        url = str(payload["url"])
        sent: Effect = SendImage(url) if payload.get("is_image", True) else SendFile(url)
        return (sent, Reply(replies.FOUND_IMAGE))
    if kind == "find_none":
        return (HandOff("find_image", f"客户要找图,档案和素材里没找到({payload.get('looked_for', '')})"),)
    return ()
