"""Peewee models: Tianwang tasks and their history, IM messages, conversations, events, outbox, timers.

Times are UTC epoch seconds (floats); JSON columns hold text.
"""

from __future__ import annotations

import peewee

from persistence.connection import database_proxy


class _Model(peewee.Model):
    class Meta:
        database = database_proxy


class Task(_Model):
    """A Tianwang task: what it asked, where it is, when it fires or times out."""

    task_id = peewee.CharField(primary_key=True, max_length=128)
    type = peewee.CharField(max_length=64)
    customer_id = peewee.CharField(max_length=128, index=True)
    customer_name = peewee.CharField(max_length=128, default="")
    trigger_type = peewee.CharField(max_length=32, index=True)
    trigger = peewee.TextField()
    action = peewee.TextField()
    priority = peewee.CharField(max_length=16)
    priority_rank = peewee.IntegerField()
    timeout_hours = peewee.FloatField()
    created_by = peewee.CharField(max_length=128, default="")
    body_hash = peewee.CharField(max_length=64)
    answer = peewee.TextField()
    status = peewee.CharField(max_length=16, index=True)
    error = peewee.TextField(null=True)
    retries = peewee.IntegerField(default=0)
    transitions = peewee.IntegerField(default=0)  # status changes so far: numbers each callback
    fire_at = peewee.FloatField(null=True)
    timeout_at = peewee.FloatField(null=True)
    triggered_at = peewee.FloatField(null=True)
    trigger_detail = peewee.TextField(null=True)
    created_at = peewee.FloatField(index=True)
    updated_at = peewee.FloatField()


class TaskTransition(_Model):
    """One status change of a task: when, from, to, why."""

    task_id = peewee.CharField(max_length=128, index=True)
    at = peewee.FloatField()
    from_status = peewee.CharField(max_length=16, null=True)
    to_status = peewee.CharField(max_length=16)
    reason = peewee.TextField(default="")


class InboundMessage(_Model):
    """A frame from the IM bridge, stored before it is acknowledged; msg_id dedupes re-sends."""

    msg_id = peewee.CharField(max_length=200, unique=True)
    customer_id = peewee.CharField(max_length=128, index=True)
    customer_name = peewee.CharField(max_length=128, default="")
    acc_id = peewee.CharField(max_length=128, default="")
    acc_type = peewee.CharField(max_length=64, default="")
    kind = peewee.CharField(max_length=16)
    content = peewee.TextField()
    ts = peewee.CharField(max_length=64, default="")
    received_at = peewee.FloatField()
    handled = peewee.BooleanField(default=False, index=True)
    handled_at = peewee.FloatField(null=True)
    # When the image-job machine took it into account (after the burst window); null = still to do.
    processed_at = peewee.FloatField(null=True, index=True)


class Conversation(_Model):
    """One customer's conversation: identity and profile basics."""

    customer_id = peewee.CharField(primary_key=True, max_length=128)
    name = peewee.CharField(max_length=128, default="")
    acc_id = peewee.CharField(max_length=128, default="")
    acc_type = peewee.CharField(max_length=64, default="")
    first_seen = peewee.FloatField()
    last_seen = peewee.FloatField()
    messages = peewee.IntegerField(default=0)
    images = peewee.IntegerField(default=0)
    orders = peewee.IntegerField(default=0)
    payments = peewee.IntegerField(default=0)
    last_image_url = peewee.TextField(null=True)
    last_text = peewee.TextField(null=True)
    email = peewee.CharField(max_length=254, null=True)
    email_status = peewee.CharField(max_length=16, default="none")  # none | given | sent | failed
    paused_until = peewee.FloatField(null=True)  # human takeover: the AI sends nothing to this customer until then
    paused_by = peewee.CharField(max_length=64, default="")  # staff (an IM message) | operator (the API)
    pause_reason = peewee.TextField(default="")


class CustomerEvent(_Model):
    """Something the scheduler matches triggers against; consumed exactly once."""

    customer_id = peewee.CharField(max_length=128, null=True, index=True)
    kind = peewee.CharField(max_length=16)
    text = peewee.TextField(default="")
    name = peewee.CharField(max_length=200, default="")
    data = peewee.TextField(default="{}")
    source = peewee.CharField(max_length=200, default="")
    created_at = peewee.FloatField()
    consumed = peewee.BooleanField(default=False, index=True)
    consumed_at = peewee.FloatField(null=True)  # when the scheduler matched it (latency figures)


