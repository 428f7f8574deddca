"""Vectorise with vtracer into an SVG with a bounded number of paths, and rasterise such an SVG with Pillow.

The rasteriser knows what vtracer and simple editors write: <g>/<path> elements, the path commands
M L H V C S Q T Z (A is drawn as a straight line), transform lists, viewBox with the default
xMidYMid meet or "none", and fills (attribute or style); every fill is even-odd, strokes are ignored.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
import vtracer
from PIL import Image, ImageColor, ImageDraw, ImageFilter

from imaging.analysis import to_rgb

TRACE_MAX_SIDE = 1024
_COLOURS = 24
# A photo's path count falls roughly as filter_speckle^-1.2 (measured on scikit-image's photos at ≤ 1024 px).
# Dropping small patches costs less likeness than dropping colours, and at the largest filter fewer colours
# no longer means fewer paths: only the speckle filter grows.
_FIRST_SPECKLE = 4
_MAX_SPECKLE = 128
_SUPERSAMPLE = 2

Point = tuple[float, float]
Matrix = tuple[float, float, float, float, float, float]
_IDENTITY: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_COMMAND = re.compile(r"([MmLlHhVvCcSsQqTtZzAa])([^MmLlHhVvCcSsQqTtZzAa]*)")
_TRANSFORM = re.compile(r"(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)")
_ARITY = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}
_SVG_TAG = re.compile(r"<svg\b[^>]*>")
_PATH_ELEMENT = re.compile(r"<path\b[^>]*/>")


@dataclass(frozen=True)
class SvgPath:
    """One filled path: its colour and its closed polygons in viewBox units (transforms applied)."""

    fill: tuple[int, int, int]
    polygons: tuple[tuple[Point, ...], ...]


def trace_svg(img: Image.Image, *, width: int, height: int, max_paths: int = 800) -> str:
    """An SVG of stacked colour shapes traced from the photo at ≤ TRACE_MAX_SIDE px (its viewBox), shown at
    width × height, with at most max_paths paths."""
    small = to_rgb(img)
    small.thumbnail((TRACE_MAX_SIDE, TRACE_MAX_SIDE), Image.Resampling.LANCZOS)
    # A median pass merges sensor noise into its neighbours: far fewer speckle paths on photos.
    small = small.filter(ImageFilter.MedianFilter(3))
    speckle = _FIRST_SPECKLE
    svg = _trace(small, speckle)
    while (paths := count_paths(svg)) > max_paths:
        if speckle == _MAX_SPECKLE:
            return _viewport(_keep_largest(svg, max_paths), small.size, width, height)
        # Aim a little past the budget, and always move on by half at least.
        aim = speckle * (paths / max_paths) ** (1 / 1.2) * 1.2
        speckle = min(_MAX_SPECKLE, max(round(aim), speckle * 3 // 2))
        svg = _trace(small, speckle)
    return _viewport(svg, small.size, width, height)


def _viewport(svg: str, traced: tuple[int, int], width: int, height: int) -> str:
    """vtracer's SVG shown at width × height, its drawing (traced pixels) mapped by the viewBox."""
    tag = (f'<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {traced[0]} {traced[1]}">')
    return _SVG_TAG.sub(tag, svg, count=1)


def _trace(img: Image.Image, speckle: int) -> str:
    reduced = img.quantize(_COLOURS, dither=Image.Dither.NONE).convert("RGB")
    buf = io.BytesIO()
    reduced.save(buf, "PNG", compress_level=1)
    return vtracer.convert_raw_image_to_svg(buf.getvalue(), img_format="png", colormode="color",
                                           hierarchical="stacked", mode="spline", filter_speckle=speckle,
                                           color_precision=6, layer_difference=16, path_precision=2)


def _keep_largest(svg: str, max_paths: int) -> str:
    """vtracer's SVG with only its max_paths largest paths (by bounding box), in their stacking order."""
    elements = _PATH_ELEMENT.findall(svg)
    areas = [_bbox_area(_flatten(ET.fromstring(e).get("d", ""))) for e in elements]
    kept = set(sorted(range(len(elements)), key=lambda i: -areas[i])[:max_paths])
    head = svg[:svg.index(elements[0])]
    return head + "\n".join(e for i, e in enumerate(elements) if i in kept) + "\n</svg>\n"


def _bbox_area(polygons: list[list[Point]]) -> float:
    xs = [x for poly in polygons for x, _ in poly]
    ys = [y for poly in polygons for _, y in poly]
    return (max(xs) - min(xs)) * (max(ys) - min(ys)) if xs else 0.0


def count_paths(svg: str) -> int:
    """How many <path> elements the SVG has."""
    return sum(1 for el in ET.fromstring(svg).iter() if _local(el.tag) == "path")


def parse_svg(svg: str) -> tuple[tuple[float, float, float, float], list[SvgPath]]:
    """The viewBox (min-x, min-y, width, height; the size when there is none) and the filled paths in order."""
    root = ET.fromstring(svg)
    paths: list[SvgPath] = []
    _collect(root, _IDENTITY, (0, 0, 0), paths)
    return _viewbox(root), paths


