"""Bounded growth: a month of a busy shop with the clock skipped, the daily retention sweep after each day.

One SQLite file and one DATA_DIR (the database inside it, as by default) in a temporary folder. Each simulated
day: 150 new customers among ~250 returning ones, 1,500 inbound messages (taken into account) with the events they
fire (consumed), the shop's answers as delivered im_send rows, 35 image jobs through their states with their
files, 120 Tianwang tasks with their callbacks, staff and find rows, failed logins. Jobs that start late are still
in progress at midnight and finish the next day; 2 quotes a day are never paid and stay open. At each midnight the
sweep (persistence/retention.py) runs to completion with the clock set to that midnight: nothing sleeps. Then the
database (file, -wal, live and free pages, rows, bytes per table) and DATA_DIR's files are measured, with the
sweep's time, steps, longest step and longest write transaction.

Run twice in one process on the same workload (the same seed): retention effectively off (limits of ten years,
the baseline; at its end, one sweep with the short limits: the first sweep of a shop that turns retention on),
then short limits that reach their plateau within a month. Files are Pillow noise images (noise does not
compress to nothing): a small pool made once, whose bytes are written anew for every job. The default limits are
extrapolated from the baseline's bytes a day per table, a model the short run checks; `--limits 90,180,7 --days
200 --file-scale 0.01` measures them instead (~13 minutes)."""

from __future__ import annotations

import base64
import contextlib
import heapq
import json
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from io import BytesIO
from itertools import count
from pathlib import Path
from typing import Any

import peewee
from PIL import Image

from bench.common import header, parser, temp_dir
from imaging.thumbnail import cached_path
from persistence import job_files, retention
from persistence.connection import atomic, bulk_insert, database_proxy
from persistence.db import close_database, open_database
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
    LoginFailure,
    Outbox,
    PublicFile,
    RenderAttempt,
    RequirementChange,
    ShopOrder,
    Task,
    TaskTransition,
)
from persistence.retention import DAY_S, Limits, Sweep
from persistence.scheduling import TRIGGERED, WORDS_SEP
from protocol.image import TERMINAL_JOB_STATES
from protocol.settings import Settings

T0 = 1_900_000_000.0 - 1_900_000_000.0 % DAY_S  # a midnight (UTC) in 2030: the simulated clock starts here
HOUR_S = 3_600.0
MiB = 1024 * 1024
OFF = Limits(3650 * DAY_S, 3650 * DAY_S, 3650 * DAY_S)  # ten years: nothing in a month is old enough
DB_FILES = ("shop.db", "shop.db-wal", "shop.db-shm", "shop.db.write-lock")
COUNTED = (("msgs", InboundMessage), ("outbox", Outbox), ("c.events", CustomerEvent), ("j.events", JobEvent),
           ("jobs", ImageJob), ("j.trans", JobTransition), ("tasks", Task), ("t.trans", TaskTransition),
           ("convs", Conversation))
TEXTS = ("在吗", "你好，能帮我修一下这张照片吗", "多少钱", "好的", "谢谢老板", "能把背景去掉吗，换成白色的",
         "老照片能修复吗？有点发黄", "可以快一点吗，今天要用", "发邮箱可以吗", "收到了，很满意", "这个颜色再亮一点",
         "我付款了", "证件照尺寸要 413x579", "能开发票吗", "还要多久", "麻烦把人物旁边的路人去掉，谢谢！",
         "图片有点模糊，能变清楚吗")


@dataclass(frozen=True)
class Rates:
    """What one day of a busy shop brings."""

    new_customers: int = 150
    returning: int = 250  # earlier customers who write again that day
    messages: int = 1_500
    answer_share: float = 0.7  # messages the shop answers (one im_send each); the rest are inside a burst
    jobs: int = 35
    abandoned: int = 2  # quotes never paid: such a job stays pending, and keeps its photo, for ever
    tasks: int = 120
    login_failures: int = 20
    staff: int = 6  # staff notices (outbox "staff"), a third of them with a hand-off row
    finds: int = 4  # find-image requests (outbox "find")
    changes: int = 5  # requirement changes
    audit: int = 15  # operators' actions
    mail_share: float = 0.2  # jobs whose result is also mailed (a .eml with the result attached)
    thumb_share: float = 0.33  # jobs an operator looks at on the console (a cached thumbnail)
    broken_share: float = 0.1  # jobs with a render attempt that broke the order's contract (a file no row names)


