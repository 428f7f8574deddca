"""The image job's state machine (core/image_job.py): every row of its table, bursts, and random walks.

What is checked is what a customer and the shop's people would see: the replies (SPEC §2's phrases),
the images and mails sent, what staff are told, what is recorded, and where the job ends up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from core import burst as bm
from core import image_job as jm
from core import replies
from core.pricing import BANDS, TEXT_BAND
from protocol.image import TERMINAL_JOB_STATES, Analysis, ChangeType, Complexity, JobState, Operation, RiskVerdict

S = JobState
NOW = 1_700_000_000.0
URL = "https://img.example/p1.png"
NORMAL = Analysis(width=800, height=600, complexity=Complexity.NORMAL, blur=40)
SIGN = Analysis(width=800, height=600, complexity=Complexity.SIMPLE, has_text=True, text="新年快乐")

# SPEC §2's life of a job, written out here independently of the module's MOVES.
SPEC_MOVES: dict[JobState | None, set[JobState]] = {
    None: {S.QUOTING},
    S.QUOTING: {S.PENDING, S.FAILED, S.CANCELLED, S.TRANSFERRED},
    S.PENDING: {S.PAID, S.CANCELLED, S.TRANSFERRED},
    S.PAID: {S.PROCESSING, S.CANCELLED, S.TRANSFERRED},
    S.PROCESSING: {S.AWAITING_CONFIRM, S.FAILED, S.CANCELLED, S.TRANSFERRED},
    S.AWAITING_CONFIRM: {S.COMPLETED, S.REVISION, S.CANCELLED, S.TRANSFERRED},
    S.REVISION: {S.PROCESSING, S.CANCELLED, S.TRANSFERRED},
    S.COMPLETED: {S.REVISION},
    S.FAILED: set(),
    S.TRANSFERRED: {S.COMPLETED},  # the designer completed the dispatch task
    S.CANCELLED: set(),
}
ENDED = {S.FAILED, S.TRANSFERRED, S.CANCELLED}
MAIL_STATES = {S.AWAITING_CONFIRM, S.COMPLETED, S.PROCESSING, S.REVISION}


def legal(job: jm.Job, event: jm.Event) -> bool:
    """The table of the module docstring, as an oracle: does (job, event) have a row?"""
    s = job.state
    if isinstance(event, jm.PhotoReceived):
        return False
    if isinstance(event, jm.Analyzed | jm.AnalysisFailed):
        return s is S.QUOTING or s in ENDED  # a late analysis of an ended job is a quiet no-op
    if isinstance(event, jm.HandOffQueued | jm.HandOffAssigned):
        return s is S.TRANSFERRED
    if isinstance(event, jm.HandOffCompleted):
        return s is S.TRANSFERRED or (s is S.COMPLETED and job.done_by == "staff")
    if isinstance(event, jm.CustomerText):
        return s not in ENDED
    if isinstance(event, jm.PhotoAsNote):
        return s is S.REVISION
    if isinstance(event, jm.PaymentReceived):
        return job.paid or s in (S.QUOTING, S.PENDING)
    if isinstance(event, jm.RenderDone | jm.RenderFailed):
        return event.render_id != jm.render_id(job) or s is S.PROCESSING
    if isinstance(event, jm.MailSent):
        return 1 <= event.seq <= job.mails and s in MAIL_STATES
    if isinstance(event, jm.MailFailed):
        return 1 <= event.seq <= job.mails and (event.seq < job.mails or s in MAIL_STATES)
    if isinstance(event, jm.Superseded):
        return s in (S.QUOTING, S.PENDING) and not job.paid
    if isinstance(event, jm.Revise):
        return (job.done_by == "staff" or s in (S.AWAITING_CONFIRM, S.COMPLETED)
                or (s is S.REVISION and bool(event.note)))
    if isinstance(event, jm.OrderMailed):
        return s in (S.AWAITING_CONFIRM, S.COMPLETED, S.PROCESSING, S.REVISION, S.TRANSFERRED)
    if isinstance(event, jm.Numbered):
        return event.number >= 1
    return s not in TERMINAL_JOB_STATES  # Cancel, Transfer


# --------------------------------------------------------------------------------------------
# helpers: jobs in every state, reached by real steps


def go(job: jm.Job, *events: jm.Event) -> jm.Job:
    for event in events:
        job = jm.step(job, event, NOW).job
    return job


def quoting() -> jm.Job:
    return jm.start_job("J1", "c1", URL, NOW).job


def pending() -> jm.Job:
    return go(quoting(), jm.Analyzed(NORMAL))


def paid_manual() -> jm.Job:
    """A paid job left for staff by the previous release (paid is a resting state only there)."""
    return replace(pending(), state=S.PAID, paid=True, order_id="O1", manual=True)


def processing() -> jm.Job:
    return go(pending(), jm.PaymentReceived("O1", 17, image_enabled=True))


def done(job: jm.Job, qa_passed: bool = True) -> jm.RenderDone:
    return jm.RenderDone(jm.render_id(job), f"/files/t/{jm.render_id(job)}.png", f"/files/t/{jm.render_id(job)}-p.png",
                         score=88 if qa_passed else 40, qa_passed=qa_passed)


def awaiting() -> jm.Job:
    job = processing()
    return go(job, done(job))


def revision() -> jm.Job:
    return go(awaiting(), jm.CustomerText("不满意"))


def completed() -> jm.Job:
    return go(awaiting(), jm.CustomerText("amy@qq.com"), jm.MailSent(1))


def failed() -> jm.Job:
    return go(quoting(), jm.AnalysisFailed("not_image"))


def cancelled() -> jm.Job:
    return go(pending(), jm.Cancel("customer changed mind", "staff"))


def transferred() -> jm.Job:
    return go(processing(), jm.Transfer("staff", "designer takes it"))


BUILDERS: dict[JobState, Callable[[], jm.Job]] = {
    S.QUOTING: quoting, S.PENDING: pending, S.PAID: paid_manual, S.PROCESSING: processing,
    S.AWAITING_CONFIRM: awaiting, S.REVISION: revision, S.COMPLETED: completed, S.FAILED: failed,
    S.CANCELLED: cancelled, S.TRANSFERRED: transferred,
}


def said(step: jm.Step) -> list[str]:
    return [e.text for e in step.effects if isinstance(e, jm.Reply)]


def of(step: jm.Step, kind: type) -> list:
    return [e for e in step.effects if isinstance(e, kind)]


def path(step: jm.Step) -> list[tuple[JobState | None, JobState]]:
    return [(m.from_state, m.to_state) for m in step.moves]


def assert_noop(before: jm.Job, step: jm.Step) -> None:
    assert step.job == before and step.effects == () and step.moves == ()


# --------------------------------------------------------------------------------------------
# the table


class TestTable:
    """The machine's table as a whole."""

    def test_every_state_has_a_builder_reaching_it(self) -> None:
        for state, build in BUILDERS.items():
            assert build().state is state

    def test_moves_are_specs(self) -> None:
        assert {s: set(t) for s, t in jm.MOVES.items()} == {s: t for s, t in SPEC_MOVES.items() if s is not None}

    def test_the_docstring_documents_every_event(self) -> None:
        doc = jm.__doc__ or ""
        for name in ("Analyzed", "AnalysisFailed", "CustomerText", "PhotoAsNote", "PaymentReceived", "RenderDone",
                     "RenderFailed", "MailSent", "MailFailed", "Superseded", "Cancel", "Transfer", "start_job"):
            assert name in doc

    @pytest.mark.parametrize("state", list(JobState))
    def test_every_event_is_legal_exactly_where_the_table_says(self, state: JobState) -> None:
        job = BUILDERS[state]()
        current = jm.render_id(job)
        events: list[jm.Event] = [
            jm.PhotoReceived(URL), jm.Analyzed(NORMAL), jm.AnalysisFailed("too_large"), jm.CustomerText("好的"),
            jm.CustomerText("背景再亮一点"), jm.PhotoAsNote(URL), jm.PaymentReceived("O9", 20, True),
            jm.RenderDone(current, "/r", "/p", 90, True), jm.RenderDone(current + "x", "/r", "/p", 90, True),
            jm.RenderFailed(current, "boom", "error"), jm.RenderFailed("old", "boom", "error"),
            jm.MailSent(1), jm.MailSent(job.mails + 1), jm.MailFailed(1, "550"), jm.MailFailed(0, "550"),
            jm.Superseded(), jm.Cancel("x", "staff"), jm.Transfer("x"),
        ]
        for event in events:
            if legal(job, event):
                jm.step(job, event, NOW)
                continue
            with pytest.raises(jm.IllegalJobEvent) as info:
                jm.step(job, event, NOW)
            message = str(info.value)
            assert repr(state.value) in message and event.name in message and job.job_id in message
            assert (info.value.job_id, info.value.state, info.value.event_name) == (job.job_id, state, event.name)


