"""What a customer's words mean (SPEC §2): the operation asked for, revisions, e-mail addresses, small talk.

Pure string rules, no I/O. Chinese customers write in short fragments, mix full-width and half-width
characters and sprinkle emoji; every function here normalises with NFKC before it looks.
"""

from __future__ import annotations

import re
import unicodedata

from protocol.image import Operation

# Most specific first: "修复老照片并抠图" is an old-photo job, "分层psd去背景" a layered one. The later, broader
# operations only win when nothing more specific was named.
OPERATION_PRIORITY: tuple[Operation, ...] = (
    Operation.LAYERED,
    Operation.VECTORIZE,
    Operation.FIX_OLD_PHOTO,
    Operation.REMOVE_BG,
    Operation.RESIZE,
    Operation.ENHANCE,
)

OPERATION_WORDS: dict[Operation, tuple[str, ...]] = {
    Operation.LAYERED: ("分层", "psd"),
    Operation.VECTORIZE: ("矢量", "svg", "vector"),
    Operation.FIX_OLD_PHOTO: ("老照片", "修复", "发黄", "破损"),
    Operation.REMOVE_BG: ("背景", "去背", "抠图", "透明"),
    Operation.RESIZE: ("尺寸", "大小", "缩放", "分辨率"),
    Operation.ENHANCE: ("模糊", "清晰", "高清", "变清"),
}

# "修复" alone is what every retouch is called ("高清修复", "帮我修复一下背景"): it names an old-photo job only
# when no other operation word is present.
_WEAK_WORDS: dict[Operation, frozenset[str]] = {Operation.FIX_OLD_PHOTO: frozenset({"修复"})}

# "不要抠图", "不用再改了": a word right after a refusal does not ask for what it names.
_NEGATION = re.compile(r"(?:不要|不用|不需要|无需|别)(?:再|去|给|帮我|帮忙)?$")

REVISION_WORDS: tuple[str, ...] = (
    "不好", "不对", "不满意", "重做", "改一下", "差太多", "不行", "效果不好", "颜色不对",
    # close variants: softened forms ("不太好"), synonyms of 重做 / 改一下 / 差太多
    "不太好", "不太对", "不太满意", "不太行", "重新做", "重新弄", "再改", "改改", "差很多",
)
# Phrases that contain a revision word but are not one: an apology, and yes/no questions ("这样行不行").
_NOT_REVISION: tuple[str, ...] = ("不好意思", "好不好", "行不行", "对不对", "没问题")

_SMALLTALK_TOKENS: tuple[str, ...] = tuple(sorted({
    "好的", "好滴", "好嘞", "好哒", "好吧", "好", "嗯嗯", "嗯", "恩", "哦", "噢", "喔", "ok", "okay", "okk", "k",
    "谢谢", "谢了", "多谢", "感谢", "thx", "thanks", "thankyou", "在吗", "在么", "在不在", "在", "你好", "您好",
    "hi", "hello", "哈喽", "收到", "哈哈", "哈", "呵呵", "嘿嘿", "行", "可以", "知道了", "明白", "了解", "亲",
    "老板", "辛苦了", "辛苦", "麻烦了", "麻烦你了", "早", "早上好", "晚安", "拜拜", "再见", "么么哒", "啦", "呀",
    "哇", "耶", "的", "了", "啊", "吧", "呢", "滴", "哦哦", "棒", "不错",
    # words that only announce a photo sent with them ("还有这张", "这张也要"): the photo is the message
    "还有", "这张", "这两张", "这几张", "一张", "也要", "也是", "再加",
}, key=len, reverse=True))
_SMALLTALK_MAX = 20  # characters left after stripping; anything longer carries a requirement
_EMOJI_CODE = re.compile(r"\[[^\[\]]{1,6}\]|/:[^\s]{1,6}")  # IM emoticon codes: [微笑], /:^_^

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-@])"
    r"([A-Za-z0-9._%+\-]{1,64})@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})"
    r"(?![A-Za-z0-9\-@])"
)
EMAIL_MAX = 254