@dataclass
class Pool:
    """Image files made once, written anew for each job: noise, so they weigh what real ones do."""

    photos: list[bytes]
    results: list[bytes]
    previews: list[bytes]
    thumbs: list[bytes]

    @classmethod
    def make(cls, scale: float) -> Pool:
        """Four of each: photos (JPEG, 350-520 KiB), results (PNG, 1.1-1.7 MiB), previews (PNG, 270-490 KiB),
        thumbnails (JPEG, 240 px, 12-17 KiB); scale < 1 cuts every file to that share of its bytes (cheap long
        runs: the sweep's costs go with the number of files and rows, the sizes with the bytes)."""
        def noise(w: int, h: int, sigma: float, fmt: str, **opts: Any) -> bytes:
            img = Image.merge("RGB", [Image.effect_noise((w, h), sigma) for _ in range(3)])
            buf = BytesIO()
            img.save(buf, fmt, **opts)
            data = buf.getvalue()
            return data[:max(1, int(len(data) * scale))]

        return cls(
            photos=[noise(w, h, s, "JPEG", quality=85) for w, h, s in
                    ((1280, 960, 14), (1280, 960, 24), (1024, 1024, 18), (1440, 1080, 12))],
            results=[noise(w, h, s, "PNG", compress_level=3) for w, h, s in
                     ((1024, 768, 8), (800, 600, 10), (960, 720, 6), (900, 900, 8))],
            previews=[noise(w, h, s, "PNG", compress_level=3) for w, h, s in
                      ((480, 360, 8), (400, 300, 10), (560, 420, 6), (450, 450, 8))],
            thumbs=[noise(w, h, 20, "JPEG", quality=80) for w, h in ((240, 180), (240, 240), (180, 240), (240, 160))],
        )


@cache
def _columns(model: type[peewee.Model]) -> tuple[tuple[str, Any], ...]:
    """The model's insertable fields and their defaults (peewee's defaults live in Python, not in the schema)."""
    return tuple((f.name, f.default) for f in model._meta.sorted_fields if not isinstance(f, peewee.AutoField))


def _row(model: type[peewee.Model], **values: Any) -> dict[str, Any]:
    """A full row of model: every column, so that one executemany takes a day's rows of it."""
    return {name: values[name] if name in values else (default() if callable(default) else default)
            for name, default in _columns(model)}


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


