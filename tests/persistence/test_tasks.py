"""The durable store against real SQLite files: Tianwang tasks, the outbox, timers, IM messages and events.

What Tianwang and the shop observe through it: a received task is stored once with its history and a
callback; repeats get the same answer and conflicts are refused; every status change is recorded in
order with its callback; cancelling drops unsent sends; listings and counts; side effects queued once
and settled once; deadlines that survive; customer messages handled exactly once; and all of it still
there after the database is closed and opened again.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from core.tianwang import IllegalTransition, epoch_to_iso
from persistence import messages, outbox, tasks, timers
from persistence.connection import atomic
from persistence.db import close_database, open_database
from persistence.models import InboundMessage, Outbox, Task, TaskTransition, Timer
from protocol.im import MessageFrame
from protocol.settings import Settings
from protocol.tianwang import TaskIn, TaskStatus

TZ = "Asia/Shanghai"
T0 = 1_772_150_400.0  # 2026-02-27T08:00:00+08:00
S = TaskStatus

pytestmark = pytest.mark.usefixtures("db_url")


def task(
    task_id: str = "T1", customer: str = "c1", type_: str = "send_file_after_reply", **over: Any
) -> TaskIn:
    """A valid task body (the SPEC example by default) with fields replaced."""
    data: dict[str, Any] = {
        "task_id": task_id,
        "type": type_,
        "customer": {"name": "小明", "id": customer},
        "trigger": {"type": "customer_reply", "keyword": "好的"},
        "action": {"type": "send_file", "file_url": "https://xxx.com/file.zip", "message": "这是您要的文件"},
        "created_by": "设计师 lz",
    }
    data.update(over)
    return TaskIn.model_validate(data)


def receive(
    *bodies: TaskIn, now: float = T0, callbacks: bool = True
) -> list[tasks.ReceiveResult | Exception]:
    return tasks.receive_many(list(bodies), now, TZ, callbacks)


def move(task_id: str, target: TaskStatus, now: float = T0, reason: str = "", **kw: Any) -> bool:
    with atomic():
        return tasks.transition(task_id, target, reason or f"to {target.value}", now, TZ, True, **kw)


RACE_PROCESSES = 4
RACE_IDS = 30


def _receive_racer(url: str, n: int, bodies: list[TaskIn], barrier: Any, out: Any) -> None:
    try:
        open_database(url)  # this process's own connection, as an ingress opens it after fork
        barrier.wait(30)
        results = tasks.receive_many(bodies, time.time(), TZ, True)
        out.put((n, {b.task_id: {"conflict": str(r)} if isinstance(r, tasks.TaskConflict)
                     else {"created": r.created, "answer": r.answer} for b, r in zip(bodies, results, strict=True)}))
    except BaseException:
        out.put((n, traceback.format_exc()))


def race_receive(url: str, same: list[str], rival: list[str]) -> list[dict[str, dict[str, Any]]]:
    """RACE_PROCESSES forked processes receive one batch each at once: the ids in same with one body for all, those
    in rival with a body of each process's own (created_by "ingress N"), in a shuffled order; each one's outcomes."""
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(RACE_PROCESSES), ctx.Queue()
    batches = []
    for n in range(RACE_PROCESSES):
        bodies = [task(t) for t in same] + [task(t, created_by=f"ingress {n}") for t in rival]
        random.Random(n).shuffle(bodies)
        batches.append(bodies)
    procs = [ctx.Process(target=_receive_racer, args=(url, n, b, barrier, out)) for n, b in enumerate(batches)]
    for p in procs:
        p.start()
    try:
        got = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    errors = [g for _, g in got if isinstance(g, str)]
    assert not errors, errors[0]
    return [outcomes for _, outcomes in sorted(got, key=lambda g: g[0])]


def history(task_id: str) -> list[tuple[str | None, str, str]]:
    return [(h["from"], h["to"], h["reason"]) for h in tasks.get(task_id, TZ)["history"]]


def callbacks(task_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r.key, r.status, json.loads(r.payload)) for r in rows_of("callback", task_id)]


def queue_send(task_id: str, part: str, status: str = "pending") -> str:
    key = f"tw:{task_id}:{part}"
    outbox.add(key=key, kind="im_send", ref=task_id, payload={"send_id": key}, now=T0, status=status)
    return key


def status_of_row(key: str) -> str:
    return Outbox.get(Outbox.key == key).status


# --------------------------------------------------------------------------------------------
# receive


class TestReceive:
    """Idempotent receive of Tianwang tasks."""

    def test_new_task_is_stored_pending_with_history_and_callback(self) -> None:
        [result] = receive(task("T1"))
        assert isinstance(result, tasks.ReceiveResult)
        assert result.created is True
        assert result.answer == {"task_id": "T1", "status": "pending", "received_at": epoch_to_iso(T0, TZ)}
        view = tasks.get("T1", TZ)
        assert view["status"] == "pending"
        assert view["customer"] == {"id": "c1", "name": "小明"}
        assert view["trigger"] == {"type": "customer_reply", "keyword": "好的"}
        assert view["action"]["file_url"] == "https://xxx.com/file.zip"
        assert (view["priority"], view["timeout_hours"], view["created_by"]) == ("normal", 24, "设计师 lz")
        assert view["timeout_at"] == epoch_to_iso(T0 + 24 * 3600, TZ)
        assert view["fire_at"] is None
        assert history("T1") == [(None, "pending", "received")]
        assert callbacks("T1") == [
            (
                "cb:T1:1",
                "pending",
                {"task_id": "T1", "status": "pending", "error": None, "timestamp": epoch_to_iso(T0, TZ)},
            )
        ]

    def test_callback_row_is_skipped_when_callbacks_are_off(self) -> None:
        receive(task("T1"), callbacks=False)
        assert [(key, status) for key, status, _ in callbacks("T1")] == [("cb:T1:1", "skipped")]

    def test_time_reach_task_stores_its_fire_time_and_no_timeout(self) -> None:
        receive(task("T1", trigger={"type": "time_reach", "time": "2026-02-27 09:00:00"}))
        view = tasks.get("T1", TZ)
        assert view["fire_at"] == "2026-02-27T09:00:00.000+08:00"
        assert view["timeout_at"] is None

    def test_same_body_again_gets_the_same_answer(self) -> None:
        [first] = receive(task("T1"))
        [again] = receive(task("T1"), now=T0 + 60)
        assert isinstance(first, tasks.ReceiveResult) and isinstance(again, tasks.ReceiveResult)
        assert again.answer == first.answer
        assert again.created is False
        assert len(history("T1")) == 1
        assert len(callbacks("T1")) == 1

    def test_same_body_with_defaults_spelled_out_is_the_same_body(self) -> None:
        receive(task("T1"))
        [again] = receive(task("T1", priority="normal", timeout_hours=24))
        assert isinstance(again, tasks.ReceiveResult) and again.created is False

    def test_different_body_same_task_id_is_a_conflict_and_changes_nothing(self) -> None:
        receive(task("T1"))
        before = tasks.get("T1", TZ)
        [result] = receive(task("T1", priority="urgent"), now=T0 + 60)
        assert isinstance(result, tasks.TaskConflict)
        assert "T1" in str(result)
        assert tasks.get("T1", TZ) == before
        assert len(callbacks("T1")) == 1

    def test_a_conflict_in_a_batch_leaves_the_other_items_stored(self) -> None:
        receive(task("T1"))
        results = receive(task("A"), task("T1", customer="someone_else"), task("B"))
        assert [type(r).__name__ for r in results] == ["ReceiveResult", "TaskConflict", "ReceiveResult"]
        assert tasks.get("A", TZ)["status"] == "pending"
        assert tasks.get("B", TZ)["status"] == "pending"
        assert tasks.get("T1", TZ)["customer"]["id"] == "c1"
        assert history("A") == [(None, "pending", "received")]
        assert [k for k, _, _ in callbacks("B")] == ["cb:B:1"]

    def test_a_batch_repeating_one_task_stores_it_once(self) -> None:
        results = receive(task("T1"), task("T1"))
        assert [r.created for r in results if isinstance(r, tasks.ReceiveResult)] == [True, False]
        assert Task.select().count() == 1

    def test_ingress_processes_receiving_the_same_ids_at_once_agree_on_one_task_each(self, db_url: str) -> None:
        # INGRESS_PROCESSES: each process group-commits its own batch; the same ids arrive in all of them at once.
        same = [f"S{i:02d}" for i in range(RACE_IDS)]  # an identical body from every process
        rival = [f"R{i:02d}" for i in range(RACE_IDS)]  # a body of its own from every process
        outcomes = race_receive(db_url, same, rival)
        for task_id in same:
            answers = [o[task_id] for o in outcomes]
            assert [a["created"] for a in answers].count(True) == 1, answers
            assert len({json.dumps(a["answer"], sort_keys=True) for a in answers}) == 1, answers
        for task_id in rival:
            answers = [o[task_id] for o in outcomes]
            winners = [i for i, a in enumerate(answers) if a.get("created")]
            assert len(winners) == 1 and all("conflict" in a for i, a in enumerate(answers) if i != winners[0]), answers
            assert tasks.get(task_id, TZ)["created_by"] == f"ingress {winners[0]}"  # the winner's body is stored
        assert Task.select().count() == 2 * RACE_IDS
        assert TaskTransition.select().count() == 2 * RACE_IDS
        assert Outbox.select().where(Outbox.kind == "callback").count() == 2 * RACE_IDS

    def test_unknown_task_is_not_found(self) -> None:
        with pytest.raises(tasks.TaskNotFound):
            tasks.get("nope", TZ)


# --------------------------------------------------------------------------------------------
# transitions


class TestTransition:
    """Guarded status changes with history and ordered callbacks."""

    def test_full_life_is_recorded_in_order_with_a_callback_per_change(self) -> None:
        receive(task("T1"))
        assert move("T1", S.WAITING, T0 + 1, "trigger armed")
        assert move("T1", S.RUNNING, T0 + 2, "triggered: 好的")
        assert move("T1", S.COMPLETED, T0 + 3, "sent to the customer")
        assert tasks.get("T1", TZ)["status"] == "completed"
        assert history("T1") == [
            (None, "pending", "received"),
            ("pending", "waiting", "trigger armed"),
            ("waiting", "running", "triggered: 好的"),
            ("running", "completed", "sent to the customer"),
        ]
        rows = callbacks("T1")
        assert [k for k, _, _ in rows] == ["cb:T1:1", "cb:T1:2", "cb:T1:3", "cb:T1:4"]
        assert [p["status"] for _, _, p in rows] == ["pending", "waiting", "running", "completed"]
        assert [p["timestamp"] for _, _, p in rows] == [epoch_to_iso(T0 + i, TZ) for i in range(4)]
        assert {status for _, status, _ in rows} == {"pending"}
        ids = [r.id for r in rows_of("callback", "T1")]
        assert ids == sorted(ids)

    def test_failure_carries_its_error_in_task_and_callback(self) -> None:
        receive(task("T1"))
        move("T1", S.WAITING)
        move("T1", S.RUNNING)
        assert move("T1", S.FAILED, reason="gave up", error="send failed: offline")
        assert tasks.get("T1", TZ)["error"] == "send failed: offline"
        assert callbacks("T1")[-1][2]["error"] == "send failed: offline"
        assert callbacks("T1")[-1][2]["status"] == "failed"

    def test_waiting_task_can_time_out(self) -> None:
        receive(task("T1"))
        move("T1", S.WAITING)
        assert move("T1", S.TIMEOUT, reason="no trigger in time")
        assert history("T1")[-1] == ("waiting", "timeout", "no trigger in time")

    def test_extra_fields_are_stored_with_the_change(self) -> None:
        receive(task("T1"))
        move("T1", S.WAITING)
        assert move("T1", S.RUNNING, triggered_at=T0 + 5, trigger_detail="customer said 好的")
        view = tasks.get("T1", TZ)
        assert view["triggered_at"] == epoch_to_iso(T0 + 5, TZ)
        assert view["trigger_detail"] == "customer said 好的"

    @pytest.mark.parametrize("target", [S.RUNNING, S.COMPLETED, S.FAILED, S.TIMEOUT])
    def test_illegal_move_from_pending_raises_and_records_nothing(self, target: TaskStatus) -> None:
        receive(task("T1"))
        with pytest.raises(IllegalTransition) as info:
            move("T1", target, reason="sneaky")
        assert "T1" in str(info.value) and "pending" in str(info.value) and target.value in str(info.value)
        assert tasks.get("T1", TZ)["status"] == "pending"
        assert len(history("T1")) == 1
        assert len(callbacks("T1")) == 1

    def test_event_name_appears_in_the_illegal_transition(self) -> None:
        receive(task("T1"))
        with atomic(), pytest.raises(IllegalTransition) as info:
            tasks.transition("T1", S.COMPLETED, "r", T0, TZ, True, event="dispatch")
        assert "dispatch" in str(info.value)

    @pytest.mark.parametrize("target", list(TaskStatus))
    def test_finished_task_never_moves_again(self, target: TaskStatus) -> None:
        receive(task("T1"))
        move("T1", S.CANCELLED)
        assert move("T1", target) is False
        assert tasks.get("T1", TZ)["status"] == "cancelled"
        assert len(history("T1")) == 2
        assert len(callbacks("T1")) == 2

    def test_moving_to_the_current_state_is_a_no_op(self) -> None:
        receive(task("T1"))
        move("T1", S.WAITING)
        assert move("T1", S.WAITING) is False
        assert len(history("T1")) == 2

    def test_unknown_task(self) -> None:
        with pytest.raises(tasks.TaskNotFound):
            move("ghost", S.WAITING)

    def test_finishing_disarms_the_tasks_timers_only(self) -> None:
        receive(task("T1"), task("T2"))
        move("T1", S.WAITING)
        move("T2", S.WAITING)
        with atomic():
            for tid in ("T1", "T2"):
                timers.arm("scheduler", f"task:{tid}:timeout", T0 + 100, {"task_id": tid, "what": "timeout"})
                timers.arm("scheduler", f"task:{tid}:fire", T0 + 50, {"task_id": tid, "what": "fire"})
        move("T1", S.TIMEOUT)
        assert sorted(t.key for t in Timer.select()) == ["task:T2:fire", "task:T2:timeout"]

    def test_unfinished_moves_keep_the_timers(self) -> None:
        receive(task("T1"))
        with atomic():
            timers.arm("scheduler", "task:T1:timeout", T0 + 100)
        move("T1", S.WAITING)
        move("T1", S.RUNNING)
        assert [t.key for t in Timer.select()] == ["task:T1:timeout"]

    def test_finishing_a_task_keeps_the_timers_of_a_task_whose_id_differs_in_case(self) -> None:
        receive(task("abc"), task("ABC"))
        move("abc", S.WAITING)
        move("ABC", S.WAITING)
        with atomic():
            timers.arm("scheduler", "task:ABC:timeout", T0 + 100, {"task_id": "ABC", "what": "timeout"})
        move("abc", S.CANCELLED)
        assert [t.key for t in Timer.select()] == ["task:ABC:timeout"]

    def test_finishing_a_task_keeps_the_timers_of_a_task_whose_id_extends_it(self) -> None:
        receive(task("A"), task("A:1"))
        move("A", S.WAITING)
        move("A:1", S.WAITING)
        with atomic():
            timers.arm("scheduler", "task:A:1:timeout", T0 + 100, {"task_id": "A:1", "what": "timeout"})
        move("A", S.CANCELLED)
        assert [t.key for t in Timer.select()] == ["task:A:1:timeout"]


# --------------------------------------------------------------------------------------------
# cancel


class TestCancel:
    """Cancelling a task that has not finished."""

    def test_unknown_task(self) -> None:
        with pytest.raises(tasks.TaskNotFound):
            tasks.cancel("ghost", "no longer needed", T0, TZ, True)

    @pytest.mark.parametrize("end", [S.COMPLETED, S.FAILED, S.CANCELLED])
    def test_finished_task_cannot_be_cancelled(self, end: TaskStatus) -> None:
        receive(task("T1"))
        if end is S.CANCELLED:
            move("T1", S.CANCELLED)
        else:
            move("T1", S.WAITING)
            move("T1", S.RUNNING)
            move("T1", end)
        with pytest.raises(tasks.TaskFinished) as info:
            tasks.cancel("T1", "too late", T0 + 10, TZ, True)
        assert end.value in str(info.value)
        assert tasks.get("T1", TZ)["status"] == end.value

    def test_timed_out_task_cannot_be_cancelled(self) -> None:
        receive(task("T1"))
        move("T1", S.WAITING)
        move("T1", S.TIMEOUT)
        with pytest.raises(tasks.TaskFinished):
            tasks.cancel("T1", "", T0, TZ, True)

    @pytest.mark.parametrize("path", [[], [S.WAITING], [S.WAITING, S.RUNNING]])
    def test_unfinished_task_is_cancelled_with_history_and_callback(self, path: list[TaskStatus]) -> None:
        receive(task("T1"))
        for target in path:
            move("T1", target)
        answer = tasks.cancel("T1", "customer changed mind", T0 + 10, TZ, True)
        assert answer == {"task_id": "T1", "status": "cancelled"}
        assert tasks.get("T1", TZ)["status"] == "cancelled"
        assert history("T1")[-1][1:] == ("cancelled", "customer changed mind")
        key, status, payload = callbacks("T1")[-1]
        assert key == f"cb:T1:{len(path) + 2}"
        assert status == "pending" and payload["status"] == "cancelled"

    def test_cancel_without_reason_gets_a_default_reason(self) -> None:
        receive(task("T1"))
        tasks.cancel("T1", "", T0, TZ, True)
        assert history("T1")[-1][2]

    def test_cancel_drops_unsent_sends_only(self) -> None:
        receive(task("T1"), task("T2"))
        move("T1", S.WAITING)
        move("T1", S.RUNNING)
        sent = queue_send("T1", "msg", status="delivered")
        waiting = queue_send("T1", "file")
        failed = queue_send("T1", "link", status="failed")
        other = queue_send("T2", "msg")
        tasks.cancel("T1", "stop", T0 + 5, TZ, True)
        assert status_of_row(sent) == "delivered"
        assert status_of_row(waiting) == "cancelled"
        assert status_of_row(failed) == "cancelled"
        assert status_of_row(other) == "pending"
        assert outbox.pending("im_send", T0 + 10) == [Outbox.get(Outbox.key == other)]


# --------------------------------------------------------------------------------------------
# queries


class TestQueries:
    """Listing, filtering, paging and counting."""

    @pytest.fixture
    def several(self, db_url: str) -> None:
        receive(task("T1", customer="c1", type_="a"), now=T0 + 1)
        receive(task("T2", customer="c2", type_="a", priority="urgent"), now=T0 + 2)
        receive(task("T3", customer="c1", type_="b", trigger={"type": "customer_payment"}), now=T0 + 3)
        receive(task("T4", customer="c1", type_="a", priority="high"), now=T0 + 4)
        receive(task("T5", customer="c3", type_="b", trigger={"type": "customer_payment"}), now=T0 + 5)
        move("T2", S.WAITING)
        move("T4", S.CANCELLED)

    @staticmethod
    def ids(page: dict[str, Any]) -> list[str]:
        return [item["task_id"] for item in page["items"]]

    @pytest.mark.usefixtures("several")
    def test_newest_first(self) -> None:
        page = tasks.list_tasks(TZ, None, None, None, 1, 50)
        assert self.ids(page) == ["T5", "T4", "T3", "T2", "T1"]
        assert page["total"] == 5
        assert "history" not in page["items"][0]

    @pytest.mark.usefixtures("several")
    def test_filters(self) -> None:
        assert self.ids(tasks.list_tasks(TZ, "pending", None, None, 1, 50)) == ["T5", "T3", "T1"]
        assert self.ids(tasks.list_tasks(TZ, None, "c1", None, 1, 50)) == ["T4", "T3", "T1"]
        assert self.ids(tasks.list_tasks(TZ, None, None, "b", 1, 50)) == ["T5", "T3"]
        assert self.ids(tasks.list_tasks(TZ, "pending", "c1", "a", 1, 50)) == ["T1"]
        assert tasks.list_tasks(TZ, "running", None, None, 1, 50) == {
            "items": [],
            "total": 0,
            "page": 1,
            "page_size": 50,
        }

    @pytest.mark.usefixtures("several")
    def test_pagination_keeps_the_total(self) -> None:
        pages = [tasks.list_tasks(TZ, None, None, None, n, 2) for n in (1, 2, 3, 4)]
        assert [self.ids(p) for p in pages] == [["T5", "T4"], ["T3", "T2"], ["T1"], []]
        assert {p["total"] for p in pages} == {5}
        assert [(p["page"], p["page_size"]) for p in pages] == [(1, 2), (2, 2), (3, 2), (4, 2)]

    @pytest.mark.usefixtures("several")
    def test_stats(self) -> None:
        assert tasks.stats() == {
            "total": 5,
            "by_status": {
                "pending": 3,
                "waiting": 1,
                "running": 0,
                "completed": 0,
                "failed": 0,
                "cancelled": 1,
                "timeout": 0,
            },
            "by_priority": {"normal": 3, "urgent": 1, "high": 1},
            "by_trigger": {"customer_reply": 3, "customer_payment": 2},
        }

    def test_stats_of_an_empty_store(self) -> None:
        stats = tasks.stats()
        assert stats["total"] == 0
        assert set(stats["by_status"].values()) == {0}


# --------------------------------------------------------------------------------------------
# outbox


class TestOutbox:
    """Side effects queued once, settled once."""

    def test_add_is_idempotent_by_key(self) -> None:
        outbox.add("k1", "callback", "T1", {"n": 1}, T0)
        outbox.add("k1", "callback", "T1", {"n": 2}, T0 + 1)
        rows = rows_of("callback", "T1")
        assert len(rows) == 1
        assert json.loads(rows[0].payload) == {"n": 1}

    def test_add_reports_a_new_key(self) -> None:
        assert outbox.add("k1", "callback", "T1", {}, T0) is True

    def test_add_reports_a_key_already_queued(self) -> None:
        outbox.add("k1", "callback", "T1", {}, T0)
        assert outbox.add("k1", "callback", "T1", {}, T0) is False

    def test_mark_settles_only_from_pending(self) -> None:
        outbox.add("k1", "im_send", "T1", {}, T0)
        row = outbox.mark("k1", "delivered", T0 + 1)
        assert row is not None and row.status == "delivered" and row.attempts == 1
        assert outbox.mark("k1", "failed", T0 + 2, error="late failure") is None
        stored = Outbox.get(Outbox.key == "k1")
        assert (stored.status, stored.error, stored.attempts) == ("delivered", None, 1)

    def test_mark_unknown_key(self) -> None:
        assert outbox.mark("nope", "delivered", T0) is None

    def test_requeue_failed_puts_a_refs_failed_rows_back(self) -> None:
        for key in ("a", "b", "c"):
            outbox.add(key, "im_send", "T1", {}, T0)
        outbox.add("z", "im_send", "T2", {}, T0)
        outbox.mark("a", "failed", T0, error="offline")
        outbox.mark("b", "delivered", T0)
        outbox.mark("z", "failed", T0)
        assert outbox.requeue_failed("im_send", "T1", T0 + 1) == 1
        assert [(r.key, r.status) for r in rows_of("im_send", "T1")] == [
            ("a", "pending"),
            ("b", "delivered"),
            ("c", "pending"),
        ]
        assert status_of_row("z") == "failed"

    def test_pending_respects_due_time_kind_and_exclusions(self) -> None:
        outbox.add("a", "im_send", "T1", {}, T0)
        outbox.add("b", "im_send", "T1", {}, T0)
        outbox.add("c", "callback", "T1", {}, T0)
        outbox.add("d", "im_send", "T2", {}, T0)
        row_b = Outbox.get(Outbox.key == "b")
        outbox.postpone(row_b.id, T0, T0 + 30, "offline")
        assert [r.key for r in outbox.pending("im_send", T0)] == ["a", "d"]
        assert [r.key for r in outbox.pending("im_send", T0 + 30)] == ["a", "b", "d"]
        assert [r.key for r in outbox.pending("im_send", T0 + 30, exclude_keys=frozenset({"a"}))] == [
            "b",
            "d",
        ]
        assert [r.key for r in outbox.pending("im_send", T0, limit=1)] == ["a"]
        stored = Outbox.get(Outbox.key == "b")
        assert (stored.attempts, stored.error, stored.status) == (1, "offline", "pending")
        outbox.deliver(row_b.id, T0 + 31)
        assert Outbox.get(Outbox.key == "b").status == "delivered"

    def test_first_pending_per_ref_is_each_refs_oldest_pending_row(self) -> None:
        for key, ref in [("a1", "A"), ("b1", "B"), ("a2", "A"), ("b2", "B"), ("c1", "C"), ("b3", "B")]:
            outbox.add(key, "callback", ref, {}, T0)
        outbox.add("x1", "im_send", "A", {}, T0)
        outbox.mark("b1", "delivered", T0)
        outbox.mark("c1", "delivered", T0)
        outbox.postpone(Outbox.get(Outbox.key == "a1").id, T0, T0 + 3600, "not yet")
        heads = outbox.first_pending_per_ref("callback")
        assert [(r.ref, r.key) for r in heads] == [("A", "a1"), ("B", "b2")]


# --------------------------------------------------------------------------------------------
# timers


class TestTimers:
    """Durable deadlines."""

    def test_arm_due_and_next_due(self) -> None:
        assert timers.next_due("scheduler") is None
        with atomic():
            timers.arm("scheduler", "k-late", T0 + 20, {"what": "late"})
            timers.arm("scheduler", "k-early", T0 + 10, {"what": "early"})
            timers.arm("other", "k-other", T0 + 1)
        assert timers.next_due("scheduler") == T0 + 10
        assert timers.due("scheduler", T0 + 5) == []
        assert [t.key for t in timers.due("scheduler", T0 + 10)] == ["k-early"]
        due = timers.due("scheduler", T0 + 60)
        assert [t.key for t in due] == ["k-early", "k-late"]
        assert json.loads(due[1].payload) == {"what": "late"}

    def test_arming_again_moves_the_timer(self) -> None:
        with atomic():
            timers.arm("scheduler", "k", T0 + 10, {"v": 1})
            timers.arm("scheduler", "k", T0 + 99, {"v": 2})
        [row] = list(Timer.select())
        assert (row.due_at, json.loads(row.payload)) == (T0 + 99, {"v": 2})
        assert timers.due("scheduler", T0 + 50) == []

    def test_disarm_one_and_several_by_exact_key(self) -> None:
        with atomic():
            for key in ("task:T1:fire", "task:T1:timeout", "task:T10:fire", "task:T_:fire", "conv:T1:x"):
                timers.arm("scheduler", key, T0)
        timers.disarm("task:T1:fire")
        timers.disarm("not-there")
        assert timers.next_due("scheduler") == T0
        timers.disarm_all(["task:T_:fire", "task:T%:fire"])
        assert sorted(t.key for t in Timer.select()) == ["conv:T1:x", "task:T10:fire", "task:T1:timeout"]


# --------------------------------------------------------------------------------------------
# IM messages and customer events


def profile_of(customer_id: str) -> dict[str, Any] | None:
    """A conversation's profile basics, without its message history."""
    view = messages.conversation_view(customer_id)
    return None if view is None else {k: v for k, v in view.items() if k != "history"}


