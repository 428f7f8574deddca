"""Messages between actors: one discriminated union per actor's inbox.

Messages are hints that carry data; the database is the truth, so a message lost with a dead
actor is re-driven from the database by a sweep or a restart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.im import MessageKind
from protocol.settings import Settings


class _Msg(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)


class AddressBook(_Msg):
    """Where every top-level actor is now; sent by Root after any (re)start."""

    root: Any = Field(description="Root's ActorAddress")
    ingress: Any = Field(default=None, description="Ingress's ActorAddress")
    scheduler: Any = Field(default=None, description="Scheduler's ActorAddress")
    gateway: Any = Field(default=None, description="Gateway's ActorAddress")
    conversations: Any = Field(default=None, description="Conversations router's ActorAddress")
    renderer: Any = Field(default=None, description="Renderer pool's ActorAddress")
    dispatch: Any = Field(default=None, description="Dispatch's ActorAddress (mail, staff notifications)")


class StartSystem(_Msg):
    """Launcher → Root: start (or re-attach) every child with these settings."""

    msg: Literal["start_system"] = "start_system"
    settings: Settings = Field(description="the whole configuration")
    launcher_pid: int = Field(default=0, description="Root stops the whole system if this process dies")


class Configure(_Msg):
    """Root → child (and router → conversation): settings, name and the address book."""

    msg: Literal["configure"] = "configure"
    settings: Settings = Field(description="the whole configuration")
    name: str = Field(description="the actor's name in health reports")
    book: AddressBook = Field(description="current addresses")


class Ping(_Msg):
    """Are you alive? Answered with Pong."""

    msg: Literal["ping"] = "ping"
    nonce: int = Field(description="echoed back to match answers")


class Pong(_Msg):
    """I am alive."""

    msg: Literal["pong"] = "pong"
    nonce: int = Field(description="the Ping's nonce")
    name: str = Field(description="actor name")
    kind: str = Field(description="actor kind")
    pid: int = Field(description="process id")
    pgid: int = Field(default=0, description="process group (Root's is the whole system's)")
    detail: dict[str, Any] = Field(default_factory=dict, description="kind-specific figures")


class HealthQuery(_Msg):
    """Ingress → Root: a liveness snapshot of every actor, please."""

    msg: Literal["health_query"] = "health_query"
    request_id: int = Field(description="echoed in the report")


class ActorHealth(BaseModel):
    """One actor in a health report."""

    name: str
    kind: str
    pid: int | None
    state: str = Field(description="running | restarting | unresponsive | stopped")
    restarts: int = 0
    detail: dict[str, Any] = Field(default_factory=dict)
    system: str = Field(default="", description="the actor system it runs on (a convention member's id, host:port)")


class HealthReport(_Msg):
    """Root → Ingress: every actor's liveness."""

    msg: Literal["health_report"] = "health_report"
    request_id: int
    ok: bool = Field(description="every actor answered")
    actors: list[ActorHealth]
    members: list[dict[str, Any]] = Field(default_factory=list, description="the convention's systems, leader first")


class InboundItem(BaseModel):
    """A stored customer message on its way to its conversation."""

    inbound_id: int = Field(description="InboundMessage row id")
    msg_id: str = Field(description="bridge's message id")
    customer_id: str
    customer_name: str = ""
    acc_id: str = ""
    acc_type: str = ""
    kind: MessageKind
    content: Any = Field(description="text, URL or {order_id, amount}")
    ts: str = ""
    received_at: float = Field(default=0.0, description="when the gateway stored it (epoch)")


class RouteMessages(_Msg):
    """Gateway → Conversations: stored messages to hand to their conversations."""

    msg: Literal["route_messages"] = "route_messages"
    items: list[InboundItem]


class CustomerMessages(_Msg):
    """Conversations → Conversation: this customer's messages, in arrival order."""

    msg: Literal["customer_messages"] = "customer_messages"
    items: list[InboundItem]


class ConversationStarted(_Msg):
    """Conversation → Conversations: activated, with its process id (for health reports)."""

    msg: Literal["conversation_started"] = "conversation_started"
    customer_id: str
    pid: int = Field(description="the conversation actor's process id")