@dataclass
class Shop:
    """The simulated shop: a queue of timed actions writing rows and files, committed an hour at a time."""

    data_dir: Path
    rng: random.Random
    pool: Pool
    rates: Rates
    queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = field(default_factory=list)
    rows: dict[type[peewee.Model], list[dict[str, Any]]] = field(default_factory=dict)
    updates: list[peewee.Query] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    seq: count[int] = field(default_factory=count)

    def __post_init__(self) -> None:
        for folder in (job_files.IMAGES, job_files.RESULTS, job_files.THUMBS, job_files.MAILS):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True)

    # -- the day's plan and its replay -------------------------------------------------------------------------
    def plan_day(self, day: int) -> None:
        """Queue the day's arrivals, between 08:00 and 23:00; what they lead to is queued as they happen."""
        rng, r, start = self.rng, self.rates, T0 + day * DAY_S
        new = [f"wxid_{rng.getrandbits(48):012x}" for _ in range(r.new_customers)]
        active = new + rng.sample(self.customers, min(r.returning, len(self.customers)))
        self.customers.extend(new)

        def at() -> float:
            return start + rng.uniform(8, 23) * HOUR_S

        for n in range(r.messages):  # every new customer writes at least once
            who = new[n] if n < len(new) else rng.choice(active)
            self._at(at(), self._message, who, f"m{day:04d}{n:05d}{rng.getrandbits(32):08x}")
        for n in range(r.jobs + r.abandoned):
            self._at(at(), self._job_start, rng.choice(active), f"J{day:04d}{n:03d}{rng.getrandbits(16):04x}",
                     n >= r.jobs)
        for n in range(r.tasks):
            self._at(at(), self._task, rng.choice(active), f"tw-{day:04d}-{n:04d}")
        for _ in range(r.login_failures):
            self._add(LoginFailure, ip=f"203.0.113.{rng.randrange(1, 255)}", at=at())
        for n in range(r.staff + r.finds):
            self._at(at(), self._staff if n < r.staff else self._find, rng.choice(active), f"{day}:{n}")
        for _ in range(r.changes):
            self._add(RequirementChange, task=f"J{day:04d}{rng.randrange(r.jobs):03d}0000", type="add_note",
                      old=None, new=rng.choice(TEXTS), at=at(), by="customer", accepted=True)
        for _ in range(r.audit):
            t = at()
            self._add(AuditEntry, at=t, operator="ops", action="pause_customer", target=rng.choice(active),
                      before=_json({"paused_until": None}), after=_json({"paused_until": t + 1800}), ip="10.0.0.8")

    def run_until(self, end: float) -> None:
        """Carry out every queued action due before end, committing an hour's rows in one transaction (the
        service commits far more often; the database's size does not depend on it)."""
        hour = None
        while self.queue and self.queue[0][0] < end:
            t, _, action, args = heapq.heappop(self.queue)
            if hour is not None and t // HOUR_S != hour:
                self._commit()
            hour = t // HOUR_S
            action(t, *args)
        self._commit()

    def _at(self, t: float, action: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self.queue, (t, next(self.seq), action, args))

    def _add(self, model: type[peewee.Model], **values: Any) -> None:
        self.rows.setdefault(model, []).append(_row(model, **values))

    def _commit(self) -> None:
        profiles = [self.profiles[c] for c in sorted(self.dirty)]
        with atomic():
            for model, rows in self.rows.items():
                bulk_insert(model, rows)
            for query in self.updates:
                query.execute()
            bulk_insert(Conversation, profiles, on_conflict="update", conflict_key="customer_id",
                        update=("last_seen", "messages", "images", "orders", "payments", "last_image_url", "last_text",
                                "email", "email_status"))
        self.rows, self.updates, self.dirty = {}, [], set()

    def _file(self, path: Path, data: bytes, t: float) -> Path:
        path.write_bytes(data)
        os.utime(path, (t, t))  # the sweep goes by the files' times: they must be the simulated clock's
        return path

    # -- customers ------------------------------------------------------------------------------------------
    def _seen(self, customer: str, t: float, **counts: Any) -> dict[str, Any]:
        p = self.profiles.get(customer)
        if p is None:
            p = self.profiles[customer] = _row(Conversation, customer_id=customer, name=f"客户{customer[-4:]}",
                                               acc_id="acc-shop-1", acc_type="wechat", first_seen=t, last_seen=t)
        p["last_seen"] = t
        for key, n in counts.items():
            p[key] += n
        self.dirty.add(customer)
        return p

    def _message(self, t: float, customer: str, msg_id: str) -> None:
        rng = self.rng
        kind = rng.choices(("text", "image", "payment"), (85, 12, 3))[0]
        content = (rng.choice(TEXTS) if kind == "text" else f"https://im.example/f/{rng.getrandbits(128):032x}.jpg"
                   if kind == "image" else _json({"order_id": f"P{rng.getrandbits(40):010x}", "amount": 29.9}))
        self._add(InboundMessage, msg_id=msg_id, customer_id=customer, customer_name=f"客户{customer[-4:]}",
                  acc_id="acc-shop-1", acc_type="wechat", kind=kind, content=content,
                  ts=time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(t + 8 * HOUR_S)), received_at=t,
                  handled=True, handled_at=t + 0.05, processed_at=t + 3.2)
        profile = self._seen(customer, t, messages=1, images=int(kind == "image"), payments=int(kind == "payment"))
        if kind == "text":
            profile["last_text"] = content
        elif kind == "image":
            profile["last_image_url"] = content
        if kind != "image":  # texts and payments are trigger events for the scheduler, consumed at once
            self._add(CustomerEvent, customer_id=customer, kind=kind, text=content if kind == "text" else "",
                      data="{}" if kind == "text" else content, source=msg_id, created_at=t, consumed=True,
                      consumed_at=t + 0.03)
        if rng.random() < self.rates.answer_share:
            self._send(t + 3.5, f"msg:{msg_id}:0", f"customer:{customer}", customer, 0, rng.choice(TEXTS) * 2)

    def _send(self, t: float, key: str, ref: str, customer: str, msg_type: int, content: str) -> None:
        payload = {"send_id": key, "acc_id": "acc-shop-1", "acc_type": "wechat", "customer_id": customer,
                   "msg_type": msg_type, "content": content, "rephrase": msg_type == 0}
        self._outbox(t, key, "im_send", ref, payload)

    def _outbox(self, t: float, key: str, kind: str, ref: str, payload: dict[str, Any]) -> None:
        self._add(Outbox, key=key, kind=kind, ref=ref, payload=_json(payload), status="delivered", attempts=1,
                  next_attempt_at=t, created_at=t, updated_at=t + 0.8)

    # -- image jobs -----------------------------------------------------------------------------------------
    def _job_data(self, job_id: str, customer: str, state: str, **extra: Any) -> str:
        return _json({"job_id": job_id, "customer_id": customer, "state": state, "operation": "enhance",
                      "operation_explicit": False, "source_url": f"https://im.example/f/{job_id}.jpg", "price": 29.9,
                      "complexity": "normal", "has_text": False, "notes": ["背景换成白色"], "revision_notes": [],
                      "aspect_ratio": "", "perspective_fix": False, "paid": state != "pending", "order_id": "",
                      "renders": 0, "result_url": None, "preview_url": None, "email": None, "mails": 0,
                      "version": 3, "manual": False, "risk": "accept", "risk_reason": "", "handoff_rule": "",
                      "handoff_reason": "", "handoff_status": "", "designer": "", "done_by": "", "order_key": "",
                      "number": 1, **extra})

    def _job_start(self, t: float, customer: str, job_id: str, abandoned: bool) -> None:
        """A photo arrives: stored, analysed, quoted. A paid job goes on within the next hours."""
        rng = self.rng
        photo = self._file(self.data_dir / job_files.IMAGES / job_id, rng.choice(self.pool.photos), t)
        analysis = _json({"width": 1280, "height": 960, "format": "JPEG", "blur": 12.5, "noise": 8.1, "damage": 0.0,
                          "complexity": "normal", "has_text": False, "text": "", "text_source": "none",
                          "faces": 1, "subject": "portrait", "suggested": "enhance"})
        self._seen(customer, t, images=1)
        self._add(ImageJob, job_id=job_id, customer_id=customer, state="pending", version=3,
                  data=self._job_data(job_id, customer, "pending"), source_path=str(photo), analysis=analysis,
                  result_path=None, created_at=t, updated_at=t + 40)
        self._add(JobTransition, job_id=job_id, at=t, from_state=None, to_state="quoting", event="PhotoReceived")
        self._add(JobTransition, job_id=job_id, at=t + 40, from_state="quoting", to_state="pending", event="Analyzed")
        self._outbox(t, f"analyze:{job_id}", "analyze", job_id, {"job_id": job_id, "customer_id": customer,
                                                                 "url": f"https://im.example/f/{job_id}.jpg"})
        self._add(JobEvent, customer_id=customer, job_id=job_id, kind="analyzed", source=f"analyze:{job_id}",
                  payload=analysis, created_at=t + 39, processed_at=t + 40)
        self._add(IndexedImage, path=str(photo), origin="original", job_id=job_id, phash=f"{rng.getrandbits(64):016x}",
                  width=1280, height=960, size=len(self.pool.photos[0]), mtime=t, indexed_at=t + 1)
        self._send(t + 41, f"job:{job_id}:quote", job_id, customer, 0, "这张照片修复需要 29.9 元，付款后马上开始处理")
        if not abandoned:
            paid = t + rng.uniform(0.2, 2.0) * HOUR_S
            self._at(paid, self._job_paid, customer, job_id)

    def _job_paid(self, t: float, customer: str, job_id: str) -> None:
        self.updates.append(ImageJob.update(state="processing", version=5, updated_at=t,
                                            data=self._job_data(job_id, customer, "processing")).where(
            ImageJob.job_id == job_id))
        self._add(JobTransition, job_id=job_id, at=t, from_state="pending", to_state="paid", event="PaymentReceived")
        self._add(JobTransition, job_id=job_id, at=t, from_state="paid", to_state="processing", event="RenderStarted")
        self._add(ShopOrder, order_key=f"O{job_id[1:]}", customer_id=customer, version=2, created_at=t, updated_at=t,
                  data=_json({"order_key": f"O{job_id[1:]}", "customer_id": customer, "jobs": [job_id], "paid": True,
                              "price": 29.9, "state": "paid"}))
        render_id = f"{job_id}-r0"
        self._outbox(t, render_id, "render", job_id, {"job_id": job_id, "customer_id": customer, "render_id": render_id,
                                                     "source_path": str(self.data_dir / job_files.IMAGES / job_id),
                                                     "operation": "enhance", "notes": ["背景换成白色"]})
        self._at(t + self.rng.uniform(0.2, 1.5) * HOUR_S, self._job_done, customer, job_id)

    def _job_done(self, t: float, customer: str, job_id: str) -> None:
        """The render is stored, published and sent; the customer confirms; some want it mailed too."""
        rng, pool, results = self.rng, self.pool, self.data_dir / job_files.RESULTS
        render_id = f"{job_id}-r0"
        result = self._file(results / f"{render_id}-1.png", rng.choice(pool.results), t)
        preview = self._file(results / f"{render_id}-1.preview.png", rng.choice(pool.previews), t)
        if rng.random() < self.rates.broken_share:  # an attempt that broke the order's contract: kept by no row
            self._file(results / f"{render_id}-2.png", rng.choice(pool.results), t - 60)
        self._add(RenderAttempt, render_id=render_id, attempt=1, source="gemini", status="done", started_at=t - 90,
                  finished_at=t, path=str(result), preview_path=str(preview), mime="image/png", score=88,
                  error=None, pid=4242, system="127.0.0.1:1900", operation="enhance", model_calls=1)
        self._add(JobEvent, customer_id=customer, job_id=job_id, kind="render_done", source=render_id,
                  payload=_json({"render_id": render_id, "path": str(result), "score": 88}), created_at=t,
                  processed_at=t + 0.5)
        self._add(IndexedImage, path=str(preview), origin="result", job_id=job_id, phash=f"{rng.getrandbits(64):016x}",
                  width=1024, height=768, size=len(pool.results[0]), mtime=t, indexed_at=t + 1)
        for name, path in (("result", result), ("preview", preview)):
            self._add(PublicFile, token=f"{rng.getrandbits(128):032x}", path=str(path), mime="image/png",
                      name=f"{job_id}-{name}.png", job_id=job_id, created_at=t)
        for n, (msg_type, content) in enumerate(((1, "https://shop.example/f/preview"), (2, "https://shop.example/f/r"),
                                                 (0, "修好了，请查收，满意的话回复确认哦"))):
            self._send(t + 1, f"job:{job_id}:done:{n}", job_id, customer, msg_type, content)
        done = t + rng.uniform(0.1, 2.0) * HOUR_S
        extra: dict[str, Any] = {"renders": 1, "result_url": "https://shop.example/f/r", "paid": True}
        if rng.random() < self.rates.mail_share:
            mail_key, address = f"mail:{job_id}:1", f"{customer[-6:]}@example.com"
            extra.update(email=address, mails=1)
            self._outbox(t + 2, mail_key, "mail", job_id, {"job_id": job_id, "customer_id": customer, "seq": 1,
                                                           "to": address, "attachment": str(result),
                                                           "message_id": f"<mail.{job_id}.1@retouch-shop>"})
            self._add(JobEvent, customer_id=customer, job_id=job_id, kind="mail_sent", source=mail_key, payload="{}",
                      created_at=t + 3, processed_at=t + 3.5)
            mail = (f"From: shop@retouch-shop\r\nTo: {address}\r\nSubject: 您的照片\r\n"
                    f"Message-ID: <mail.{job_id}.1@retouch-shop>\r\nContent-Type: multipart/mixed\r\n\r\n").encode()
            self._file(self.data_dir / job_files.MAILS / f"mail.{job_id}.1@retouch-shop.eml",
                       mail + base64.encodebytes(result.read_bytes()), t + 3)
        if rng.random() < self.rates.thumb_share:  # an operator opened the job on the console
            thumb = cached_path(preview, self.data_dir / job_files.THUMBS)
            self._file(thumb, rng.choice(pool.thumbs), t + rng.uniform(0, 4) * HOUR_S)
        self.updates.append(ImageJob.update(state="completed", version=9, updated_at=done, result_path=str(result),
                                            data=self._job_data(job_id, customer, "completed", **extra)).where(
            ImageJob.job_id == job_id))
        self._add(JobTransition, job_id=job_id, at=t, from_state="processing", to_state="awaiting_confirm",
                  event="RenderDone")
        self._add(JobTransition, job_id=job_id, at=done, from_state="awaiting_confirm", to_state="completed",
                  event="CustomerText")

    # -- Tianwang tasks, staff, find-image ------------------------------------------------------------------
    def _task(self, t: float, customer: str, task_id: str) -> None:
        trigger = {"type": "customer_reply", "keyword": "好的", "timeout_hours": 24}
        action = {"type": "send_message", "message": "您好，您的照片已经处理好了，有需要随时联系我们"}
        self._add(Task, task_id=task_id, type="follow_up", customer_id=customer, customer_name=f"客户{customer[-4:]}",
                  trigger_type="customer_reply", trigger=_json(trigger), action=_json(action), priority="normal",
                  priority_rank=2, timeout_hours=24.0, created_by="设计师 lz",
                  body_hash=f"{self.rng.getrandbits(256):064x}",
                  answer=_json({"code": 0, "message": "ok", "data": {"task_id": task_id, "status": "pending"}}),
                  status="waiting", transitions=2, fire_at=None, timeout_at=t + 86_400, created_at=t, updated_at=t)
        for n, (old, new) in enumerate(((None, "pending"), ("pending", "waiting"))):
            self._task_moved(t, task_id, n, old, new)
        self._at(t + self.rng.uniform(0.5, 6) * HOUR_S, self._task_fired, customer, task_id)

    def _task_moved(self, t: float, task_id: str, n: int, old: str | None, new: str, reason: str = "") -> None:
        self._add(TaskTransition, task_id=task_id, at=t, from_status=old, to_status=new, reason=reason)
        self._outbox(t, f"callback:{task_id}:{n}", "callback", task_id,
                     {"task_id": task_id, "seq": n, "from": old, "to": new, "at": t})

    def _task_fired(self, t: float, customer: str, task_id: str) -> None:
        # As the scheduler writes it: the detail quotes the customer's words, the history names the trigger.
        detail = f"text event {next(self.seq)}{WORDS_SEP}{self.rng.choice(TEXTS)}"
        self.updates.append(Task.update(status="completed", transitions=4, triggered_at=t, updated_at=t + 2,
                                        trigger_detail=detail).where(Task.task_id == task_id))
        self._task_moved(t, task_id, 2, "waiting", "running", TRIGGERED + detail)
        self._task_moved(t + 2, task_id, 3, "running", "completed")
        self._send(t + 1, f"task:{task_id}", task_id, customer, 0, "您好，您的照片已经处理好了，有需要随时联系我们")

    def _staff(self, t: float, customer: str, key: str) -> None:
        self._outbox(t, f"staff:{key}", "staff", f"customer:{customer}",
                     {"event": "customer_asked", "text": "客户要求人工", "customer_id": customer, "job_id": None})
        if self.rng.random() < 1 / 3:
            self._add(Handoff, key=f"handoff:{key}", customer_id=customer, job_id=None, rule="customer_asked",
                      reason="客户要求人工", image_url="", status="completed", task_id=f"d-{key}", designer="lz",
                      queued_told=True, attempts=1, next_at=0.0, error=None, created_at=t, updated_at=t + HOUR_S,
                      assigned_at=t + 60, completed_at=t + HOUR_S)

    def _find(self, t: float, customer: str, key: str) -> None:
        self._outbox(t, f"find:{key}", "find", f"customer:{customer}",
                     {"customer_id": customer, "reference_url": "https://im.example/f/ref.jpg", "job_id": None})



