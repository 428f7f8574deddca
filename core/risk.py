"""Risk assessment before any quote (SPEC §2): accept, decline politely, or hand to a person, with a reason.

Offline rules over the photo's measures and the words OCR read in it. The shop does not edit identity
documents, bank cards or money (declined); certificates and licences, forms full of personal details, and photos
too damaged to fix, a person judges. A vision model's verdict, when keyed, is combined with `stricter`: it can
tighten the rules', never loosen them. `sensitive` says which verdicts mean the photo itself must not be kept
(PIPL: an identity document or bank card is sensitive personal information).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from protocol.image import RiskVerdict

# Words are compared after NFKC, lower case and without spaces (OCR splits and joins words at will).
ID_WORDS: tuple[str, ...] = ("居民身份证", "公民身份号码", "身份证", "护照", "PASSPORT", "驾驶证", "驾驶执照",
                             "社会保障卡", "港澳通行证", "居住证")
# The labels on the front of a Chinese ID card; OCR often reads 别 as the traditional 別.
ID_FRONT_FIELDS: tuple[tuple[str, ...], ...] = (("姓名",), ("性别", "性別"), ("民族",), ("出生",), ("住址",))
ID_BACK_FIELDS: tuple[str, ...] = ("签发机关", "有效期限")
BANKNOTE_WORDS: tuple[str, ...] = ("中国人民银行", "ZHONGGUO RENMIN YINHANG", "BANK OF", "FEDERAL RESERVE",
                                   "LEGAL TENDER")
# Denominations as printed on RMB notes: 圆 and 角, never the 元 of receipts and invoices.
BANKNOTE_AMOUNTS: tuple[str, ...] = ("壹佰圆", "伍拾圆", "贰拾圆", "拾圆", "伍圆", "贰圆", "壹圆", "伍角", "贰角",
                                     "壹角")
BANKNOTE_CONTEXT: tuple[str, ...] = ("人民币", "银行")
CERTIFICATE_WORDS: tuple[str, ...] = ("证书", "毕业证", "学位证", "营业执照", "结婚证", "离婚证", "房产证",
                                      "不动产权", "户口", "公章", "专用章", "许可证", "资格证", "荣誉证书", "证明")
ID_NUMBER = re.compile(r"(?<!\d)\d{17}[\dx](?!\d)")
# Bank cards are ID-1 cards too (ISO/IEC 7810), so they share the ID card's shape test.
BANK_CARD_WORDS: tuple[str, ...] = ("银联", "银行卡", "信用卡", "借记卡", "储蓄卡")
# A brand alone is also a shop sign or a sticker ("VISA" in a street, "credit" inside "accredited"): it counts as a
# whole word, and only beside a mark every card front has — an expiry date or a card number's grouped digits.
CARD_BRANDS = re.compile(r"\b(UNIONPAY|VISA|MASTERCARD|AMERICAN EXPRESS|DEBIT|CREDIT)\b", re.IGNORECASE)
CARD_MARKS = re.compile(r"\b(?:0[1-9]|1[0-2])\s*/\s*\d\d\b|VALID\s*THRU|GOOD\s*THRU|\b\d{4}\s+\d{4}\b",
                        re.IGNORECASE)
# OCR spaces a card number in groups (6222 0212 3456 7890 128) and may run it into the next line's digits.
DIGIT_GROUPS = re.compile(r"[0-9]+(?:\s+[0-9]+)*")
CARD_DIGITS = range(16, 20)
# Digits 7-14 of a Chinese ID number are a birth date: such an 18-digit number is an ID number, not a card's.
ID_BIRTH_DATE = re.compile(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")
SENSITIVE_RULES = frozenset({"id_document", "bank_card"})
ID_CARD_RATIO = 85.6 / 54.0
ID_CARD_RATIO_SLACK = 0.12

MIN_SIDE = 64
MIN_PIXELS = 16_384
# imaging/analysis.py saturates damage at 100 for any plainly yellowed or faded old photo, and blur at 100 for
# any soft one: those are the shop's everyday work. Only heavy noise or grain on top of either is past fixing.
DAMAGE_BEYOND_REPAIR = 90.0
BLUR_BEYOND_REPAIR = 95.0
NOISE_BEYOND_REPAIR = 80.0

_ORDER = {RiskVerdict.ACCEPT: 0, RiskVerdict.HUMAN: 1, RiskVerdict.DECLINE: 2}


@dataclass(frozen=True)
class Assessment:
    """A verdict, why (short Chinese, for staff and the job view) and the rule's code."""

    verdict: RiskVerdict
    reason: str
    rule: str


ACCEPTED = Assessment(RiskVerdict.ACCEPT, "", "ok")


def _norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).lower().split())


def _first(words: tuple[str, ...], said: str) -> str | None:
    """The first of `words` in the normalised text `said`, as written in the list."""
    return next((w for w in words if _norm(w) in said), None)


