"""Sizes in a customer's words: exact pixels, one side, scales, ID-photo sizes; times and colour words are not sizes."""

from __future__ import annotations

import pytest

from core.sizes import SizeRequest, size_request


@pytest.mark.parametrize(("text", "size"), [
    ("改一下尺寸 800x600", SizeRequest(width=800, height=600)),
    ("1920*1080的", SizeRequest(width=1920, height=1080)),
    ("1200 × 900 像素", SizeRequest(width=1200, height=900)),
    ("８００Ｘ６００", SizeRequest(width=800, height=600)),  # full-width, as phones type it
    ("宽800", SizeRequest(width=800)),
    ("宽度为1200 高900", SizeRequest(width=1200, height=900)),
    ("高 600px", SizeRequest(height=600)),
    ("width=640", SizeRequest(width=640)),
    ("50%", SizeRequest(scale=0.5)),
    ("放大两倍", SizeRequest(scale=2.0)),
    ("放大2倍 颜色鲜艳一点", SizeRequest(scale=2.0)),
    ("缩小一半", SizeRequest(scale=0.5)),
    ("缩小4倍", SizeRequest(scale=0.25)),
    ("做个1寸的", SizeRequest(width=295, height=413)),
    ("2寸证件照", SizeRequest(width=413, height=579)),
    ("小一寸", SizeRequest(width=260, height=378)),
])
def test_sizes_the_customer_writes(text: str, size: SizeRequest) -> None:
    assert size_request(text) == size


@pytest.mark.parametrize("text", [
    "10:30前要", "亮度提高20", "亮度提高50%", "饱和度加2倍", "帮我弄清楚一点", "3:4", "提高20", "1000%", "",
])
def test_words_that_name_no_size(text: str) -> None:
    assert size_request(text) is None
