"""What a chat model's wording may and may not change in a reply."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core import phrasing, replies
from core.phrasing import Line, accept
from protocol.image import Operation

QUOTE = replies.quote(Operation.ENHANCE, 35, False)


def test_a_natural_rewording_that_keeps_the_price_is_taken() -> None:
    assert accept(QUOTE, "这张给您做高清修复哈,35元,付款后马上开工") == "这张给您做高清修复哈,35元,付款后马上开工"


def test_quotes_and_spaces_around_the_answer_are_trimmed() -> None:
    assert accept(replies.PAID, " 「收到啦,马上给您做」\n") == "收到啦,马上给您做"


def test_a_dropped_or_changed_price_is_refused() -> None:
    assert accept(QUOTE, "这张给您做高清修复哈,付款后马上开工") is None
    assert accept(QUOTE, "这张给您做高清修复哈,30元,付款后马上开工") is None


def test_an_added_number_is_refused() -> None:
    assert accept(replies.PAID, "收到,10分钟给您做好") is None


def test_an_email_address_must_survive_word_for_word() -> None:
    fixed = "邮箱 a.b@shop.cn 记下了,做好了发您"
    assert accept(fixed, "好的,做好发到 a.b@shop.cn") == "好的,做好发到 a.b@shop.cn"
    assert accept(fixed, "好的,做好发到 ab@shop.cn") is None


def test_long_multiline_or_bot_talk_is_refused() -> None:
    assert accept(replies.PAID, "收到" * 40) is None
    assert accept(replies.PAID, "收到\n马上给您做") is None
    assert accept(replies.PAID, "作为一个AI助手,我马上给您做") is None
    assert accept(replies.PAID, "我是机器人,马上做") is None
    assert accept(replies.PAID, "") is None


def test_the_prompt_carries_the_decision_and_the_recent_talk() -> None:
    text = phrasing.prompt(QUOTE, [Line("customer", "帮我变清晰"), Line("shop", "好的,把图片发我看一下")])
    assert f"「{QUOTE}」" in text
    assert "顾客: 帮我变清晰" in text and "店家: 好的,把图片发我看一下" in text


def test_the_prompt_shows_only_the_last_lines() -> None:
    talk = [Line("customer", f"第{i}句") for i in range(20)]
    text = phrasing.prompt(replies.PAID, talk)
    assert "第19句" in text and "第13句" not in text


@given(price=st.integers(min_value=1, max_value=9999), drop=st.booleans())
def test_any_price_must_be_kept(price: int, drop: bool) -> None:
    fixed = replies.quote(Operation.REMOVE_BG, price, False)
    worded = "给您抠图去背景" + ("" if drop else f",{price}元") + ",付款后马上做"
    assert (accept(fixed, worded) is None) == drop