ASPECT_RATIOS: tuple[str, ...] = ("16:9", "4:3", "3:4", "9:16", "1:1", "2:3", "3:2", "4:5", "5:4", "21:9")
_RATIO = re.compile(r"(?<!\d)(\d{1,2})\s*(?::|比)\s*(\d{1,2})(?!\d)")
_RATIO_WORDS: tuple[tuple[str, str], ...] = (
    ("横版", "16:9"), ("横屏", "16:9"), ("竖版", "9:16"), ("竖屏", "9:16"), ("正方形", "1:1"), ("方图", "1:1"),
)

PERSPECTIVE_WORDS: tuple[str, ...] = ("摆正", "歪了", "有点歪", "透视", "梯形", "拉正", "扶正", "放正")
HUMAN_WORDS: tuple[str, ...] = ("人工", "客服", "真人")
FIND_WORDS: tuple[str, ...] = (
    "找图", "找张图", "找一下图", "找一张", "帮我找", "原图", "高清原图", "之前做的那张", "上次做的那张",
    "以前做的那张", "之前那张", "上次那张", "之前做的图", "上次做的图", "以前的图",
)


def normalise(text: str) -> str:
    """NFKC (full-width letters, ＠ and ． become ASCII), lower-cased, trimmed."""
    return unicodedata.normalize("NFKC", text).lower().strip()


def _mentions(text: str, word: str) -> bool:
    start = text.find(word)
    while start != -1:
        if not _NEGATION.search(text[:start]):
            return True
        start = text.find(word, start + 1)
    return False


def detect_operation(text: str) -> Operation | None:
    """The operation the words ask for, by OPERATION_PRIORITY when several are named; None if none is."""
    said = normalise(text)
    strong: list[Operation] = []
    weak: list[Operation] = []
    for op in OPERATION_PRIORITY:
        for word in OPERATION_WORDS[op]:
            if _mentions(said, word):
                (weak if word in _WEAK_WORDS.get(op, ()) else strong).append(op)
    if strong:
        return strong[0]
    return weak[0] if weak else None


def is_revision(text: str) -> bool:
    """Whether the customer is unhappy with a result and wants it changed."""
    said = normalise(text)
    for phrase in _NOT_REVISION:
        said = said.replace(phrase, " ")
    return any(_mentions(said, word) for word in REVISION_WORDS)


def find_email(text: str) -> str | None:
    """The first plausible e-mail address in free text, domain lower-cased; None when there is none."""
    said = unicodedata.normalize("NFKC", text)
    for match in _EMAIL.finditer(said):
        local, domain = match.group(1).lstrip("."), match.group(2).lower()
        if not local or local.endswith(".") or ".." in local:
            continue
        address = f"{local}@{domain}"
        if len(address) <= EMAIL_MAX:
            return address
    return None


_EMAIL_WORDS = re.compile(r"(我的|我)?(邮箱|邮件|e-?mail|mail)(地址|是|为|:|：)*", re.IGNORECASE)


def without_email(text: str) -> str:
    """The text with its e-mail address, and the words that announce it ("我的邮箱是"), taken out."""
    said = unicodedata.normalize("NFKC", text)
    address = find_email(said)
    if address is not None:
        local, _, domain = address.partition("@")
        said = re.sub(re.escape(local) + r"@" + re.escape(domain), " ", said, flags=re.IGNORECASE)
    return _EMAIL_WORDS.sub(" ", said).strip()


def is_smalltalk(text: str) -> bool:
    """Whether the text is only an acknowledgement, a greeting or emoji: nothing the job must act on."""
    said = _EMOJI_CODE.sub("", normalise(text))
    said = "".join(ch for ch in said if unicodedata.category(ch)[0] not in "PSZCM")
    if len(said) > _SMALLTALK_MAX:
        return False
    while said:
        token = next((t for t in _SMALLTALK_TOKENS if said.startswith(t)), None)
        if token is None:
            return False
        said = said[len(token):]
    return True