@dataclass
class Sweeping:
    """What one sweep, run to its end, cost."""

    steps: int
    wall_s: float
    cpu_s: float
    longest_s: float  # the longest single step (wall)
    stages: dict[str, float]  # the longest step of each stage
    lock_s: float  # the longest of its write transactions: how long it held the write lock at most


@dataclass
class Day:
    """What one midnight's measurement found."""

    day: int
    db_bytes: int  # the file and its -wal
    wal_bytes: int
    used_bytes: int  # (page_count - freelist_count) × page_size
    free_pages: int
    rows: dict[str, int]
    tables: Counter[str]  # bytes per table with its indexes (dbstat)
    files_bytes: int  # DATA_DIR without the database
    files: int
    open_bytes: int  # photos of jobs not finished (in progress, or quotes never paid): no limit applies to them
    sweep: Sweeping


HOLDS: list[float] = []


@contextlib.contextmanager
def _timed_atomic() -> Iterator[None]:
    """persistence.connection.atomic, timed: the write lock is held from its start to its commit."""
    began = time.perf_counter()
    with atomic():
        yield
    HOLDS.append(time.perf_counter() - began)


def sweep_to_end(sweep: Sweep, now: float) -> Sweeping:
    """Step the sweep until it ends, never sleeping (the scheduler pauses STEP_PAUSE_S between steps)."""
    stages: dict[str, float] = {}
    HOLDS.clear()
    steps, wall, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        stage = retention.STAGES[sweep.stage].__name__
        began = time.perf_counter()
        pause = sweep.step(now)
        stages[stage] = max(stages.get(stage, 0.0), time.perf_counter() - began)
        steps += 1
        if pause == DAY_S:
            return Sweeping(steps, time.perf_counter() - wall, time.process_time() - cpu, max(stages.values()),
                            stages, max(HOLDS, default=0.0))
        assert pause == retention.STEP_PAUSE_S, f"the sweep was not due: {pause} s left"


