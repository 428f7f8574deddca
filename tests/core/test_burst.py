"""Orders of several photos (core/burst.py, core/order.py): one quote, payments by amount, numbered delivery,
one mail, revisions photo by photo — checked as the customer and the shop's people would see them."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from core import burst as bm
from core import image_job as jm
from core import replies
from core.order import MailOrder, Order, cents, quote_text
from protocol.image import Analysis, Complexity, JobState, Operation, RiskVerdict

S = JobState
NOW = 1_700_000_000.0
SIMPLE = Analysis(width=800, height=600, complexity=Complexity.SIMPLE, blur=0)  # 10 元
NORMAL = Analysis(width=800, height=600, complexity=Complexity.NORMAL, blur=40)  # 16 元
HARD = Analysis(width=800, height=600, complexity=Complexity.HARD, blur=100, noise=100, damage=100)  # 30 元


@dataclass
class Shop:
    """One customer's jobs and orders, carried from decision to decision as the conversation actor does."""

    jobs: dict[str, jm.Job] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    said: list[str] = field(default_factory=list)
    effects: list[object] = field(default_factory=list)
    ids: int = 0

    def take(self, result: bm.BurstResult) -> bm.BurstResult:
        self.jobs.update(bm.jobs_after(result))
        self.orders.update({o.order_key: o for o in result.orders})
        for effect in [e for s in result.steps for e in s.effects] + list(result.loose_effects):
            self.effects.append(effect)
            if isinstance(effect, jm.Reply):
                self.said.append(effect.text)
        return result

    def says(self, *inputs: bm.Input, enabled: bool = True) -> bm.BurstResult:
        def new_id() -> str:
            self.ids += 1
            return f"J{self.ids}"

        active = [j for j in self.jobs.values() if j.state not in {S.COMPLETED, S.FAILED, S.TRANSFERRED, S.CANCELLED}]
        others = [j for j in self.jobs.values() if j not in active]
        last = list(self.jobs.values())[-1] if self.jobs else None
        return self.take(bm.handle_burst(active, list(inputs), new_id, enabled, NOW, customer_id="c1",
                                         last_job=last, orders=self.orders.values(), others=others))

    def outcome(self, job_id: str, event: jm.Event) -> bm.BurstResult:
        return self.take(bm.handle_outcome(self.jobs.values(), self.orders.values(), job_id, event, NOW))

    def analysed(self, *measures: Analysis) -> None:
        for job_id, analysis in zip(list(self.jobs), measures, strict=False):  # the first len(measures) photos
            self.outcome(job_id, jm.Analyzed(analysis))

    def rendered(self, job_id: str) -> bm.BurstResult:
        job = self.jobs[job_id]
        return self.outcome(job_id, jm.RenderDone(jm.render_id(job), f"/r/{job_id}.png", f"/p/{job_id}.png", 90, True))

    def new(self) -> tuple[list[str], list[object]]:
        said, effects = self.said, self.effects
        self.said, self.effects = [], []
        return said, effects


def photos(n: int, *words: str) -> Shop:
    shop = Shop()
    shop.says(*[bm.PhotoIn(f"m{i}", f"https://img.example/{i}.png") for i in range(n)],
              *[bm.TextIn(f"t{i}", w) for i, w in enumerate(words)])
    return shop


def renders(effects: list[object]) -> list[jm.Render]:
    return [e for e in effects if isinstance(e, jm.Render)]


def staff(effects: list[object]) -> list[str]:
    return [e.event for e in effects if isinstance(e, jm.NotifyStaff)]


def quoted_three() -> Shop:
    shop = photos(3)
    shop.analysed(SIMPLE, NORMAL, HARD)
    shop.new()
    return shop


