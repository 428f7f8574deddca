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
