"""A customer's burst of messages, and an executor's outcome, applied to their jobs and orders (SPEC §2).

Pure: no I/O, no clock. The job machine (core.image_job) tells one photo's story; here the photos a customer
sends together become one order (core.order) that is quoted once, paid by amount, numbered, mailed in one
message, and revised photo by photo. An order of one photo reads exactly as the job machine says it.

  photos of a burst          → one order; joined to the customer's unpaid order before it ("还有这张"), unless
                               the words replace it ("换这张": the unpaid photos are superseded)
  every photo analysed       → one quote: a line per photo by number, then the total (several photos)
  a payment (order id, amount): a repeated order id does nothing; no amount named pays the order; the total
                               (with what was paid before) pays every photo, more also tells staff and the
                               customer of the refund; exactly one photo's price pays that photo; less starts
                               nothing: the customer hears the difference, staff are told; while a photo is
                               still being looked at the payment waits, and counts when the quote is out
  "第一张抠图,第二张变清晰"  → each photo its own words; "第二张不要了" takes it out before payment (re-quoted)
  a result                   → numbered; once none is still being made: mailed together when the e-mail is
                               known, else the e-mail asked for once
  an e-mail address          → every finished result of the order in one mail (split by the mailer above the
                               server's size limit); the customer is told once when it went out
  "第二张颜色不对"           → that photo re-rendered with the words as its note; "不满意" with several results
                               asks which one, and the next answer ("第二张", "都不行") decides
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from core import image_job as jm
from core import replies, words
from core.image_job import ENDED, UNPAID, Job, Step
from core.order import MailOrder, Order, cents, key_of, match_one, order_key_for, quote_text, unpaid, yuan
from protocol.image import TERMINAL_JOB_STATES, JobState

_S = JobState
_RESULT_STATES = frozenset({_S.AWAITING_CONFIRM, _S.COMPLETED})
_BEING_MADE = frozenset({_S.PAID, _S.PROCESSING, _S.REVISION})

Effect = jm.Effect | MailOrder


# -- inputs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextIn:
    """A text message."""

    msg_id: str
    text: str


@dataclass(frozen=True)
class PhotoIn:
    """A photo (its URL)."""

    msg_id: str
    url: str


@dataclass(frozen=True)
class PaymentIn:
    """A payment notice: the shop's order id and the amount paid (0: the notice named none)."""

    msg_id: str
    order_id: str
    amount: float


@dataclass(frozen=True)
class OrderIn:
    """An order notice (recorded by the caller; no job effect)."""

    msg_id: str
    order_id: str
    amount: float


Input = TextIn | PhotoIn | PaymentIn | OrderIn


@dataclass(frozen=True)
class BurstResult:
    """The steps made, in order (a job may appear several times: its last step holds its final form), effects
    tied to no single job (the order's own words and mails), and each order changed, in its final form."""

    steps: list[Step] = field(default_factory=list)
    loose_effects: tuple[Effect, ...] = ()
    orders: list[Order] = field(default_factory=list)


def jobs_after(result: BurstResult) -> dict[str, Job]:
    """Each job the burst touched, in its final form."""
    return {s.job.job_id: s.job for s in result.steps}