class TestStart:
    """A photo starts a job."""

    def test_start_job_is_quoting_with_an_analysis_requested(self) -> None:
        step = jm.start_job("J1", "c1", URL, NOW)
        assert step.job.state is S.QUOTING and step.job.source_url == URL and step.job.customer_id == "c1"
        assert step.job.operation is Operation.ENHANCE and not step.job.operation_explicit
        assert step.effects == (jm.Analyze(URL),)
        assert step.moves == (jm.Move(None, S.QUOTING, "photo_received", NOW),)
        assert step.job.version == jm.Job.new("J1", "c1", URL).version + 1

    def test_render_id_counts_render_requests(self) -> None:
        assert jm.render_id(quoting()) == "J1-r0"
        assert jm.render_id(processing()) == "J1-r1"


class TestQuoting:
    """quoting: the photo is being analysed."""

    def test_analysis_quotes_the_price_in_its_band(self) -> None:
        step = jm.step(quoting(), jm.Analyzed(NORMAL), NOW)
        assert step.job.state is S.PENDING and path(step) == [(S.QUOTING, S.PENDING)]
        low, high = BANDS[Complexity.NORMAL]
        assert step.job.price is not None and low <= step.job.price <= high
        assert step.job.complexity is Complexity.NORMAL and not step.job.has_text
        (text,) = said(step)
        assert text == f"这张帮您做高清修复,{step.job.price}元,拍下付款后马上给您做"

    def test_text_in_the_photo_quotes_a_text_heavy_order(self) -> None:
        step = jm.step(quoting(), jm.Analyzed(SIGN), NOW)
        price = int(re.search(r"(\d+)\s*元", said(step)[0]).group(1))  # type: ignore[union-attr]
        assert TEXT_BAND[0] <= price <= TEXT_BAND[1] and price == step.job.price and step.job.has_text
        assert "文字" in said(step)[0]

    def test_the_quote_names_the_operation_asked_while_quoting(self) -> None:
        job = go(quoting(), jm.CustomerText("帮我抠图"))
        step = jm.step(job, jm.Analyzed(NORMAL), NOW)
        assert "抠图去背景" in said(step)[0] and step.job.operation is Operation.REMOVE_BG

    @pytest.mark.parametrize(
        ("reason", "hint"),
        [("not_image", "不是图片"), ("too_large", "太大"), ("download_failed", "再发一次"), ("blocked_url", "链接"),
         ("bomb", "有问题"), ("timeout", "超时"), ("something_else", "打不开")],
    )
    def test_an_unreadable_photo_fails_with_a_hint(self, reason: str, hint: str) -> None:
        step = jm.step(quoting(), jm.AnalysisFailed(reason), NOW)
        assert step.job.state is S.FAILED and path(step) == [(S.QUOTING, S.FAILED)]
        (text,) = said(step)
        assert hint in text and "元" not in text
        assert of(step, jm.NotifyStaff) == []

    def test_an_unreadable_photo_already_paid_for_goes_to_a_designer(self) -> None:
        job = go(quoting(), jm.PaymentReceived("O1", 15, True))
        step = jm.step(job, jm.AnalysisFailed("not_image"), NOW)
        assert path(step) == [(S.QUOTING, S.TRANSFERRED)] and said(step) == []
        (handoff,) = of(step, jm.HandOff)
        assert handoff.rule == "analysis_failed" and "O1" in handoff.reason and "not_image" in handoff.reason
        assert step.job.handoff_status == "asked" and of(step, jm.NotifyStaff) == []

    def test_payment_while_quoting_is_acknowledged_and_rendering_follows_the_analysis(self) -> None:
        paid = jm.step(quoting(), jm.PaymentReceived("O1", 15, True), NOW)
        assert paid.job.state is S.QUOTING and paid.job.paid and paid.job.order_id == "O1"
        assert said(paid) == [replies.PAID_WHILE_QUOTING] and paid.moves == ()
        step = jm.step(paid.job, jm.Analyzed(NORMAL), NOW)
        assert path(step) == [(S.QUOTING, S.PENDING), (S.PENDING, S.PAID), (S.PAID, S.PROCESSING)]
        assert {m.event for m in step.moves} == {"analyzed"}
        assert not any("元" in t for t in said(step)) and said(step) == [replies.PAID]
        (render,) = of(step, jm.Render)
        assert render.render_id == "J1-r1" and step.job.renders == 1
        assert step.job.version == paid.job.version + 1

    def test_payment_while_quoting_with_the_module_paused_goes_to_a_designer(self) -> None:
        paid = jm.step(quoting(), jm.PaymentReceived("O1", 15, False), NOW)
        assert path(paid) == [(S.QUOTING, S.TRANSFERRED)] and said(paid) == []
        assert [h.rule for h in of(paid, jm.HandOff)] == ["payment_manual"] and paid.job.manual
        late = jm.step(paid.job, jm.Analyzed(NORMAL), NOW)
        assert late.job.state is S.TRANSFERRED and late.effects == () and late.moves == ()
        assert late.job.price is not None  # the designer sees the measures

    def test_once_paid_while_quoting_the_operation_is_fixed(self) -> None:
        job = go(quoting(), jm.PaymentReceived("O1", 15, True))
        step = jm.step(job, jm.CustomerText("帮我抠图"), NOW)
        assert step.job.operation is Operation.ENHANCE and len(said(step)) == 1
        assert [c.accepted for c in of(step, jm.RecordChange)] == [False]

    def test_texts_while_quoting_are_recorded_without_a_reply(self) -> None:
        step = jm.step(quoting(), jm.CustomerText("帮我抠图"), NOW)
        assert said(step) == [] and step.job.operation is Operation.REMOVE_BG and step.job.operation_explicit
        assert of(step, jm.RecordChange) == [
            jm.RecordChange(ChangeType.ADD_NOTE, None, "帮我抠图", "customer", True),
            jm.RecordChange(ChangeType.MODIFY_OPERATION, "enhance", "remove_bg", "customer", True)]
        note = jm.step(quoting(), jm.CustomerText("颜色鲜艳一点"), NOW)
        assert said(note) == [] and note.job.notes == ("颜色鲜艳一点",)
        assert of(note, jm.RecordChange) == [
            jm.RecordChange(ChangeType.ADD_NOTE, None, "颜色鲜艳一点", "customer", True)]

    def test_a_new_photo_replaces_the_unpaid_one(self) -> None:
        step = jm.step(quoting(), jm.Superseded(), NOW)
        assert step.job.state is S.CANCELLED and said(step) == [replies.NEW_PHOTO_REPLACES]


