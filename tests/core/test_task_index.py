"""The scheduler's in-memory task view (core/task_index.py): which waiting tasks an event may fire, which it does
fire, and in which order triggered tasks start.

What a Tianwang integrator observes through it: a customer's reply fires that customer's waiting tasks only, a
custom event fires the tasks waiting for its name (of its customer, when it names one), a task never fires on
an event older than itself, and urgent work starts before normal work, earliest triggered first.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from core.task_index import ReadyQueue, ReadyTask, TaskIndex, Waiting
from core.tianwang import CustomerEventView, trigger_matches
from protocol.messages import EventItem
from protocol.tianwang import Trigger, TriggerType

T0 = 1_772_150_400.0


def waiting(task_id: str, customer: str = "c1", created_at: float = T0, **trigger: Any) -> Waiting:
    """A waiting task; a customer_reply on 好的 unless trigger fields say otherwise."""
    return Waiting(task_id, customer, Trigger.model_validate(trigger or {"type": "customer_reply", "keyword": "好的"}),
                   created_at)


def event(kind: str = "text", customer: str | None = "c1", text: str = "", name: str = "", at: float = T0 + 1,
          event_id: int = 1) -> EventItem:
    return EventItem(event_id=event_id, kind=kind, customer_id=customer, text=text, name=name, at=at)


def index_of(*tasks: Waiting) -> TaskIndex:
    index = TaskIndex()
    for w in tasks:
        index.index(w)
    return index


class TestIndex:
    """What the index keeps and forgets."""

    def test_an_event_driven_task_is_kept_by_id_and_customer(self) -> None:
        index = index_of(waiting("T1"), waiting("T2", customer="c2"))
        assert len(index) == 2
        assert "T1" in index and "T2" in index and "T3" not in index
        assert index.by_customer == {"c1": {"T1"}, "c2": {"T2"}}
        assert index.by_event == {}

    def test_a_time_reach_task_is_left_to_its_timer(self) -> None:
        index = index_of(waiting("T1", type="time_reach", time="2026-02-27 09:00:00"))
        assert len(index) == 0 and "T1" not in index
        assert index.by_customer == {} and index.by_event == {}

    def test_a_custom_event_task_is_also_kept_by_event_name(self) -> None:
        index = index_of(waiting("T1", type="custom_event", event="paid"))
        assert index.by_event == {"paid": {"T1"}}
        assert index.by_customer == {"c1": {"T1"}}

    def test_unindex_forgets_a_task_everywhere_and_ignores_unknown_ids(self) -> None:
        index = index_of(waiting("T1", type="custom_event", event="paid"), waiting("T2"))
        index.unindex("T1")
        index.unindex("nope")
        assert "T1" not in index and len(index) == 1
        assert index.candidates(event("custom", name="paid")) == set()
        assert index.candidates(event("text")) == {"T2"}


class TestCandidates:
    """Which waiting tasks an event may fire, before its trigger is checked."""

    def test_a_customer_event_finds_that_customers_tasks_only(self) -> None:
        index = index_of(waiting("T1"), waiting("T2", type="customer_order"), waiting("T3", customer="c2"))
        assert index.candidates(event("text")) == {"T1", "T2"}
        assert index.candidates(event("order", customer="c2")) == {"T3"}
        assert index.candidates(event("text", customer="c9")) == set()

    def test_a_customer_event_with_no_customer_finds_nothing(self) -> None:
        assert index_of(waiting("T1")).candidates(event("text", customer=None)) == set()

    def test_a_custom_event_finds_the_tasks_waiting_for_its_name(self) -> None:
        index = index_of(waiting("T1", type="custom_event", event="paid"),
                         waiting("T2", customer="c2", type="custom_event", event="paid"),
                         waiting("T3", type="custom_event", event="other"), waiting("T4"))
        assert index.candidates(event("custom", customer=None, name="paid")) == {"T1", "T2"}
        assert index.candidates(event("custom", customer="c2", name="paid")) == {"T2"}
        assert index.candidates(event("custom", name="unknown")) == set()

    def test_candidates_are_a_copy(self) -> None:
        index = index_of(waiting("T1"))
        index.candidates(event("text")).clear()
        assert index.candidates(event("text")) == {"T1"}


class TestFiredBy:
    """Which candidates an event fires."""

    def test_matching_tasks_fire_in_task_id_order(self) -> None:
        index = index_of(waiting("T2"), waiting("T1"), waiting("T3", type="customer_reply", keyword="不用"))
        ev = event("text", text="好的，谢谢")
        assert index.fired_by(ev, index.candidates(ev)) == ["T1", "T2"]

    def test_a_task_created_after_the_event_does_not_fire(self) -> None:
        index = index_of(waiting("early", created_at=T0), waiting("late", created_at=T0 + 5),
                         waiting("same-ms", created_at=T0 + 1.001))
        ev = event("text", text="好的", at=T0 + 1)
        assert index.fired_by(ev, index.candidates(ev)) == ["early", "same-ms"]

    def test_ids_not_waiting_are_skipped(self) -> None:
        index = index_of(waiting("T1"))
        assert index.fired_by(event("text", text="好的"), {"T1", "gone"}) == ["T1"]

    def test_a_custom_event_fires_on_its_name(self) -> None:
        index = index_of(waiting("T1", type="custom_event", event="paid"))
        ev = event("custom", customer=None, name="paid")
        assert index.fired_by(ev, index.candidates(ev)) == ["T1"]


class TestReadyQueue:
    """The order triggered tasks start in, and the room they start into."""

    def test_urgent_first_then_earliest_triggered_then_task_id(self) -> None:
        queue = ReadyQueue()
        for task in [ReadyTask(2, T0, "normal"), ReadyTask(0, T0 + 9, "urgent"), ReadyTask(1, T0 + 2, "high-b"),
                     ReadyTask(1, T0 + 1, "high-a"), ReadyTask(1, T0 + 1, "high-0")]:
            queue.push(task)
        assert queue.pick(10, set()) == ["urgent", "high-0", "high-a", "high-b", "normal"]
        assert len(queue) == 0

    def test_pick_takes_no_more_than_the_room(self) -> None:
        queue = ReadyQueue()
        for n in range(5):
            queue.push(ReadyTask(2, T0 + n, f"T{n}"))
        assert queue.pick(2, set()) == ["T0", "T1"]
        assert len(queue) == 3
        assert queue.pick(0, set()) == [] and queue.pick(-1, set()) == []
        assert len(queue) == 3

    def test_running_and_repeated_tasks_are_dropped_not_started(self) -> None:
        queue = ReadyQueue()
        for task in [ReadyTask(0, T0, "run"), ReadyTask(1, T0, "twice"), ReadyTask(1, T0 + 1, "twice"),
                     ReadyTask(2, T0, "last")]:
            queue.push(task)
        assert queue.pick(2, {"run"}) == ["twice", "last"]
        assert len(queue) == 0


# -- properties -----------------------------------------------------------------------------

customers = st.sampled_from(["c1", "c2", "c3"])
names = st.sampled_from(["paid", "signed", "left"])
triggers = st.one_of(
    st.builds(dict, type=st.just("customer_reply"), keyword=st.sampled_from(["好", "好的", "行"])),
    st.builds(dict, type=st.just("customer_order")),
    st.builds(dict, type=st.just("customer_payment")),
    st.builds(dict, type=st.just("custom_event"), event=names),
    st.builds(dict, type=st.just("time_reach"), time=st.just("2026-02-27 09:00:00")),
)
tasks_st = st.lists(st.tuples(st.integers(0, 30), customers, triggers, st.floats(T0, T0 + 10)), max_size=40)
events_st = st.one_of(
    st.builds(event, kind=st.sampled_from(["text", "order", "payment"]), customer=st.one_of(st.none(), customers),
              text=st.sampled_from(["", "好的", "行吧", "不"]), at=st.floats(T0, T0 + 10)),
    st.builds(event, kind=st.just("custom"), customer=st.one_of(st.none(), customers), name=names,
              at=st.floats(T0, T0 + 10)),
)


@given(tasks=tasks_st, dropped=st.sets(st.integers(0, 30)), ev=events_st)
def test_candidates_are_every_kept_task_the_event_could_concern(tasks: list[Any], dropped: set[int],
                                                                ev: EventItem) -> None:
    index = TaskIndex()
    kept: dict[str, Waiting] = {}
    for n, customer, trigger, created in tasks:
        w = waiting(f"T{n}", customer, created, **trigger)
        index.unindex(w.task_id)  # a task is indexed once at a time, as the scheduler does
        kept.pop(w.task_id, None)
        index.index(w)
        if w.trigger.type is not TriggerType.TIME_REACH:
            kept[w.task_id] = w
    for n in dropped:
        index.unindex(f"T{n}")
        kept.pop(f"T{n}", None)
    assert len(index) == len(kept)
    if ev.kind == "custom":
        expected = {i for i, w in kept.items() if w.trigger.type is TriggerType.CUSTOM_EVENT
                    and w.trigger.event == ev.name and ev.customer_id in (None, w.customer_id)}
    else:
        expected = {i for i, w in kept.items() if w.customer_id == ev.customer_id}
    found = index.candidates(ev)
    assert found == expected
    view = CustomerEventView(kind=ev.kind, customer_id=ev.customer_id, text=ev.text, name=ev.name)
    assert index.fired_by(ev, found) == [i for i in sorted(found) if kept[i].created_at <= ev.at + 0.001
                                         and trigger_matches(kept[i].trigger, kept[i].customer_id, view)]


@given(entries=st.lists(st.tuples(st.integers(0, 2), st.floats(T0, T0 + 100), st.sampled_from("ABCDEFG")),
                        max_size=30),
       running=st.sets(st.sampled_from("ABCDEFG")), room=st.integers(-2, 10))
def test_pick_starts_the_best_distinct_tasks_not_running(entries: list[tuple[int, float, str]], running: set[str],
                                                         room: int) -> None:
    queue = ReadyQueue()
    for rank, at, task_id in entries:
        queue.push(ReadyTask(rank, at, task_id))
    picked = queue.pick(room, running)
    assert len(picked) <= max(room, 0) and len(set(picked)) == len(picked)
    assert not set(picked) & running
    best: list[str] = []
    for _, _, task_id in sorted(entries):
        if task_id not in running and task_id not in best:
            best.append(task_id)
    assert picked == best[:max(room, 0)]