# -- the draft of one decision -----------------------------------------------------------------------
class _Work:
    """Jobs and orders as one decision changes them, with the steps made and the order-level effects."""

    def __init__(self, jobs: Iterable[Job], orders: Iterable[Order], now: float, image_enabled: bool) -> None:
        self.jobs: dict[str, Job] = {j.job_id: j for j in jobs}
        self.orders: dict[str, Order] = {o.order_key: o for o in orders}
        self.now, self.image_enabled = now, image_enabled
        self.changed: list[str] = []
        self.steps: list[Step] = []
        self.loose: list[Effect] = []
        self.touched: list[str] = []  # orders to settle (quote, mail) at the end
        self.results: set[str] = set()  # orders where a photo's making ended this decision

    def apply(self, job_id: str, event: jm.Event) -> Step:
        job = self.jobs[job_id]
        result = jm.step(job, event, self.now)
        if result.effects or result.moves or result.job != job:
            self.steps.append(result)
            self.jobs[job_id] = result.job
        return result

    def order(self, job: Job) -> Order:
        key = key_of(job)
        if key not in self.orders:  # a job from before orders is an order of its own
            self.orders[key] = Order(key, job.customer_id, (job.job_id,))
        return self.orders[key]

    def update(self, order: Order, **changes: Any) -> Order:
        new = replace(order, **changes)
        self.orders[order.order_key] = new
        if order.order_key not in self.changed:
            self.changed.append(order.order_key)
        self.touch(order.order_key)
        return new

    def touch(self, key: str) -> None:
        if key not in self.touched:
            self.touched.append(key)

    def say(self, text: str) -> None:
        self.loose.append(jm.Reply(text))

    def staff(self, order: Order, event: str, what: str) -> None:
        self.loose.append(jm.NotifyStaff(event, f"客户 {order.customer_id} 的订单 {order.order_key}:{what}"))

    def live(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state not in TERMINAL_JOB_STATES]

    def members(self, order: Order) -> list[Job]:
        return [self.jobs[j] for j in order.job_ids if j in self.jobs]

    def result(self) -> BurstResult:
        for key in self.touched:
            _settle(self, key)
        orders = [replace(self.orders[k], version=self.orders[k].version + 1) for k in self.changed]
        steps, loose = _said_once(self.steps, self.loose)
        return BurstResult(steps=steps, loose_effects=tuple(loose), orders=orders)


def _said_once(steps: list[Step], loose: list[Effect]) -> tuple[list[Step], list[Effect]]:
    """One decision says a phrase once: photos of one order taking the same words answer together."""
    seen: set[str] = set()

    def keep(effect: Effect) -> bool:
        if not isinstance(effect, jm.Reply):
            return True
        if effect.text in seen:
            return False
        seen.add(effect.text)
        return True

    kept = [replace(s, effects=tuple(e for e in s.effects if keep(e))) for s in steps]
    return kept, [e for e in loose if keep(e)]


# -- the order's own moves ---------------------------------------------------------------------------
def _settle(w: _Work, key: str) -> None:
    """Once no photo is being looked at: quote the order (several photos) and spend a payment that waited; once
    none is being made: mail what is finished, or ask where to."""
    order = w.orders[key]
    members = w.members(order)
    if not order.quoted and members and not any(j.state is _S.QUOTING for j in members):
        if order.several:
            w.say(quote_text(order, w.jobs))
        order = w.update(order, quoted=True)
        if order.credit_cents > 0:
            _spend(w, order, 0, "", fresh=False)
    if order.several and key in w.results:
        _deliver(w, w.orders[key])


def _deliver(w: _Work, order: Order) -> None:
    members = w.members(order)
    if any(j.paid and j.state in _BEING_MADE for j in members):
        return  # one message when they are all done
    ready = _ready(order, members)
    if ready and order.email:
        _mail(w, order, ready)
        w.say(replies.RESULT_AND_MAILING)
    elif ready:
        w.say(replies.ASK_EMAIL)


def _ready(order: Order, members: list[Job]) -> list[Job]:
    return [j for j in members if j.state in _RESULT_STATES and j.done_by != "staff"
            and jm.render_id(j) not in order.mailed]


def _mail(w: _Work, order: Order, ready: list[Job]) -> None:
    assert order.email is not None
    seq = order.mails + 1
    w.update(order, mails=seq, mailed=(*order.mailed, *(jm.render_id(j) for j in ready)))
    w.loose.append(MailOrder(order.order_key, seq, order.email, tuple((j.job_id, j.number) for j in ready)))


def _pay(w: _Work, order: Order, paying: list[Job], payment_id: str, amount_cents: int, every: bool) -> None:
    for job in paying:
        w.apply(job.job_id, jm.PaymentReceived(payment_id, job.price or 0, w.image_enabled))
    if order.several and w.image_enabled:
        w.say(replies.order_paid(yuan(amount_cents), [order.job_ids.index(j.job_id) + 1 for j in paying], every))


