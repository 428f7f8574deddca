"""Concurrent writers (persistence/postgres.py and the stores' claims), on SQLite and on a real PostgreSQL server.

Several processes, each with its own connection opened after fork as the actors do, claim the same rows at once
in different orders: every row is claimed by exactly one of them, its history and its messages written once.
PostgreSQL keeps float timestamps exact and survives a server restart under an open connection.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import time
import traceback
from collections.abc import Callable
from typing import Any

import peewee
import pytest

from persistence import handoffs, jobs, messages, outbox, tasks, timers
from persistence.connection import atomic, database_proxy
from persistence.db import close_database, open_database
from persistence.models import CustomerEvent, Handoff, InboundMessage, JobEvent, Outbox, Task, TaskTransition, Timer
from protocol.im import MessageFrame
from protocol.tianwang import TaskIn, TaskStatus
from tests import pg

T0 = 1_772_150_400.0
TZ = "Asia/Shanghai"
WORKERS = 4
ROWS = 40


def body(task_id: str) -> TaskIn:
    return TaskIn.model_validate({"task_id": task_id, "type": "t", "customer": {"id": "c1", "name": "小明"},
                                  "trigger": {"type": "customer_reply", "keyword": "好的"},
                                  "action": {"type": "send_message", "message": "hi"}})


def frame(msg_id: str) -> MessageFrame:
    return MessageFrame(msg_id=msg_id, customer={"id": "c1", "name": "小明"}, kind="text", content="好的")


# What each racer does with its shuffled list of keys; each returns the keys it won.
def _settle_one_by_one(keys: list[str]) -> list[str]:
    return [k for k in keys if outbox.mark(k, "delivered", time.time()) is not None]


def _settle_in_one_batch(keys: list[str]) -> list[str]:
    return [r.key for r in outbox.settle_many([(k, "delivered", None) for k in keys], time.time())]


def _settle_with_outcome(keys: list[str]) -> list[str]:
    return [k for k in keys if jobs.settle(k, "delivered", "rendered", "c1", "J1", {}, time.time()) is not None]


def _move_tasks(keys: list[str]) -> list[str]:
    with atomic():
        return tasks.transition_many(keys, TaskStatus.WAITING, "armed", time.time(), TZ, True)


def _receive_tasks(keys: list[str]) -> list[str]:
    results = tasks.receive_many([body(k) for k in keys], time.time(), TZ, True)
    assert not any(isinstance(r, Exception) for r in results), results
    return [k for k, r in zip(keys, results, strict=True) if r.created]


def _store_frames(keys: list[str]) -> list[str]:
    return [item.msg_id for item, created in messages.store_inbound([frame(k) for k in keys], time.time()) if created]


def _assign_handoffs(keys: list[str]) -> list[str]:
    return [k for k in keys if handoffs.mark_assigned(k, f"t-{k}", "橘子", f"派给橘子 {k}", time.time()) is not None]


def _consume_events(keys: list[str]) -> list[str]:
    return [k for k in keys if messages.consume_event(int(k))]


CLAIMS: dict[str, Callable[[list[str]], list[str]]] = {
    "settle one by one": _settle_one_by_one, "settle in one batch": _settle_in_one_batch,
    "settle with an outcome": _settle_with_outcome, "move tasks": _move_tasks, "receive tasks": _receive_tasks,
    "store frames": _store_frames, "assign hand-offs": _assign_handoffs, "consume events": _consume_events,
}


def _racer(url: str, claim: str, keys: list[str], seed: int, barrier: Any, out: Any) -> None:
    try:
        open_database(url)  # this process's own connection, as an actor opens it after fork
        order = keys[:]
        random.Random(seed).shuffle(order)
        barrier.wait(30)
        out.put((seed, CLAIMS[claim](order)))
    except BaseException:
        out.put((seed, traceback.format_exc()))


def race(url: str, claim: str, keys: list[str]) -> list[list[str]]:
    """WORKERS forked processes claim the same keys at once, each in its own order; what each one won."""
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(url, claim, keys, seed, barrier, out)) for seed in range(WORKERS)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    errors = [r for _, r in results if isinstance(r, str)]
    assert not errors, errors[0]
    return [won for _, won in results]


def assert_each_claimed_once(wins: list[list[str]], keys: list[str]) -> None:
    claimed = [k for won in wins for k in won]
    assert sorted(claimed) == sorted(keys), "a row was claimed twice, or by nobody"


@pytest.mark.parametrize("claim", ["settle one by one", "settle in one batch", "settle with an outcome"])
def test_each_outbox_row_is_settled_by_exactly_one_process(db_url: str, claim: str) -> None:
    keys = [f"render:{i}" for i in range(ROWS)]
    with atomic():
        for k in keys:
            outbox.add(k, "render", "J1", {"n": k}, T0)
    assert_each_claimed_once(race(db_url, claim, keys), keys)
    assert {r.status for r in Outbox.select()} == {"delivered"} and {r.attempts for r in Outbox.select()} == {1}
    expected_events = ROWS if claim == "settle with an outcome" else 0
    assert JobEvent.select().count() == expected_events


def test_each_task_moves_once_with_one_history_row_and_one_callback(db_url: str) -> None:
    keys = [f"T{i:03d}" for i in range(ROWS)]
    tasks.receive_many([body(k) for k in keys], T0, TZ, True)
    assert_each_claimed_once(race(db_url, "move tasks", keys), keys)
    for k in keys:
        moves = [r.to_status for r in TaskTransition.select().where(TaskTransition.task_id == k)]
        assert moves == ["pending", "waiting"]
        assert [r.key for r in Outbox.select().where(Outbox.ref == k).order_by(Outbox.id)] == [f"cb:{k}:1", f"cb:{k}:2"]
    assert {t.transitions for t in Task.select()} == {2}


def test_a_task_received_by_several_ingresses_at_once_is_stored_once(db_url: str) -> None:
    keys = [f"T{i:03d}" for i in range(ROWS)]
    assert_each_claimed_once(race(db_url, "receive tasks", keys), keys)
    assert Task.select().count() == ROWS and TaskTransition.select().count() == ROWS
    assert Outbox.select().where(Outbox.kind == "callback").count() == ROWS


def test_a_frame_received_twice_at_once_is_stored_once(db_url: str) -> None:
    keys = [f"m-{i}" for i in range(ROWS)]
    assert_each_claimed_once(race(db_url, "store frames", keys), keys)
    assert InboundMessage.select().count() == ROWS


def test_each_hand_off_is_assigned_once_and_told_once(db_url: str) -> None:
    keys = [f"handoff:J{i}" for i in range(ROWS)]
    with atomic():
        for i, k in enumerate(keys):
            handoffs.add(k, f"c{i}", f"J{i}", "customer_asked", "客户要求人工", "", T0)
    assert_each_claimed_once(race(db_url, "assign hand-offs", keys), keys)
    assert {h.status for h in Handoff.select()} == {"assigned"}
    assert Outbox.select().where(Outbox.kind == "staff").count() == ROWS
    assert JobEvent.select().where(JobEvent.kind == "handoff_assigned").count() == ROWS


def test_each_customer_event_is_consumed_once(db_url: str) -> None:
    with atomic():
        keys = [str(CustomerEvent.create(customer_id="c1", kind="text", text=f"好的 {i}", created_at=T0).id)
                for i in range(ROWS)]
    assert_each_claimed_once(race(db_url, "consume events", keys), keys)
    assert CustomerEvent.select().where(CustomerEvent.consumed == False).count() == 0  # noqa: E712


def test_the_parent_connection_outlives_its_forked_children(db_url: str) -> None:
    race(db_url, "store frames", ["m-1"])
    assert InboundMessage.select().count() == 1  # the children never closed the connection they inherited


def test_epoch_seconds_are_stored_exactly(db_url: str) -> None:
    due = 1_772_150_499.123456
    with atomic():
        timers.arm("scheduler", "t1", due, {"a": 1})
    assert timers.next_due("scheduler") == due and Timer.get().due_at == due


@pytest.fixture
def own_server() -> Any:
    """A PostgreSQL server of this test's own (it is restarted), with one database; its URL."""
    try:
        server = pg.PgServer()
    except pg.PgUnavailable as exc:
        pytest.skip(str(exc))
    try:
        server.init().start()
        yield server, server.new_database()
    finally:
        close_database()
        server.remove()


def test_a_connection_reconnects_after_the_server_restarts(own_server: Any) -> None:
    server, url = own_server
    open_database(url, create=True)
    with atomic():
        outbox.add("k1", "im_send", "c1", {"text": "你好"}, T0)
    server.stop(fast=True)
    server.start()
    assert [json.loads(r.payload) for r in Outbox.select()] == [{"text": "你好"}]  # a read outside a transaction
    server.stop(fast=True)
    server.start()
    with atomic():  # the first BEGIN finds the connection dead and opens a new one
        outbox.add("k2", "im_send", "c1", {"text": "再见"}, T0)
    assert Outbox.select().count() == 2


def test_a_query_inside_a_transaction_does_not_silently_reconnect(own_server: Any) -> None:
    server, url = own_server
    open_database(url, create=True)
    with pytest.raises(peewee.DatabaseError), atomic():
        outbox.add("k1", "im_send", "c1", {}, T0)
        server.stop(fast=True)
        server.start()
        outbox.add("k2", "im_send", "c1", {}, T0)  # half a transaction is never replayed on a new connection
    assert not database_proxy.obj.in_transaction()
    assert Outbox.select().count() == 0