class EventItem(BaseModel):
    """A stored customer or custom event for trigger matching."""

    event_id: int = Field(description="CustomerEvent row id")
    kind: str = Field(description="text | order | payment | custom")
    customer_id: str | None = Field(description="None: a custom event for every customer")
    text: str = ""
    name: str = Field(default="", description="custom event name")
    at: float = Field(default=0.0, description="when it was stored (epoch)")


class CustomerEvents(_Msg):
    """Conversation or Ingress → Scheduler: events to match against waiting tasks."""

    msg: Literal["customer_events"] = "customer_events"
    items: list[EventItem]


class TasksChanged(_Msg):
    """Ingress → Scheduler: these tasks were received or cancelled; reload them."""

    msg: Literal["tasks_changed"] = "tasks_changed"
    task_ids: list[str]


class SendOutcome(_Msg):
    """Gateway → Scheduler: the bridge settled these sends."""

    msg: Literal["send_outcome"] = "send_outcome"
    refs: list[str] = Field(description="task ids whose sends were settled")


class SendNudge(_Msg):
    """Anyone → Gateway: new sends are in the outbox."""

    msg: Literal["send_nudge"] = "send_nudge"


class JobNotice(_Msg):
    """Executor → Conversations → Conversation: outcomes (JobEvent rows) wait for this customer."""

    msg: Literal["job_notice"] = "job_notice"
    customer_id: str = Field(description="whose conversation takes them")
    event_ids: list[int] = Field(default_factory=list, description="JobEvent row ids (a hint; the table is the truth)")


class OperatorHandOff(_Msg):
    """Ingress → Conversations → Conversation: an operator hands this job to a designer (from the console)."""

    msg: Literal["operator_handoff"] = "operator_handoff"
    request_id: int = Field(description="echoed in the answer")
    customer_id: str = Field(description="whose conversation owns the job")
    job_id: str
    operator: str = Field(description="the console operator who asked")
    reason: str = ""
    reply_to: Any = Field(default=None, description="the ingress to answer (ActorAddress); None: the address book's")


class OperatorHandOffDone(_Msg):
    """Conversation → Ingress: what became of an OperatorHandOff."""

    msg: Literal["operator_handoff_done"] = "operator_handoff_done"
    request_id: int
    ok: bool = Field(description="the job is now transferred by this request")
    state: str = Field(default="", description="the job's state now")
    error: str = Field(default="", description="why not, when not ok")


class WorkNudge(_Msg):
    """Anyone → Renderer or Dispatch: new rows of your kinds are in the outbox."""

    msg: Literal["work_nudge"] = "work_nudge"


class WorkItem(_Msg):
    """Renderer pool → worker: perform one outbox row (analyze or render); one at a time per worker."""

    msg: Literal["work_item"] = "work_item"
    key: str = Field(description="the outbox key (idempotency key of the effect)")
    kind: str = Field(description="analyze | render")
    payload: dict[str, Any] = Field(description="the outbox row's payload")


class WorkDone(_Msg):
    """Worker → Renderer pool: the row is settled (or was already); who to tell."""

    msg: Literal["work_done"] = "work_done"
    key: str = Field(description="the outbox key")
    customer_id: str = Field(description="whose conversation takes the outcome")
    event_id: int | None = Field(default=None, description="the JobEvent written, None if settled before")


SchedulerInbox = Annotated[
    Configure | Ping | TasksChanged | CustomerEvents | SendOutcome, Field(discriminator="msg")
]
GatewayInbox = Annotated[Configure | Ping | SendNudge, Field(discriminator="msg")]
IngressInbox = Annotated[Configure | Ping | HealthReport | OperatorHandOffDone, Field(discriminator="msg")]
ConversationsInbox = Annotated[Configure | Ping | RouteMessages | ConversationStarted | JobNotice | OperatorHandOff,
                               Field(discriminator="msg")]
ConversationInbox = Annotated[Configure | Ping | CustomerMessages | JobNotice | OperatorHandOff,
                              Field(discriminator="msg")]
RendererInbox = Annotated[Configure | Ping | WorkNudge | WorkDone, Field(discriminator="msg")]
WorkerInbox = Annotated[Configure | Ping | WorkItem, Field(discriminator="msg")]
DispatchInbox = Annotated[Configure | Ping | WorkNudge, Field(discriminator="msg")]
RootInbox = Annotated[StartSystem | Ping | Pong | HealthQuery, Field(discriminator="msg")]
