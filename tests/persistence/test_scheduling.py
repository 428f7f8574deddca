"""The scheduler's transactions (persistence/scheduling.py) against real databases: SQLite files and PostgreSQL.

What Tianwang observes through them: a received task is armed with its deadlines, fired by the first event
that matches it (once), started with its sends queued in priority order to the customer's account, completed
when every send is delivered, retried with backoff when a send is refused and failed after the last retry,
fired or timed out by its durable timers; every change recorded in the task's history.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.task_index import ReadyTask, Waiting
from core.tianwang import MAX_RETRIES, epoch_to_iso, timer_key
from persistence import messages, outbox, scheduling, tasks, timers
from persistence.connection import atomic, database_proxy
from persistence.models import Conversation, CustomerEvent, Outbox, Task, Timer
from protocol.messages import EventItem
from protocol.tianwang import TaskIn, TaskStatus, Trigger, TriggerType

TZ = "Asia/Shanghai"
T0 = 1_772_150_400.0  # 2026-02-27T08:00:00+08:00
NINE = T0 + 3600  # 2026-02-27 09:00:00 shop time
S = TaskStatus

pytestmark = pytest.mark.usefixtures("db_url")


def receive(task_id: str, customer: str = "c1", now: float = T0, **over: Any) -> None:
    """Store a pending task: a customer_reply on 好的 that sends a message and a file, unless over says otherwise."""
    data: dict[str, Any] = {
        "task_id": task_id, "type": "follow_up", "customer": {"name": "小明", "id": customer},
        "trigger": {"type": "customer_reply", "keyword": "好的"},
        "action": {"type": "send_file", "file_url": "https://xxx.com/file.zip", "message": "这是您要的文件"},
    }
    data.update(over)
    [result] = tasks.receive_many([TaskIn.model_validate(data)], now, TZ, True)
    assert isinstance(result, tasks.ReceiveResult)


def armed(*task_ids: str, now: float = T0) -> list[str]:
    """Register these pending tasks; the ids that moved to waiting."""
    moved, _ = scheduling.register(scheduling.tasks_by_id(list(task_ids)), now, TZ, True)
    return [r.task_id for r in moved]


def text_event(customer: str | None, text: str, at: float = T0 + 10) -> EventItem:
    return messages.event_item(CustomerEvent.create(customer_id=customer, kind="text", text=text, created_at=at))


def running(task_id: str, now: float = T0 + 20, **over: Any) -> None:
    """A task received, armed, triggered by a reply and started."""
    receive(task_id, **over)
    armed(task_id)
    ev = text_event("c1", "好的")
    assert [r.task_id for r in scheduling.trigger_by_events([(ev, [task_id])], now)] == [task_id]
    assert [s.task_id for s in scheduling.start([task_id], now, TZ, True)] == [task_id]


def status(task_id: str) -> str:
    return Task.get(Task.task_id == task_id).status


def history(task_id: str) -> list[tuple[str | None, str, str]]:
    return [(h["from"], h["to"], h["reason"]) for h in tasks.get(task_id, TZ)["history"]]


def timer_keys() -> list[str]:
    return sorted(t.key for t in Timer.select())


def sends(task_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = Outbox.select().where((Outbox.kind == "im_send") & (Outbox.ref == task_id)).order_by(Outbox.id)
    return [(r.key, r.status, json.loads(r.payload)) for r in rows]


def settle_sends(task_id: str, *statuses: str, error: str | None = None) -> None:
    """Settle a task's sends in order with these statuses."""
    for (key, _, _), st in zip(sends(task_id), statuses, strict=True):
        if st != "pending":
            assert outbox.mark(key, st, T0 + 30, error if st == "failed" else None) is not None