def rows_of(kind: str, ref: str) -> list[Any]:
    """The outbox rows of one task, in order."""
    return outbox.by_ref(kind, [ref]).get(ref, [])


def store_one(f: MessageFrame, at: float) -> tuple[Any, bool]:
    """Store one frame as the gateway stores a batch."""
    return messages.store_inbound([f], at)[0]


def frame(msg_id: str, kind: str, content: Any, customer: str = "c1", name: str = "小明") -> MessageFrame:
    return MessageFrame.model_validate(
        {
            "type": "message",
            "msg_id": msg_id,
            "acc_id": "shop_001",
            "acc_type": "AliWorkbench",
            "customer": {"id": customer, "name": name},
            "kind": kind,
            "content": content,
            "ts": "2026-02-27T18:00:00+08:00",
        }
    )


class TestMessages:
    """Inbound messages stored once, handled once, turned into scheduler events."""

    def test_store_inbound_dedupes_by_msg_id(self) -> None:
        item, created = store_one(frame("m-1", "text", "你好"), T0)
        again, created_again = store_one(frame("m-1", "text", "你好(re-sent)"), T0 + 5)
        assert (created, created_again) == (True, False)
        assert again == item
        assert again.content == "你好"
        assert InboundMessage.select().count() == 1

    def test_stored_item_keeps_what_the_bridge_sent(self) -> None:
        item, _ = store_one(frame("m-1", "order", {"order_id": "O-9", "amount": 15}), T0)
        assert item.msg_id == "m-1" and item.customer_id == "c1" and item.customer_name == "小明"
        assert (item.acc_id, item.acc_type, item.kind.value) == ("shop_001", "AliWorkbench", "order")
        assert item.content == {"order_id": "O-9", "amount": 15}
        assert item.ts == "2026-02-27T18:00:00+08:00"

    @pytest.fixture
    def stored(self, db_url: str) -> list[Any]:
        frames = [
            frame("m-1", "text", "在吗"),
            frame("m-2", "image", "https://img.example/1.jpg"),
            frame("m-3", "order", {"order_id": "O-1", "amount": 15}),
            frame("m-4", "payment", {"order_id": "O-1", "amount": 15}),
            frame("m-5", "text", "好的"),
        ]
        return [store_one(f, T0)[0] for f in frames]

    def test_handle_emits_text_order_and_payment_events(self, stored: list[Any]) -> None:
        events = messages.handle_customer_messages("c1", stored, T0 + 1)
        assert [(e.kind, e.customer_id, e.text) for e in events] == [
            ("text", "c1", "在吗"),
            ("order", "c1", ""),
            ("payment", "c1", ""),
            ("text", "c1", "好的"),
        ]
        assert len({e.event_id for e in events}) == 4
        assert [e.event_id for e in messages.unconsumed_events()] == [e.event_id for e in events]

    def test_handle_updates_the_conversation_profile(self, stored: list[Any]) -> None:
        messages.handle_customer_messages("c1", stored, T0 + 1)
        history = messages.conversation_view("c1")["history"]  # type: ignore[index]
        assert [m["msg_id"] for m in history] == [i.msg_id for i in stored] and all(m["handled"] for m in history)
        assert profile_of("c1") == {
            "customer_id": "c1",
            "name": "小明",
            "acc_id": "shop_001",
            "acc_type": "AliWorkbench",
            "messages": 5,
            "images": 1,
            "orders": 1,
            "payments": 1,
            "last_image_url": "https://img.example/1.jpg",
            "last_text": "好的",
        }

    def test_handle_twice_handles_each_message_once(self, stored: list[Any]) -> None:
        messages.handle_customer_messages("c1", stored, T0 + 1)
        profile = profile_of("c1")
        events_before = messages.unconsumed_events()
        assert messages.handle_customer_messages("c1", stored, T0 + 2) == []
        assert profile_of("c1") == profile
        assert messages.unconsumed_events() == events_before
        # Handled once; what remains owed is only the image-job machine's turn, after the burst window.
        waiting = [item.msg_id for _, item in messages.unprocessed("c1")]
        assert [i.msg_id for i in messages.unhandled()] == waiting and waiting

    def test_a_partly_handled_burst_only_handles_the_rest(self, stored: list[Any]) -> None:
        messages.handle_customer_messages("c1", stored[:2], T0 + 1)
        events = messages.handle_customer_messages("c1", stored, T0 + 2)
        assert [e.kind for e in events] == ["order", "payment", "text"]
        view = profile_of("c1")
        assert view is not None and view["messages"] == 5 and view["images"] == 1

    def test_image_and_staff_messages_emit_no_event(self) -> None:
        items = [
            store_one(frame("m-1", "image", "https://img.example/2.jpg"), T0)[0],
            store_one(frame("m-2", "staff", "我是客服,马上处理"), T0)[0],
        ]
        assert messages.handle_customer_messages("c1", items, T0 + 1) == []
        assert messages.unconsumed_events() == []
        assert [i.msg_id for i in messages.unhandled()] == ["m-1"]  # the photo waits for the image-job machine

    def test_unhandled_lists_stored_messages_oldest_first(self) -> None:
        store_one(frame("m-1", "text", "a", customer="c1"), T0)
        store_one(frame("m-2", "text", "b", customer="c2"), T0 + 10)
        store_one(frame("m-3", "text", "c", customer="c1"), T0 + 20)
        assert [i.msg_id for i in messages.unhandled()] == ["m-1", "m-2", "m-3"]
        assert [i.msg_id for i in messages.unhandled(customer_id="c1")] == ["m-1", "m-3"]
        assert [i.msg_id for i in messages.unhandled(older_than=T0 + 10)] == ["m-1", "m-2"]

    def test_unknown_conversation(self) -> None:
        assert messages.conversation_view("nobody") is None

    def test_event_is_consumed_only_once(self, stored: list[Any]) -> None:
        events = messages.handle_customer_messages("c1", stored, T0 + 1)
        first = events[0].event_id
        assert messages.consume_event(first) is True
        assert messages.consume_event(first) is False
        assert first not in [e.event_id for e in messages.unconsumed_events()]
        assert len(messages.unconsumed_events()) == len(events) - 1

    def test_custom_event_for_everyone(self) -> None:
        event = messages.add_custom_event("design_done", None, {"by": "lz"}, T0)
        assert (event.kind, event.name, event.customer_id) == ("custom", "design_done", None)
        assert messages.unconsumed_events() == [event]
        assert messages.consume_event(event.event_id) is True
        assert messages.consume_event(event.event_id) is False


