"""Sizes a customer writes for a picture: "800x600", "宽800", "高 600px", "50%", "放大两倍", "缩小一半", "1寸", "2寸".

Pure text reading. A size is exact pixels (both sides, or one side with the shape kept) or a scale of the photo.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["PHOTO_SIZES", "SizeRequest", "size_request"]

# Chinese ID-photo sizes in pixels at 300 dpi (1 寸 is 25×35 mm, 2 寸 35×49 mm, …); longest names first.
PHOTO_SIZES: dict[str, tuple[int, int]] = {
    "小一寸": (260, 378), "大一寸": (390, 567), "小二寸": (413, 531), "小2寸": (413, 531), "小1寸": (260, 378),
    "大1寸": (390, 567), "一寸": (295, 413), "1寸": (295, 413), "二寸": (413, 579), "两寸": (413, 579),
    "2寸": (413, 579),
}
_NUMERALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "八": 8, "十": 10}

_PAIR = re.compile(r"(?<![\d.])(\d{2,5})\s*(?:px|像素)?\s*[x×*]\s*(\d{2,5})(?![\d.])")
_WIDTH = re.compile(r"(?:宽度?|width)\s*(?:为|是|改成|改为|调到|[:=])?\s*(\d{2,5})(?![\d.])")
# "提高20%" / "亮度提高20" raise something; they are not a height.
_HEIGHT = re.compile(r"(?:(?<![提增升加调拔最很太])高度?|height)\s*(?:为|是|改成|改为|调到|[:=])?\s*(\d{2,5})(?![\d.])")
_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s*%")
_TIMES = re.compile(r"(放大|扩大|缩小)?\s*(\d{1,2}|[一二两三四五六八十])\s*倍")
# "亮度提高50%", "饱和度加20%" are about colour, not size.
_NOT_SIZE = re.compile(r"亮|暗|饱和|对比|色|提高|降低|增加|减少|透明")
_HALF = re.compile(r"缩小一半|缩小到一半|缩一半|一半大小|小一半")


@dataclass(frozen=True)
class SizeRequest:
    """What the words ask: exact pixels for one or both sides, or a scale of the photo (never both)."""

    width: int | None = None
    height: int | None = None
    scale: float | None = None


def size_request(text: str) -> SizeRequest | None:
    """The size `text` asks for, or None when it names none.

    Exact sizes win over scales; an ID-photo size ("1寸") over loose numbers. "10:30" is a time, not a size,
    and "2倍" only counts as a scale between ×0.05 and ×8.
    """
    said = unicodedata.normalize("NFKC", text).lower()
    for name, size in PHOTO_SIZES.items():
        if name in said:
            return SizeRequest(width=size[0], height=size[1])
    if match := _PAIR.search(said):
        return SizeRequest(width=int(match[1]), height=int(match[2]))
    width, height = _WIDTH.search(said), _HEIGHT.search(said)
    if width or height:
        return SizeRequest(width=int(width[1]) if width else None, height=int(height[1]) if height else None)
    if _HALF.search(said):
        return SizeRequest(scale=0.5)
    if (match := _PERCENT.search(said)) and not _about_colour(said, match.start()):
        scale = float(match[1]) / 100
        return SizeRequest(scale=scale) if 0.05 <= scale <= 8 else None
    if (match := _TIMES.search(said)) and not _about_colour(said, match.start()):
        n = _NUMERALS.get(match[2]) or int(match[2])
        scale = 1 / n if match[1] == "缩小" else float(n)
        return SizeRequest(scale=scale) if n and 0.05 <= scale <= 8 else None
    return None


def _about_colour(said: str, start: int) -> bool:
    """Whether the words just before a number say it is about brightness or colour."""
    return bool(_NOT_SIZE.search(said[max(0, start - 6):start]))