class TestLoading:
    """What a scheduler reads back to rebuild its memory."""

    def test_open_tasks_are_the_unfinished_oldest_first(self) -> None:
        receive("late", now=T0 + 2)
        receive("early", now=T0)
        receive("done", now=T0 + 1)
        receive("mid", now=T0 + 1.5)
        with atomic():
            tasks.transition("done", S.CANCELLED, "no", T0 + 3, TZ, True)
        armed("mid")
        assert [r.task_id for r in scheduling.open_tasks()] == ["early", "mid", "late"]
        assert [r.status for r in scheduling.open_tasks()] == ["pending", "waiting", "pending"]

    def test_pending_tasks_are_the_pending_oldest_first_or_none(self) -> None:
        assert scheduling.pending_tasks() == []
        receive("B", now=T0 + 1)
        receive("A", now=T0 + 2)
        receive("C", now=T0)
        armed("C")
        assert [r.task_id for r in scheduling.pending_tasks()] == ["B", "A"]

    def test_tasks_by_id_reads_any_state_and_skips_unknown_ids(self) -> None:
        receive("A")
        receive("B")
        with atomic():
            tasks.transition("B", S.CANCELLED, "no", T0, TZ, True)
        assert sorted((r.task_id, r.status) for r in scheduling.tasks_by_id(["A", "B", "nope"])) == [
            ("A", "pending"), ("B", "cancelled")]

    def test_rows_become_the_index_and_queue_entries(self) -> None:
        receive("A", priority="urgent")
        [row] = scheduling.tasks_by_id(["A"])
        assert scheduling.waiting_of(row) == Waiting(
            "A", "c1", Trigger(type=TriggerType.CUSTOMER_REPLY, keyword="好的"), T0)
        assert scheduling.ready_of(row._replace(triggered_at=T0 + 5)) == ReadyTask(0, T0 + 5, "A")


class TestRegister:
    """pending → waiting, with the task's durable deadlines."""

    def test_an_event_task_waits_with_its_timeout_armed(self) -> None:
        receive("A", timeout_hours=2)
        moved, earliest = scheduling.register(scheduling.tasks_by_id(["A"]), T0 + 1, TZ, True)
        assert [r.task_id for r in moved] == ["A"] and earliest == T0 + 2 * 3600
        assert status("A") == "waiting"
        assert history("A")[-1] == ("pending", "waiting", "trigger armed")
        [timer] = Timer.select()
        assert (timer.owner, timer.key, timer.due_at) == ("scheduler", timer_key("A", "timeout"), T0 + 7200)
        assert json.loads(timer.payload) == {"task_id": "A", "what": "timeout"}
        assert scheduling.next_due() == T0 + 7200

    def test_a_time_reach_task_waits_with_its_fire_time_armed(self) -> None:
        receive("A", trigger={"type": "time_reach", "time": "2026-02-27 09:00:00"})
        moved, earliest = scheduling.register(scheduling.tasks_by_id(["A"]), T0, TZ, True)
        assert [r.task_id for r in moved] == ["A"] and earliest == NINE
        assert timer_keys() == [timer_key("A", "fire")]

    def test_only_tasks_still_pending_move_in_the_given_order_with_the_earliest_deadline(self) -> None:
        receive("B", timeout_hours=5)
        receive("A", timeout_hours=3)
        receive("gone", timeout_hours=1)
        with atomic():
            tasks.transition("gone", S.CANCELLED, "no", T0, TZ, True)
        rows = {r.task_id: r for r in scheduling.tasks_by_id(["A", "B", "gone"])}
        moved, earliest = scheduling.register([rows["B"], rows["gone"], rows["A"]], T0, TZ, True)
        assert [r.task_id for r in moved] == ["B", "A"]
        assert earliest == T0 + 3 * 3600
        assert timer_keys() == [timer_key("A", "timeout"), timer_key("B", "timeout")]
        assert armed("A") == []  # already waiting: nothing moves, nothing is armed again

    def test_nothing_to_register(self) -> None:
        assert scheduling.register([], T0, TZ, True) == ([], None)
        assert scheduling.next_due() is None