class TestPending:
    """pending: quoted, awaiting payment."""

    def test_payment_starts_the_render(self) -> None:
        job = pending()
        step = jm.step(job, jm.PaymentReceived("O1", 17, True), NOW)
        assert path(step) == [(S.PENDING, S.PAID), (S.PAID, S.PROCESSING)]
        assert step.job.paid and step.job.order_id == "O1" and step.job.renders == 1
        assert said(step) == [replies.PAID]
        assert of(step, jm.Render) == [jm.Render("J1-r1", Operation.ENHANCE, (), (), "", False)]
        assert step.job.version == job.version + 1

    def test_payment_with_the_image_module_paused_goes_to_a_designer(self) -> None:
        step = jm.step(pending(), jm.PaymentReceived("O1", 17, False), NOW)
        assert path(step) == [(S.PENDING, S.PAID), (S.PAID, S.TRANSFERRED)] and step.job.manual
        assert of(step, jm.Render) == [] and said(step) == [] and of(step, jm.NotifyStaff) == []
        (handoff,) = of(step, jm.HandOff)
        assert handoff.rule == "payment_manual" and "O1" in handoff.reason and "17元" in handoff.reason

    def test_an_operation_word_changes_the_operation(self) -> None:
        step = jm.step(pending(), jm.CustomerText("还是帮我抠图吧"), NOW)
        assert step.job.operation is Operation.REMOVE_BG and step.job.operation_explicit and step.moves == ()
        assert of(step, jm.RecordChange) == [
            jm.RecordChange(ChangeType.ADD_NOTE, None, "还是帮我抠图吧", "customer", True),
            jm.RecordChange(ChangeType.MODIFY_OPERATION, "enhance", "remove_bg", "customer", True)]
        (text,) = said(step)
        assert "抠图去背景" in text and f"{step.job.price}元" in text

    def test_naming_the_current_operation_is_a_note(self) -> None:
        step = jm.step(pending(), jm.CustomerText("帮我变清晰一点"), NOW)
        assert step.job.operation is Operation.ENHANCE and step.job.operation_explicit
        assert step.job.notes == ("帮我变清晰一点",) and said(step) == [replies.NOTE_TAKEN]

    def test_a_requirement_is_a_note(self) -> None:
        step = jm.step(pending(), jm.CustomerText("人脸不要改"), NOW)
        assert step.job.notes == ("人脸不要改",) and said(step) == [replies.NOTE_TAKEN]
        assert [c.type for c in of(step, jm.RecordChange)] == [ChangeType.ADD_NOTE]

    def test_aspect_ratio_and_perspective_words_reach_the_render(self) -> None:
        job = go(pending(), jm.CustomerText("做成16:9的"), jm.CustomerText("拍歪了帮我摆正"))
        assert job.aspect_ratio == "16:9" and job.perspective_fix
        step = jm.step(job, jm.PaymentReceived("O1", 17, True), NOW)
        (render,) = of(step, jm.Render)
        assert render.aspect_ratio == "16:9" and render.perspective_fix
        assert render.notes == ("做成16:9的", "拍歪了帮我摆正")

    def test_an_email_before_the_result_is_remembered(self) -> None:
        step = jm.step(pending(), jm.CustomerText("我的邮箱是 amy@QQ.com"), NOW)
        assert step.job.email == "amy@qq.com" and of(step, jm.Mail) == [] and said(step) == [replies.EMAIL_NOTED]
        assert step.job.notes == ()

    def test_a_new_photo_replaces_the_unpaid_one(self) -> None:
        step = jm.step(pending(), jm.Superseded(), NOW)
        assert path(step) == [(S.PENDING, S.CANCELLED)] and said(step) == [replies.NEW_PHOTO_REPLACES]


class TestAfterPayment:
    """paid and processing: the operation is fixed; requirements are noted."""

    @pytest.mark.parametrize("build", [paid_manual, processing])
    def test_an_operation_change_is_refused_politely_and_recorded(self, build: Callable[[], jm.Job]) -> None:
        job = build()
        step = jm.step(job, jm.CustomerText("改成抠图吧"), NOW)
        assert step.job.operation is Operation.ENHANCE and step.job.state is job.state
        assert of(step, jm.RecordChange) == [
            jm.RecordChange(ChangeType.MODIFY_OPERATION, "enhance", "remove_bg", "customer", False)]
        (text,) = said(step)
        assert "高清修复" in text and "改不了" in text

    @pytest.mark.parametrize("build", [paid_manual, processing])
    def test_a_requirement_is_noted(self, build: Callable[[], jm.Job]) -> None:
        step = jm.step(build(), jm.CustomerText("肤色自然一点"), NOW)
        assert step.job.notes == ("肤色自然一点",) and said(step) == [replies.REQUIREMENT_TAKEN]
        assert of(step, jm.RecordChange) == [
            jm.RecordChange(ChangeType.ADD_REQUIREMENT, None, "肤色自然一点", "customer", True)]

    def test_a_repeated_payment_notice_does_nothing(self) -> None:
        for build in (paid_manual, processing, awaiting, revision, completed):
            job = build()
            assert_noop(job, jm.step(job, jm.PaymentReceived("O1", 17, True), NOW))

    def test_the_result_is_shown_and_the_email_asked_for(self) -> None:
        job = processing()
        step = jm.step(job, done(job), NOW)
        assert path(step) == [(S.PROCESSING, S.AWAITING_CONFIRM)]
        assert of(step, jm.SendImage) == [jm.SendImage("/files/t/J1-r1-p.png")]
        assert said(step) == ["好了,你看一下效果,没问题把邮箱发我"]
        assert step.job.result_url == "/files/t/J1-r1.png" and step.job.preview_url == "/files/t/J1-r1-p.png"
        assert of(step, jm.NotifyStaff) == [] and of(step, jm.Mail) == []

    def test_a_result_still_below_the_quality_bar_is_sent_and_staff_asked_to_check_it(self) -> None:
        job = processing()
        step = jm.step(job, done(job, qa_passed=False), NOW)
        assert path(step) == [(S.PROCESSING, S.AWAITING_CONFIRM)]
        assert of(step, jm.SendImage) == [jm.SendImage("/files/t/J1-r1-p.png")]
        assert said(step) == ["好了,你看一下效果,没问题把邮箱发我"] and of(step, jm.HandOff) == []
        (staff,) = of(step, jm.NotifyStaff)
        assert staff.event == "qa_failed" and "40" in staff.text and "J1" in staff.text

    def test_a_known_email_gets_the_result_mailed_with_it(self) -> None:
        job = go(pending(), jm.CustomerText("amy@qq.com"), jm.PaymentReceived("O1", 17, True))
        step = jm.step(job, done(job), NOW)
        assert of(step, jm.Mail) == [jm.Mail(1, "amy@qq.com")] and step.job.mails == 1
        assert said(step) == [replies.RESULT_AND_MAILING]
        assert jm.step(step.job, jm.MailSent(1), NOW).job.state is S.COMPLETED

    def test_a_stale_render_outcome_does_nothing(self) -> None:
        job = processing()
        assert_noop(job, jm.step(job, jm.RenderDone("J1-r0", "/r", "/p", 90, True), NOW))
        assert_noop(job, jm.step(job, jm.RenderFailed("J1-r7", "x", "error"), NOW))

    @pytest.mark.parametrize(("kind", "rule"), [("safety", "safety_blocked"), ("exhausted", "render_failed"),
                                                ("error", "render_failed")])
    def test_a_failed_render_goes_to_a_designer(self, kind: str, rule: str) -> None:
        job = processing()
        step = jm.step(job, jm.RenderFailed(jm.render_id(job), "quota", kind), NOW)
        assert path(step) == [(S.PROCESSING, S.TRANSFERRED)] and said(step) == [] and of(step, jm.NotifyStaff) == []
        assert [(h.rule, kind in h.reason) for h in of(step, jm.HandOff)] == [(rule, True)]