class TestQuote:
    def test_three_photos_in_one_burst_get_one_quote_with_three_numbered_prices_and_the_total(self) -> None:
        shop = photos(3)
        assert [j.number for j in shop.jobs.values()] == [1, 2, 3] and len(shop.orders) == 1
        shop.new()
        shop.analysed(SIMPLE, NORMAL)
        assert shop.new()[0] == []  # nothing until every photo is looked at
        shop.outcome("J3", jm.Analyzed(HARD))
        (quote,) = shop.new()[0]
        assert "第1张 高清修复 10元" in quote and "第2张 高清修复 16元" in quote and "第3张 高清修复 30元" in quote
        assert "三张一共56元" in quote

    def test_a_single_photo_reads_as_before(self) -> None:
        shop = photos(1)
        shop.new()
        shop.analysed(NORMAL)
        assert shop.new()[0] == [replies.quote(Operation.ENHANCE, 16, False)]

    def test_words_photo_by_photo_and_a_photo_taken_out_before_payment(self) -> None:
        shop = photos(2, "第一张抠图,第二张变清晰")
        assert [j.operation for j in shop.jobs.values()] == [Operation.REMOVE_BG, Operation.ENHANCE]
        shop.analysed(SIMPLE, NORMAL)
        shop.new()
        shop.says(bm.TextIn("x", "都要分层"))
        assert all(j.operation is Operation.LAYERED for j in shop.jobs.values())
        (requote,) = shop.new()[0]
        assert "第1张 分层PSD 10元" in requote and "两张一共26元" in requote
        shop.says(bm.TextIn("y", "第二张不要了"))
        said, _ = shop.new()
        assert shop.jobs["J2"].state is S.CANCELLED and said[0] == replies.photo_dropped([2])
        assert "第2张" not in said[1] and "一共10元" in said[1]

    def test_a_photo_added_before_payment_joins_and_the_order_is_quoted_again(self) -> None:
        shop = photos(1)
        shop.analysed(NORMAL)
        shop.new()
        shop.says(bm.PhotoIn("m9", "https://img.example/9.png"), bm.TextIn("t9", "还有这张"))
        shop.outcome("J2", jm.Analyzed(SIMPLE))
        (quote,) = shop.new()[0]
        assert "第1张 高清修复 16元" in quote and "第2张 高清修复 10元" in quote and "一共26元" in quote

    def test_a_declined_and_an_unreadable_photo_are_named_in_the_quote(self) -> None:
        shop = photos(3)
        declined = NORMAL.model_copy(update={"risk": RiskVerdict.DECLINE, "risk_rule": "id_document"})
        shop.outcome("J1", jm.Analyzed(SIMPLE))
        shop.outcome("J2", jm.Analyzed(declined))
        shop.outcome("J3", jm.AnalysisFailed("not_image"))
        (quote,) = [t for t in shop.new()[0]]
        assert "第2张 这张我们不能处理" in quote and "第3张 图片打不开" in quote and "一共10元" in quote


class TestPayments:
    def test_the_total_pays_all_three_once(self) -> None:
        shop = quoted_three()
        shop.says(bm.PaymentIn("p", "T1", 56))
        said, effects = shop.new()
        assert len(renders(effects)) == 3 and said == [replies.order_paid("56", [1, 2, 3], True)]
        assert staff(effects) == []
        shop.says(bm.PaymentIn("p2", "T1", 56))  # the same notice again
        assert shop.new() == ([], [])

    def test_less_renders_nothing_and_says_the_difference_then_the_rest_renders_all(self) -> None:
        shop = quoted_three()
        shop.says(bm.PaymentIn("p", "T1", 40))
        said, effects = shop.new()
        assert renders(effects) == [] and said == [replies.short_of("40", "16")] and staff(effects) == ["underpaid"]
        shop.says(bm.PaymentIn("p2", "T2", 16))
        said, effects = shop.new()
        assert len(renders(effects)) == 3 and len(said) == 1 and shop.orders["O1"].credit_cents == 0

    def test_one_price_pays_that_photo_only(self) -> None:
        shop = quoted_three()
        shop.says(bm.PaymentIn("p", "T1", 16))
        said, effects = shop.new()
        assert [r.render_id for r in renders(effects)] == ["J2-r1"] and "第2张" in said[0]

    def test_more_pays_all_and_staff_hear_of_the_refund(self) -> None:
        shop = quoted_three()
        shop.says(bm.PaymentIn("p", "T1", 60))
        said, effects = shop.new()
        assert len(renders(effects)) == 3 and staff(effects) == ["overpaid"] and replies.overpaid("4") in said
        assert shop.orders["O1"].overpaid_cents == 400

    def test_a_payment_while_photos_are_looked_at_waits_for_the_quote(self) -> None:
        shop = photos(2)
        shop.says(bm.PaymentIn("p", "T1", 26))
        assert shop.new()[0] == [replies.PAID_WHILE_QUOTING]
        shop.analysed(SIMPLE, NORMAL)
        said, effects = shop.new()
        assert len(renders(effects)) == 2 and "一共26元" in said[0] and said[1].startswith("收到26元")

    def test_a_notice_naming_no_amount_pays_the_order(self) -> None:
        shop = quoted_three()
        shop.says(bm.PaymentIn("p", "T1", 0))
        assert len(renders(shop.new()[1])) == 3


