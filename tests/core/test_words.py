"""What a customer's words mean (core/words.py): operations, revisions, e-mail addresses, small talk, layout."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.words import (
    ASPECT_RATIOS,
    OPERATION_PRIORITY,
    OPERATION_WORDS,
    aspect_ratio,
    detect_operation,
    find_email,
    is_revision,
    is_smalltalk,
    wants_found_image,
    wants_human,
    wants_perspective_fix,
    without_email,
)
from protocol.image import Operation

FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
OP = Operation

# Characters that never form, nor complete, an operation word or a refusal ("不要").
FILLER = st.text(alphabet="帮我把这张图片做一下谢啦的吧呢,。 ", max_size=8)


# --------------------------------------------------------------------------------------------
# operations


@pytest.mark.parametrize(
    ("said", "op"),
    [
        ("帮我变清晰一点", OP.ENHANCE),
        ("太模糊了", OP.ENHANCE),
        ("要高清的", OP.ENHANCE),
        ("帮我抠图去背景", OP.REMOVE_BG),
        ("还是帮我抠图吧", OP.REMOVE_BG),
        ("背景弄成透明的", OP.REMOVE_BG),
        ("改一下尺寸", OP.RESIZE),
        ("缩放到1000宽", OP.RESIZE),
        ("分辨率调高", OP.RESIZE),
        ("老照片修复一下", OP.FIX_OLD_PHOTO),
        ("照片发黄了", OP.FIX_OLD_PHOTO),
        ("有破损", OP.FIX_OLD_PHOTO),
        ("要分层psd", OP.LAYERED),
        ("要 PSD 文件", OP.LAYERED),
        ("要ＰＳＤ", OP.LAYERED),
        ("转成矢量图", OP.VECTORIZE),
        ("给我 SVG", OP.VECTORIZE),
        ("need a Vector file", OP.VECTORIZE),
    ],
)
def test_each_operation_is_recognised(said: str, op: Operation) -> None:
    assert detect_operation(said) is op


@pytest.mark.parametrize(
    ("said", "op"),
    [
        ("老照片抠图", OP.FIX_OLD_PHOTO),  # more specific than remove_bg
        ("分层psd,背景去掉", OP.LAYERED),
        ("矢量图,高清", OP.VECTORIZE),
        ("抠图后改尺寸", OP.REMOVE_BG),
        ("尺寸改大,清晰一点", OP.RESIZE),
        ("帮我高清修复一下", OP.ENHANCE),  # 修复 alone is every retouch, not an old photo
        ("修复一下背景", OP.REMOVE_BG),
        ("帮我修复一下", OP.FIX_OLD_PHOTO),  # …unless nothing else is named
    ],
)
def test_several_words_pick_the_more_specific_operation(said: str, op: Operation) -> None:
    assert detect_operation(said) is op


@pytest.mark.parametrize("said", ["好的", "你好在吗", "多少钱", "", "不要抠图", "不用去背景了", "别缩放"])
def test_no_operation_named(said: str) -> None:
    assert detect_operation(said) is None


def test_priority_lists_every_operation_once() -> None:
    assert sorted(OPERATION_PRIORITY) == sorted(Operation)
    assert set(OPERATION_WORDS) == set(Operation)


@FAST
@given(op=st.sampled_from(list(Operation)), data=st.data(), before=FILLER, after=FILLER)
def test_any_word_of_an_operation_in_any_filler_names_it(
    op: Operation, data: st.DataObject, before: str, after: str
) -> None:
    word = data.draw(st.sampled_from(OPERATION_WORDS[op]))
    assert detect_operation(before + word + after) is op
    assert detect_operation(before + word.upper() + after) is op


@FAST
@given(ops=st.lists(st.sampled_from(list(Operation)), min_size=2, max_size=4, unique=True), data=st.data())
def test_the_highest_priority_operation_wins(ops: list[Operation], data: st.DataObject) -> None:
    strong = {op: [w for w in OPERATION_WORDS[op] if w != "修复"] for op in ops}
    said = ",".join(data.draw(st.sampled_from(strong[op])) for op in ops)
    assert detect_operation(said) is min(ops, key=OPERATION_PRIORITY.index)


@FAST
@given(said=FILLER)
def test_filler_alone_names_nothing(said: str) -> None:
    assert detect_operation(said) is None


@FAST
@given(said=st.text(max_size=40))
def test_detect_operation_never_fails(said: str) -> None:
    assert detect_operation(said) in (*Operation, None)


# --------------------------------------------------------------------------------------------
# revisions


@pytest.mark.parametrize(
    "said",
    ["不好", "不对", "不满意", "重做", "改一下", "差太多了", "不行", "效果不好", "颜色不对", "不太好看",
     "还是不太满意", "重新做一张", "再改改", "跟我要的差很多", "这个不好看啊"],
)
def test_revision_words(said: str) -> None:
    assert is_revision(said)


@pytest.mark.parametrize(
    "said",
    ["不好意思,我再看看", "没问题", "好的", "挺好", "这样行不行", "发我好不好", "对不对呀", "不用再改了", "不要重做",
     "谢谢", ""],
)
def test_not_revision(said: str) -> None:
    assert not is_revision(said)


# --------------------------------------------------------------------------------------------
# e-mail


@pytest.mark.parametrize(
    ("said", "address"),
    [
        ("我的邮箱是 abc.d@qq.com 谢谢", "abc.d@qq.com"),
        ("邮箱abc.d@qq.com谢谢", "abc.d@qq.com"),
        ("abc＠qq．com", "abc@qq.com"),
        ("发到 Amy.Buyer@Example.COM。", "Amy.Buyer@example.com"),
        ("amy_b+shop@mail.example.com.cn!", "amy_b+shop@mail.example.com.cn"),
        ("邮箱: 123456@163.com,麻烦了", "123456@163.com"),
        ("...abc@qq.com...", "abc@qq.com"),
        ("第一个 a@b 不对,是 real@foxmail.com", "real@foxmail.com"),
    ],
)
def test_an_email_in_free_text_is_found(said: str, address: str) -> None:
    assert find_email(said) == address


@pytest.mark.parametrize(
    "said",
    ["a@b", "@@", "@@@.com", "xx@.com", "abc@qq", "邮箱 a@b", "a@b@c.com", "a..b@qq.com", "abc.@qq.com",
     "x" * 65 + "@qq.com", "abc@" + "d" * 250 + ".com", "abc@qq.c", "好的", "abc@-qq.com", ""],
)
def test_garbage_is_not_an_email(said: str) -> None:
    assert find_email(said) is None


local_parts = st.from_regex(r"[a-z0-9]([a-z0-9_+\-]|\.(?!\.)){0,20}[a-z0-9]", fullmatch=True)
domains = st.from_regex(r"([A-Za-z0-9]{1,10}\.){1,3}[A-Za-z]{2,6}", fullmatch=True)


@FAST
@given(said=st.text(max_size=60) | st.text(alphabet="ab.@＠．-_+ 中", max_size=30))
def test_find_email_only_returns_one_at_and_a_dotted_domain(said: str) -> None:
    found = find_email(said)
    if found is not None:
        assert found.count("@") == 1
        local, domain = found.split("@")
        assert local and "." in domain and domain == domain.lower()
        assert all(label for label in domain.split("."))
        assert len(found) <= 254


@FAST
@given(local=local_parts, domain=domains, before=FILLER, after=FILLER)
def test_a_real_address_in_chinese_text_is_found_with_its_domain_lowercased(
    local: str, domain: str, before: str, after: str
) -> None:
    assert find_email(f"{before}{local}@{domain}{after}") == f"{local}@{domain.lower()}"


# --------------------------------------------------------------------------------------------
# small talk, layout, human


@pytest.mark.parametrize(
    "said", ["好的", "嗯", "嗯嗯", "ok", "OK!", "谢谢", "好的谢谢", "在吗?", "你好", "收到", "哈哈哈", "😀", "👍👍",
             "[微笑]", "好嘞~", "  ", "辛苦了"],
)
def test_smalltalk(said: str) -> None:
    assert is_smalltalk(said)


@pytest.mark.parametrize(
    "said",
    ["好的,帮我抠图", "背景再亮一点", "不满意", "abc@qq.com", "多少钱", "要16:9的", "这个能做吗", "嗯,颜色深一点"],
)
def test_not_smalltalk(said: str) -> None:
    assert not is_smalltalk(said)


@pytest.mark.parametrize(
    ("said", "ratio"),
    [("要16:9的", "16:9"), ("４：３", "4:3"), ("3 : 4", "3:4"), ("16比9", "16:9"), ("横版", "16:9"), ("竖屏用", "9:16"),
     ("正方形", "1:1"), ("2:3", "2:3"), ("做成3:2", "3:2"), ("10:30 前给我", None), ("1920:1080", None), ("好的", None),
     ("5:4", "5:4"), ("21:9", "21:9"), ("7:5", None)],
)
def test_aspect_ratio(said: str, ratio: str | None) -> None:
    assert aspect_ratio(said) == ratio
    assert ratio is None or ratio in ASPECT_RATIOS


@pytest.mark.parametrize(("said", "wanted"), [("帮我摆正", True), ("拍歪了", True), ("有透视", True),
                                              ("梯形拉正一下", True), ("好的", False), ("变清晰", False)])
def test_wants_perspective_fix(said: str, wanted: bool) -> None:
    assert wants_perspective_fix(said) is wanted


@pytest.mark.parametrize(("said", "wanted"), [("转人工", True), ("我要真人客服", True), ("人工服务", True),
                                              ("好的", False), ("帮我抠图", False)])
def test_wants_human(said: str, wanted: bool) -> None:
    assert wants_human(said) is wanted


@pytest.mark.parametrize(("said", "wanted"), [
    ("帮我找图", True), ("有原图吗", True), ("高清原图发我一下", True), ("之前做的那张再发我一次", True),
    ("上次那张还有吗", True), ("不要原图", False), ("帮我抠图", False), ("这张变清晰", False), ("好的", False),
])
def test_wants_found_image(said: str, wanted: bool) -> None:
    assert wants_found_image(said) is wanted


@pytest.mark.parametrize(("text", "rest"), [
    ("改一下尺寸 800x600 邮箱 amy@example.com", "改一下尺寸 800x600"),
    ("我的邮箱是 amy.buyer@example.com 谢谢", "谢谢"),
    ("amy@qq.com", ""),
    ("邮箱：a@b.cn", ""),
    ("mail: A@B.com 做成16:9", "做成16:9"),
])
def test_without_email_leaves_what_else_was_said(text: str, rest: str) -> None:
    assert without_email(text) == rest