class TestAwaitingConfirm:
    """awaiting_confirm: the result was sent; an e-mail completes, revision words revise."""

    def test_an_email_mails_the_result(self) -> None:
        step = jm.step(awaiting(), jm.CustomerText("我的邮箱是 amy.buyer@example.com 谢谢"), NOW)
        assert of(step, jm.Mail) == [jm.Mail(1, "amy.buyer@example.com")]
        assert step.job.email == "amy.buyer@example.com" and step.job.mails == 1
        assert step.job.state is S.AWAITING_CONFIRM

    def test_mail_sent_completes(self) -> None:
        job = go(awaiting(), jm.CustomerText("amy@qq.com"))
        step = jm.step(job, jm.MailSent(1), NOW)
        assert path(step) == [(S.AWAITING_CONFIRM, S.COMPLETED)] and said(step) == ["发到您邮箱了,注意查收哈"]

    def test_mail_failed_asks_again_and_tells_staff(self) -> None:
        job = go(awaiting(), jm.CustomerText("amy@qq.com"))
        step = jm.step(job, jm.MailFailed(1, "550 no such user"), NOW)
        assert step.job.state is S.AWAITING_CONFIRM and step.moves == () and step.job.email is None
        assert said(step) == ["邮件发送失败了,您再发一次邮箱试试"]
        (notice,) = of(step, jm.NotifyStaff)
        assert notice.event == "mail_failed" and "amy@qq.com" in notice.text and "550" in notice.text
        again = jm.step(step.job, jm.CustomerText("ok 换这个 amy@163.com"), NOW)
        assert of(again, jm.Mail) == [jm.Mail(2, "amy@163.com")]

    def test_an_older_mail_failing_after_a_newer_address_does_nothing(self) -> None:
        job = go(awaiting(), jm.CustomerText("amy@qq.com"), jm.CustomerText("amy@163.com"))
        assert_noop(job, jm.step(job, jm.MailFailed(1, "550"), NOW))

    @pytest.mark.parametrize("words", ["不满意", "颜色不对", "重做吧", "效果不好", "差太多了"])
    def test_revision_words_ask_what_to_change(self, words: str) -> None:
        step = jm.step(awaiting(), jm.CustomerText(words), NOW)
        assert path(step) == [(S.AWAITING_CONFIRM, S.REVISION)] and said(step) == ["好,你说一下哪里要改,或者发图告诉我"]

    def test_another_operation_is_refused_and_recorded(self) -> None:
        step = jm.step(awaiting(), jm.CustomerText("改成抠图吧"), NOW)
        assert step.job.operation is Operation.ENHANCE and step.moves == ()
        assert of(step, jm.RecordChange) == [
            jm.RecordChange(ChangeType.MODIFY_OPERATION, "enhance", "remove_bg", "customer", False)]
        assert "改不了" in said(step)[0]

    def test_other_words_get_a_reminder(self) -> None:
        step = jm.step(awaiting(), jm.CustomerText("这个什么时候能好"), NOW)
        assert said(step) == ["没问题的话把邮箱发我哈"] and step.moves == ()

    @pytest.mark.parametrize("words", ["好的", "嗯嗯", "谢谢", "👍", "不好意思"])
    def test_smalltalk_and_apologies_do_nothing(self, words: str) -> None:
        job = awaiting()
        step = jm.step(job, jm.CustomerText(words), NOW)
        if words == "不好意思":
            assert said(step) == [replies.REMIND_EMAIL]
        else:
            assert_noop(job, step)


class TestRevision:
    """revision: the next message is the revision note."""

    def test_the_next_text_is_the_note_and_it_re_renders(self) -> None:
        job = revision()
        step = jm.step(job, jm.CustomerText("背景再亮一点"), NOW)
        assert path(step) == [(S.REVISION, S.PROCESSING)] and said(step) == ["好的,重新给你做"]
        assert step.job.revision_notes == ("背景再亮一点",) and step.job.renders == 2
        assert step.job.operation is Operation.ENHANCE  # 背景 is the note here, not an operation
        (render,) = of(step, jm.Render)
        assert render.render_id == "J1-r2" and render.revision_notes == ("背景再亮一点",)
        assert of(step, jm.RecordChange) == [
            jm.RecordChange(ChangeType.ADD_REQUIREMENT, None, "背景再亮一点", "customer", True)]

    def test_a_photo_is_the_note(self) -> None:
        step = jm.step(revision(), jm.PhotoAsNote("https://img.example/ref.png"), NOW)
        assert step.job.revision_notes == ("参考图: https://img.example/ref.png",)
        assert step.job.state is S.PROCESSING and len(of(step, jm.Render)) == 1

    def test_smalltalk_is_not_the_note(self) -> None:
        job = revision()
        assert_noop(job, jm.step(job, jm.CustomerText("好的"), NOW))

    def test_an_email_is_remembered_and_the_revised_result_mailed(self) -> None:
        job = go(revision(), jm.CustomerText("amy@qq.com"), jm.CustomerText("亮一点"))
        assert job.email == "amy@qq.com" and job.state is S.PROCESSING
        step = jm.step(job, done(job), NOW)
        assert of(step, jm.Mail) == [jm.Mail(1, "amy@qq.com")]

    def test_the_whole_revision_round_trip(self) -> None:
        job = revision()
        job = go(job, jm.CustomerText("换个暖色调"))
        job = go(job, done(job), jm.CustomerText("a@qq.com"), jm.MailSent(1))
        assert job.state is S.COMPLETED and job.renders == 2 and job.revision_notes == ("换个暖色调",)

    def test_a_late_mail_of_the_earlier_result_does_nothing(self) -> None:
        job = go(awaiting(), jm.CustomerText("a@qq.com"), jm.CustomerText("不对"))
        assert_noop(job, jm.step(job, jm.MailSent(1), NOW))


class TestCompleted:
    """completed: another address may be mailed, and a revision is still possible."""

    def test_another_email_mails_again(self) -> None:
        job = completed()
        step = jm.step(job, jm.CustomerText("再发一份到 boss@corp.cn"), NOW)
        assert of(step, jm.Mail) == [jm.Mail(2, "boss@corp.cn")] and step.job.state is S.COMPLETED
        assert said(jm.step(step.job, jm.MailSent(2), NOW)) == [replies.MAILED]

    def test_revision_words_reopen_it(self) -> None:
        step = jm.step(completed(), jm.CustomerText("不对,颜色不对"), NOW)
        assert path(step) == [(S.COMPLETED, S.REVISION)]

    def test_other_words_do_nothing(self) -> None:
        job = completed()
        assert_noop(job, jm.step(job, jm.CustomerText("谢谢老板"), NOW))
        assert_noop(job, jm.step(job, jm.CustomerText("下次还找你"), NOW))


