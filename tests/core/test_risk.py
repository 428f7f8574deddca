"""Risk rules (core/risk.py): what the shop declines, what a person judges, what it quotes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.risk import Assessment, assess, sensitive, stricter
from protocol.image import RiskVerdict

V = RiskVerdict


@pytest.mark.parametrize(("size", "text", "verdict", "rule"), [
    ((856, 540), "姓名张三 性别男 民族汉 公民身份号码110101199001011234", V.DECLINE, "id_document"),
    ((856, 540), "110101199001011234", V.DECLINE, "id_document"),  # the number on a card-shaped photo
    ((856, 540), "姓名 张三 性別 男", V.DECLINE, "id_document"),  # OCR's traditional 別, card-shaped
    ((1200, 800), "中华人民共和国居民身份证", V.DECLINE, "id_document"),
    ((1200, 900), "签发机关 北京市公安局 有效期限 2010.01.01-2030.01.01", V.DECLINE, "id_document"),
    ((900, 600), "PASSPORT 护照", V.DECLINE, "id_document"),
    ((900, 600), "Passport No. E12345678", V.DECLINE, "id_document"),
    ((900, 1200), "个人简历 姓名 张三 性别 男 民族 汉 出生年月 1990.01", V.HUMAN, "id_document"),
    ((1000, 500), "中国人民银行 壹佰圆", V.DECLINE, "banknote"),
    ((1000, 500), "人民币 伍拾圆", V.DECLINE, "banknote"),
    ((1000, 420), "THE FEDERAL RESERVE BANK OF NEW YORK", V.DECLINE, "banknote"),
    ((900, 600), "增值税普通发票 价税合计(大写) 人民币壹佰元整", V.ACCEPT, "ok"),  # an invoice is not money
    ((800, 600), "荣誉证书 特发此证", V.HUMAN, "certificate"),
    ((800, 600), "营业执照 统一社会信用代码", V.HUMAN, "certificate"),
    ((40, 40), "", V.DECLINE, "too_small"),
    ((200, 60), "", V.DECLINE, "too_small"),
    ((120, 120), "", V.DECLINE, "too_small"),  # 14 400 pixels
    ((40, 40), "荣誉证书", V.DECLINE, "too_small"),  # too small to do anything with, certificate or not
    ((128, 128), "", V.ACCEPT, "ok"),
    ((800, 600), "新年快乐 大吉大利", V.ACCEPT, "ok"),
    ((800, 600), "订单号 110101199001011234", V.ACCEPT, "ok"),  # a long number alone, not card-shaped
    ((800, 600), "", V.ACCEPT, "ok"),
    # Bank cards: ID-1 cards like an ID card, by their words or a card number that passes the Luhn check.
    ((856, 540), "招商银行 借记卡 银联 UnionPay", V.DECLINE, "bank_card"),
    ((540, 856), "VISA PLATINUM VALID THRU 12/28", V.DECLINE, "bank_card"),  # a card photographed upright
    ((1000, 630), "MasterCard DEBIT 5412 7534 **** ****", V.DECLINE, "bank_card"),
    ((856, 540), "VISA", V.ACCEPT, "ok"),  # a brand alone: a shop sign, a sticker
    ((900, 600), "Advisable: accredited dealers only 12/28", V.ACCEPT, "ok"),  # inside other words
    ((856, 540), "6222 0212 3456 7890 128", V.DECLINE, "bank_card"),  # 19 digits in OCR's groups
    ((856, 540), "4111111111111111", V.DECLINE, "bank_card"),  # 16 digits read as one
    ((856, 540), "2024 6225 8801 2345 6783 12/28", V.DECLINE, "bank_card"),  # run into the lines around it
    ((856, 540), "6225 8801 2345 6784", V.ACCEPT, "ok"),  # fails the Luhn check
    ((856, 540), "6225 8801 2345", V.ACCEPT, "ok"),  # too short for a card
    ((800, 600), "办理信用卡 银联 4111 1111 1111 1111", V.ACCEPT, "ok"),  # a poster: not card-shaped
    ((856, 540), "居民身份证 信用卡", V.DECLINE, "id_document"),  # an identity document's own words come first
    # An ID number that happens to pass the Luhn check is still an ID number (its digits 7-14 are a birth date).
    ((856, 540), "110101199001011233", V.DECLINE, "id_document"),
])
def test_rules(size: tuple[int, int], text: str, verdict: RiskVerdict, rule: str) -> None:
    found = assess(size[0], size[1], 20, 10, 10, text)
    assert (found.verdict, found.rule) == (verdict, rule)
    assert bool(found.reason) == (verdict is not V.ACCEPT)


# Measures as imaging/analysis.py reports them (see tests/imaging/test_risk_fixture.py for the photos).
@pytest.mark.parametrize(("blur", "noise", "damage", "verdict"), [
    (0, 0, 1, V.ACCEPT),  # a sharp clean photo
    (100, 0, 100, V.ACCEPT),  # a soft, yellowed, faded old photo: everyday fix_old_photo work
    (0, 63, 95, V.ACCEPT),  # an old photo with film grain
    (100, 0, 18, V.ACCEPT),  # badly out of focus
    (0, 78, 0, V.ACCEPT),  # a noisy night shot
    (0, 100, 100, V.HUMAN),  # heavy grain or speckle over a ruined print
    (97, 85, 10, V.HUMAN),
])
def test_only_photos_past_fixing_go_to_a_person(blur: float, noise: float, damage: float,
                                                verdict: RiskVerdict) -> None:
    found = assess(800, 600, blur, noise, damage, "")
    assert found.verdict is verdict
    assert found.rule == ("too_damaged" if verdict is V.HUMAN else "ok")


assessments = st.builds(Assessment, st.sampled_from(list(V)), st.text(max_size=5), st.text(max_size=5))
ORDER = [V.ACCEPT, V.HUMAN, V.DECLINE]


@given(assessments, assessments)
def test_stricter_is_never_looser_than_either(a: Assessment, b: Assessment) -> None:
    both = stricter(a, b)
    assert ORDER.index(both.verdict) == max(ORDER.index(a.verdict), ORDER.index(b.verdict))
    assert stricter(b, a).verdict is both.verdict
    assert both in (a, b)
    if a.verdict is b.verdict:
        assert both is a


def test_a_bank_card_is_declined_with_the_card_word_and_never_its_number() -> None:
    assert assess(856, 540, 20, 10, 10, "银联 借记卡").reason == "疑似银行卡(银联)"
    found = assess(856, 540, 20, 10, 10, "6222 0212 3456 7890 128 12/28")
    assert found.reason == "疑似银行卡(卡号)" and "6222" not in found.reason


@pytest.mark.parametrize(("assessment", "kept"), [
    (assess(856, 540, 20, 10, 10, "公民身份号码110101199001011234"), False),
    (assess(856, 540, 20, 10, 10, "银联 UnionPay"), False),
    (assess(856, 540, 20, 10, 10, "6222 0212 3456 7890 128"), False),
    (Assessment(V.DECLINE, "模型判断:这是一张身份证的正面", "gemini_decline"), False),
    (Assessment(V.DECLINE, "模型判断:图片是一张银行卡", "gemini_decline"), False),
    (Assessment(V.DECLINE, "模型判断:Passport photo page", "gemini_decline"), False),
    (Assessment(V.DECLINE, "模型判断:色情内容", "gemini_decline"), True),  # declined, but no personal document
    (assess(1000, 500, 20, 10, 10, "中国人民银行 壹佰圆"), True),  # money is not personal data
    (assess(40, 40, 20, 10, 10, ""), True),
    (assess(800, 600, 20, 10, 10, "荣誉证书"), True),  # a person judges it, from the photo
    (assess(900, 1200, 20, 10, 10, "个人简历 姓名 张三 性别 男 民族 汉 出生年月 1990.01"), True),
    (Assessment(V.HUMAN, "模型判断:可能是身份证,拿不准", "gemini_human"), True),  # a person judges it
    (assess(800, 600, 20, 10, 10, "新年快乐"), True),
])
def test_only_an_identity_document_or_bank_card_declined_is_not_kept(assessment: Assessment, kept: bool) -> None:
    assert sensitive(assessment) is not kept