class Outbox(_Model):
    """A side effect to perform, keyed for idempotency and written with the change that caused it."""

    key = peewee.CharField(max_length=256, unique=True)
    kind = peewee.CharField(max_length=32, index=True)  # im_send | callback
    ref = peewee.CharField(max_length=128, index=True)  # the task or conversation it belongs to
    payload = peewee.TextField()
    status = peewee.CharField(max_length=16, index=True)  # pending | delivered | failed | cancelled | skipped
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = peewee.FloatField(default=0)
    error = peewee.TextField(null=True)
    created_at = peewee.FloatField()
    updated_at = peewee.FloatField()


class Timer(_Model):
    """A durable deadline: re-armed by its owner after every (re)start."""

    owner = peewee.CharField(max_length=32)
    key = peewee.CharField(max_length=256, unique=True)
    due_at = peewee.FloatField()
    payload = peewee.TextField(default="{}")

    class Meta:
        indexes = ((("owner", "due_at"), False),)  # the owner's earliest timer without a sort


class ImageJob(_Model):
    """One image job: the core Job as JSON, with the columns queries need beside it."""

    job_id = peewee.CharField(primary_key=True, max_length=64)
    customer_id = peewee.CharField(max_length=128, index=True)
    state = peewee.CharField(max_length=24, index=True)
    version = peewee.IntegerField(default=0)  # compare-and-set: a stale writer changes nothing
    data = peewee.TextField()  # core.image_job.Job as JSON
    source_path = peewee.TextField(null=True)  # the customer's photo under DATA_DIR/images
    analysis = peewee.TextField(null=True)  # protocol.image.Analysis as JSON
    result_path = peewee.TextField(null=True)
    created_at = peewee.FloatField(index=True)
    updated_at = peewee.FloatField()


class ShopOrder(_Model):
    """An order of one or more photos (core.order.Order as JSON), quoted and paid as one."""

    order_key = peewee.CharField(primary_key=True, max_length=64)
    customer_id = peewee.CharField(max_length=128, index=True)
    version = peewee.IntegerField(default=0)  # compare-and-set, as for jobs
    data = peewee.TextField()
    created_at = peewee.FloatField()
    updated_at = peewee.FloatField()


class JobTransition(_Model):
    """One state change of an image job."""

    job_id = peewee.CharField(max_length=64, index=True)
    at = peewee.FloatField()
    from_state = peewee.CharField(max_length=24, null=True)
    to_state = peewee.CharField(max_length=24)
    event = peewee.CharField(max_length=64)


class RequirementChange(_Model):
    """SPEC §2's task_requirement_changes: what the customer (or staff) asked to change, and whether it took."""

    task = peewee.CharField(max_length=64, index=True)  # the image job's id
    type = peewee.CharField(max_length=32)  # add_note | modify_operation | add_requirement
    old = peewee.TextField(null=True)
    new = peewee.TextField(null=True)
    at = peewee.FloatField()
    by = peewee.CharField(max_length=16)  # customer | staff
    accepted = peewee.BooleanField(default=True)

    class Meta:
        table_name = "task_requirement_changes"


class JobEvent(_Model):
    """An executor's outcome for a job (analysed, rendered, mailed…), waiting for the customer's conversation."""

    customer_id = peewee.CharField(max_length=128, index=True)
    job_id = peewee.CharField(max_length=64, index=True)
    kind = peewee.CharField(max_length=32)
    source = peewee.CharField(max_length=256, unique=True)  # the outbox key it settles: one outcome per effect
    payload = peewee.TextField(default="{}")
    created_at = peewee.FloatField()
    processed_at = peewee.FloatField(null=True, index=True)