def _spend(w: _Work, order: Order, amount_cents: int, payment_id: str, fresh: bool) -> None:
    """Spend the order's credit (this payment included) on its unpaid photos, by SPEC's rules."""
    waiting = unpaid(order, w.jobs)
    if any(j.state is _S.QUOTING for j in waiting):
        if fresh:
            w.say(replies.PAID_WHILE_QUOTING)  # counted when the quote is out
        return
    if not waiting:
        if order.credit_cents:  # the photos it paid for were declined or dropped meanwhile
            extra = order.credit_cents
            w.update(order, credit_cents=0, overpaid_cents=order.overpaid_cents + extra)
            w.say(replies.overpaid(yuan(extra)))
            w.staff(order, "overpaid", f"客户付了{yuan(extra)}元,但没有要做的图了,请退款")
        return
    owed = sum(cents(j.price or 0) for j in waiting)
    shown = amount_cents or order.credit_cents
    if fresh and amount_cents <= 0:  # the notice named no amount: it is the order's payment
        w.update(order, credit_cents=0)
        _pay(w, order, waiting, payment_id, owed, every=True)
    elif order.credit_cents >= owed:
        extra = order.credit_cents - owed
        w.update(order, credit_cents=0, overpaid_cents=order.overpaid_cents + extra)
        _pay(w, order, waiting, payment_id, shown, every=True)
        if extra:
            w.say(replies.overpaid(yuan(extra)))
            w.staff(order, "overpaid", f"多付了{yuan(extra)}元(应付{yuan(owed)}元),请退款")
    elif fresh and order.several and (one := match_one(waiting, amount_cents)) is not None:
        w.update(order, credit_cents=order.credit_cents - amount_cents)
        _pay(w, order, [one], payment_id, amount_cents, every=False)
    else:
        missing = yuan(owed - order.credit_cents)
        if not fresh and not order.several:  # paid while quoting, short: the quote was held back
            job = waiting[0]
            w.say(replies.quote(job.operation, job.price or 0, job.has_text))
        w.say(replies.short_of(yuan(shown), missing))
        w.staff(order, "underpaid", f"付款 {payment_id or '之前的'} {yuan(shown)}元,还差{missing}元,未开始处理")


def _take_payment(w: _Work, item: PaymentIn) -> bool:
    """A payment to the order it names (a repeat: nothing), else to the newest order with unpaid photos;
    False when there is none."""
    if item.order_id and (any(item.order_id in o.payments for o in w.orders.values())
                          or any(j.paid and j.order_id == item.order_id for j in w.live())):  # or before orders
        return True
    unpaid_job = next((j for j in reversed(w.live()) if j.state in UNPAID and not j.paid), None)
    if unpaid_job is None:
        return False
    order = w.order(unpaid_job)
    amount = max(0, cents(item.amount))
    order = w.update(order, payments=(*order.payments, item.order_id) if item.order_id else order.payments,
                     received_cents=order.received_cents + amount, credit_cents=order.credit_cents + amount)
    _spend(w, order, amount, item.order_id, fresh=True)
    return True


# -- photos ------------------------------------------------------------------------------------------
def _open_order(w: _Work) -> Order | None:
    """The unpaid order a new photo joins: the newest live job's, while nothing of it is paid."""
    live = w.live()
    if not live:
        return None
    order = w.order(live[-1])
    members = [j for j in w.members(order) if j.state not in TERMINAL_JOB_STATES]
    if order.received_cents or any(j.paid or j.state not in UNPAID for j in members):
        return None
    return order


def _add_photo(w: _Work, order: Order | None, job_id: str, url: str, customer_id: str) -> Order:
    order = order or Order(order_key_for(job_id), customer_id)
    ids = (*order.job_ids, job_id)
    begun = jm.start_job(job_id, customer_id, url, w.now)
    job = replace(begun.job, order_key=order.order_key, number=len(ids) if len(ids) > 1 else 0)
    w.steps.append(Step(job, begun.effects, begun.moves))
    w.jobs[job_id] = job
    order = w.update(order, job_ids=ids, quoted=False)
    if len(ids) == 2 and ids[0] in w.jobs:
        w.apply(ids[0], jm.Numbered(1))
    return order


