"""Deleting a customer's data on request (persistence/forget.py, `shop-admin forget`), on real databases.

A customer's whole story is built with the real stores — messages, a profile with an e-mail, a paid job with its
photo, result, thumbnails and mailed .eml under DATA_DIR, an order, a hand-off, Tianwang tasks that fired on their
words or still wait, console actions about them — beside another customer's. After forgetting, no text of any
table holds their words, name, e-mail, id or photo URL, no file holds their photo, the other customer is as he was,
the tasks keep their ids and statuses, and the audit names who asked and nobody else.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core import image_job as jm
from core.order import Order, order_key_for
from imaging.thumbnail import thumbnail
from integrations.mailer import FileMailer, build_result_mail
from observability import metrics
from persistence import forget, handoffs, image_index, jobs, messages, operator_actions, orders, scheduling, tasks
from persistence.connection import atomic
from persistence.db import sqlite_path
from persistence.models import ALL_MODELS, AuditEntry, Outbox, Task
from protocol.im import MessageFrame
from protocol.image import Analysis, Complexity
from protocol.tianwang import TaskIn
from tests.harness import photo_png

TZ = "Asia/Shanghai"
T0 = 1_800_000_000.0
SHOP_ADMIN = str(Path(sys.executable).with_name("shop-admin"))  # the command `pip install` made, as users run it


@dataclass(frozen=True)
class Customer:
    """One customer's identity and the words they wrote: what must be gone, or stay, after forget."""

    id: str
    name: str
    email: str
    photo_url: str
    texts: tuple[str, ...]
    seed: int

    @property
    def job_id(self) -> str:
        """Their one image job's id, shaped as the shop's are (J and 12 hex digits)."""
        return "J" + self.id.encode().hex()[:12].ljust(12, "0")

    @property
    def traces(self) -> list[str]:
        """Every string that would give them away."""
        return [self.id, self.name, self.email, self.photo_url, *self.texts]


AMY = Customer("tb_wxy_8842", "王小丫", "wangxiaoya.88@example.com", "http://photos.example/wxy-graduation.png",
               ("帮我把王小丫的毕业照变清晰", "背景换成蓝色小丫专用", "好的就这么办吧小丫确认",
                "邮箱 wangxiaoya.88@example.com"), seed=11)
BOB = Customer("tb_ldz_5521", "李大壮", "dazhuang@example.com", "http://photos.example/ldz-shop.png",
               ("大壮的店铺门头要变清晰", "颜色鲜艳一点大壮要求", "好的大壮收到了", "邮箱 dazhuang@example.com"),
               seed=12)


def say(c: Customer, n: int, kind: str, content: object, now: float) -> list:
    """The customer's message n through the bridge's store and their conversation; the scheduler events it made."""
    frame = MessageFrame(msg_id=f"{c.id}-m{n}", acc_id="shop-1", acc_type="AliWorkbench",
                         customer={"id": c.id, "name": c.name}, kind=kind, content=content)
    ((item, _),) = messages.store_inbound([frame], now)
    return messages.handle_customer_messages(c.id, [item], now, takeover_s=600)


def decide(c: Customer, event: object, now: float, cause: str, **extras: object) -> None:
    """One step of the customer's job, committed as their conversation commits it."""
    job = jobs.load_job(c.job_id)
    assert job is not None
    step = jm.step(job, event, now)
    jobs.commit(jobs.Decision(customer_id=c.id, cause=cause, steps=[step], before={c.job_id: job.version},
                              extras={c.job_id: extras} if extras else {}), now)