def aspect_ratio(text: str) -> str | None:
    """An aspect ratio the shop renders ("16:9", "16比9", "横版"), or None."""
    said = normalise(text)
    for match in _RATIO.finditer(said):
        ratio = f"{int(match.group(1))}:{int(match.group(2))}"
        if ratio in ASPECT_RATIOS:
            return ratio
    return next((ratio for word, ratio in _RATIO_WORDS if word in said), None)


def wants_perspective_fix(text: str) -> bool:
    """Whether the customer asks for a tilted or keystoned photo to be straightened."""
    said = normalise(text)
    return any(word in said for word in PERSPECTIVE_WORDS)


def wants_human(text: str) -> bool:
    """Whether the customer asks for a person instead of the AI (转人工, 真人客服)."""
    said = normalise(text)
    return any(word in said for word in HUMAN_WORDS)


def wants_found_image(text: str) -> bool:
    """Whether the customer wants an image looked up (找图, 原图, 之前做的那张) rather than a new one processed."""
    said = normalise(text)
    return any(_mentions(said, word) for word in FIND_WORDS)


# -- photos of an order named by number ("第二张抠图", "两张都要分层") --------------------------------------
_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_NUMBERED = re.compile(r"第\s*([一二两三四五六七八九十\d]{1,3})\s*[张个幅]")
_JOINERS = re.compile(r"^[\s和与跟及还有以及、,，.。;；:：]*$")
EVERY_PHOTO_WORDS: tuple[str, ...] = ("都", "全部", "每张", "每一张", "所有")
DROP_WORDS: tuple[str, ...] = ("不要了", "不做了", "不用做了", "不用了", "取消", "去掉这张", "删掉")
REPLACE_WORDS: tuple[str, ...] = ("换一张", "换这张", "换成这张", "用这张", "换图", "重新发")
EVERY = 0  # a number standing for every photo of the order


def _number(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    if word == "十":
        return 10
    if word.startswith("十"):  # 十一 … 十九
        return 10 + _CN_DIGITS.get(word[1:], 0) if word[1:] in _CN_DIGITS else None
    if len(word) == 1:
        return _CN_DIGITS.get(word)
    return None


def photo_parts(text: str) -> list[tuple[tuple[int, ...], str]]:
    """The photos a text names and what it says of each: "第一张抠图,第二张变清晰" → [((1,), "抠图"), ((2,), "变清晰")].

    Numbers with nothing between them share what follows ("第一张和第二张都抠图"); "都" / "全部" with no number
    names every photo (EVERY). Empty when the text names no photo."""
    said = unicodedata.normalize("NFKC", text)
    marks = [(m, _number(m.group(1))) for m in _NUMBERED.finditer(said)]
    marks = [(m, n) for m, n in marks if n]
    if not marks:
        return [((EVERY,), said.strip())] if any(w in said for w in EVERY_PHOTO_WORDS) else []
    parts: list[tuple[tuple[int, ...], str]] = []
    waiting: list[int] = []
    for i, (match, number) in enumerate(marks):
        end = marks[i + 1][0].start() if i + 1 < len(marks) else len(said)
        said_of = said[match.end():end]
        waiting.append(number or 0)
        if _JOINERS.match(said_of) and i + 1 < len(marks):
            continue
        parts.append((tuple(waiting), said_of.strip(" ,，.。;；、")))
        waiting = []
    return parts


def wants_drop(text: str) -> bool:
    """Whether the words take a photo out of the order ("第二张不要了")."""
    said = normalise(text)
    return any(word in said for word in DROP_WORDS)


def wants_replace(text: str) -> bool:
    """Whether a photo sent with these words replaces the unpaid one before it ("换这张") instead of joining it."""
    said = normalise(text)
    return any(word in said for word in REPLACE_WORDS)