class TestHandOff:
    """transferred: the Dispatch actor's outcomes tell the customer once; a designer's completion completes."""

    def test_assignment_tells_the_customer_specs_phrase(self) -> None:
        step = jm.step(transferred(), jm.HandOffAssigned("橘子", "t1"), NOW)
        assert said(step) == ["好的,已帮您安排设计师处理,请稍候"] and step.moves == ()
        assert step.job.handoff_status == "assigned" and step.job.designer == "橘子"
        assert_noop(step.job, jm.step(step.job, jm.HandOffAssigned("橘子", "t1"), NOW))

    def test_a_queued_hand_off_tells_once_and_stays_quiet_at_assignment(self) -> None:
        queued = jm.step(transferred(), jm.HandOffQueued(), NOW)
        assert said(queued) == [replies.HANDOFF_QUEUED] and queued.job.handoff_status == "queued"
        assert_noop(queued.job, jm.step(queued.job, jm.HandOffQueued(), NOW))
        later = jm.step(queued.job, jm.HandOffAssigned("婷婷"), NOW)
        assert said(later) == [] and later.job.designer == "婷婷" and later.job.handoff_status == "assigned"

    def test_completion_by_the_designer_completes_the_job(self) -> None:
        job = go(transferred(), jm.HandOffAssigned("橘子", "t1"))
        step = jm.step(job, jm.HandOffCompleted("done"), NOW)
        assert path(step) == [(S.TRANSFERRED, S.COMPLETED)] and step.job.done_by == "staff"
        assert said(step) == [] and step.job.handoff_status == "done"
        assert_noop(step.job, jm.step(step.job, jm.HandOffCompleted("done"), NOW))
        assert_noop(step.job, jm.step(step.job, jm.CustomerText("不满意"), NOW))

    @pytest.mark.parametrize("event", [jm.HandOffQueued(), jm.HandOffAssigned("橘子")])
    def test_outcomes_for_a_job_not_handed_off_are_illegal(self, event: jm.Event) -> None:
        with pytest.raises(jm.IllegalJobEvent, match=f"'processing'.*{event.name}"):
            jm.step(processing(), event, NOW)


class TestRisk:
    """The analysis' risk verdict decides before any quote."""

    def test_a_declined_photo_is_refused_politely_without_a_quote(self) -> None:
        risky = NORMAL.model_copy(update={"risk": RiskVerdict.DECLINE, "risk_reason": "疑似身份证件",
                                          "risk_rule": "id_document"})
        step = jm.step(quoting(), jm.Analyzed(risky), NOW)
        assert path(step) == [(S.QUOTING, S.CANCELLED)] and step.job.price is None
        assert said(step) == [replies.risk_declined("id_document")] and not any("元" in t for t in said(step))
        assert (step.job.risk, step.job.risk_reason) == ("decline", "疑似身份证件")

    def test_a_doubtful_photo_goes_to_a_person_without_a_quote(self) -> None:
        doubtful = NORMAL.model_copy(update={"risk": RiskVerdict.HUMAN, "risk_reason": "证书类", "risk_rule": "x"})
        step = jm.step(quoting(), jm.Analyzed(doubtful), NOW)
        assert path(step) == [(S.QUOTING, S.TRANSFERRED)] and said(step) == []
        assert [(h.rule, "证书类" in h.reason) for h in of(step, jm.HandOff)] == [("risk_human", True)]

    def test_a_declined_photo_already_paid_for_goes_to_a_person(self) -> None:
        job = go(quoting(), jm.PaymentReceived("O1", 15, True))
        risky = NORMAL.model_copy(update={"risk": RiskVerdict.DECLINE, "risk_reason": "纸币", "risk_rule": "banknote"})
        step = jm.step(job, jm.Analyzed(risky), NOW)
        assert step.job.state is S.TRANSFERRED and [h.rule for h in of(step, jm.HandOff)] == ["risk_decline"]

    def test_an_accepted_photo_is_quoted_and_its_verdict_kept(self) -> None:
        step = jm.step(quoting(), jm.Analyzed(NORMAL), NOW)
        assert step.job.state is S.PENDING and step.job.risk == "accept"


class TestPeopleAndLookups:
    """Words asking for a person or for an image found (bursts)."""

    @pytest.mark.parametrize("words", ["转人工", "我要找客服", "有真人吗"])
    def test_asking_for_a_person_hands_the_newest_job_over(self, words: str) -> None:
        result = burst([processing()], bm.TextIn("m1", words))
        (step,) = result.steps
        assert step.job.state is S.TRANSFERRED and [h.rule for h in of(step, jm.HandOff)] == ["customer_asked"]

    def test_asking_for_a_person_without_a_job_hands_the_customer_over_once(self) -> None:
        result = burst([], bm.TextIn("m1", "人工"), bm.TextIn("m2", "人工客服!"))
        assert result.steps == [] and [type(e) for e in result.loose_effects] == [jm.HandOff, jm.Reply]
        assert result.loose_effects[1] == jm.Reply(replies.ALREADY_HANDED_OFF)
        again = bm.handle_burst([], [bm.TextIn("m3", "人工")], ids("N1"), True, NOW, customer_id="c1",
                                open_handoff=True)
        assert again.loose_effects == (jm.Reply(replies.ALREADY_HANDED_OFF),)

    def test_find_words_with_a_photo_look_it_up_instead_of_quoting(self) -> None:
        result = burst([], bm.PhotoIn("m1", URL), bm.TextIn("m2", "帮我找一下这张的高清原图"))
        assert result.steps == [] and result.loose_effects == (jm.FindImage(reference_url=URL, job_id=None),)

    def test_find_words_alone_look_up_the_newest_job(self) -> None:
        done_job = completed()
        result = bm.handle_burst([], [bm.TextIn("m1", "之前做的那张原图发我")], ids("N1"), True, NOW, customer_id="c1",
                                 last_job=done_job)
        assert result.loose_effects == (jm.FindImage(reference_url=None, job_id="J1"),)
        nothing = burst([], bm.TextIn("m1", "找图"))
        assert nothing.loose_effects == (jm.Reply(replies.ASK_FIND_REFERENCE),)

    def test_loose_outcomes(self) -> None:
        assert jm.loose_outcome("handoff_assigned", {"designer": "橘子"}) == (jm.Reply(replies.HANDED_OFF),)
        assert jm.loose_outcome("handoff_assigned", {"designer": "橘子", "after_queue": True}) == ()
        assert jm.loose_outcome("handoff_queued", {}) == (jm.Reply(replies.HANDOFF_QUEUED),)
        assert jm.loose_outcome("find_done", {"url": "/f/a.png", "is_image": True}) == (
            jm.SendImage("/f/a.png"), jm.Reply(replies.FOUND_IMAGE))
        assert jm.loose_outcome("find_done", {"url": "/f/a.psd", "is_image": False})[0] == jm.SendFile("/f/a.psd")
        (handoff,) = jm.loose_outcome("find_none", {"looked_for": "客户发的参考图"})
        assert isinstance(handoff, jm.HandOff) and handoff.rule == "find_image"


