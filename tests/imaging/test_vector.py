"""trace_svg on a real logo and real photographs: valid XML, a viewBox, a bounded path count, a preview that
looks like the input; svg_preview honours viewBox scaling, transforms and holes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imaging.analysis import to_rgb
from imaging.vector import count_paths, parse_svg, svg_preview, trace_svg
from tests.photos import CAT, LOGO, PORTRAIT, PRODUCT, Photo

_SVG = "{http://www.w3.org/2000/svg}"


def _rgb(photo: Photo) -> Image.Image:
    """The photo as a customer sees it: transparency laid on white."""
    return to_rgb(photo.open())


def _mae(preview: Image.Image, original: Image.Image) -> float:
    back = preview.resize(original.size, Image.Resampling.BILINEAR)
    return float(np.abs(np.asarray(back, np.float32) - np.asarray(original, np.float32)).mean())


def _check(svg: str, traced: tuple[int, int], shown: tuple[int, int], max_paths: int) -> None:
    root = ET.fromstring(svg)
    assert root.tag == f"{_SVG}svg"
    assert root.get("viewBox") == f"0 0 {traced[0]} {traced[1]}"
    assert (root.get("width"), root.get("height")) == (str(shown[0]), str(shown[1]))
    assert 0 < count_paths(svg) <= max_paths
    viewbox, paths = parse_svg(svg)
    assert viewbox == (0, 0, *traced) and len(paths) == count_paths(svg)


# Measured mean abs differences of the preview: 4.3 (logo, 211 paths), 10.9 (portrait, 715), 9.7 (product, 564).
@pytest.mark.parametrize(("photo", "tolerance"), [(LOGO, 6), (PORTRAIT, 14), (PRODUCT, 13)],
                         ids=["logo", "portrait", "product"])
def test_an_image_traces_to_a_bounded_svg_that_looks_like_it(photo: Photo, tolerance: float) -> None:
    img = _rgb(photo)
    shown = (img.width * 3, img.height * 3)
    svg = trace_svg(img, width=shown[0], height=shown[1])
    _check(svg, img.size, shown, 800)
    preview = svg_preview(svg)
    assert preview.mode == "RGB" and max(preview.size) == 1024
    assert abs(preview.width / preview.height - img.width / img.height) < 0.01
    assert _mae(preview, img) < tolerance


def test_a_tight_budget_makes_a_coarser_trace_that_still_looks_like_the_photo() -> None:
    img = _rgb(PORTRAIT)
    roomy = trace_svg(img, width=img.width, height=img.height, max_paths=5000)
    tight = trace_svg(img, width=img.width, height=img.height, max_paths=150)
    assert count_paths(tight) <= 150 < count_paths(roomy)
    _check(tight, img.size, img.size, 150)
    # Measured: 110 paths, 16.4 (1274 paths, 10.4 without a bound).
    assert _mae(svg_preview(tight), img) < 20


def test_a_budget_below_the_coarsest_trace_keeps_the_largest_shapes() -> None:
    img = _rgb(CAT)
    svg = trace_svg(img, width=img.width, height=img.height, max_paths=2)
    _check(svg, img.size, img.size, 2)
    # The coarsest trace has 4 paths; the two largest (the whole frame, then half of it) stay. Measured: 26.5.
    assert _mae(svg_preview(svg), img) < 35


def test_a_large_image_is_traced_at_1024_and_shown_at_its_own_size() -> None:
    img = Image.new("RGB", (2400, 1200), (250, 250, 245))
    ImageDraw.Draw(img).ellipse((300, 200, 1500, 1000), fill=(200, 30, 40))
    ImageDraw.Draw(img).rectangle((1600, 300, 2200, 900), fill=(20, 60, 160))
    svg = trace_svg(img, width=2400, height=1200)
    _check(svg, (1024, 512), (2400, 1200), 800)
    preview = svg_preview(svg, max_side=600)
    assert preview.size == (600, 300)
    assert _mae(preview, img.resize((600, 300))) < 3


def test_the_preview_honours_viewbox_transforms_fills_and_holes() -> None:
    svg = """<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100" viewBox="10 0 20 10">
      <path d="M10 0 h20 v10 h-20 z" style="fill: #0000ff"/>
      <g fill="#ff0000" transform="translate(10,0) scale(2)">
        <path d="M0 0 L5 0 L5 5 L0 5 Z M1 1 L4 1 L4 4 L1 4 Z"/>
        <path d="M0 0 L1 0 L1 1 Z" fill="none"/>
      </g>
      <path d="m20 0 c0 0 5 0 5 0 l0 10 q-5 0 -5 0 z" fill="#00ff00" transform="matrix(1 0 0 1 5 0)"/>
    </svg>"""
    assert count_paths(svg) == 4
    viewbox, paths = parse_svg(svg)
    assert viewbox == (10, 0, 20, 10) and [p.fill for p in paths] == [(0, 0, 255), (255, 0, 0), (0, 255, 0)]
    assert paths[1].polygons[1][0] == (12, 2), "the group's transform applies to its paths"
    img = np.asarray(svg_preview(svg))
    assert img.shape == (100, 200, 3)
    # viewBox x 10..30 maps onto 0..200: 10 px a unit. The red square spans units 10..20 with a hole 12..18.
    assert tuple(img[5, 5]) == (255, 0, 0) and tuple(img[50, 50]) == (0, 0, 255)
    assert tuple(img[50, 140]) == (0, 0, 255) and tuple(img[50, 195]) == (0, 255, 0)


def test_an_svg_without_viewbox_uses_its_size_and_a_narrow_viewport_is_letterboxed() -> None:
    plain = '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><path d="M0 0H20V20H0Z"/></svg>'
    assert parse_svg(plain)[0] == (0, 0, 40, 20)
    img = np.asarray(svg_preview(plain))
    assert tuple(img[10, 5]) == (0, 0, 0) and tuple(img[10, 35]) == (255, 255, 255)
    boxed = plain.replace('height="20"', 'height="40" viewBox="0 0 40 20"')
    img = np.asarray(svg_preview(boxed))
    # xMidYMid meet: the 40×20 drawing sits in the middle of the 40×40 viewport.
    assert tuple(img[2, 5]) == (255, 255, 255) and tuple(img[20, 5]) == (0, 0, 0)
