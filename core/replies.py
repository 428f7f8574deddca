"""Every phrase the customer sees from the image-job machine: short, natural Chinese, like a person from the shop.

The state machine decides what is said; a chat model, when keyed, may only rephrase these.
SPEC fixes six of them word for word (§2: ASK_EMAIL, MAILED, MAIL_FAILED, ASK_REVISION, REDO; §3: HANDED_OFF);
those are never rephrased (VERBATIM).
"""

from __future__ import annotations

from protocol.image import Operation

OPERATION_NAMES: dict[Operation, str] = {
    Operation.ENHANCE: "高清修复",
    Operation.REMOVE_BG: "抠图去背景",
    Operation.RESIZE: "改尺寸",
    Operation.FIX_OLD_PHOTO: "老照片修复",
    Operation.LAYERED: "分层PSD",
    Operation.VECTORIZE: "转矢量图",
}

# SPEC §2, word for word.
ASK_EMAIL = "好了,你看一下效果,没问题把邮箱发我"
MAILED = "发到您邮箱了,注意查收哈"
MAIL_FAILED = "邮件发送失败了,您再发一次邮箱试试"
ASK_REVISION = "好,你说一下哪里要改,或者发图告诉我"
REDO = "好的,重新给你做"
HANDED_OFF = "好的,已帮您安排设计师处理,请稍候"  # SPEC §3 workflow 3
VERBATIM = frozenset({ASK_EMAIL, MAILED, MAIL_FAILED, ASK_REVISION, REDO, HANDED_OFF})

RESULT_AND_MAILING = "好了,你看一下效果,文件同时发您留的邮箱了,有问题随时说"
PAID = "收到,马上给您做,稍等一下"
PAID_WHILE_QUOTING = "收到付款了,图片我还在看,看完马上给您做"
NOTE_TAKEN = "好的,记下了,做的时候按这个来"
REQUIREMENT_TAKEN = "好的,这个要求记下了,会跟设计说"
EMAIL_NOTED = "邮箱记下了,做好了发您"
REMIND_EMAIL = "没问题的话把邮箱发我哈"
NEW_PHOTO_REPLACES = "收到新图了,之前那张没付款的就不做了,按这张给您报价"
ASK_FOR_PHOTO = "好的,把图片发我看一下"
HANDOFF_QUEUED = "设计师现在都不在线,已经帮您排上队了,设计师一上线马上处理,稍等哈"
ALREADY_HANDED_OFF = "已经安排设计师了,稍等一下哈"
FOUND_IMAGE = "找到了,是这张吧,需要再处理的话跟我说"
ASK_FIND_REFERENCE = "您要找哪张图?发一张参考图或者截图给我,我帮您找"

_PHOTO_PROBLEMS: dict[str, str] = {
    "not_image": "这个好像不是图片,麻烦直接发图片给我",
    "too_large": "图片太大了,压缩一下或者发张小一点的给我",
    "download_failed": "图片没收到,您再发一次试试",
    "blocked_url": "这个链接打不开,麻烦直接发图片给我",
    "bomb": "这张图片文件有问题打不开,您换一张或者截个图发我",
    "timeout": "图片下载超时了,您再发一次试试",
}
_PHOTO_PROBLEM_OTHER = "这张图片打不开,您再发一次试试"


def quote(operation: Operation, price: int, has_text: bool) -> str:
    """The quote: names the operation and the price in 元; a photo with text is said to be a text-heavy order."""
    what = f"这张帮您做{OPERATION_NAMES[operation]},{price}元,拍下付款后马上给您做"
    return f"图里有文字,算文字精修的单子,{what}" if has_text else what


def operation_changed(operation: Operation, price: int | None) -> str:
    """Before payment: the operation was changed as asked (the price stays, when already quoted)."""
    name = OPERATION_NAMES[operation]
    return f"好的,改成{name},还是{price}元" if price is not None else f"好的,改成{name}"