class TestCancelTransfer:
    """Any live job can be cancelled or handed to a designer; ended jobs stay ended."""

    @pytest.mark.parametrize("state", sorted(set(JobState) - TERMINAL_JOB_STATES))
    def test_cancel_and_transfer_from_every_live_state(self, state: JobState) -> None:
        job = BUILDERS[state]()
        assert path(jm.step(job, jm.Cancel("x", "staff"), NOW)) == [(state, S.CANCELLED)]
        step = jm.step(job, jm.Transfer("staff", "x"), NOW)
        assert path(step) == [(state, S.TRANSFERRED)] and step.effects == (jm.HandOff("staff", "x"),)

    @pytest.mark.parametrize("state", sorted(TERMINAL_JOB_STATES))
    def test_ended_jobs_refuse_them(self, state: JobState) -> None:
        for event in (jm.Cancel("x", "staff"), jm.Transfer("staff", "x")):
            with pytest.raises(jm.IllegalJobEvent, match=f"'{state.value}'.*{event.name}"):
                jm.step(BUILDERS[state](), event, NOW)

    @pytest.mark.parametrize("state", [S.FAILED, S.CANCELLED, S.TRANSFERRED])
    def test_ended_jobs_take_no_words(self, state: JobState) -> None:
        with pytest.raises(jm.IllegalJobEvent, match="customer_text"):
            jm.step(BUILDERS[state](), jm.CustomerText("a@qq.com"), NOW)

    def test_a_paid_job_cannot_be_superseded(self) -> None:
        with pytest.raises(jm.IllegalJobEvent, match="superseded"):
            jm.step(go(quoting(), jm.PaymentReceived("O1", 1, True)), jm.Superseded(), NOW)


class TestOperatorHandOff:
    """A console operator hands a live job to a designer (Transfer with rule `operator`): one hand-off, the
    customer hears about it when a designer has it; an ended job is refused."""

    @pytest.mark.parametrize("state", sorted(set(JobState) - TERMINAL_JOB_STATES))
    def test_every_live_job_goes_to_a_designer(self, state: JobState) -> None:
        job = BUILDERS[state]()
        step = jm.step(job, jm.Transfer("operator", "操作员 amy 转给设计师:客户很急"), NOW)
        assert path(step) == [(state, S.TRANSFERRED)]
        assert step.effects == (jm.HandOff("operator", "操作员 amy 转给设计师:客户很急"),)  # nothing said yet
        assert (step.job.handoff_rule, step.job.handoff_status, step.job.version) == ("operator", "asked",
                                                                                     job.version + 1)
        assigned = jm.step(step.job, jm.HandOffAssigned("橘子", "t-1"), NOW)
        assert said(assigned) == [replies.HANDED_OFF] and assigned.job.designer == "橘子"
        finished = jm.step(assigned.job, jm.HandOffCompleted("done"), NOW)
        assert finished.job.state is S.COMPLETED and finished.job.done_by == "staff"

    @pytest.mark.parametrize("state", sorted(TERMINAL_JOB_STATES))
    def test_an_ended_job_is_refused(self, state: JobState) -> None:
        with pytest.raises(jm.IllegalJobEvent, match=f"'{state.value}'.*transfer"):
            jm.step(BUILDERS[state](), jm.Transfer("operator", "again"), NOW)

    def test_a_job_the_operator_handed_off_takes_no_more_words_from_the_machine(self) -> None:
        job = jm.step(processing(), jm.Transfer("operator", "x"), NOW).job
        with pytest.raises(jm.IllegalJobEvent, match="customer_text"):
            jm.step(job, jm.CustomerText("好了吗"), NOW)


class TestPhrases:
    """SPEC's exact phrases, and the rest read like a person from the shop."""

    def test_specs_phrases_word_for_word(self) -> None:
        assert replies.ASK_EMAIL == "好了,你看一下效果,没问题把邮箱发我"
        assert replies.MAILED == "发到您邮箱了,注意查收哈"
        assert replies.MAIL_FAILED == "邮件发送失败了,您再发一次邮箱试试"
        assert replies.ASK_REVISION == "好,你说一下哪里要改,或者发图告诉我"
        assert replies.REDO == "好的,重新给你做"
        assert replies.REMIND_EMAIL == "没问题的话把邮箱发我哈"

    def test_every_operation_has_a_chinese_name(self) -> None:
        assert set(replies.OPERATION_NAMES) == set(Operation)
        assert all(re.search(r"[\u4e00-\u9fff]", name) for name in replies.OPERATION_NAMES.values())

    @pytest.mark.parametrize("op", list(Operation))
    def test_the_quote_names_operation_and_price(self, op: Operation) -> None:
        text = replies.quote(op, 15, False)
        assert replies.OPERATION_NAMES[op] in text and "15元" in text and "付款" in text
        assert "文字" in replies.quote(op, 70, True) and "70元" in replies.quote(op, 70, True)

    def test_phrases_are_short_chinese(self) -> None:
        phrases = [v for k, v in vars(replies).items() if k.isupper() and isinstance(v, str)]
        phrases += [replies.photo_unreadable(r) for r in ("not_image", "too_large", "download_failed", "x")]
        phrases += [replies.operation_changed(Operation.RESIZE, 15), replies.operation_refused(Operation.LAYERED)]
        for text in phrases:
            assert 4 <= len(text) <= 40 and re.search(r"[\u4e00-\u9fff]", text), text


# --------------------------------------------------------------------------------------------
# bursts


def ids(*names: str) -> Callable[[], str]:
    return iter(names).__next__


def said_all(result: bm.BurstResult) -> list[str]:
    return [e.text for s in result.steps for e in s.effects if isinstance(e, jm.Reply)] + [
        e.text for e in result.loose_effects if isinstance(e, jm.Reply)]


def burst(active: list[jm.Job], *inputs: bm.Input, enabled: bool = True,
          new_ids: Callable[[], str] | None = None) -> bm.BurstResult:
    return bm.handle_burst(active, list(inputs), new_ids or ids("N1", "N2", "N3"), enabled, NOW, customer_id="c1")