def svg_preview(svg: str, max_side: int = 1024) -> Image.Image:
    """An RGB raster of the SVG on white, at its width × height scaled down to fit max_side."""
    root = ET.fromstring(svg)
    vx, vy, vw, vh = _viewbox(root)
    width = _length(root.get("width")) or vw
    height = _length(root.get("height")) or vh
    scale = min(1.0, max_side / max(width, height))
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    sx, sy = out_w * _SUPERSAMPLE / vw, out_h * _SUPERSAMPLE / vh
    ox = oy = 0.0
    if (root.get("preserveAspectRatio") or "").split()[:1] != ["none"]:
        sx = sy = min(sx, sy)
        ox, oy = (out_w * _SUPERSAMPLE - vw * sx) / 2, (out_h * _SUPERSAMPLE - vh * sy) / 2
    to_device: Matrix = (sx, 0.0, 0.0, sy, ox - vx * sx, oy - vy * sy)
    paths: list[SvgPath] = []
    _collect(root, to_device, (0, 0, 0), paths)
    canvas = Image.new("RGB", (out_w * _SUPERSAMPLE, out_h * _SUPERSAMPLE), "white")
    for path in paths:
        _fill(canvas, path)
    return canvas.reduce(_SUPERSAMPLE)


def _fill(canvas: Image.Image, path: SvgPath) -> None:
    """Paint one path even-odd: a lone polygon directly, several through a parity mask over their bounding box."""
    polygons = [poly for poly in path.polygons if len(poly) >= 3]
    if len(polygons) == 1:
        ImageDraw.Draw(canvas).polygon(polygons[0], fill=path.fill)
        return
    boxes = [_box(poly, canvas.size) for poly in polygons]
    boxes, polygons = [b for b in boxes if b], [p for p, b in zip(polygons, boxes, strict=True) if b]
    if not boxes:
        return
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[2] for b in boxes), max(b[3] for b in boxes)
    parity = np.zeros((bottom - top, right - left), dtype=bool)
    for poly, (x0, y0, x1, y1) in zip(polygons, boxes, strict=True):
        # Each subpath is drawn only over its own box: a background with hundreds of holes stays cheap.
        layer = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(layer).polygon([(x - x0, y - y0) for x, y in poly], fill=255)
        parity[y0 - top:y1 - top, x0 - left:x1 - left] ^= np.asarray(layer) > 0
    canvas.paste(path.fill, (left, top), Image.fromarray(parity.astype(np.uint8) * 255))