def live(c: Customer, data_dir: Path) -> bytes:
    """The customer's story, up to a mailed result; a Tianwang task fired by their words (completed) and one still
    waiting; an operator's pause and message. The photo's bytes."""
    photo = photo_png(seed=c.seed)
    photo_words, note, reply, address = c.texts
    say(c, 1, "image", c.photo_url, T0)
    say(c, 2, "text", photo_words, T0)
    jobs.commit(jobs.Decision(customer_id=c.id, cause=f"m:{c.id}-m1",
                              steps=[jm.start_job(c.job_id, c.id, c.photo_url, T0)]), T0)
    source = data_dir / "images" / c.job_id
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(photo)
    analysis = Analysis(width=640, height=480, complexity=Complexity.NORMAL, has_text=True, text=f"{c.name} 毕业快乐")
    decide(c, jm.Analyzed(analysis), T0 + 1, f"e:{c.id}-1", source_path=str(source),
           analysis=analysis.model_dump_json())
    say(c, 3, "text", note, T0 + 2)
    decide(c, jm.CustomerText(note), T0 + 2, f"m:{c.id}-m3")
    with atomic():
        orders.save(Order(order_key_for(c.job_id), c.id, (c.job_id,), quoted=True, email=c.email), None, T0 + 2)
        image_index.add_file(source, "original", c.job_id, T0 + 2)
        handoffs.add(f"handoff:{c.job_id}", c.id, c.job_id, "customer_asked", f"客户说:{note}", c.photo_url, T0 + 2)
    decide(c, jm.PaymentReceived(order_id=f"{c.id}-pay", amount=18), T0 + 3, f"m:{c.id}-pay")

    render_id = f"{c.job_id}-r1"
    result = data_dir / "results" / f"{render_id}-1.png"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_bytes(photo_png(seed=c.seed + 100))
    jobs.start_attempt(render_id, 1, "local", os.getpid(), T0 + 4)
    jobs.finish_attempt(render_id, 1, T0 + 5, path=str(result), preview_path=str(result), mime="image/png", score=90)
    with atomic():
        url = jobs.publish(result, "image/png", c.job_id, T0 + 5)
    jobs.settle(render_id, "delivered", "render_done", c.id, c.job_id, {"result_url": url}, T0 + 5)
    decide(c, jm.RenderDone(render_id, url, url, 90, True), T0 + 5, f"e:{c.id}-2", result_path=str(result))
    thumbnail(source, data_dir / "thumbs")
    thumbnail(result, data_dir / "thumbs")
    # A photo sent to find an image by, kept where executors/find.py keeps it.
    jobs.commit(jobs.Decision(customer_id=c.id, cause=f"m:{c.id}-find", steps=[],
                              loose_effects=(jm.FindImage(c.photo_url + "?find", None),)), T0 + 5)
    key = f"find:m:{c.id}-find:1"
    (data_dir / "images" / f"find-{hashlib.sha256(key.encode()).hexdigest()[:16]}").write_bytes(photo[::-1])

    (replied,) = say(c, 4, "text", reply, T0 + 6)
    say(c, 5, "text", address, T0 + 7)
    decide(c, jm.CustomerText(address), T0 + 7, f"m:{c.id}-m5")
    (mail,) = Outbox.select().where((Outbox.kind == "mail") & (Outbox.ref == c.job_id))
    FileMailer(data_dir / "outbox-mail").send(build_result_mail(c.email, "shop@example.com", "您的图片", "请查收",
                                                                result, json.loads(mail.payload)["message_id"]))

    fired, waiting = f"T_{c.seed}_fired", f"T_{c.seed}_waiting"
    tasks.receive_many([
        TaskIn(task_id=fired, type="send_file_after_reply", customer={"id": c.id, "name": c.name},
               trigger={"type": "customer_reply", "keyword": "好的"},
               action={"type": "send_message", "message": f"{c.name}您好,这是您要的文件"}, created_by="设计师 lz"),
        TaskIn(task_id=waiting, type="follow_up", customer={"id": c.id, "name": c.name},
               trigger={"type": "customer_keyword", "keyword": "下单"},
               action={"type": "send_message", "message": f"{c.name},记得下单哦"}),
    ], T0 + 1, TZ, callbacks=True)
    scheduling.register(scheduling.pending_tasks(), T0 + 1, TZ, True)
    scheduling.trigger_by_events([(replied, [fired])], T0 + 6)
    scheduling.start([fired], T0 + 6, TZ, True)
    Outbox.update(status="delivered").where((Outbox.kind == "im_send") & (Outbox.ref == fired)).execute()
    scheduling.complete([fired], T0 + 6, TZ, True)

    operator_actions.set_pause(c.id, T0 + 600, "amy", f"客户{c.name}说很急", "10.0.0.9", T0 + 8)
    operator_actions.staff_message(c.id, f"{c.name}您好,我是店长", f"console:{c.id}:1", "amy", "10.0.0.9", 600,
                                   T0 + 9)
    return photo


def rows_about(c: Customer) -> list[str]:
    """Every row that names the customer or their job, as text."""
    return sorted(text for model in ALL_MODELS for row in model.select().tuples()
                  if c.id in (text := str(row)) or c.job_id in text)


def every_text() -> str:
    """Every value of every row of every table, as text (what a dump of the database shows)."""
    return "\n".join(str(value) for model in ALL_MODELS for row in model.select().tuples() for value in row)


def gives_away(text: str, c: Customer) -> list[str]:
    """The traces of the customer found in text, as written or JSON-escaped."""
    return [t for t in c.traces if t in text or json.dumps(t)[1:-1] in text]


