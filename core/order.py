"""An order (SPEC §2, orders of several photos): the photos a customer sent together, quoted and paid as one.

Pure: the order's record and the rules that read it — what is owed, what a payment pays, what the quote says.
core.burst drives jobs and orders together; the job machine (core.image_job) stays one photo's story.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core import replies
from core.image_job import UNPAID, Job
from protocol.image import JobState


@dataclass(frozen=True)
class Order:
    """One order: its photos' jobs in number order, what was paid for it and how its results are mailed."""

    order_key: str
    customer_id: str
    job_ids: tuple[str, ...] = ()  # number n is job_ids[n - 1]
    quoted: bool = False  # the order's quote is out; a photo added or changed before payment quotes it again
    received_cents: int = 0  # every payment's amount, added up
    credit_cents: int = 0  # received and not yet spent on a photo (a payment short of the total waits here)
    overpaid_cents: int = 0  # paid beyond what the order cost: the shop refunds it
    payments: tuple[str, ...] = ()  # the order ids of the payment notices taken (a repeat changes nothing)
    email: str | None = None  # where the order's results are mailed (several photos)
    mails: int = 0  # mails of the whole order issued so far
    mailed: tuple[str, ...] = ()  # render ids whose result went out by mail (a revised result goes again)
    asking: str = ""  # "which": the customer was asked which photo a revision is for
    version: int = 0

    @property
    def several(self) -> bool:
        """Whether the order holds more than one photo (then it speaks for its jobs)."""
        return len(self.job_ids) > 1


@dataclass(frozen=True)
class MailOrder:
    """Mail the results of several photos of one order to `to` in one message (split above the size limit)."""

    kind: ClassVar[str] = "mail_order"
    order_key: str
    seq: int
    to: str
    jobs: tuple[tuple[str, int], ...]  # (job id, number) of each result attached


def order_key_for(job_id: str) -> str:
    """The key of the order a job starts (a job from before orders has one by the same rule)."""
    return "O" + job_id[1:]


def key_of(job: Job) -> str:
    """The order a job belongs to."""
    return job.order_key or order_key_for(job.job_id)


def cents(amount: float) -> int:
    """An amount in 元 as whole cents (payments may carry 角 and 分)."""
    return round(amount * 100)


def yuan(amount_cents: int) -> str:
    """Cents as a customer reads 元: 22, 12.5."""
    return f"{amount_cents / 100:g}" if amount_cents % 100 else str(amount_cents // 100)


def unpaid(order: Order, jobs: dict[str, Job]) -> list[Job]:
    """The order's photos still to be paid for, in number order."""
    return [jobs[j] for j in order.job_ids if j in jobs and jobs[j].state in UNPAID and not jobs[j].paid]


def owed_cents(order: Order, jobs: dict[str, Job]) -> int | None:
    """What the unpaid photos cost together; None while one of them is not priced yet."""
    waiting = unpaid(order, jobs)
    if any(j.price is None for j in waiting):
        return None
    return sum(cents(j.price or 0) for j in waiting)


def quote_text(order: Order, jobs: dict[str, Job]) -> str:
    """The one quote of an order of several: a line per photo by number, then the total of what can be done."""
    lines: list[str] = []
    payable, total, has_text = 0, 0, False
    for number, job_id in enumerate(order.job_ids, start=1):
        job = jobs.get(job_id)
        if job is None or (job.state is JobState.CANCELLED and job.risk != "decline"):
            continue  # replaced or taken out by the customer: not part of the quote any more
        if job.state is JobState.PENDING and job.price is not None:
            lines.append(replies.quote_line(number, job.operation, job.price))
            payable, total, has_text = payable + 1, total + job.price, has_text or job.has_text
        elif job.state is JobState.FAILED:
            lines.append(replies.line_unreadable(number))
        elif job.state is JobState.CANCELLED:
            lines.append(replies.line_declined(number))
        elif job.state is JobState.TRANSFERRED:
            lines.append(replies.line_person(number))
    return replies.order_quote(lines, payable, total, has_text)


def match_one(waiting: list[Job], amount_cents: int) -> Job | None:
    """The one unpaid photo whose price is exactly the amount; None when none or several match."""
    matches = [j for j in waiting if j.price is not None and cents(j.price) == amount_cents]
    return matches[0] if len(matches) == 1 else None


def view(order: Order, jobs: dict[str, Job]) -> dict[str, object]:
    """The order for operators and the API: its photos by number, what is owed, paid, waiting and refundable."""
    owed = owed_cents(order, jobs)
    return {
        "order_key": order.order_key,
        "jobs": [{"number": n, "job_id": j, "state": jobs[j].state.value if j in jobs else None,
                  "operation": jobs[j].operation.value if j in jobs else None,
                  "price": jobs[j].price if j in jobs else None, "paid": jobs[j].paid if j in jobs else None}
                 for n, j in enumerate(order.job_ids, start=1)],
        "owed": None if owed is None else owed / 100,
        "paid": order.received_cents / 100,
        "credit": order.credit_cents / 100,
        "overpaid": order.overpaid_cents / 100,
        "payments": list(order.payments),
        "email": order.email,
    }