# -- words to an order of several ----------------------------------------------------------------------
def _order_words(w: _Work, order: Order, text: str) -> None:
    """What the customer wrote, for an order of several photos: an e-mail for all, words photo by photo."""
    address = words.find_email(text)
    if address is not None:
        order = w.update(order, email=address)
        ready = _ready(order, w.members(order))
        if ready:
            _mail(w, order, ready)
        elif not any(j.state is _S.QUOTING for j in w.members(order)):  # while quoting, the quote answers shortly
            w.say(replies.EMAIL_ORDER_NOTED)
        text = words.without_email(text)
    if not text or words.is_smalltalk(text):
        return
    members = [j for j in w.members(order) if j.state not in ENDED]
    parts = words.photo_parts(text)
    if parts:
        asked, dropped = order.asking, []
        if asked:
            order = w.update(order, asking="")
        for numbers, said in parts:
            chosen = members if words.EVERY in numbers else [
                w.jobs[order.job_ids[n - 1]] for n in numbers if 0 < n <= len(order.job_ids)
                and order.job_ids[n - 1] in w.jobs and w.jobs[order.job_ids[n - 1]].state not in ENDED]
            for job in chosen:
                if job.state in UNPAID and not job.paid and words.wants_drop(said):
                    w.apply(job.job_id, jm.Cancel("customer dropped it", by="customer"))
                    dropped.append(order.job_ids.index(job.job_id) + 1)
                elif job.state in _RESULT_STATES and (asked or words.is_revision(said)):
                    w.apply(job.job_id, jm.Revise("" if asked and _names_only(said) else said))
                elif said:
                    w.apply(job.job_id, jm.CustomerText(said))
        if dropped:
            w.update(w.orders[order.order_key], quoted=False)
            w.say(replies.photo_dropped(dropped))
        _requote_if_changed(w, order)
        return
    revising = [j for j in members if j.state is _S.REVISION]
    if revising:
        for job in revising:
            w.apply(job.job_id, jm.CustomerText(text))
        return
    results = [j for j in members if j.state in _RESULT_STATES]
    if words.is_revision(text) and len(results) > 1:
        w.update(order, asking="which")
        w.say(replies.ASK_WHICH)
        return
    if words.is_revision(text) and results:
        w.apply(results[0].job_id, jm.Revise(""))
        return
    for job in members:
        if job.state not in _RESULT_STATES:
            w.apply(job.job_id, jm.CustomerText(text))
    _requote_if_changed(w, order)


def _names_only(said: str) -> bool:
    """Whether the answer to "which one" only names photos ("第二张", "都不行"): what to change is asked next."""
    return not said or said.strip("都要全部不行,， ") == ""


def _requote_if_changed(w: _Work, order: Order) -> None:
    """A quoted photo's operation changed before payment (in any step of this decision): the order's quote goes
    out again."""
    current = w.orders[order.order_key]
    changed = any(s.job.order_key == current.order_key and s.job.state is _S.PENDING
                  and any(isinstance(e, jm.RecordChange) and e.type is jm.ChangeType.MODIFY_OPERATION and e.accepted
                          for e in s.effects) for s in w.steps)
    if changed and current.quoted:
        w.update(current, quoted=False)


def _finished_order(w: _Work, last: Job | None) -> Order | None:
    """With no live job, the order of the newest one while its results can still be revised."""
    if last is None or last.job_id not in w.jobs:
        return None
    order = w.order(w.jobs[last.job_id])
    return order if any(j.state in _RESULT_STATES for j in w.members(order)) else None


