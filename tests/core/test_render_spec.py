"""The render spec: what each order delivers, decided once from the words and the photo (SPEC §2's table)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.render_spec import MODEL_OPERATIONS, MODEL_RATIOS, nearest_model_ratio, render_spec, requested_ratio
from protocol.image import LAYER_BACKGROUND, LAYER_SUBJECT, Operation, OutputFormat, PhotoMeasures, RenderRequest


def _request(op: Operation, *notes: str, ratio: str = "", revisions: tuple[str, ...] = ()) -> RenderRequest:
    return RenderRequest(job_id="j", customer_id="c", render_id="j-r1", source_path="/x.jpg", operation=op,
                         notes=notes, revision_notes=revisions, aspect_ratio=ratio)


def _photo(w: int = 1600, h: int = 1067, fmt: str = "JPEG", **kw: bool) -> PhotoMeasures:
    return PhotoMeasures(width=w, height=h, format=fmt, **kw)


sides = st.integers(min_value=32, max_value=8000)


@given(w=sides, h=sides, op=st.sampled_from(list(Operation)), keyed=st.booleans())
def test_the_photo_keeps_its_shape_unless_asked(w: int, h: int, op: Operation, keyed: bool) -> None:
    spec = render_spec(_request(op), _photo(w, h), keyed)
    assert abs(math.log(spec.ratio / (w / h))) < 0.02 or min(spec.width, spec.height) == 16
    assert max(spec.width, spec.height) <= 8192


@given(w=sides, h=sides, keyed=st.booleans())
def test_an_enhanced_photo_is_never_smaller_than_it_was(w: int, h: int, keyed: bool) -> None:
    spec = render_spec(_request(Operation.ENHANCE), _photo(w, h), keyed)
    assert spec.width >= w and spec.height >= h


@given(w=sides, h=sides, op=st.sampled_from(list(Operation)), keyed=st.booleans())
def test_the_model_is_asked_only_where_it_adds_something_and_at_a_ratio_it_knows(
        w: int, h: int, op: Operation, keyed: bool) -> None:
    spec = render_spec(_request(op), _photo(w, h), keyed)
    if keyed and op in MODEL_OPERATIONS:
        assert spec.model_ratio == nearest_model_ratio(spec.width, spec.height)
        assert spec.model_ratio in MODEL_RATIOS
    else:
        assert spec.model_ratio is None


def test_resize_and_cut_out_never_spend_an_image_model_call() -> None:
    for op in (Operation.RESIZE, Operation.REMOVE_BG):
        assert render_spec(_request(op), _photo(), keyed=True).model_ratio is None


def test_a_size_in_the_words_is_the_deliverables_size_exactly() -> None:
    spec = render_spec(_request(Operation.RESIZE, "改一下尺寸 800x600"), _photo(1600, 1067), keyed=True)
    assert (spec.width, spec.height, spec.format, spec.model_ratio) == (800, 600, OutputFormat.JPEG, None)


@pytest.mark.parametrize(("words", "size"), [
    ("宽800", (800, 534)),
    ("高600", (900, 600)),
    ("50%", (800, 534)),
    ("放大两倍", (3200, 2134)),
    ("1寸", (295, 413)),
    ("2寸", (413, 579)),
    ("随便", (2048, 1366)),  # no size: long side 2048, shape kept
])
def test_resize_sizes(words: str, size: tuple[int, int]) -> None:
    spec = render_spec(_request(Operation.RESIZE, words), _photo(1600, 1067), keyed=False)
    assert (spec.width, spec.height) == size


def test_the_latest_words_that_name_a_size_win() -> None:
    spec = render_spec(_request(Operation.RESIZE, "800x600", revisions=("还是改成宽1000吧",)), _photo(1600, 1200),
                       keyed=False)
    assert (spec.width, spec.height) == (1000, 750)


@pytest.mark.parametrize(("ratio", "words", "shape"), [
    ("16:9", (), 16 / 9),
    ("1:1", ("做成正方形",), 1.0),
    ("3:4", ("竖版 3:4",), 3 / 4),
    ("1:1", (), 1600 / 1067),  # a release before issue 14 stored "1:1" when nobody asked
])
def test_a_shape_the_customer_asked_for(ratio: str, words: tuple[str, ...], shape: float) -> None:
    spec = render_spec(_request(Operation.ENHANCE, *words, ratio=ratio), _photo(1600, 1067), keyed=True)
    assert spec.ratio == pytest.approx(shape, rel=0.01)


def test_requested_ratio_reads_the_legacy_placeholder_as_the_photos_own() -> None:
    assert requested_ratio("1:1", ()) == ""
    assert requested_ratio("1:1", ("要正方形",)) == "1:1"
    assert requested_ratio("16:9", ()) == "16:9"


@pytest.mark.parametrize(("w", "h", "ratio"), [(4000, 3000, "4:3"), (1600, 1067, "3:2"), (1080, 1920, "9:16"),
                                              (1000, 1000, "1:1"), (3000, 1000, "21:9"), (800, 1000, "4:5")])
def test_nearest_model_ratio(w: int, h: int, ratio: str) -> None:
    assert nearest_model_ratio(w, h) == ratio


def test_what_each_operation_delivers() -> None:
    photo = _photo(640, 427)
    by_op = {op: render_spec(_request(op), photo, keyed=False) for op in Operation}
    assert by_op[Operation.ENHANCE].format is OutputFormat.JPEG  # a JPEG photo stays JPEG
    assert (by_op[Operation.ENHANCE].width, by_op[Operation.ENHANCE].height) == (1280, 854)  # small: doubled
    assert by_op[Operation.REMOVE_BG].format is OutputFormat.PNG and by_op[Operation.REMOVE_BG].alpha
    assert by_op[Operation.FIX_OLD_PHOTO].format is OutputFormat.PNG
    assert by_op[Operation.LAYERED].format is OutputFormat.PSD
    assert by_op[Operation.LAYERED].layers == (LAYER_BACKGROUND, LAYER_SUBJECT)
    assert by_op[Operation.VECTORIZE].format is OutputFormat.SVG and by_op[Operation.VECTORIZE].max_paths > 0
    png = render_spec(_request(Operation.ENHANCE, "要png"), photo, keyed=False)
    assert png.format is OutputFormat.PNG


def test_black_and_white_stays_black_and_white_unless_colour_is_asked() -> None:
    grey = _photo(800, 600, monochrome=True)
    assert render_spec(_request(Operation.FIX_OLD_PHOTO), grey, keyed=True).monochrome
    assert not render_spec(_request(Operation.FIX_OLD_PHOTO, "帮我上色"), grey, keyed=True).monochrome


def test_a_photos_own_transparency_is_kept_in_a_png() -> None:
    spec = render_spec(_request(Operation.RESIZE, "50%"), _photo(800, 600, "PNG", has_alpha=True), keyed=False)
    assert spec.format is OutputFormat.PNG and spec.keep_alpha
