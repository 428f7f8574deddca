"""Tianwang task rules (core/tianwang.py): transitions, trigger matching, deadlines, retries and sends.

These are the rules a Tianwang integrator observes through the API (SPEC §1): which status changes
a task can make, which customer happenings fire it, when it fires or times out, how retries back
off, and which frames its action shows the customer.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from core.tianwang import (
    ALLOWED,
    MAX_RETRIES,
    CustomerEventView,
    IllegalTransition,
    SendPart,
    action_parts,
    check_transition,
    epoch_to_iso,
    fire_at,
    retry_delay,
    send_id,
    shop_time_to_epoch,
    sources_of,
    timeout_at,
    trigger_matches,
)
from protocol.im import MsgType
from protocol.tianwang import FINISHED_STATUSES, Action, TaskStatus, Trigger, TriggerType

S = TaskStatus
SHANGHAI = "Asia/Shanghai"
FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

task_ids = st.from_regex(r"[A-Za-z0-9_.:\-]{1,40}", fullmatch=True)
event_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_:-", min_size=1, max_size=20)

# The task life as SPEC §1 tells it: pending → waiting → running → completed, or failed, cancelled,
# timeout (timeout ends a *waiting* task; failure ends a *running* one; cancel ends any unfinished one).
SPEC_LIFE = re.compile(
    r"pending(,waiting(,running(,(completed|failed|cancelled))?|,(timeout|cancelled))?|,cancelled)?"
)


def reachable_from_pending() -> set[TaskStatus]:
    """Every state a task can get to from pending by legal moves (breadth-first over ALLOWED)."""
    seen, todo = {S.PENDING}, deque([S.PENDING])
    while todo:
        for nxt in ALLOWED[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# --------------------------------------------------------------------------------------------
# transitions


class TestTransitions:
    """check_transition / sources_of / IllegalTransition."""

    def test_allowed_covers_every_status(self) -> None:
        assert set(ALLOWED) == set(TaskStatus)

    @pytest.mark.parametrize(
        ("current", "target"),
        [
            (S.PENDING, S.WAITING),
            (S.WAITING, S.RUNNING),
            (S.RUNNING, S.COMPLETED),
            (S.RUNNING, S.FAILED),
            (S.WAITING, S.TIMEOUT),
            (S.PENDING, S.CANCELLED),
            (S.WAITING, S.CANCELLED),
            (S.RUNNING, S.CANCELLED),
        ],
    )
    def test_spec_life_moves_are_legal(self, current: TaskStatus, target: TaskStatus) -> None:
        check_transition("T1", current, target, "test")  # does not raise

    @pytest.mark.parametrize(
        ("current", "target"),
        [
            (S.PENDING, S.RUNNING),
            (S.PENDING, S.COMPLETED),
            (S.WAITING, S.COMPLETED),
            (S.RUNNING, S.TIMEOUT),
            (S.RUNNING, S.WAITING),
            (S.WAITING, S.PENDING),
            (S.COMPLETED, S.RUNNING),
            (S.CANCELLED, S.PENDING),
            (S.TIMEOUT, S.WAITING),
            (S.FAILED, S.RUNNING),
        ],
    )
    def test_moves_outside_the_spec_life_are_illegal(self, current: TaskStatus, target: TaskStatus) -> None:
        with pytest.raises(IllegalTransition):
            check_transition("T1", current, target, "test")

    @FAST
    @given(task_id=task_ids, event=event_names)
    def test_check_transition_raises_exactly_outside_allowed(self, task_id: str, event: str) -> None:
        for current, target in itertools.product(TaskStatus, TaskStatus):
            if target in ALLOWED[current]:
                check_transition(task_id, current, target, event)
                continue
            with pytest.raises(IllegalTransition) as info:
                check_transition(task_id, current, target, event)
            exc = info.value
            message = str(exc)
            assert task_id in message
            assert repr(current.value) in message
            assert repr(target.value) in message
            assert event in message
            assert (exc.task_id, exc.current, exc.target, exc.event) == (task_id, current, target, event)

    @pytest.mark.parametrize("finished", sorted(FINISHED_STATUSES))
    def test_finished_states_have_no_way_out(self, finished: TaskStatus) -> None:
        assert ALLOWED[finished] == frozenset()
        for target in TaskStatus:
            with pytest.raises(IllegalTransition):
                check_transition("T1", finished, target, "late event")

    def test_unfinished_states_can_always_be_cancelled(self) -> None:
        for status in set(TaskStatus) - FINISHED_STATUSES:
            check_transition("T1", status, S.CANCELLED, "cancel")

    @pytest.mark.parametrize("target", list(TaskStatus))
    def test_sources_of_is_consistent_with_allowed(self, target: TaskStatus) -> None:
        expected = {s for s in TaskStatus if target in ALLOWED[s]}
        assert sources_of(target) == expected
        for source in TaskStatus:
            if source in sources_of(target):
                check_transition("T1", source, target, "x")
            else:
                with pytest.raises(IllegalTransition):
                    check_transition("T1", source, target, "x")

    def test_nothing_leads_back_to_pending(self) -> None:
        assert sources_of(S.PENDING) == frozenset()

    def test_every_status_is_reachable_from_pending(self) -> None:
        assert reachable_from_pending() == set(TaskStatus)


class TaskLifeMachine(RuleBasedStateMachine):
    """A model task pushed around by random legal and illegal moves through check_transition."""

    @initialize(task_id=task_ids)
    def start(self, task_id: str) -> None:
        self.task_id = task_id
        self.status = S.PENDING
        self.history: list[TaskStatus] = [S.PENDING]
        self.finished_as: TaskStatus | None = None
        self.reachable = reachable_from_pending()

    @rule(to=st.sampled_from(TaskStatus), event=event_names)
    def move(self, to: TaskStatus, event: str) -> None:
        if to in ALLOWED[self.status]:
            check_transition(self.task_id, self.status, to, event)
            self.status = to
            self.history.append(to)
            if to in FINISHED_STATUSES:
                self.finished_as = to
        else:
            with pytest.raises(IllegalTransition) as info:
                check_transition(self.task_id, self.status, to, event)
            assert info.value.current is self.status and info.value.target is to

    @rule(event=event_names)
    def try_every_way_out(self, event: str) -> None:
        """Probe every target without moving: legal exactly when listed in ALLOWED."""
        for target in TaskStatus:
            try:
                check_transition(self.task_id, self.status, target, event)
            except IllegalTransition:
                assert target not in ALLOWED[self.status]
            else:
                assert target in ALLOWED[self.status]

    @invariant()
    def never_leaves_a_finished_state(self) -> None:
        if self.finished_as is not None:
            assert self.status is self.finished_as
            assert ALLOWED[self.status] == frozenset()

    @invariant()
    def every_reached_state_is_reachable_from_pending(self) -> None:
        assert set(self.history) <= self.reachable

    @invariant()
    def history_follows_the_spec_life(self) -> None:
        assert SPEC_LIFE.fullmatch(",".join(s.value for s in self.history)), self.history


TaskLifeMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None, database=None
)
TestTaskLife = TaskLifeMachine.TestCase


# --------------------------------------------------------------------------------------------
# trigger matching


def trig(**body: Any) -> Trigger:
    return Trigger.model_validate(body)


def text(customer_id: str | None, content: str) -> CustomerEventView:
    return CustomerEventView(kind="text", customer_id=customer_id, text=content)


REPLY_OK = trig(type="customer_reply", keyword="好的")
KEYWORDS = trig(type="customer_keyword", keywords=["可以", "行"], keyword="没问题")
PAYMENT = trig(type="customer_payment")
ORDER = trig(type="customer_order")
TIME = trig(type="time_reach", time="2026-02-27 09:00:00")
CUSTOM = trig(type="custom_event", event="design_done")
ALL_TRIGGERS = [REPLY_OK, KEYWORDS, PAYMENT, ORDER, TIME, CUSTOM]


class TestTriggerMatches:
    """trigger_matches: which customer happenings fire a waiting task."""

    @pytest.mark.parametrize("said", ["好的", "  好的  ", "好的,发我吧", "嗯嗯好的", "\t好的\n"])
    def test_customer_reply_matches_when_text_equals_or_contains_keyword(self, said: str) -> None:
        assert trigger_matches(REPLY_OK, "c1", text("c1", said))

    @pytest.mark.parametrize("said", ["好", "不好意思", "", "   ", "OK"])
    def test_customer_reply_without_the_keyword_does_not_match(self, said: str) -> None:
        assert not trigger_matches(REPLY_OK, "c1", text("c1", said))

    def test_customer_reply_keyword_whitespace_is_ignored(self) -> None:
        padded = trig(type="customer_reply", keyword="  好的 ")
        assert trigger_matches(padded, "c1", text("c1", "好的"))
        assert trigger_matches(padded, "c1", text("c1", " 好的的 "))

    def test_customer_reply_only_for_the_tasks_own_customer(self) -> None:
        assert not trigger_matches(REPLY_OK, "c1", text("c2", "好的"))
        assert not trigger_matches(REPLY_OK, "c1", text(None, "好的"))

    @pytest.mark.parametrize(
        ("said", "hit"), [("可以的", True), ("行", True), ("没问题!", True), ("不要", False)]
    )
    def test_customer_keyword_matches_any_of_keywords_and_keyword(self, said: str, hit: bool) -> None:
        assert trigger_matches(KEYWORDS, "c1", text("c1", said)) is hit

    def test_customer_keyword_with_keyword_only(self) -> None:
        single = trig(type="customer_keyword", keyword="发货")
        assert trigger_matches(single, "c1", text("c1", "什么时候发货"))
        assert not trigger_matches(single, "c1", text("c1", "什么时候到"))

    def test_customer_keyword_only_for_the_tasks_own_customer(self) -> None:
        assert not trigger_matches(KEYWORDS, "c1", text("c2", "可以"))

    @pytest.mark.parametrize(
        ("kind", "fires"),
        [
            ("payment", {TriggerType.CUSTOMER_PAYMENT}),
            ("order", {TriggerType.CUSTOMER_ORDER}),
            ("image", set()),
            ("staff", set()),
        ],
    )
    def test_payment_and_order_events_match_only_their_trigger(
        self, kind: str, fires: set[TriggerType]
    ) -> None:
        event = CustomerEventView(
            kind=kind, customer_id="c1", text="好的 可以 design_done", name="design_done"
        )
        for trigger in ALL_TRIGGERS:
            assert trigger_matches(trigger, "c1", event) is (trigger.type in fires), trigger.type

    def test_payment_and_order_of_another_customer_never_match(self) -> None:
        assert not trigger_matches(PAYMENT, "c1", CustomerEventView(kind="payment", customer_id="c2"))
        assert not trigger_matches(ORDER, "c1", CustomerEventView(kind="order", customer_id="c2"))

    def test_text_events_never_match_payment_order_time_or_custom(self) -> None:
        event = text("c1", "好的 可以 design_done 2026-02-27 09:00:00")
        for trigger in (PAYMENT, ORDER, TIME, CUSTOM):
            assert not trigger_matches(trigger, "c1", event), trigger.type

    def test_time_reach_is_never_fired_by_an_event(self) -> None:
        for kind in ("text", "order", "payment", "custom", "image"):
            event = CustomerEventView(kind=kind, customer_id="c1", text="x", name="x")
            assert not trigger_matches(TIME, "c1", event)

    def test_custom_event_matches_by_name(self) -> None:
        assert trigger_matches(
            CUSTOM, "c1", CustomerEventView(kind="custom", customer_id="c1", name="design_done")
        )
        assert not trigger_matches(
            CUSTOM, "c1", CustomerEventView(kind="custom", customer_id="c1", name="other")
        )

    def test_custom_event_without_customer_fires_every_customers_task(self) -> None:
        event = CustomerEventView(kind="custom", customer_id=None, name="design_done")
        for customer in ("c1", "c2", "someone_else"):
            assert trigger_matches(CUSTOM, customer, event)

    def test_custom_event_for_one_customer_fires_only_that_customer(self) -> None:
        event = CustomerEventView(kind="custom", customer_id="c1", name="design_done")
        assert trigger_matches(CUSTOM, "c1", event)
        assert not trigger_matches(CUSTOM, "c2", event)

    def test_custom_events_never_match_customer_triggers(self) -> None:
        event = CustomerEventView(kind="custom", customer_id="c1", text="好的", name="好的")
        for trigger in (REPLY_OK, KEYWORDS, PAYMENT, ORDER, TIME):
            assert not trigger_matches(trigger, "c1", event)

    @FAST
    @given(
        kind=st.sampled_from(["text", "image", "order", "payment", "staff", "custom"]),
        trigger=st.sampled_from(ALL_TRIGGERS),
        said=st.sampled_from(["好的", "可以", "design_done", "x"]),
    )
    def test_an_event_of_another_customer_never_matches(self, kind: str, trigger: Trigger, said: str) -> None:
        event = CustomerEventView(kind=kind, customer_id="other", text=said, name=said)
        assert not trigger_matches(trigger, "mine", event)

    # Whitespace here is plain spaces, tabs and newlines, which every stripping routine agrees on.
    words = st.text(alphabet="好的可以行ab ", min_size=0, max_size=12)
    keywords = st.text(alphabet="好的可以行ab\t ", min_size=1, max_size=4).filter(lambda s: s.strip())

    @FAST
    @given(keyword=keywords, said=words)
    def test_customer_reply_matches_iff_keyword_in_text(self, keyword: str, said: str) -> None:
        trigger = trig(type="customer_reply", keyword=keyword)
        assert trigger_matches(trigger, "c1", text("c1", said)) is (keyword.strip() in said)

    @FAST
    @given(keyword=keywords, before=words, after=words)
    def test_customer_reply_always_matches_text_containing_keyword(
        self, keyword: str, before: str, after: str
    ) -> None:
        trigger = trig(type="customer_reply", keyword=keyword)
        assert trigger_matches(trigger, "c1", text("c1", before + keyword + after))

    @FAST
    @given(kws=st.lists(keywords, min_size=1, max_size=4), said=words)
    def test_customer_keyword_matches_iff_any_keyword_in_text(self, kws: list[str], said: str) -> None:
        trigger = trig(type="customer_keyword", keywords=kws)
        expected = any(k.strip() in said for k in kws)
        assert trigger_matches(trigger, "c1", text("c1", said)) is expected


# --------------------------------------------------------------------------------------------
# time


class TestTime:
    """Shop-local times, fire and timeout deadlines."""

    def test_shop_time_is_read_in_shanghai(self) -> None:
        epoch = shop_time_to_epoch("2026-02-27 09:00:00", SHANGHAI)
        assert epoch == datetime(2026, 2, 27, 1, 0, 0, tzinfo=UTC).timestamp()

    def test_shop_time_is_read_in_the_configured_zone(self) -> None:
        assert (
            shop_time_to_epoch("2026-02-27 09:00:00", "UTC")
            == datetime(2026, 2, 27, 9, tzinfo=UTC).timestamp()
        )

    def test_epoch_to_iso_has_shop_offset_and_milliseconds(self) -> None:
        epoch = datetime(2026, 2, 27, 1, 0, 0, tzinfo=UTC).timestamp()
        assert epoch_to_iso(epoch, SHANGHAI) == "2026-02-27T09:00:00.000+08:00"
        assert epoch_to_iso(epoch + 0.25, SHANGHAI) == "2026-02-27T09:00:00.250+08:00"
        assert epoch_to_iso(epoch, "UTC") == "2026-02-27T01:00:00.000+00:00"

    @pytest.mark.parametrize("bad", ["2026-02-27", "2026/02/27 09:00:00", "2026-02-30 09:00:00", "tomorrow"])
    def test_malformed_shop_time_is_refused(self, bad: str) -> None:
        with pytest.raises(ValueError):
            shop_time_to_epoch(bad, SHANGHAI)

    @FAST
    @given(
        moment=st.datetimes(min_value=datetime(1995, 1, 1), max_value=datetime(2099, 12, 31)),
        zone=st.sampled_from([(SHANGHAI, "+08:00"), ("UTC", "+00:00"), ("Asia/Kolkata", "+05:30")]),
    )
    def test_shop_time_round_trips(self, moment: datetime, zone: tuple[str, str]) -> None:
        name, offset = zone
        shop_text = moment.replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S")
        iso = epoch_to_iso(shop_time_to_epoch(shop_text, name), name)
        assert iso == shop_text.replace(" ", "T") + ".000" + offset

    @FAST
    @given(
        epoch=st.floats(min_value=694_224_000, max_value=4_102_444_800, allow_nan=False, allow_infinity=False)
    )
    def test_epoch_round_trips_to_the_millisecond(self, epoch: float) -> None:
        # From 1992 on (China kept summer time until 1991) Shanghai is always +08:00.
        iso = epoch_to_iso(epoch, SHANGHAI)
        back = datetime.fromisoformat(iso)
        assert back.utcoffset() == timedelta(hours=8)
        assert abs(back.timestamp() - epoch) < 0.001 + 1e-6

    def test_fire_at_of_time_reach_is_its_shop_time(self) -> None:
        assert fire_at(TIME, SHANGHAI) == datetime(2026, 2, 27, 1, tzinfo=UTC).timestamp()
        assert fire_at(TIME, "UTC") == datetime(2026, 2, 27, 9, tzinfo=UTC).timestamp()

    @pytest.mark.parametrize("trigger", [REPLY_OK, KEYWORDS, PAYMENT, ORDER, CUSTOM])
    def test_event_triggers_have_no_fire_time(self, trigger: Trigger) -> None:
        assert fire_at(trigger, SHANGHAI) is None

    def test_time_reach_has_no_timeout(self) -> None:
        assert timeout_at(TIME, 1_700_000_000.0, 24) is None

    @FAST
    @given(
        trigger=st.sampled_from([REPLY_OK, KEYWORDS, PAYMENT, ORDER, CUSTOM]),
        created=st.floats(min_value=0, max_value=4e9, allow_nan=False),
        hours=st.floats(min_value=0.01, max_value=24 * 365, allow_nan=False),
    )
    def test_other_triggers_time_out_after_timeout_hours(
        self, trigger: Trigger, created: float, hours: float
    ) -> None:
        assert timeout_at(trigger, created, hours) == pytest.approx(created + hours * 3600)

    def test_default_timeout_is_a_day_after_creation(self) -> None:
        assert timeout_at(REPLY_OK, 1000.0, 24) == 1000.0 + 86_400


# --------------------------------------------------------------------------------------------
# retries


class TestRetryDelay:
    """Backoff of a failed action: base, 2×base, 4×base, at most MAX_RETRIES times."""

    def test_at_most_three_retries(self) -> None:
        assert MAX_RETRIES == 3

    def test_first_three_delays(self) -> None:
        assert [retry_delay(n, 5.0) for n in range(MAX_RETRIES)] == [5.0, 10.0, 20.0]

    @FAST
    @given(n=st.integers(min_value=0, max_value=20), base=st.floats(min_value=0.001, max_value=600))
    def test_each_delay_doubles_the_previous(self, n: int, base: float) -> None:
        assert retry_delay(0, base) == base
        assert retry_delay(n + 1, base) == pytest.approx(2 * retry_delay(n, base))


# --------------------------------------------------------------------------------------------
# action parts and send ids


def act(**body: Any) -> Action:
    return Action.model_validate(body)


class TestActionParts:
    """The frames a task's action shows the customer, and their idempotency keys."""

    def test_send_message_is_one_text_part(self) -> None:
        parts = action_parts(act(type="send_message", message="您好,文件在这里"))
        assert parts == [SendPart("msg", MsgType.TEXT, "您好,文件在这里")]
        assert parts[0].msg_type == 0

    def test_send_file_with_message_sends_message_first_then_file(self) -> None:
        parts = action_parts(
            act(type="send_file", file_url="https://xxx.com/file.zip", message="这是您要的文件")
        )
        assert [(p.part, int(p.msg_type), p.content) for p in parts] == [
            ("msg", 0, "这是您要的文件"),
            ("file", 2, "https://xxx.com/file.zip"),
        ]

    def test_send_file_without_message_is_one_file_part(self) -> None:
        parts = action_parts(act(type="send_file", file_url="https://xxx.com/file.zip"))
        assert len(parts) == 1
        assert parts[0].msg_type == MsgType.FILE == 2
        assert parts[0].content == "https://xxx.com/file.zip"

    def test_send_link_is_a_link_part(self) -> None:
        parts = action_parts(act(type="send_link", url="https://shop.example/p/1"))
        assert [(p.part, int(p.msg_type), p.content) for p in parts] == [
            ("link", 3, "https://shop.example/p/1")
        ]

    def test_send_link_accepts_link_url_alias(self) -> None:
        parts = action_parts(act(type="send_link", link_url="https://shop.example/p/2", message="看这个"))
        assert [(p.part, int(p.msg_type), p.content) for p in parts] == [
            ("msg", 0, "看这个"),
            ("link", 3, "https://shop.example/p/2"),
        ]

    @FAST
    @given(task_id=task_ids, part=st.sampled_from(["msg", "file", "link"]))
    def test_send_id_is_stable(self, task_id: str, part: str) -> None:
        assert send_id(task_id, part) == send_id(task_id, part)
        assert task_id in send_id(task_id, part)

    @FAST
    @given(task_id=task_ids)
    def test_send_ids_of_one_task_are_distinct(self, task_id: str) -> None:
        ids = {send_id(task_id, part) for part in ("msg", "file", "link")}
        assert len(ids) == 3

    @FAST
    @given(a=task_ids, b=task_ids, part=st.sampled_from(["msg", "file", "link"]))
    def test_send_ids_of_different_tasks_differ(self, a: str, b: str, part: str) -> None:
        if a != b:
            assert send_id(a, part) != send_id(b, part)