class RenderAttempt(_Model):
    """One render (or QA re-render) of a render request, recorded before its Gemini call."""

    render_id = peewee.CharField(max_length=96, index=True)
    attempt = peewee.IntegerField()
    source = peewee.CharField(max_length=16)  # gemini | local
    status = peewee.CharField(max_length=16)  # started | done | failed
    started_at = peewee.FloatField()
    finished_at = peewee.FloatField(null=True)
    path = peewee.TextField(null=True)
    preview_path = peewee.TextField(null=True)
    mime = peewee.CharField(max_length=64, null=True)
    score = peewee.IntegerField(null=True)
    error = peewee.TextField(null=True)
    pid = peewee.IntegerField(default=0)
    system = peewee.CharField(max_length=128, default="")  # the actor system (host:port) of pid; "" before issue 9
    operation = peewee.CharField(max_length=24, default="")  # the order's operation; "" before issue 14
    model_calls = peewee.IntegerField(default=0)  # image-model calls answered with an image (what is billed)

    class Meta:
        indexes = ((("render_id", "attempt"), True),)


class PublicFile(_Model):
    """A stored file served to the IM bridge and customers at an unguessable URL."""

    token = peewee.CharField(max_length=64, unique=True)
    path = peewee.TextField()
    mime = peewee.CharField(max_length=64)
    name = peewee.CharField(max_length=128)
    job_id = peewee.CharField(max_length=64, index=True)
    created_at = peewee.FloatField()


class Handoff(_Model):
    """A hand-off to a human designer (SPEC §3 workflow 3): one dispatch task, created and assigned once."""

    key = peewee.CharField(max_length=256, unique=True)  # idempotency key, sent to the dispatch API
    customer_id = peewee.CharField(max_length=128, index=True)
    job_id = peewee.CharField(max_length=64, null=True, index=True)
    rule = peewee.CharField(max_length=64)  # render_failed, qa_failed, risk_human, customer_asked, …
    reason = peewee.TextField(default="")
    image_url = peewee.TextField(default="")
    status = peewee.CharField(max_length=16, index=True)  # new | queued | assigned | completed
    task_id = peewee.CharField(max_length=128, null=True)
    designer = peewee.CharField(max_length=128, null=True)
    queued_told = peewee.BooleanField(default=False)  # the customer heard "queued": not told again at assignment
    attempts = peewee.IntegerField(default=0)
    next_at = peewee.FloatField(default=0.0)
    error = peewee.TextField(null=True)
    created_at = peewee.FloatField()
    updated_at = peewee.FloatField()
    assigned_at = peewee.FloatField(null=True)
    completed_at = peewee.FloatField(null=True)


class IndexedImage(_Model):
    """One image of the find-image index: where it is, whose, and its perceptual hash."""

    path = peewee.TextField(unique=True)
    origin = peewee.CharField(max_length=16)  # original | result | asset
    job_id = peewee.CharField(max_length=64, null=True, index=True)
    phash = peewee.CharField(max_length=16, index=True)  # 64 bits as hex
    width = peewee.IntegerField()
    height = peewee.IntegerField()
    size = peewee.IntegerField()
    mtime = peewee.FloatField()
    indexed_at = peewee.FloatField()


class Operator(_Model):
    """A console operator's account; the password only as a salted scrypt hash."""

    username = peewee.CharField(max_length=64, unique=True)
    password_hash = peewee.CharField(max_length=256)
    # Double precision: PostgreSQL's REAL (peewee's FloatField there) rounds epoch seconds to minutes.
    created_at = peewee.DoubleField()
    disabled = peewee.BooleanField(default=False)
    # Sessions issued before this are void: set by logout and by a password change.
    sessions_after = peewee.DoubleField(default=0.0)


class AuditEntry(_Model):
    """One operator action: who did what to which thing, with the thing before and after (JSON)."""

    at = peewee.DoubleField(index=True)
    operator = peewee.CharField(max_length=64, index=True)
    action = peewee.CharField(max_length=64)
    target = peewee.CharField(max_length=256, default="")
    before = peewee.TextField(null=True)
    after = peewee.TextField(null=True)
    ip = peewee.CharField(max_length=64, default="")


class LoginFailure(_Model):
    """A failed console log-in, by client address: the throttle every ingress process reads."""

    ip = peewee.CharField(max_length=64, index=True)
    at = peewee.DoubleField(index=True)


ALL_MODELS = [Task, TaskTransition, InboundMessage, Conversation, CustomerEvent, Outbox, Timer, ImageJob,
              ShopOrder, JobTransition, RequirementChange, JobEvent, RenderAttempt, PublicFile, Handoff,
              IndexedImage, Operator, AuditEntry, LoginFailure]