class TestTriggerByEvents:
    """Events consumed and the waiting tasks they fire triggered, once."""

    def test_an_event_triggers_its_tasks_and_disarms_their_timeouts(self) -> None:
        receive("A", priority="high")
        receive("B")
        armed("A", "B")
        ev = text_event("c1", "好的" + "x" * 200)
        fired = scheduling.trigger_by_events([(ev, ["A", "B"])], T0 + 11)
        assert fired == [ReadyTask(1, T0 + 11, "A"), ReadyTask(2, T0 + 11, "B")]
        row = Task.get(Task.task_id == "A")
        assert (row.status, row.triggered_at) == ("waiting", T0 + 11)
        assert row.trigger_detail == f"text event {ev.event_id}: " + ("好的" + "x" * 200)[:100]
        assert timer_keys() == []
        assert CustomerEvent.get_by_id(ev.event_id).consumed

    def test_a_custom_event_detail_has_no_text(self) -> None:
        receive("A", trigger={"type": "custom_event", "event": "paid"})
        armed("A")
        ev = messages.add_custom_event("paid", None, {}, T0 + 5)
        scheduling.trigger_by_events([(ev, ["A"])], T0 + 6)
        assert Task.get(Task.task_id == "A").trigger_detail == f"custom event {ev.event_id}"

    def test_a_task_fires_on_the_first_event_of_the_batch_only(self) -> None:
        receive("A")
        armed("A")
        first, second = text_event("c1", "好的"), text_event("c1", "好的呀")
        fired = scheduling.trigger_by_events([(first, ["A"]), (second, ["A"])], T0 + 11)
        assert [r.task_id for r in fired] == ["A"]
        assert Task.get(Task.task_id == "A").trigger_detail == f"text event {first.event_id}: 好的"
        assert CustomerEvent.get_by_id(second.event_id).consumed

    def test_an_event_already_consumed_fires_nothing(self) -> None:
        receive("A")
        armed("A")
        ev = text_event("c1", "好的")
        with atomic():
            assert messages.consume_event(ev.event_id)
        assert scheduling.trigger_by_events([(ev, ["A"])], T0 + 11) == []
        assert Task.get(Task.task_id == "A").triggered_at is None
        assert timer_keys() == [timer_key("A", "timeout")]

    def test_a_task_no_longer_waiting_is_not_triggered_but_the_event_is_consumed(self) -> None:
        receive("A")
        receive("B")
        armed("A")
        with atomic():
            tasks.transition("A", S.CANCELLED, "no", T0, TZ, True)
        ev = text_event("c1", "好的")
        assert scheduling.trigger_by_events([(ev, ["A", "B"]), (text_event("c1", "x"), [])], T0 + 11) == []
        assert [e.event_id for e in messages.unconsumed_events()] == []

    def test_a_triggered_task_is_not_triggered_again(self) -> None:
        receive("A")
        armed("A")
        scheduling.trigger_by_events([(text_event("c1", "好的"), ["A"])], T0 + 11)
        assert scheduling.trigger_by_events([(text_event("c1", "好的"), ["A"])], T0 + 12) == []
        assert Task.get(Task.task_id == "A").triggered_at == T0 + 11

    def test_unmatched_events_are_consumed_with_when_they_were_seen(self) -> None:
        a, b, c = text_event("c1", "hi"), text_event("c2", "yo"), text_event("c3", "later")
        scheduling.consume_unmatched([(a.event_id, T0 + 50), (b.event_id, T0 + 51)])
        assert [(e.consumed, e.consumed_at) for e in CustomerEvent.select().order_by(CustomerEvent.id)] == [
            (True, T0 + 50), (True, T0 + 51), (False, None)]
        assert [e.event_id for e in messages.unconsumed_events()] == [c.event_id]


class TestStart:
    """waiting → running, the action's sends queued."""

    def test_picked_tasks_run_with_their_sends_queued_in_picked_order(self) -> None:
        Conversation.create(customer_id="c1", acc_id="acc-1", acc_type="wx", first_seen=T0, last_seen=T0)
        receive("A")
        receive("B", customer="c2", action={"type": "send_link", "url": "https://xxx.com/l"})
        armed("A", "B")
        scheduling.trigger_by_events([(text_event("c1", "好的"), ["A"]), (text_event("c2", "好的"), ["B"])], T0 + 11)
        started = scheduling.start(["B", "A"], T0 + 12, TZ, True)
        assert [(s.task_id, s.customer_id) for s in started] == [("A", "c1"), ("B", "c2")]  # task-id order
        assert started[0].reason.startswith("triggered: text event ")
        assert status("A") == status("B") == "running"
        assert history("A")[-1] == ("waiting", "running", started[0].reason)
        queued = [(k, st, p["acc_id"], p["msg_type"], p["content"]) for t in ("A", "B") for k, st, p in sends(t)]
        assert queued == [
            ("tw:A:msg", "pending", "acc-1", 0, "这是您要的文件"),
            ("tw:A:file", "pending", "acc-1", 2, "https://xxx.com/file.zip"),
            ("tw:B:link", "pending", "", 3, "https://xxx.com/l"),
        ]
        assert [r.ref for r in Outbox.select().where(Outbox.kind == "im_send").order_by(Outbox.id)] == ["B", "A", "A"]
        assert sends("A")[0][2] == {"send_id": "tw:A:msg", "acc_id": "acc-1", "acc_type": "wx", "customer_id": "c1",
                                    "msg_type": 0, "content": "这是您要的文件"}

    def test_a_task_no_longer_waiting_does_not_start(self) -> None:
        receive("A")
        armed("A")
        with atomic():
            tasks.transition("A", S.CANCELLED, "no", T0, TZ, True)
        assert scheduling.start(["A", "unknown"], T0 + 12, TZ, True) == []
        assert sends("A") == []