def _box(poly: tuple[Point, ...], size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    xs, ys = [x for x, _ in poly], [y for _, y in poly]
    x0, y0 = max(0, math.floor(min(xs))), max(0, math.floor(min(ys)))
    x1, y1 = min(size[0], math.ceil(max(xs)) + 1), min(size[1], math.ceil(max(ys)) + 1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _length(value: str | None) -> float | None:
    """A width/height in user units; percentages and missing values give None (the viewBox decides)."""
    if not value or value.strip().endswith("%"):
        return None
    match = _NUMBER.match(value.strip())
    return float(match[0]) if match and float(match[0]) > 0 else None


def _viewbox(root: ET.Element) -> tuple[float, float, float, float]:
    numbers = [float(v) for v in _NUMBER.findall(root.get("viewBox", ""))]
    if len(numbers) == 4 and numbers[2] > 0 and numbers[3] > 0:
        return numbers[0], numbers[1], numbers[2], numbers[3]
    return 0.0, 0.0, _length(root.get("width")) or 1.0, _length(root.get("height")) or 1.0


def _collect(element: ET.Element, matrix: Matrix, fill: tuple[int, int, int] | None,
             out: list[SvgPath]) -> None:
    """Walk <svg>/<g>/<path> in document order, composing transforms and inheriting fills."""
    matrix = _compose(matrix, _parse_transform(element.get("transform", "")))
    fill = _fill_of(element, fill)
    tag = _local(element.tag)
    if tag == "path" and fill is not None:
        unit = math.sqrt(abs(matrix[0] * matrix[3] - matrix[1] * matrix[2]))
        polygons = tuple(tuple(_apply(matrix, p) for p in poly) for poly in _flatten(element.get("d", ""), unit))
        out.append(SvgPath(fill, polygons))
    elif tag in ("svg", "g"):
        for child in element:
            _collect(child, matrix, fill, out)


def _fill_of(element: ET.Element, inherited: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    value = element.get("fill")
    for declaration in (element.get("style") or "").split(";"):
        name, _, style_value = declaration.partition(":")
        if name.strip() == "fill":
            value = style_value
    if value is None or value.strip() == "inherit":
        return inherited
    if value.strip() == "none":
        return None
    try:
        return ImageColor.getrgb(value.strip())[:3]
    except ValueError:
        return inherited


def _compose(outer: Matrix, inner: Matrix) -> Matrix:
    a, b, c, d, e, f = outer
    a2, b2, c2, d2, e2, f2 = inner
    return (a * a2 + c * b2, b * a2 + d * b2, a * c2 + c * d2, b * c2 + d * d2,
            a * e2 + c * f2 + e, b * e2 + d * f2 + f)


def _apply(m: Matrix, p: Point) -> Point:
    return m[0] * p[0] + m[2] * p[1] + m[4], m[1] * p[0] + m[3] * p[1] + m[5]


def _parse_transform(text: str) -> Matrix:
    matrix = _IDENTITY
    for name, args in _TRANSFORM.findall(text):
        v = [float(x) for x in _NUMBER.findall(args)]
        if name == "matrix" and len(v) == 6:
            step: Matrix = (v[0], v[1], v[2], v[3], v[4], v[5])
        elif name == "translate" and v:
            step = (1.0, 0.0, 0.0, 1.0, v[0], v[1] if len(v) > 1 else 0.0)
        elif name == "scale" and v:
            step = (v[0], 0.0, 0.0, v[1] if len(v) > 1 else v[0], 0.0, 0.0)
        elif name == "rotate" and v:
            cos, sin = math.cos(math.radians(v[0])), math.sin(math.radians(v[0]))
            cx, cy = (v[1], v[2]) if len(v) == 3 else (0.0, 0.0)
            step = (cos, sin, -sin, cos, cx - cos * cx + sin * cy, cy - sin * cx - cos * cy)
        elif name == "skewX" and v:
            step = (1.0, 0.0, math.tan(math.radians(v[0])), 1.0, 0.0, 0.0)
        elif name == "skewY" and v:
            step = (1.0, math.tan(math.radians(v[0])), 0.0, 1.0, 0.0, 0.0)
        else:
            continue
        matrix = _compose(matrix, step)
    return matrix


def _flatten(d: str, unit: float = 1.0) -> list[list[Point]]:
    """The path's subpaths as polygons, curves flattened for drawing at `unit` device pixels a user unit."""
    polygons: list[list[Point]] = []
    current: list[Point] = []
    x = y = start_x = start_y = 0.0
    # The last C/S and Q/T control points: S reflects only a cubic's, T only a quadratic's.
    cubic: Point | None = None
    quad: Point | None = None
    for letter, args in _COMMAND.findall(d):
        command, relative = letter.upper(), letter.islower()
        numbers = [float(v) for v in _NUMBER.findall(args)]
        arity = _ARITY[command]
        groups = [numbers[i:i + arity] for i in range(0, len(numbers) - arity + 1, arity)] if arity else [[]]
        for index, g in enumerate(groups):
            ox, oy = (x, y) if relative else (0.0, 0.0)
            if command == "M" and index == 0:
                if len(current) >= 3:
                    polygons.append(current)
                x, y = g[0] + ox, g[1] + oy
                start_x, start_y = x, y
                current, cubic, quad = [(x, y)], None, None
                continue
            if command == "Z":
                if len(current) >= 3:
                    polygons.append(current)
                current, (x, y), cubic, quad = [(start_x, start_y)], (start_x, start_y), None, None
                continue
            if command in ("M", "L", "A"):  # a later M pair is a line; an arc is drawn as its chord
                end, cubic, quad = (g[-2] + ox, g[-1] + oy), None, None
                current.append(end)
            elif command in ("H", "V"):
                end = (g[0] + ox, y) if command == "H" else (x, g[0] + oy)
                cubic = quad = None
                current.append(end)
            elif command in ("C", "S"):
                c1 = (g[0] + ox, g[1] + oy) if command == "C" else _reflect(cubic, (x, y))
                cubic, end, quad = (g[-4] + ox, g[-3] + oy), (g[-2] + ox, g[-1] + oy), None
                current += _bezier(((x, y), c1, cubic, end), unit)
            else:  # Q, T
                quad = (g[0] + ox, g[1] + oy) if command == "Q" else _reflect(quad, (x, y))
                end, cubic = (g[-2] + ox, g[-1] + oy), None
                current += _bezier(((x, y), quad, end), unit)
            x, y = end
    if len(current) >= 3:
        polygons.append(current)
    return polygons


def _reflect(control: Point | None, at: Point) -> Point:
    return (2 * at[0] - control[0], 2 * at[1] - control[1]) if control else at


def _bezier(controls: tuple[Point, ...], unit: float) -> list[Point]:
    """Points along a quadratic or cubic Bézier after its start, about 4 device pixels apart."""
    hull = sum(math.dist(a, b) for a, b in itertools.pairwise(controls))
    steps = max(1, min(64, int(hull * unit / 4) + 1))
    return [(x, y) for x, y in (_bernstein(len(controls) - 1, steps) @ np.array(controls)).tolist()]


@functools.cache
def _bernstein(degree: int, steps: int) -> np.ndarray:
    """Each control point's weight at t = 1/steps … 1, one row per t."""
    t = np.arange(1, steps + 1)[:, None] / steps
    k = np.arange(degree + 1)[None, :]
    return np.array([math.comb(degree, i) for i in range(degree + 1)]) * t ** k * (1 - t) ** (degree - k)