def _id_document(said: str, card_shaped: bool) -> Assessment | None:
    """Decline on an identity document's own words or number; a form of personal details goes to a person."""
    word = _first(ID_WORDS, said)
    front = sum(any(v in said for v in variants) for variants in ID_FRONT_FIELDS)
    number = ID_NUMBER.search(said) is not None
    if word is not None:
        return Assessment(RiskVerdict.DECLINE, f"疑似身份证件({word})", "id_document")
    if number and (front or card_shaped):
        return Assessment(RiskVerdict.DECLINE, "疑似身份证件(身份证号码)", "id_document")
    if all(f in said for f in ID_BACK_FIELDS) or (card_shaped and "姓名" in said and front >= 2):
        return Assessment(RiskVerdict.DECLINE, "疑似身份证件(证件栏目)", "id_document")
    if front >= 3:  # a résumé or registration form reads the same: a person tells them apart
        return Assessment(RiskVerdict.HUMAN, "含姓名、性别等个人信息栏目,需人工判断是否证件", "id_document")
    return None


def _luhn(digits: str) -> bool:
    """The Luhn check every payment card number passes."""
    total = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        total += d if i % 2 == 0 else (2 * d if d < 5 else 2 * d - 9)
    return total % 10 == 0


def _card_number(text: str) -> bool:
    """Whether text holds a 16-19-digit number of whole OCR groups that passes the Luhn check."""
    for run in DIGIT_GROUPS.findall(unicodedata.normalize("NFKC", text)):
        groups = run.split()
        for start in range(len(groups)):
            digits = ""
            for group in groups[start:]:
                digits += group
                if len(digits) > CARD_DIGITS[-1]:
                    break
                if len(digits) in CARD_DIGITS and _luhn(digits) \
                        and not (len(digits) == 18 and ID_BIRTH_DATE.fullmatch(digits[6:14])):
                    return True
    return False


def _bank_card(text: str, said: str, card_shaped: bool) -> Assessment | None:
    """Decline a card-shaped photo that shows a bank card's words or a card number (never the number itself in the
    reason: it is the very data not to keep)."""
    if not card_shaped:
        return None
    word = _first(BANK_CARD_WORDS, said)
    if word is not None:
        return Assessment(RiskVerdict.DECLINE, f"疑似银行卡({word})", "bank_card")
    brand = CARD_BRANDS.search(unicodedata.normalize("NFKC", text))
    if brand is not None and CARD_MARKS.search(unicodedata.normalize("NFKC", text)):
        return Assessment(RiskVerdict.DECLINE, f"疑似银行卡({brand.group(1)})", "bank_card")
    if _card_number(text):
        return Assessment(RiskVerdict.DECLINE, "疑似银行卡(卡号)", "bank_card")
    return None


def assess(width: int, height: int, blur: float, noise: float, damage: float, text: str) -> Assessment:
    """The rules' verdict on a photo from its size, measures (0-100) and the text read in it."""
    said = _norm(text)
    ratio = max(width, height) / max(1, min(width, height))
    card_shaped = abs(ratio - ID_CARD_RATIO) < ID_CARD_RATIO_SLACK
    bank_card = _bank_card(text, said, card_shaped)
    # An identity document's own words first; then a card's, before the ID-number rule, which reads a card number
    # run into its expiry date (6225 8801 2345 6783 12/28) as 18 digits once the spaces are gone.
    if bank_card is not None and _first(ID_WORDS, said) is None:
        return bank_card
    id_document = _id_document(said, card_shaped)
    if id_document is not None and id_document.verdict is RiskVerdict.DECLINE:
        return id_document
    money = _first(BANKNOTE_WORDS, said)
    amount = _first(BANKNOTE_AMOUNTS, said)
    if money is None and amount is not None and _first(BANKNOTE_CONTEXT, said) is not None:
        money = amount
    if money is not None:
        return Assessment(RiskVerdict.DECLINE, f"疑似纸币({money})", "banknote")
    if min(width, height) < MIN_SIDE or width * height < MIN_PIXELS:
        return Assessment(RiskVerdict.DECLINE, f"图片太小({width}x{height})", "too_small")
    if id_document is not None:
        return id_document
    certificate = _first(CERTIFICATE_WORDS, said)
    if certificate is not None:
        return Assessment(RiskVerdict.HUMAN, f"证书或证照类图片({certificate}),需人工判断能否处理", "certificate")
    if noise >= NOISE_BEYOND_REPAIR and (damage >= DAMAGE_BEYOND_REPAIR or blur >= BLUR_BEYOND_REPAIR):
        return Assessment(RiskVerdict.HUMAN, f"损坏或噪点严重(损坏 {damage:.0f},模糊 {blur:.0f},噪点 {noise:.0f}),"
                          "需人工判断", "too_damaged")
    return ACCEPTED


def sensitive(a: Assessment) -> bool:
    """Whether the photo behind this verdict must not be kept: declined as an identity document or bank card, by
    the rules or by a vision model whose reason names one. Money, tiny photos and what a person judges are kept."""
    if a.verdict is not RiskVerdict.DECLINE:
        return False
    if a.rule in SENSITIVE_RULES:
        return True
    said = _norm(a.reason)
    return a.rule.startswith("gemini_") and (_first(ID_WORDS, said) or _first(BANK_CARD_WORDS, said)) is not None


def stricter(a: Assessment, b: Assessment) -> Assessment:
    """The stricter of two assessments (a when they are equally strict)."""
    return b if _ORDER[b.verdict] > _ORDER[a.verdict] else a