class TestSettle:
    """Where running tasks stand, and completing those all sent."""

    def test_tasks_are_gone_done_refused_or_still_sending(self) -> None:
        running("done")
        running("refused")
        running("sending")
        running("cancelled")
        settle_sends("done", "delivered", "delivered")
        settle_sends("refused", "failed", "failed", error="blocked")
        settle_sends("sending", "delivered", "pending")
        with atomic():
            tasks.transition("cancelled", S.CANCELLED, "no", T0, TZ, True)
        got = scheduling.settlement(["done", "refused", "sending", "cancelled", "unknown"])
        assert got.gone == ["cancelled", "unknown"]
        assert [(d.task_id, d.customer_id) for d in got.done] == [("done", "c1")]
        assert [(r.task_id, r.retries, r.error) for r in got.refused] == [("refused", 0, "blocked; blocked")]

    def test_a_refusal_with_a_send_still_pending_waits_and_no_error_reads_send_failed(self) -> None:
        running("waits")
        running("refused")
        settle_sends("waits", "failed", "pending")
        settle_sends("refused", "delivered", "failed")
        got = scheduling.settlement(["waits", "refused"])
        assert got.done == [] and got.gone == []
        assert [(r.task_id, r.error) for r in got.refused] == [("refused", "send failed")]

    def test_complete_moves_running_tasks_and_skips_finished_ones(self) -> None:
        running("A")
        running("B")
        with atomic():
            tasks.transition("B", S.CANCELLED, "no", T0, TZ, True)
        scheduling.complete(["A", "B"], T0 + 40, TZ, True)
        assert status("A") == "completed" and status("B") == "cancelled"
        assert history("A")[-1] == ("running", "completed", "sent to the customer")


class TestRetryOrFail:
    """A refused task retried with backoff, then failed."""

    def refused(self, retries: int = 0) -> scheduling.Refused:
        running("A")
        Task.update(retries=retries).where(Task.task_id == "A").execute()
        return scheduling.Refused("A", "c1", retries, "blocked")

    def test_a_retry_is_counted_and_armed_after_the_backoff(self) -> None:
        task = self.refused(retries=1)
        assert scheduling.retry_or_fail(task, T0 + 50, TZ, True, base_s=10.0) == scheduling.RetryOutcome(
            due=T0 + 50 + 20.0)
        row = Task.get(Task.task_id == "A")
        assert (row.status, row.retries, row.error, row.updated_at) == ("running", 2, "blocked", T0 + 50)
        [timer] = Timer.select().where(Timer.key == timer_key("A", "retry"))
        assert (timer.owner, timer.due_at, json.loads(timer.payload)) == (
            "scheduler", T0 + 70, {"task_id": "A", "what": "retry"})

    def test_a_failure_whose_retry_is_set_is_left_alone(self) -> None:
        task = self.refused()
        scheduling.retry_or_fail(task, T0 + 50, TZ, True, base_s=10.0)
        assert scheduling.retry_or_fail(task, T0 + 55, TZ, True, base_s=10.0) == scheduling.RetryOutcome()
        assert Task.get(Task.task_id == "A").retries == 1
        assert Timer.get(Timer.key == timer_key("A", "retry")).due_at == T0 + 60

    def test_the_last_retry_spent_the_task_fails(self) -> None:
        task = self.refused(retries=MAX_RETRIES)
        assert scheduling.retry_or_fail(task, T0 + 50, TZ, True, base_s=10.0) == scheduling.RetryOutcome(failed=True)
        row = Task.get(Task.task_id == "A")
        assert (row.status, row.error, row.retries) == ("failed", "blocked", MAX_RETRIES)
        assert history("A")[-1] == ("running", "failed", f"gave up after {MAX_RETRIES} retries")
        assert timer_keys() == []
        cb = Outbox.select().where(Outbox.kind == "callback").order_by(Outbox.id.desc()).first()
        assert json.loads(cb.payload) == {"task_id": "A", "status": "failed", "error": "blocked",
                                          "timestamp": epoch_to_iso(T0 + 50, TZ)}


