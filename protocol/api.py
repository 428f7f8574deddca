"""What the HTTP API answers inside the envelope's `data` (SPEC §1, §8), and the query of /api/task/list.

The handlers build these answers as plain dicts; the models here describe them for the OpenAPI document
(web/openapi.py), and the suite checks live answers against them. Times named `*_at` in task answers are
ISO 8601 in the shop's time zone; everywhere else they are UTC epoch seconds.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.convention import SystemHealth
from protocol.image import Analysis
from protocol.messages import ActorHealth
from protocol.tianwang import Action, Customer, TaskStatus, Trigger

PAGE_SIZE_MAX = 200


class _Answer(BaseModel):
    # Answers may grow fields; the document lists what is there today without forbidding more.
    model_config = ConfigDict(populate_by_name=True)


# -- Tianwang tasks -----------------------------------------------------------------------------------
class TaskReceived(_Answer):
    """Answer of /api/task/receive; a repeat of the same body gets the first answer again."""

    task_id: str
    status: TaskStatus = Field(description="pending when first received")
    received_at: str = Field(description="ISO 8601, shop's time zone", examples=["2026-02-26T10:00:00.000+08:00"])


class TaskCancelled(_Answer):
    """Answer of /api/task/cancel."""

    task_id: str
    status: Literal[TaskStatus.CANCELLED]


class TaskTransitionView(_Answer):
    """One status change of a task."""

    at: str = Field(description="ISO 8601, shop's time zone")
    from_: TaskStatus | None = Field(alias="from", description="null for the first (received)")
    to: TaskStatus
    reason: str


class TaskSummary(_Answer):
    """A task as /api/task/list shows it: every field of its body and where it is now."""

    task_id: str
    type: str
    customer: Customer
    trigger: Trigger
    action: Action
    priority: str = Field(description="urgent | high | normal")
    timeout_hours: float
    created_by: str
    status: TaskStatus
    error: str | None = Field(description="why it failed, if it did")
    retries: int = Field(description="failed sends retried so far")
    created_at: str = Field(description="ISO 8601, shop's time zone")
    updated_at: str = Field(description="ISO 8601, shop's time zone")
    fire_at: str | None = Field(description="time_reach: when it fires")
    timeout_at: str | None = Field(description="when a waiting task times out")
    triggered_at: str | None = Field(description="when its trigger matched")
    trigger_detail: str | None = Field(description="what matched (the customer's words, the event)")


class TaskDetail(TaskSummary):
    """Answer of /api/task/status/{task_id}: the task with its whole history."""

    history: list[TaskTransitionView]


class TaskListQuery(BaseModel):
    """Query of /api/task/list; an empty value is the same as leaving it out."""

    status: TaskStatus | Literal[""] | None = Field(default=None, description="only tasks in this status")
    customer: str | None = Field(default=None, description="only this customer's tasks")
    type: str | None = Field(default=None, description="only tasks of this type label")
    page: int = Field(default=1, ge=1, le=1_000_000, description="1 is the newest page")
    page_size: int = Field(default=20, ge=1, le=PAGE_SIZE_MAX, description="tasks on a page")


class TaskPage(_Answer):
    """Answer of /api/task/list: one page of tasks, newest first."""

    items: list[TaskSummary]
    total: int = Field(description="tasks matching the filters, on every page")
    page: int
    page_size: int


class TaskStats(_Answer):
    """Answer of /api/task/stats."""

    total: int
    by_status: dict[str, int] = Field(description="every status, zeros included")
    by_priority: dict[str, int] = Field(description="priorities that have tasks")
    by_trigger: dict[str, int] = Field(description="trigger types that have tasks")


class EventAccepted(_Answer):
    """Answer of /api/event."""

    event_id: int
    event: str
    customer_id: str | None


class HealthData(_Answer):
    """Answer of /api/health (with 200 and with 503)."""

    status: Literal["ok", "degraded"]
    actors: list[ActorHealth] = Field(description="Root first; empty when Root did not answer")
    members: list[SystemHealth] = Field(default_factory=list, description="the actor systems of the convention "
                                        "(the leader first, then its members, then those lately lost)")


# -- operator views -----------------------------------------------------------------------------------
class TakeoverView(_Answer):
    """Whether a person has the conversation (the AI is silent to this customer until paused_until)."""

    paused: bool
    paused_until: float | None
    paused_by: str | None = Field(description="staff (an IM message) | operator (the API) | a name")
    reason: str | None


class HandoffView(_Answer):
    """A hand-off of work to a designer through the dispatch API."""

    key: str
    rule: str = Field(description="render_failed, qa_failed, risk_human, customer_asked, …")
    reason: str
    status: str = Field(description="new | queued | assigned | completed")
    task_id: str | None = Field(description="the dispatch system's task")
    designer: str | None
    attempts: int
    error: str | None
    created_at: float
    assigned_at: float | None
    completed_at: float | None


class JobTransitionView(_Answer):
    """One state change of an image job."""

    at: float
    from_: str | None = Field(alias="from")
    to: str
    event: str


class RequirementChangeView(_Answer):
    """A change the customer (or staff) asked for, and whether it was taken."""

    type: str = Field(description="add_note | modify_operation | add_requirement")
    old: str | None
    new: str | None
    at: float
    by: str = Field(description="customer | staff")
    accepted: bool


class RenderAttemptView(_Answer):
    """One render (or quality re-render) of a render request."""

    attempt: int
    source: str = Field(description="gemini | local")
    status: str = Field(description="started | done | failed")
    score: int | None = Field(description="quality 0-100")
    error: str | None = Field(description="why it failed; 'contract: …' when its file was not what the order names")
    image_model_calls: int = Field(description="image-model calls it made that answered with an image")
    started_at: float
    finished_at: float | None


class RenderView(_Answer):
    """A render request with its attempts."""

    render_id: str
    attempts: list[RenderAttemptView]


class MailView(_Answer):
    """A result e-mail."""

    seq: int
    to: str
    status: str
    error: str | None
    at: float


class RiskView(_Answer):
    """The risk verdict on the job's photo."""

    verdict: str | None = Field(description="accept | human | decline; null before the analysis")
    reason: str