def measure(data_dir: Path, day: int, sweep: Sweeping) -> Day:
    """Sizes of the database and of DATA_DIR's files after a day and its sweep."""
    db = database_proxy.obj

    def pragma(name: str) -> int:
        return db.execute_sql(f"PRAGMA {name}").fetchone()[0]

    page = pragma("page_size")
    tables: Counter[str] = Counter()
    owner = dict(db.execute_sql("SELECT name, tbl_name FROM sqlite_master").fetchall())
    for name, size in db.execute_sql("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall():
        tables[owner.get(name, name)] += size  # an index counts with its table
    files = total = 0
    for folder, _, names in os.walk(data_dir):
        for name in names:
            if folder == str(data_dir) and name in DB_FILES:
                continue
            files += 1
            total += os.stat(os.path.join(folder, name)).st_size
    open_jobs = ImageJob.select(ImageJob.source_path).where(
        ImageJob.state.not_in([s.value for s in TERMINAL_JOB_STATES]) & ImageJob.source_path.is_null(False))
    open_bytes = sum(os.stat(row.source_path).st_size for row in open_jobs if os.path.exists(row.source_path))
    wal = data_dir / "shop.db-wal"
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    return Day(day, (data_dir / "shop.db").stat().st_size + wal_bytes, wal_bytes,
               (pragma("page_count") - pragma("freelist_count")) * page, pragma("freelist_count"),
               {label: model.select().count() for label, model in COUNTED}, tables, total, files, open_bytes, sweep)


def simulate(root: Path, days: int, limits: Limits, scale: float, rates: Rates, seed: int,
             then: Limits | None = None) -> list[Day]:
    """The shop for days on a fresh database and DATA_DIR, swept at each midnight with limits; each day measured.
    With then, one more sweep at the next midnight under those limits, measured too (the last Day): the first
    sweep of a shop that kept everything until it turned retention on."""
    data_dir = root / "data"
    shop = Shop(data_dir, random.Random(seed), Pool.make(scale), rates)
    open_database(f"sqlite:///{data_dir / 'shop.db'}", create=True, durable=False)  # as the scheduler opens it
    # The sweep's own transactions, timed where they are opened (without a change to the sweep's code).
    patched = {module: module.atomic for module in (retention, job_files)}
    for module in patched:
        module.atomic = _timed_atomic  # type: ignore[attr-defined]
    try:
        sweep = Sweep(data_dir, limits)
        assert sweep.first_delay(T0 + DAY_S) == 0.0
        measured = []
        for day in range(days):
            midnight = T0 + (day + 1) * DAY_S
            shop.plan_day(day)
            shop.run_until(midnight)
            measured.append(measure(data_dir, day + 1, sweep_to_end(sweep, midnight)))
            print(_line(measured[-1]), flush=True)
        if then is not None:
            midnight = T0 + (days + 1) * DAY_S
            measured.append(measure(data_dir, days + 1, sweep_to_end(Sweep(data_dir, then), midnight)))
        return measured
    finally:
        for module, original in patched.items():
            module.atomic = original  # type: ignore[attr-defined]
        close_database()
        shutil.rmtree(root, ignore_errors=True)  # gigabytes of files: gone before the next run writes its own


HEAD = (f"{'day':>4} {'db MiB':>7} {'wal':>5} {'live':>6} {'free pg':>7} {'msgs':>7} {'outbox':>7} {'c.events':>8} "
        f"{'j.events':>8} {'jobs':>5} {'tasks':>5} {'convs':>5} {'files MiB':>9} {'files':>6} {'steps':>5} "
        f"{'wall s':>6} {'CPU s':>5} {'max step ms':>11} {'max lock ms':>11}")


def _line(d: Day) -> str:
    r, s = d.rows, d.sweep
    return (f"{d.day:>4} {d.db_bytes / MiB:>7.1f} {d.wal_bytes / MiB:>5.1f} {d.used_bytes / MiB:>6.1f} "
            f"{d.free_pages:>7} {r['msgs']:>7} {r['outbox']:>7} {r['c.events']:>8} {r['j.events']:>8} {r['jobs']:>5} "
            f"{r['tasks']:>5} {r['convs']:>5} {d.files_bytes / MiB:>9.1f} {d.files:>6} {s.steps:>5} "
            f"{s.wall_s:>6.2f} {s.cpu_s:>5.2f} {s.longest_s * 1000:>11.1f} {s.lock_s * 1000:>11.1f}")


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares: (intercept, slope) of ys against xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - slope * mx, slope


def _sse(xs: list[float], ys: list[float]) -> float:
    """The squared error left by the least-squares line through the points."""
    a, b = _fit(xs, ys)
    return sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True))