# -- a burst -----------------------------------------------------------------------------------------
def handle_burst(active: list[Job], inputs: list[Input], new_job_id: Callable[[], str], image_enabled: bool,
                 now: float, *, customer_id: str, last_job: Job | None = None, open_handoff: bool = False,
                 orders: Iterable[Order] = (), others: Iterable[Job] = ()) -> BurstResult:
    """Apply one customer's burst of messages to their live jobs (oldest first) and their orders; no-op steps
    are left out. `orders` are the orders of those jobs, `others` their photos that already ended.

    Photos go first, so words and photo in either order make one quote. A photo is a revision note when the
    newest job is in revision, joins the unpaid order before it (or replaces it, by the words), and otherwise
    starts an order; new_job_id is called once per photo, in order. Texts go to the order this burst added to,
    else the newest live job's: an order of several takes them photo by photo (_order_words). A payment goes to
    the order it names, else the newest with unpaid photos.

    Words asking for a person hand the newest live job (or, with none, the customer) to a designer, once:
    open_handoff says a hand-off of this customer is still open. Words asking to find an image (找图, 原图)
    make the burst's photos references rather than jobs, and look up by the first one, else by the newest
    job (live, else last_job).
    """
    w = _Work([*others, *active], orders, now, image_enabled)
    started: list[str] = []
    handed_off = open_handoff

    photos = [i for i in inputs if isinstance(i, PhotoIn)]
    texts = [i for i in inputs if isinstance(i, TextIn)]
    finds = [t for t in texts if words.wants_found_image(t.text)]
    if finds:
        reference = w.live()[-1] if w.live() else last_job
        if photos:
            w.loose.append(jm.FindImage(reference_url=photos[0].url, job_id=None))
        elif reference is not None:
            w.loose.append(jm.FindImage(reference_url=None, job_id=reference.job_id))
        else:
            w.loose.append(jm.Reply(replies.ASK_FIND_REFERENCE))
        photos = []
    replacing = any(words.wants_replace(t.text) for t in texts)
    target: Order | None = None
    for photo in photos:
        job_id = new_job_id()
        newest = (w.live() or [None])[-1]
        if newest is not None and newest.state is _S.REVISION:
            w.apply(newest.job_id, jm.PhotoAsNote(photo.url))
            continue
        if target is None:
            target = _open_order(w)
            if target is not None and replacing:
                for job in [j for j in w.members(target) if j.state in UNPAID and not j.paid]:
                    w.apply(job.job_id, jm.Superseded())
                target = None
        target = _add_photo(w, target, job_id, photo.url, customer_id)
        started.append(job_id)
    for item in [i for i in inputs if not isinstance(i, PhotoIn) and i not in finds]:
        if isinstance(item, TextIn):
            targets = [w.jobs[j] for j in started if w.jobs[j].state not in ENDED] or w.live()[-1:]
            if words.wants_human(item.text):
                if targets:
                    w.apply(targets[-1].job_id, jm.Transfer("customer_asked", f"客户要求人工:{item.text[:60]}"))
                elif handed_off:
                    w.loose.append(jm.Reply(replies.ALREADY_HANDED_OFF))
                else:
                    w.loose.append(jm.HandOff("customer_asked", f"客户要求人工:{item.text[:60]}"))
                handed_off = True
                continue
            if not targets and words.detect_operation(item.text) is not None:
                w.loose.append(jm.Reply(replies.ASK_FOR_PHOTO))
            order = w.order(targets[-1]) if targets else _finished_order(w, last_job)
            if order is not None and order.several:
                _order_words(w, order, item.text)
                continue
            for job in targets:
                w.apply(job.job_id, jm.CustomerText(item.text))
        elif isinstance(item, PaymentIn) and not _take_payment(w, item):
            w.loose.append(jm.HandOff("payment_without_image",
                                      f"客户付款了(订单 {item.order_id},{item.amount:g}元),但没有找到待付款的图片"))
    return w.result()


# -- an executor's outcome ---------------------------------------------------------------------------
def handle_outcome(jobs: Iterable[Job], orders: Iterable[Order], job_id: str, event: jm.Event, now: float,
                   image_enabled: bool = True) -> BurstResult:
    """Apply an executor's outcome to its job, then let the job's order speak: the quote once every photo is
    looked at, the mail or the e-mail question once none is being made. IllegalJobEvent as the machine says."""
    w = _Work(jobs, orders, now, image_enabled)
    job = w.jobs[job_id]
    order = w.order(job)
    if isinstance(event, jm.Analyzed):
        event = replace(event, quote=not order.several and order.credit_cents == 0)
    w.apply(job_id, event)
    w.touch(order.order_key)
    if isinstance(event, jm.RenderDone | jm.RenderFailed):
        w.results.add(order.order_key)
    return w.result()


def handle_order_mail(jobs: Iterable[Job], order: Order, sent: bool, seq: int, job_ids: list[str], now: float,
                      error: str = "") -> BurstResult:
    """The outcome of an order's mail: sent — its photos are done and the customer is told once; failed (the
    latest mail only) — the address is forgotten, the customer asked again, staff told."""
    w = _Work(jobs, [order], now, True)
    if sent:
        for job_id in job_ids:
            if job_id in w.jobs:
                w.apply(job_id, jm.OrderMailed())
        w.say(replies.MAILED)
    elif seq == order.mails:
        mailed = {jm.render_id(w.jobs[j]) for j in job_ids if j in w.jobs}
        w.update(order, email=None, mailed=tuple(r for r in order.mailed if r not in mailed))
        w.say(replies.MAIL_FAILED)
        w.staff(order, "mail_failed", f"结果邮件发不出去(邮箱 {order.email}: {error}),请确认客户邮箱")
    return w.result()
