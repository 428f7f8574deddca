"""Risk rules (core/risk.py): what the shop declines, what a person judges, what it quotes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.risk import Assessment, assess, stricter
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