def plateau(series: list[float], base_rate: float) -> tuple[int | None, float]:
    """Where the series bends: the split of its days into two straight lines that fits best (least squares). The
    first day of the second line and its slope (growth a day), if that is under half the baseline's; None when the
    run is too short or still grows at more than half the baseline's rate."""
    n = len(series)
    if n < 6:
        return None, 0.0
    days = [float(d) for d in range(1, n + 1)]
    split = min(range(2, n - 2), key=lambda k: _sse(days[:k], series[:k]) + _sse(days[k:], series[k:]))
    growth = _fit(days[split:], series[split:])[1]
    return (split + 1, growth) if growth < base_rate / 2 else (None, growth)


# Which limit keeps each table's rows (the outbox is split by kind, see _outbox_shares); the rest stay for ever.
CLASS = {"inboundmessage": "messages", "customerevent": "compaction", "jobevent": "compaction",
         "loginfailure": "compaction", "publicfile": "files", "indexedimage": "files"}


def model_bytes(base: Day, limits: Limits, days: float) -> float:
    """The database's live bytes after days under limits, from the baseline's bytes a day of each table: a table
    holds as many days of rows as its class's limit (persistence/retention.py), or every day for the rest."""
    kept = {"messages": limits.messages_s / DAY_S, "files": limits.files_s / DAY_S,
            "compaction": limits.compaction_s / DAY_S}
    total = 0.0
    for table, size in base.tables.items():
        per_day = size / base.day
        if table == "outbox":
            total += sum(per_day * share * min(days, kept[cls]) for cls, share in _outbox_shares().items())
        else:
            total += per_day * (min(days, kept[CLASS[table]]) if table in CLASS else days)
    return total