def operation_refused(current: Operation) -> str:
    """After payment: the operation is fixed; say so politely and offer to note other wishes."""
    return f"这单已经付款了,是按{OPERATION_NAMES[current]}做的,改不了哈,别的要求可以跟我说"


def photo_unreadable(reason: str) -> str:
    """The photo could not be read: a hint by reason code (not_image, too_large, download_failed, …)."""
    return _PHOTO_PROBLEMS.get(reason, _PHOTO_PROBLEM_OTHER)



_DECLINED: dict[str, str] = {
    "id_document": "不好意思,身份证件这类我们不能修改哈,别的照片可以发我",
    "banknote": "不好意思,钱币这类图片我们不能处理哈",
    "too_small": "这张图太小了,看不清细节,有大一点的原图吗?发我看看",
}
_DECLINED_OTHER = "不好意思,这张图我们这边不能处理哈,有别的照片可以发我"


def risk_declined(rule: str) -> str:
    """A polite refusal of a photo the shop will not take, by the risk rule that refused it."""
    return _DECLINED.get(rule, _DECLINED_OTHER)


# -- orders of several photos ---------------------------------------------------------------------
ASK_WHICH = "哪一张要改呢?说第几张就行,都要改就说都不行"
EMAIL_ORDER_NOTED = "邮箱记下了,都做好了一起发您"
_CN_COUNT = {2: "两", 3: "三", 4: "四", 5: "五", 6: "六", 7: "七", 8: "八", 9: "九", 10: "十"}


def count_of(n: int) -> str:
    """How many photos, as a customer says it: 两张, 三张, 12张."""
    return f"{_CN_COUNT.get(n, n)}张"


def result_numbered(number: int) -> str:
    """A result of an order of several, sent just before its picture."""
    return f"第{number}张做好了,您看一下"


def order_quote(lines: list[str], payable: int, total: int, has_text: bool) -> str:
    """One quote for an order of several photos: a line per photo, then the total of what can be done."""
    head = "图里有文字的按文字精修算," if has_text else ""
    if payable == 0:
        return "\n".join([f"{head}这几张帮您看了:", *lines, "这几张都做不了哈,有别的照片可以发我"])
    return "\n".join([f"{head}这几张帮您看了:", *lines,
                      f"{count_of(payable)}一共{total}元,拍下付款后马上给您做" if payable > 1
                      else f"一共{total}元,拍下付款后马上给您做"])


def quote_line(number: int, operation: Operation, price: int) -> str:
    """One photo's line of an order's quote."""
    return f"第{number}张 {OPERATION_NAMES[operation]} {price}元"


def order_paid(amount: str, numbers: list[int], every: bool) -> str:
    """A payment that starts photos of an order: all of them, or the ones it pays."""
    if every:
        return f"收到{amount}元,{count_of(len(numbers)) if len(numbers) > 1 else ''}马上给您做,稍等一下"
    which = "、".join(f"第{n}张" for n in numbers)
    return f"收到{amount}元,先给您做{which},其余的付款后马上做"


def short_of(amount: str, missing: str) -> str:
    """A payment below what the order costs: nothing starts, the customer hears the difference."""
    return f"收到{amount}元,还差{missing}元,补齐了马上给您做"


def overpaid(extra: str) -> str:
    """More was paid than the order costs: everything starts, the shop refunds the difference."""
    return f"多付了{extra}元,会退给您的"


def photo_dropped(numbers: list[int]) -> str:
    """Photos of an order the customer took out before paying."""
    return f"好的,{'、'.join(f'第{n}张' for n in numbers)}不做了"


def line_unreadable(number: int) -> str:
    """An order's quote line for a photo that could not be read."""
    return f"第{number}张 图片打不开,麻烦重新发一下"


def line_declined(number: int) -> str:
    """An order's quote line for a photo the shop will not take."""
    return f"第{number}张 这张我们不能处理哈"


def line_person(number: int) -> str:
    """An order's quote line for a photo a designer looks at."""
    return f"第{number}张 转给设计师看一下"
