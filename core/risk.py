"""Risk assessment before any quote (SPEC §2): accept, decline politely, or hand to a person, with a reason.

Offline rules over the photo's measures and the words OCR read in it. The shop does not edit identity
documents or money (declined); certificates and licences, and photos too damaged to fix, a person judges.
A vision model's verdict, when keyed, is combined with `stricter`: it can tighten the rules', never loosen.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from protocol.image import RiskVerdict

ID_WORDS: tuple[str, ...] = ("居民身份证", "公民身份号码", "身份证", "护照", "passport", "驾驶证", "驾驶执照",
                             "社会保障卡", "港澳通行证", "居住证")
ID_FIELD_WORDS: tuple[str, ...] = ("姓名", "性别", "民族", "出生", "住址", "签发机关", "有效期限")
BANKNOTE_WORDS: tuple[str, ...] = ("中国人民银行", "bank of", "federal reserve", "legal tender")
BANKNOTE_AMOUNTS: tuple[str, ...] = ("壹佰圆", "伍拾圆", "贰拾圆", "拾圆", "伍圆", "壹圆", "壹佰元", "伍拾元")
CERTIFICATE_WORDS: tuple[str, ...] = ("证书", "毕业证", "学位证", "营业执照", "结婚证", "离婚证", "房产证",
                                      "不动产权", "户口", "公章", "专用章", "许可证", "资格证", "荣誉证书", "证明")
ID_NUMBER = re.compile(r"(?<!\d)\d{17}[\dxX](?!\d)")
ID_CARD_RATIO = 85.6 / 54.0

MIN_SIDE = 64
MIN_PIXELS = 16_384
DAMAGE_BEYOND_REPAIR = 90.0
BLUR_BEYOND_REPAIR, NOISE_BEYOND_REPAIR = 95.0, 80.0

_ORDER = {RiskVerdict.ACCEPT: 0, RiskVerdict.HUMAN: 1, RiskVerdict.DECLINE: 2}


@dataclass(frozen=True)
class Assessment:
    """A verdict, why (short Chinese, for staff and the job view) and the rule's code."""

    verdict: RiskVerdict
    reason: str
    rule: str


ACCEPTED = Assessment(RiskVerdict.ACCEPT, "", "ok")


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().replace(" ", "")


def assess(width: int, height: int, blur: float, noise: float, damage: float, text: str) -> Assessment:
    """The rules' verdict on a photo from its size, measures (0-100) and the text read in it."""
    said = _norm(text)
    ratio = max(width, height) / max(1, min(width, height))
    id_word = next((w for w in ID_WORDS if w in said), None)
    fields = sum(w in said for w in ID_FIELD_WORDS)
    if id_word or (ID_NUMBER.search(said) and (fields >= 1 or abs(ratio - ID_CARD_RATIO) < 0.12)) or fields >= 3:
        return Assessment(RiskVerdict.DECLINE, f"疑似身份证件({id_word or '证件号码/证件栏目'})", "id_document")
    money = next((w for w in BANKNOTE_WORDS + BANKNOTE_AMOUNTS if w in said), None)
    if money is not None and (money in BANKNOTE_WORDS or "人民币" in said or "银行" in said):
        return Assessment(RiskVerdict.DECLINE, f"疑似纸币({money})", "banknote")
    certificate = next((w for w in CERTIFICATE_WORDS if w in said), None)
    if certificate is not None:
        return Assessment(RiskVerdict.HUMAN, f"证书或证照类图片({certificate}),需人工判断能否处理", "certificate")
    if min(width, height) < MIN_SIDE or width * height < MIN_PIXELS:
        return Assessment(RiskVerdict.DECLINE, f"图片太小({width}x{height})", "too_small")
    if damage >= DAMAGE_BEYOND_REPAIR or (blur >= BLUR_BEYOND_REPAIR and noise >= NOISE_BEYOND_REPAIR):
        return Assessment(RiskVerdict.HUMAN, f"损坏或模糊严重(损坏 {damage:.0f},模糊 {blur:.0f}),需人工判断",
                          "too_damaged")
    return ACCEPTED


def stricter(a: Assessment, b: Assessment) -> Assessment:
    """The stricter of two assessments (a when they are equally strict)."""
    return b if _ORDER[b.verdict] > _ORDER[a.verdict] else a