# --------------------------------------------------------------------------------------------
# durability


class TestDurability:
    """What is written survives closing and reopening the database file."""

    def test_task_and_history_survive_reopening(self, db_url: str) -> None:
        receive(task("T1"))
        move("T1", S.WAITING, T0 + 1, "trigger armed")
        with atomic():
            timers.arm("scheduler", "task:T1:timeout", T0 + 86_400)
        outbox.add("tw:T1:msg", "im_send", "T1", {"send_id": "tw:T1:msg"}, T0)
        store_one(frame("m-1", "text", "好的"), T0)
        before = tasks.get("T1", TZ)
        close_database()

        open_database(db_url)
        assert tasks.get("T1", TZ) == before
        assert history("T1") == [(None, "pending", "received"), ("pending", "waiting", "trigger armed")]
        assert [k for k, _, _ in callbacks("T1")] == ["cb:T1:1", "cb:T1:2"]
        assert timers.next_due("scheduler") == T0 + 86_400
        assert [r.key for r in outbox.pending("im_send", T0)] == ["tw:T1:msg"]
        assert [i.msg_id for i in messages.unhandled()] == ["m-1"]
        [again] = receive(task("T1"))
        assert isinstance(again, tasks.ReceiveResult) and again.created is False

    def test_reopening_with_create_keeps_the_data(self, db_url: str) -> None:
        receive(task("T1"))
        close_database()
        open_database(db_url, create=True)
        assert tasks.get("T1", TZ)["status"] == "pending"
        assert TaskTransition.select().count() == 1

    def test_history_numbering_continues_after_reopening(self, db_url: str) -> None:
        receive(task("T1"))
        close_database()
        open_database(db_url)
        move("T1", S.WAITING)
        assert [k for k, _, _ in callbacks("T1")] == ["cb:T1:1", "cb:T1:2"]


def test_default_database_url_opens_a_file_under_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings' default DATABASE_URL (SPEC §6) opens DATA_DIR/shop.db."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    close_database()
    settings = Settings(_env_file=None, DATA_DIR=tmp_path / "data")
    open_database(settings.DATABASE_URL, create=True)
    receive(task("T1"))
    assert (tmp_path / "data" / "shop.db").is_file()