class TestFireDue:
    """Due timers fired one transaction each: a time reached, a timeout, a retry."""

    def test_a_time_reach_task_is_triggered_when_its_time_comes(self) -> None:
        receive("A", trigger={"type": "time_reach", "time": "2026-02-27 09:00:00"}, priority="high")
        armed("A")
        assert list(scheduling.fire_due(NINE - 1, TZ, True)) == []
        assert list(scheduling.fire_due(NINE, TZ, True)) == [scheduling.Fired(ready=ReadyTask(1, NINE, "A"))]
        row = Task.get(Task.task_id == "A")
        assert (row.status, row.triggered_at, row.trigger_detail) == ("waiting", NINE, "time reached")
        assert timer_keys() == [] and scheduling.next_due() is None

    def test_a_task_no_trigger_reached_times_out(self) -> None:
        receive("A", customer="c7", timeout_hours=0.5)
        armed("A")
        [fired] = scheduling.fire_due(T0 + 1800, TZ, True)
        assert fired == scheduling.Fired(timed_out=scheduling.TimedOut("A", "c7", 0.5))
        row = Task.get(Task.task_id == "A")
        assert (row.status, row.error) == ("timeout", "no trigger within 0.5 h")
        assert history("A")[-1] == ("waiting", "timeout", "no trigger in time")
        assert timer_keys() == []

    def test_a_triggered_task_does_not_time_out_and_its_stale_timer_is_dropped(self) -> None:
        receive("A", timeout_hours=0.5)
        armed("A")
        Task.update(triggered_at=T0 + 5).where(Task.task_id == "A").execute()
        assert list(scheduling.fire_due(T0 + 1800, TZ, True)) == [scheduling.Fired()]
        assert status("A") == "waiting" and timer_keys() == []

    def test_a_retry_puts_refused_sends_back_for_a_running_task_only(self) -> None:
        running("A")
        running("B")
        settle_sends("A", "failed", "delivered")
        settle_sends("B", "failed", "failed")
        with atomic():
            timers.arm("scheduler", timer_key("A", "retry"), T0 + 60, {"task_id": "A", "what": "retry"})
            tasks.transition("B", S.FAILED, "gave up", T0, TZ, True)
            timers.arm("scheduler", timer_key("B", "retry"), T0 + 61, {"task_id": "B", "what": "retry"})
        assert list(scheduling.fire_due(T0 + 100, TZ, True)) == [scheduling.Fired(requeued=True), scheduling.Fired()]
        assert [st for _, st, _ in sends("A")] == ["pending", "delivered"]
        assert [st for _, st, _ in sends("B")] == ["failed", "failed"]
        assert timer_keys() == []

    def test_each_timer_is_committed_before_its_outcome_is_handed_over_earliest_first(self) -> None:
        receive("late", timeout_hours=2)
        receive("early", timeout_hours=1)
        receive("future", timeout_hours=9)
        armed("late", "early", "future")
        seen: list[tuple[str, str]] = []
        for fired in scheduling.fire_due(T0 + 3 * 3600, TZ, True):
            assert not database_proxy.obj.in_transaction()
            assert fired.timed_out is not None
            seen.append((fired.timed_out.task_id, status(fired.timed_out.task_id)))
        assert seen == [("early", "timeout"), ("late", "timeout")]
        assert timer_keys() == [timer_key("future", "timeout")]
        assert scheduling.next_due() == T0 + 9 * 3600