class TestBurst:
    """A customer's messages within the burst window, handled together."""

    @pytest.mark.parametrize("photo_first", [True, False])
    def test_words_and_photo_in_either_order_make_one_job_with_the_operation(self, photo_first: bool) -> None:
        photo, text = bm.PhotoIn("m1", URL), bm.TextIn("m2", "帮我抠图")
        result = burst([], *((photo, text) if photo_first else (text, photo)))
        (job,) = bm.jobs_after(result).values()
        assert job.job_id == "N1" and job.state is S.QUOTING and job.operation is Operation.REMOVE_BG
        effects = [e for s in result.steps for e in s.effects]
        assert jm.Analyze(URL) in effects and not [e for e in effects if isinstance(e, jm.Reply)]
        quote = jm.step(job, jm.Analyzed(NORMAL), NOW)
        assert "抠图去背景" in said(quote)[0]

    def test_a_new_photo_joins_the_unpaid_order_and_both_are_numbered(self) -> None:
        result = burst([pending()], bm.PhotoIn("m1", URL))
        after = bm.jobs_after(result)
        assert (after["J1"].state, after["J1"].number) == (S.PENDING, 1)
        assert (after["N1"].state, after["N1"].number) == (S.QUOTING, 2)
        (order,) = result.orders
        assert order.job_ids == ("J1", "N1") and not order.quoted and said_all(result) == []

    def test_a_new_photo_with_words_replacing_the_old_one_replaces_it(self) -> None:
        result = burst([pending()], bm.PhotoIn("m1", URL), bm.TextIn("m2", "换这张吧"))
        after = bm.jobs_after(result)
        assert after["J1"].state is S.CANCELLED and after["N1"].state is S.QUOTING and after["N1"].number == 0
        assert said(result.steps[0]) == [replies.NEW_PHOTO_REPLACES]

    def test_a_photo_in_revision_is_the_note(self) -> None:
        result = burst([revision()], bm.PhotoIn("m1", "https://img.example/ref.png"))
        (step,) = result.steps
        assert step.job.state is S.PROCESSING and step.job.revision_notes == ("参考图: https://img.example/ref.png",)

    def test_a_photo_beside_a_paid_job_starts_another(self) -> None:
        result = burst([processing()], bm.PhotoIn("m1", URL), bm.TextIn("m2", "这张要矢量图"))
        after = bm.jobs_after(result)
        assert set(after) == {"N1"} and after["N1"].operation is Operation.VECTORIZE

    def test_several_photos_in_one_burst_are_one_order_and_words_reach_them_all(self) -> None:
        result = burst([pending()], bm.PhotoIn("m1", URL), bm.TextIn("m2", "都抠图"), bm.PhotoIn("m3", URL + "2"))
        after = bm.jobs_after(result)
        assert [after[j].number for j in ("J1", "N1", "N2")] == [1, 2, 3]
        assert [after[j].state for j in ("N1", "N2")] == [S.QUOTING, S.QUOTING]
        assert all(after[j].operation is Operation.REMOVE_BG for j in ("J1", "N1", "N2"))

    def test_new_job_id_is_taken_once_per_photo_in_order(self) -> None:
        taken: list[str] = []

        def new_id() -> str:
            taken.append(f"N{len(taken) + 1}")
            return taken[-1]

        result = burst([revision()], bm.TextIn("m0", "亮一点"), bm.PhotoIn("m1", URL), bm.PhotoIn("m2", URL),
                       new_ids=new_id)
        assert taken == ["N1", "N2"]  # the first photo became the revision note; the second started N2
        assert set(bm.jobs_after(result)) == {"J1", "N2"}

    def test_texts_go_to_the_newest_live_job(self) -> None:
        older, newer = awaiting(), replace(pending(), job_id="J2")
        result = burst([older, newer], bm.TextIn("m1", "改成抠图"))
        (step,) = result.steps
        assert step.job.job_id == "J2" and step.job.operation is Operation.REMOVE_BG

    def test_a_payment_goes_to_the_newest_unpaid_job(self) -> None:
        older, newer = replace(pending(), job_id="J0"), replace(processing(), job_id="J2")
        result = burst([older, newer], bm.PaymentIn("m1", "O5", 16))
        (step,) = result.steps
        assert step.job.job_id == "J0" and step.job.state is S.PROCESSING and result.loose_effects == ()

    def test_a_repeated_payment_notice_changes_nothing(self) -> None:
        result = burst([processing()], bm.PaymentIn("m1", "O1", 17))
        assert result.steps == [] and result.loose_effects == ()

    def test_a_payment_with_no_photo_on_record_goes_to_a_person(self) -> None:
        for active in ([], [processing()], [failed()]):
            result = burst(active, bm.PaymentIn("m1", "O7", 15))
            assert result.steps == []
            (handoff,) = result.loose_effects
            assert isinstance(handoff, jm.HandOff) and handoff.rule == "payment_without_image"
            assert "O7" in handoff.reason and "15元" in handoff.reason

    def test_photo_and_payment_together_render_after_the_analysis(self) -> None:
        result = burst([], bm.PaymentIn("m1", "O1", 16), bm.PhotoIn("m2", URL))
        job = bm.jobs_after(result)["N1"]
        assert job.state is S.QUOTING and not job.paid and said_all(result) == [replies.PAID_WHILE_QUOTING]
        analysed = bm.handle_outcome([job], result.orders, "N1", jm.Analyzed(NORMAL), NOW)
        final = bm.jobs_after(analysed)["N1"]
        assert final.state is S.PROCESSING and said_all(analysed) == [replies.PAID]

    def test_the_paused_module_sends_the_payment_to_a_designer(self) -> None:
        result = burst([pending()], bm.PaymentIn("m1", "O1", 16), enabled=False)
        (step,) = result.steps
        assert step.job.state is S.TRANSFERRED and [h.rule for h in of(step, jm.HandOff)] == ["payment_manual"]

    def test_words_without_a_job(self) -> None:
        assert burst([], bm.TextIn("m1", "在吗")) == bm.BurstResult([], ())
        assert burst([], bm.TextIn("m1", "邮箱 a@b")) == bm.BurstResult([], ())
        assert burst([], bm.TextIn("m1", "你好")).loose_effects == ()
        asked = burst([], bm.TextIn("m1", "能帮我抠图吗"))
        assert asked.steps == [] and asked.loose_effects == (jm.Reply(replies.ASK_FOR_PHOTO),)

    def test_orders_have_no_job_effect(self) -> None:
        assert burst([pending()], bm.OrderIn("m1", "O1", 17)) == bm.BurstResult([], ())

    def test_smalltalk_leaves_no_step(self) -> None:
        assert burst([awaiting()], bm.TextIn("m1", "好的"), bm.TextIn("m2", "😀")).steps == []

    def test_the_last_step_of_a_job_holds_its_final_form(self) -> None:
        result = burst([pending()], bm.TextIn("m1", "要16:9"), bm.TextIn("m2", "改成抠图"),
                       bm.PaymentIn("m3", "O1", 16))
        assert [s.job.job_id for s in result.steps] == ["J1", "J1", "J1"]
        final = bm.jobs_after(result)["J1"]
        assert final is result.steps[-1].job and final.state is S.PROCESSING
        assert final.aspect_ratio == "16:9" and final.operation is Operation.REMOVE_BG
        assert final.version == pending().version + 3


# --------------------------------------------------------------------------------------------
# random walks


TEXTS = ["好的", "嗯嗯", "谢谢", "😀", "在吗", "不好意思", "帮我抠图", "变清晰一点", "改成矢量图", "分层psd",
         "老照片修复", "改一下尺寸", "不满意", "重做", "颜色不对", "效果不好", "背景再亮一点", "要16:9的",
         "有点歪帮我摆正",
         "我的邮箱是 amy@qq.com", "b@163.com", "邮箱 a@b", "什么时候好", "人脸不要动"]
REASONS = ["not_image", "too_large", "download_failed", "blocked_url", "bomb", "timeout"]
measures = st.floats(min_value=0, max_value=100, allow_nan=False)
ENDING_ODDS = 6