class JobHandoffView(_Answer):
    """Why and to whom a job was handed over."""

    rule: str
    reason: str | None
    status: str | None
    designer: str | None
    tasks: list[HandoffView]


class JobOrderRef(_Answer):
    """The order a job belongs to."""

    order_key: str
    number: int = Field(description="its number in an order of several photos; 0 when it is the only one")


class JobView(_Answer):
    """Answer of /api/jobs/{job_id}: one image job."""

    job_id: str
    customer_id: str
    state: str
    version: int
    operation: str | None
    price: int | None = Field(description="元")
    complexity: str | None
    has_text: bool | None
    notes: list[str]
    revision_notes: list[str]
    paid: bool | None
    order_id: str | None
    source_url: str | None
    result_url: str | None
    preview_url: str | None
    email: str | None
    analysis: Analysis | None
    created_at: float
    updated_at: float
    history: list[JobTransitionView]
    requirement_changes: list[RequirementChangeView]
    renders: list[RenderView]
    image_model_calls: int = Field(description="image-model calls the job spent, every render and attempt")
    mails: list[MailView]
    risk: RiskView
    handoff: JobHandoffView | None
    done_by: str | None = Field(description="staff when a designer completed it")
    order: JobOrderRef


class MessageView(_Answer):
    """One message from the customer (or staff) as the IM bridge relayed it."""

    msg_id: str
    kind: str = Field(description="text | image | order | payment | staff | …")
    content: Any
    ts: str
    handled: bool


class SendView(_Answer):
    """A message the system sent (or held back while paused) to the customer."""

    send_id: str
    msg_type: int | None = Field(description="0 text, 1 image, 2 file, 3 link")
    content: Any
    status: str = Field(description="pending | delivered | failed | cancelled | suppressed | …")
    at: float


class ProfileView(_Answer):
    """What the shop knows of a customer (SPEC §2)."""

    name: str
    email: str | None
    email_status: str = Field(description="none | given | sent | failed")
    last_image_url: str | None
    complexity_history: list[str]
    requirements: list[str | None]
    orders: int
    payments: int
    revisions: int
    jobs: int
    paid_jobs: int
    completed_jobs: int
    tags: list[str]


class OrderJobView(_Answer):
    """One photo of an order, by its number."""

    number: int
    job_id: str
    state: str | None
    operation: str | None
    price: int | None = Field(description="元")
    paid: bool | None


class OrderView(_Answer):
    """An order of photos sent together (SPEC §2): quoted and paid as one."""

    order_key: str
    jobs: list[OrderJobView]
    owed: float | None = Field(description="元 still to pay for its unpaid photos; null while one is not quoted")
    paid: float = Field(description="元 received for it, every payment notice added up")
    credit: float = Field(description="元 received and not spent yet (a payment short of the total waits)")
    overpaid: float = Field(description="元 paid beyond its price: the shop refunds it")
    payments: list[str] = Field(description="order ids of the payment notices taken")
    email: str | None


class ConversationView(_Answer):
    """Answer of /api/conversation/{customer_id}."""

    customer_id: str
    name: str
    acc_id: str
    acc_type: str
    messages: int
    images: int
    orders: int
    payments: int
    last_image_url: str | None
    last_text: str | None
    history: list[MessageView] = Field(description="the latest messages, newest last")
    profile: ProfileView | None
    jobs: list[JobView] = Field(description="newest first")
    image_orders: list[OrderView] = Field(description="the orders the jobs make, newest first")
    takeover: TakeoverView
    handoffs: list[HandoffView]
    sends: list[SendView] = Field(description="newest last")