def files_under(root: Path) -> dict[Path, bytes]:
    """Every file under root and what it holds."""
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_forget_leaves_no_trace_of_the_customer_and_nothing_of_anyone_else_changes(db_url: str,
                                                                                    tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    amy_photo = live(AMY, data_dir)
    bob_photo = live(BOB, data_dir)
    assert gives_away(every_text(), AMY) == AMY.traces  # everything was there to begin with
    assert len(list((data_dir / "outbox-mail").glob("*.eml"))) == 2
    bob_rows = rows_about(BOB)
    bob_files = {p: b for p, b in files_under(data_dir).items() if BOB.job_id in p.name or BOB.email.encode() in b}
    deleted = metrics.registry()
    photos_before = deleted.get_sample_value("shop_deleted_total", {"what": "photos", "why": "forget"}) or 0.0

    done = forget.forget(AMY.id, data_dir, T0 + 100, "amy", tz=TZ, callbacks=True, ip="10.0.0.9")

    assert done is not None and done.pseudonym == forget.pseudonym(AMY.id) and done.pseudonym.startswith("sha256:")
    removed = done.removed
    assert removed["customers"] == 1 and removed["messages"] == 5 and removed["jobs"] == 1 and removed["orders"] == 1
    assert removed["photos"] == 2 and removed["results"] == 1 and removed["thumbnails"] == 2 and removed["mails"] == 1
    assert removed["handoffs"] == 1 and removed["render_attempts"] == 1 and removed["indexed_images"] == 1
    assert removed["tasks"] == 2 and removed["audit_entries"] == 2 and removed["outbox_rows"] > 0
    assert not any(done.left.values()), done.left
    assert done.cancelled == [f"T_{AMY.seed}_waiting"]

    # No table holds their words, name, e-mail, id or photo URL; the other customer's are all there.
    text = every_text()
    assert gives_away(text, AMY) == []
    assert gives_away(text, BOB) == BOB.traces
    if (path := sqlite_path(db_url)) is not None:
        con = sqlite3.connect(path)
        try:
            dump = "\n".join(con.iterdump())
        finally:
            con.close()
        assert gives_away(dump, AMY) == [] and gives_away(dump, BOB) == BOB.traces

    # No file holds their photo or names their job; the other customer's files are as they were.
    after = files_under(data_dir)
    assert not [p for p, b in after.items() if amy_photo[200:400] in b or amy_photo[::-1][200:400] in b
                or AMY.job_id in p.name]
    assert not [p for p, b in after.items() if AMY.email.encode() in b]
    assert {p: after.get(p) for p in bob_files} == bob_files
    assert any(bob_photo[200:400] in b for b in after.values())
    assert rows_about(BOB) == bob_rows

    # Tianwang's tasks keep their ids, types, statuses and times; the open one was cancelled, with its callback.
    fired = tasks.get(f"T_{AMY.seed}_fired", TZ)
    waiting = tasks.get(f"T_{AMY.seed}_waiting", TZ)
    assert (fired["status"], waiting["status"]) == ("completed", "cancelled")
    assert fired["customer"] == {"id": done.pseudonym, "name": ""} and fired["type"] == "send_file_after_reply"
    assert fired["trigger_detail"].startswith("text event ") and ":" not in fired["trigger_detail"]
    assert [h["to"] for h in fired["history"]] == ["pending", "waiting", "running", "completed"]
    assert "message" not in fired["action"] and fired["triggered_at"] is not None
    assert waiting["history"][-1]["reason"] == forget.CANCEL_REASON
    callback = Outbox.get((Outbox.kind == "callback") & (Outbox.key == f"cb:T_{AMY.seed}_waiting:3"))
    assert json.loads(callback.payload)["status"] == "cancelled" and callback.status == "pending"
    assert tasks.get(f"T_{BOB.seed}_fired", TZ)["customer"] == {"id": BOB.id, "name": BOB.name}

    # The audit names who asked, the customer by pseudonym, what went and that nothing is left.
    entry = AuditEntry.select().order_by(AuditEntry.id.desc()).first()
    assert (entry.operator, entry.action, entry.target, entry.ip) == ("amy", "forget", f"customer:{done.pseudonym}",
                                                                       "10.0.0.9")
    assert json.loads(entry.before) == removed and json.loads(entry.after) == done.left
    pause = AuditEntry.get((AuditEntry.action == "pause") & (AuditEntry.target == f"conversation:{done.pseudonym}"))
    assert pause.operator == "amy" and json.loads(pause.after)["paused"] is True
    assert AuditEntry.select().where(AuditEntry.target == f"conversation:{BOB.id}").count() == 2

    photos_after = deleted.get_sample_value("shop_deleted_total", {"what": "photos", "why": "forget"})
    assert photos_after == photos_before + 2


def test_forgetting_twice_finds_nothing_the_second_time_and_is_still_audited(db_url: str, tmp_path: Path) -> None:
    live(AMY, tmp_path)
    first = forget.forget(AMY.id, tmp_path, T0 + 100, "amy", tz=TZ, callbacks=False)
    again = forget.forget(AMY.id, tmp_path, T0 + 200, "shop-admin:root", tz=TZ, callbacks=False)
    assert first is not None and again is not None
    assert not any(again.removed.values()) and not any(again.left.values()) and again.cancelled == []
    assert [(e.operator, e.target) for e in AuditEntry.select().where(AuditEntry.action == "forget")
            .order_by(AuditEntry.id)] == [("amy", f"customer:{first.pseudonym}"),
                                          ("shop-admin:root", f"customer:{first.pseudonym}")]
    # The console asks only to act on someone: nothing of them, nothing done, nothing audited.
    assert forget.forget(AMY.id, tmp_path, T0 + 300, "amy", tz=TZ, callbacks=False, only_if_found=True) is None
    assert forget.forget("nobody-ever", tmp_path, T0 + 300, "amy", tz=TZ, callbacks=False, only_if_found=True) is None
    assert AuditEntry.select().where(AuditEntry.action == "forget").count() == 2
    assert Task.select().where(Task.customer_id == first.pseudonym).count() == 2


def test_a_sqlite_file_keeps_no_copy_of_the_deleted_rows(tmp_path: Path) -> None:
    from persistence.db import close_database, open_database

    open_database(f"sqlite:///{tmp_path / 'shop.db'}", create=True)
    try:
        live(AMY, tmp_path)
        forget.forget(AMY.id, tmp_path, T0 + 100, "amy", tz=TZ, callbacks=False)
        # Read while the database is open, as the running service keeps it: the write-ahead log is there too.
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("shop.db*"))
    finally:
        close_database()
    assert [t for t in AMY.traces if t.encode() in raw] == []