class JobWalk(RuleBasedStateMachine):
    """One job pushed around by random events, legal and not; every step is checked against the table."""

    @initialize(url=st.sampled_from([URL, "https://img.example/其它.jpg"]))
    def start(self, url: str) -> None:
        first = jm.start_job("J1", "c1", url, 0.0)
        self.job = first.job
        self.clock = 0.0
        self.history: list[JobState] = [S.QUOTING]
        self.renders_seen = 0
        self.handed_off_told = 0

    def apply(self, event: jm.Event) -> None:
        self.clock += 1.0
        before = self.job
        try:
            step = jm.step(before, event, self.clock)
        except jm.IllegalJobEvent as exc:
            assert not legal(before, event), (before.state, event)
            assert exc.state is before.state and repr(before.state.value) in str(exc) and event.name in str(exc)
            return
        assert legal(before, event), (before.state, event)
        self.check(before, step, event)
        self.job = step.job
        self.history.extend(m.to_state for m in step.moves)

    def check(self, before: jm.Job, step: jm.Step, event: jm.Event) -> None:
        after = step.job
        # states move only along the table, as one chain from the old state to the new
        state = before.state
        for move in step.moves:
            assert move.from_state is state and move.to_state in SPEC_MOVES[state], (state, move)
            assert move.event == event.name and move.at == self.clock
            state = move.to_state
        assert after.state is state
        # version: +1 for every step with moves, effects or changes; a no-op step hands back the job untouched
        if step.moves or step.effects or replace(after, version=before.version) != before:
            assert after.version == before.version + 1
        else:
            assert after is before
        # renders only grow, by one per Render effect, at most one per step, named by render_id
        renders = of(step, jm.Render)
        assert len(renders) <= 1 and after.renders == before.renders + len(renders)
        for render in renders:
            assert render.render_id == jm.render_id(after) and after.state is S.PROCESSING
            assert render.operation is after.operation and render.notes == after.notes
            assert render.revision_notes == after.revision_notes
        mails = of(step, jm.Mail)
        assert len(mails) <= 1 and after.mails == before.mails + len(mails)
        for mail in mails:
            assert mail.seq == after.mails and mail.to == after.email and "@" in mail.to
        # once paid, the operation is fixed and the job stays paid
        if before.paid:
            assert after.paid and after.operation is before.operation and after.order_id == before.order_id
        # the price stays in its band
        if after.price is not None:
            assert after.complexity is not None
            low, high = TEXT_BAND if after.has_text else BANDS[after.complexity]
            assert low <= after.price <= high
        # what the customer sees is never empty; staff notices name the customer and the job
        assert all(r.text.strip() for r in of(step, jm.Reply))
        assert all("c1" in n.text and "J1" in n.text for n in of(step, jm.NotifyStaff))
        # the result is only sent when the job moves to awaiting_confirm
        if of(step, jm.SendImage):
            assert after.state is S.AWAITING_CONFIRM and before.state is S.PROCESSING
        # a hand-off is asked for exactly when the job moves to transferred, and the customer is told once
        assert bool(of(step, jm.HandOff)) == (after.state is S.TRANSFERRED and before.state is not S.TRANSFERRED)
        self.handed_off_told += sum(r.text in (replies.HANDED_OFF, replies.HANDOFF_QUEUED) for r in of(step, jm.Reply))
        assert self.handed_off_told <= 1

    @rule(complexity=st.sampled_from(list(Complexity)), has_text=st.booleans(), blur=measures, noise=measures,
          damage=measures, risk=st.sampled_from([RiskVerdict.ACCEPT] * (ENDING_ODDS - 1) + [RiskVerdict.HUMAN,
                                                                                         RiskVerdict.DECLINE]))
    def analyzed(self, complexity: Complexity, has_text: bool, blur: float, noise: float, damage: float,
                 risk: RiskVerdict) -> None:
        self.apply(jm.Analyzed(Analysis(width=100, height=100, complexity=complexity, has_text=has_text, blur=blur,
                                         noise=noise, damage=damage, risk=risk, risk_reason="原因", risk_rule="x")))

    @rule(outcome=st.sampled_from([jm.HandOffQueued(), jm.HandOffAssigned("橘子", "t1"), jm.HandOffCompleted("ok")]))
    def handoff_outcome(self, outcome: jm.Event) -> None:
        self.apply(outcome)

    @rule(reason=st.sampled_from(REASONS), now=st.integers(min_value=1, max_value=ENDING_ODDS))
    def analysis_failed(self, reason: str, now: int) -> None:
        if now == ENDING_ODDS or self.job.state is not S.QUOTING:
            self.apply(jm.AnalysisFailed(reason))

    @rule(text=st.sampled_from(TEXTS) | st.text(max_size=12))
    def text(self, text: str) -> None:
        self.apply(jm.CustomerText(text))

    @rule(note=st.sampled_from(["", "颜色不对"]))
    def revise(self, note: str) -> None:
        self.apply(jm.Revise(note))

    @rule()
    def order_mailed(self) -> None:
        self.apply(jm.OrderMailed())

    @rule(number=st.integers(min_value=0, max_value=3))
    def numbered(self, number: int) -> None:
        self.apply(jm.Numbered(number))

    @rule()
    def photo_note(self) -> None:
        self.apply(jm.PhotoAsNote("https://img.example/ref.png"))

    @rule(enabled=st.booleans(), order=st.sampled_from(["O1", "O2"]))
    def payment(self, enabled: bool, order: str) -> None:
        self.apply(jm.PaymentReceived(order, 15.0, enabled))

    @rule(current=st.booleans(), qa_passed=st.booleans())
    def render_done(self, current: bool, qa_passed: bool) -> None:
        rid = jm.render_id(self.job) if current else f"J1-r{self.job.renders - 1}"
        self.apply(jm.RenderDone(rid, "/r.png", "/p.png", 80 if qa_passed else 30, qa_passed))

    @rule(now=st.integers(min_value=1, max_value=ENDING_ODDS), kind=st.sampled_from(["safety", "exhausted", "error"]))
    def render_failed(self, now: int, kind: str) -> None:
        rid = jm.render_id(self.job) if now == ENDING_ODDS else "J1-old"
        self.apply(jm.RenderFailed(rid, "no luck", kind))

    @rule(offset=st.integers(min_value=-1, max_value=1))
    def mail_sent(self, offset: int) -> None:
        self.apply(jm.MailSent(self.job.mails + offset))

    @rule(offset=st.integers(min_value=-1, max_value=1))
    def mail_failed(self, offset: int) -> None:
        self.apply(jm.MailFailed(self.job.mails + offset, "550"))

    @rule(choice=st.booleans())
    def advance(self, choice: bool) -> None:
        """The event that takes the job further along its usual life, so walks reach the later states."""
        job, state = self.job, self.job.state
        forward: dict[JobState, jm.Event] = {
            S.QUOTING: jm.Analyzed(NORMAL if choice else SIGN),
            S.PENDING: jm.PaymentReceived("O1", 15.0, True),
            S.PAID: jm.PaymentReceived("O1", 15.0, True),
            S.PROCESSING: jm.RenderDone(jm.render_id(job), "/r.png", "/p.png", 90, True),
            S.AWAITING_CONFIRM: (jm.MailSent(job.mails) if job.mails else jm.CustomerText("amy@qq.com")) if choice
            else jm.CustomerText("不满意"),
            S.REVISION: jm.CustomerText("亮一点") if choice else jm.PhotoAsNote("https://img.example/ref.png"),
            S.COMPLETED: jm.CustomerText("重做") if choice else jm.MailSent(max(job.mails, 1)),
        }
        self.apply(forward.get(state, jm.Cancel("late", "staff")))

    # Events that end a job end the walk's interest in it: they fire one time in ENDING_ODDS.
    @rule(now=st.integers(min_value=1, max_value=ENDING_ODDS))
    def superseded(self, now: int) -> None:
        if now == ENDING_ODDS:
            self.apply(jm.Superseded())

    @rule(now=st.integers(min_value=1, max_value=ENDING_ODDS))
    def cancel(self, now: int) -> None:
        if now == ENDING_ODDS:
            self.apply(jm.Cancel("changed mind", "customer"))

    @rule(now=st.integers(min_value=1, max_value=ENDING_ODDS))
    def transfer(self, now: int) -> None:
        if now == ENDING_ODDS:
            self.apply(jm.Transfer("staff", "designer"))

    @invariant()
    def ended_jobs_stay_ended(self) -> None:
        for i, state in enumerate(self.history[:-1]):
            if state in ENDED:  # a designer completing a transferred job is the one way on
                assert self.history[i + 1:] in ([], [S.COMPLETED] if state is S.TRANSFERRED else [])
        assert self.history[-1] is self.job.state

    @invariant()
    def renders_never_shrink(self) -> None:
        assert self.job.renders >= self.renders_seen
        self.renders_seen = self.job.renders


JobWalk.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestJobWalk = JobWalk.TestCase


def test_an_email_in_the_first_words_does_not_swallow_the_order() -> None:
    step = jm.step(quoting(), jm.CustomerText("改一下尺寸 800x600 邮箱 amy@example.com"), NOW)
    assert step.job.email == "amy@example.com" and step.job.operation is Operation.RESIZE
    assert step.job.notes == ("改一下尺寸 800x600",) and said(step) == []