def _outbox_shares() -> dict[str, float]:
    """How the outbox's rows divide between the limits that keep them, from the workload's rates: what the shop
    says (im_send) as long as messages, mails as long as files, the rest COMPACTION_DAYS."""
    r = Rates()
    im_send = r.messages * r.answer_share + r.jobs * 3 + (r.jobs + r.abandoned) + r.tasks
    mail = r.jobs * r.mail_share
    other = (r.jobs + r.abandoned) + r.jobs + r.tasks * 4 + r.staff + r.finds
    total = im_send + mail + other
    return {"messages": im_send / total, "files": mail / total, "compaction": other / total}


def summary(base: list[Day], kept: list[Day], limits: Limits) -> None:
    """Day N's sizes with and without, the ratio, the plateaus, what still grows, the sweep's longest step."""
    b, k, days = base[-1], kept[-1], len(base)
    print(f"\nday {days}: database {k.db_bytes / MiB:.1f} MiB with, {b.db_bytes / MiB:.1f} MiB without "
          f"(live pages {k.used_bytes / MiB:.1f} / {b.used_bytes / MiB:.1f}, free pages {k.free_pages} / "
          f"{b.free_pages}); files {k.files_bytes / MiB:.0f} MiB in {k.files} with, {b.files_bytes / MiB:.0f} MiB in "
          f"{b.files} without")
    print(f"ratio with/without at day {days}: database {k.db_bytes / b.db_bytes:.2f}, live pages "
          f"{k.used_bytes / b.used_bytes:.2f}, files {k.files_bytes / b.files_bytes:.2f}")
    plateaus = {}
    for what, get in (("database file", lambda d: d.db_bytes), ("live pages", lambda d: d.used_bytes),
                      ("DATA_DIR files", lambda d: d.files_bytes)):
        base_rate = (get(b) - get(base[0])) / max(1, days - 1)
        day, growth = plateaus[what] = plateau([float(get(d)) for d in kept], base_rate)
        where = f"plateau from day {day}" if day else f"no plateau within {days} days"
        print(f"{what}: {where}, then {growth / 1024:+.0f} KiB/day (without retention {base_rate / MiB:+.2f} MiB/day)")
    print(f"photos of jobs never finished (quotes never paid, no limit applies): {k.open_bytes / MiB:.1f} MiB at day "
          f"{days}, {k.open_bytes / days / 1024:+.0f} KiB/day")
    since = plateaus["live pages"][0] or days - days // 3  # from the database's plateau, else the last third
    tail = kept[since - 1:]
    growth = Counter({t: _fit([float(d.day) for d in tail], [float(d.tables[t]) for d in tail])[1]
                      for t in k.tables} if len(tail) > 1 else {})
    print(f"tables growing from day {since} to day {days}, KiB/day: " + ", ".join(
        f"{t} {v / 1024:+.0f}" for t, v in growth.most_common() if abs(v) >= 1024))
    stages: Counter[str] = Counter()
    for d in kept:
        stages |= Counter(d.sweep.stages)  # the union keeps each stage's maximum
    print(f"sweep with retention: longest single step {max(d.sweep.longest_s for d in kept) * 1000:.0f} ms, longest "
          f"write transaction (lock held) {max(d.sweep.lock_s for d in kept) * 1000:.0f} ms; at most "
          f"{max(d.sweep.steps for d in kept)} steps, {max(d.sweep.wall_s for d in kept):.2f} s wall / "
          f"{max(d.sweep.cpu_s for d in kept):.2f} CPU-s a sweep; without: longest step "
          f"{max(d.sweep.longest_s for d in base) * 1000:.0f} ms")
    print("longest step by stage, ms: " + ", ".join(f"{s} {v * 1000:.0f}" for s, v in stages.items()))
    if days >= 2:
        _defaults(b, k, limits)