def test_forget_zeroes_the_rows_it_deletes_even_where_sqlite_would_not(tmp_path: Path) -> None:
    from persistence.db import close_database, open_database

    db = open_database(f"sqlite:///{tmp_path / 'shop.db'}", create=True)
    try:
        db.execute_sql("PRAGMA secure_delete = 0")  # as a SQLite built without SECURE_DELETE (this one has it)
        frame = MessageFrame(msg_id="m1", customer={"id": AMY.id, "name": AMY.name}, kind="text", content=AMY.texts[0])
        messages.store_inbound([frame], T0)
        forget.forget(AMY.id, tmp_path, T0 + 100, "amy", tz=TZ, callbacks=False)
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("shop.db*"))
        assert db.execute_sql("PRAGMA secure_delete").fetchone() == (0,)  # the connection's own setting is back
    finally:
        close_database()
    assert [t for t in AMY.traces if t.encode() in raw] == []


def shop_admin(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`shop-admin …` on DATA_DIR's database, as the admin runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")}
    env["DATA_DIR"] = str(data_dir)
    return subprocess.run([SHOP_ADMIN, *args], capture_output=True, text=True, env=env, cwd=data_dir, timeout=60)


def test_shop_admin_forget_prints_what_went_by_pseudonym_and_audits_who_asked(tmp_path: Path) -> None:
    from persistence.db import close_database, open_database

    open_database(f"sqlite:///{tmp_path / 'shop.db'}", create=True)
    try:
        live(AMY, tmp_path)
    finally:
        close_database()

    done = shop_admin(tmp_path, "forget", AMY.id, "--by", "店长小艾")
    assert done.returncode == 0, done.stderr
    alias = forget.pseudonym(AMY.id)
    assert f"customer {alias}: deleted customers=1, messages=5, " in done.stdout
    assert f"cancelled Tianwang tasks: T_{AMY.seed}_waiting" in done.stdout
    assert "audited as forget by 店长小艾" in done.stdout
    assert [t for t in AMY.traces if t in done.stdout + done.stderr] == []

    again = shop_admin(tmp_path, "forget", AMY.id)
    assert again.returncode == 0, again.stderr
    assert "nothing was kept" in again.stdout and "audited as forget by shop-admin:" in again.stdout
    con = sqlite3.connect(tmp_path / "shop.db")
    try:
        audit = con.execute("SELECT operator, target FROM auditentry WHERE action = 'forget' ORDER BY id").fetchall()
    finally:
        con.close()
    assert [a for a, _ in audit][0] == "店长小艾" and audit[1][0].startswith("shop-admin:")
    assert {t for _, t in audit} == {f"customer:{alias}"}


def test_shop_admin_forget_says_clearly_when_the_database_cannot_be_used(tmp_path: Path) -> None:
    missing = shop_admin(tmp_path, "forget", AMY.id)
    assert missing.returncode == 1 and "there is no database at" in missing.stderr
    assert not (tmp_path / "shop.db").exists()
    (tmp_path / "shop.db").write_bytes(b"this is not a database, " * 100)
    broken = shop_admin(tmp_path, "forget", AMY.id)
    assert broken.returncode == 1 and "the database cannot be used" in broken.stderr, broken.stderr
    assert "Traceback" not in broken.stderr
    empty = shop_admin(tmp_path, "forget", "")
    assert empty.returncode == 1 and "the customer id is empty" in empty.stderr