class TestDelivery:
    def paid(self) -> Shop:
        shop = quoted_three()
        shop.says(bm.PaymentIn("p", "T1", 56))
        shop.new()
        return shop

    def test_results_go_out_numbered_and_the_email_is_asked_once(self) -> None:
        shop = self.paid()
        shop.rendered("J2")
        assert shop.new()[0] == [replies.result_numbered(2)]
        shop.rendered("J1")
        shop.rendered("J3")
        said, effects = shop.new()
        assert said == [replies.result_numbered(1), replies.result_numbered(3), replies.ASK_EMAIL]
        assert [e.url for e in effects if isinstance(e, jm.SendImage)] == ["/p/J1.png", "/p/J3.png"]

    def test_one_address_mails_every_finished_photo_in_one_mail_and_tells_once(self) -> None:
        shop = self.paid()
        for job_id in ("J1", "J2", "J3"):
            shop.rendered(job_id)
        shop.new()
        shop.says(bm.TextIn("e", "邮箱 amy@qq.com"))
        (mail,) = [e for e in shop.new()[1] if isinstance(e, MailOrder)]
        assert mail.to == "amy@qq.com" and mail.jobs == (("J1", 1), ("J2", 2), ("J3", 3))
        result = bm.handle_order_mail(shop.jobs.values(), shop.orders["O1"], True, mail.seq, ["J1", "J2", "J3"], NOW)
        shop.take(result)
        assert shop.new()[0] == [replies.MAILED] and all(j.state is S.COMPLETED for j in shop.jobs.values())

    def test_an_address_known_early_mails_once_all_are_done(self) -> None:
        shop = self.paid()
        shop.says(bm.TextIn("e", "邮箱 amy@qq.com"))
        assert shop.new()[0] == [replies.EMAIL_ORDER_NOTED]
        shop.rendered("J1")
        shop.rendered("J2")
        assert not [e for e in shop.new()[1] if isinstance(e, MailOrder)]
        shop.rendered("J3")
        (mail,) = [e for e in shop.new()[1] if isinstance(e, MailOrder)]
        assert len(mail.jobs) == 3

    def test_an_address_with_the_photos_waits_for_the_quote_to_answer(self) -> None:
        shop = photos(2, "第一张抠图 邮箱 amy@qq.com")
        assert shop.new()[0] == [] and shop.orders["O1"].email == "amy@qq.com"

    def test_a_failed_mail_forgets_the_address_and_asks_again(self) -> None:
        shop = self.paid()
        shop.says(bm.TextIn("e", "amy@qq.com"))
        for job_id in ("J1", "J2", "J3"):
            shop.rendered(job_id)
        shop.new()
        shop.take(bm.handle_order_mail(shop.jobs.values(), shop.orders["O1"], False, 1, ["J1", "J2", "J3"], NOW,
                                       "550"))
        said, effects = shop.new()
        assert said == [replies.MAIL_FAILED] and staff(effects) == ["mail_failed"] and shop.orders["O1"].email is None
        shop.says(bm.TextIn("e2", "bob@qq.com"))
        (mail,) = [e for e in shop.new()[1] if isinstance(e, MailOrder)]
        assert mail.to == "bob@qq.com" and len(mail.jobs) == 3


class TestRevisions:
    def delivered(self) -> Shop:
        shop = TestDelivery().paid()
        for job_id in ("J1", "J2", "J3"):
            shop.rendered(job_id)
        shop.new()
        return shop

    def test_a_named_photo_is_re_rendered_alone_with_the_words_as_its_note(self) -> None:
        shop = self.delivered()
        shop.says(bm.TextIn("r", "第二张颜色不对"))
        said, effects = shop.new()
        (render,) = renders(effects)
        assert render.render_id == "J2-r2" and render.revision_notes == ("颜色不对",) and said == [replies.REDO]

    def test_unhappy_with_several_asks_which_and_the_answer_decides(self) -> None:
        shop = self.delivered()
        shop.says(bm.TextIn("r", "不满意"))
        assert shop.new()[0] == [replies.ASK_WHICH]
        shop.says(bm.TextIn("r2", "第二张"))
        assert shop.new()[0] == [replies.ASK_REVISION] and shop.jobs["J2"].state is S.REVISION
        shop.says(bm.TextIn("r3", "背景亮一点"))
        (render,) = renders(shop.new()[1])
        assert render.render_id == "J2-r2" and render.revision_notes == ("背景亮一点",)

    def test_all_of_them_wrong(self) -> None:
        shop = self.delivered()
        shop.says(bm.TextIn("r", "不满意"))
        shop.says(bm.TextIn("r2", "都不行"))
        said, _ = shop.new()
        assert said == [replies.ASK_WHICH, replies.ASK_REVISION]
        assert all(j.state is S.REVISION for j in shop.jobs.values())


@settings(max_examples=120, deadline=None)
@given(prices=st.lists(st.sampled_from([SIMPLE, NORMAL, HARD]), min_size=1, max_size=4),
       payments=st.lists(st.tuples(st.integers(min_value=0, max_value=4), st.sampled_from([0, 5, 10, 16, 30, 60])),
                         max_size=6))
def test_no_photo_is_rendered_beyond_what_was_paid_and_none_twice(prices: list[Analysis],
                                                                   payments: list[tuple[int, int]]) -> None:
    shop = photos(len(prices))
    shop.analysed(*prices)
    shop.new()
    received = 0
    rendered: list[str] = []
    for notice, amount in payments:
        before = shop.orders["O1"].payments
        shop.says(bm.PaymentIn(f"p{len(rendered)}{notice}", f"T{notice}", amount))
        if f"T{notice}" not in before:
            received += amount
        rendered += [r.render_id for r in renders(shop.new()[1])]
        assert len(rendered) == len(set(rendered))
        if not any(a == 0 for _, a in payments):  # a notice naming no amount pays the order by itself
            spent = sum(cents(shop.jobs[r.split("-")[0]].price or 0) for r in rendered)
            assert spent <= cents(received)
    assert "一共" in quote_text(shop.orders["O1"], shop.jobs) or len(prices) == 1 or rendered