def _defaults(b: Day, k: Day, limits: Limits) -> None:
    """Extrapolate to the default limits from the baseline's bytes a day, checked against the short limits."""
    predicted = model_bytes(b, limits, b.day)
    slack = sum(k.tables.values()) / predicted  # pages freed inside indexes refill only in part
    open_day = k.open_bytes / k.day
    done_day = (b.files_bytes - b.open_bytes) / b.day
    files_predicted = done_day * min(b.day, limits.files_s / DAY_S) + open_day * b.day
    print(f"model check at day {b.day}: live database predicted {predicted / MiB:.1f} MiB, measured "
          f"{sum(k.tables.values()) / MiB:.1f} MiB (x{slack:.2f}: space left in pages that deletions thinned); files "
          f"predicted {files_predicted / MiB:.0f} MiB, measured {k.files_bytes / MiB:.0f} MiB")
    field = Settings.model_fields
    defaults = Limits(*(field[name].default * DAY_S for name in
                        ("RETENTION_DAYS", "MESSAGE_RETENTION_DAYS", "COMPACTION_DAYS")))
    for days in (90, 180, 365):
        db = model_bytes(b, defaults, days) * slack
        files = done_day * min(days, defaults.files_s / DAY_S) + open_day * days
        print(f"default limits ({defaults.files_s / DAY_S:g}/{defaults.messages_s / DAY_S:g}/"
              f"{defaults.compaction_s / DAY_S:g} days) extrapolated to day {days}: live database ~{db / MiB:.0f} MiB, "
              f"files ~{files / 2**30:.2f} GiB")


def main() -> None:
    """Run the baseline and the short limits on the same month; print both, the ratio and the plateaus."""
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=30, help="simulated days (default 30)")
    p.add_argument("--limits", default="7,14,3",
                   help="RETENTION_DAYS,MESSAGE_RETENTION_DAYS,COMPACTION_DAYS of the run with retention")
    p.add_argument("--file-scale", type=float, default=1.0, help="write this share of every file's bytes")
    p.add_argument("--seed", type=int, default=18)
    args = p.parse_args()
    days, scale, rates = args.days, args.file_scale, Rates()
    if args.quick:
        days, scale = 3, 0.02
    files_d, messages_d, compaction_d = (float(v) for v in args.limits.split(","))
    limits = Limits(files_d * DAY_S, messages_d * DAY_S, compaction_d * DAY_S)
    header("bench/retention.py")
    print(f"{days} days of: {rates.new_customers} new customers (+{rates.returning} returning), {rates.messages} "
          f"messages, {rates.jobs} image jobs (+{rates.abandoned} quotes never paid), {rates.tasks} tasks a day; "
          f"files at {scale:g} of their size")
    name = f"RETENTION_DAYS={files_d:g} MESSAGE_RETENTION_DAYS={messages_d:g} COMPACTION_DAYS={compaction_d:g}"
    print(f"\n## without retention (limits of 10 years)\n{HEAD}", flush=True)
    base = simulate(temp_dir("bench-retention-"), days, OFF, scale, rates, args.seed, then=limits)
    *base, late = base
    print(f"\n## with {name}\n{HEAD}", flush=True)
    kept = simulate(temp_dir("bench-retention-"), days, limits, scale, rates, args.seed)
    summary(base, kept, limits)
    s = late.sweep
    print(f"retention turned on after {days} days without ({name}), its first sweep: {s.steps} steps, "
          f"{s.wall_s:.2f} s wall / {s.cpu_s:.2f} CPU-s (+{s.steps - 1} pauses of {retention.STEP_PAUSE_S:g} s), "
          f"longest step {s.longest_s * 1000:.0f} ms, longest write transaction {s.lock_s * 1000:.0f} ms; "
          f"live database {base[-1].used_bytes / MiB:.1f} -> {late.used_bytes / MiB:.1f} MiB (file "
          f"{late.db_bytes / MiB:.1f} MiB), files {base[-1].files_bytes / MiB:.0f} -> {late.files_bytes / MiB:.0f} MiB")
    print("  its longest step by stage, ms: " + ", ".join(f"{st} {v * 1000:.0f}" for st, v in s.stages.items()))


if __name__ == "__main__":
    main()
