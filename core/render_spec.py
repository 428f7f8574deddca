"""The deliverable an order names (SPEC §2, "What each order delivers"), decided once for both render paths.

render_spec(request, photo, keyed) -> RenderSpec: shape, exact size, file type, whether the image model is asked
and at which of its ratios. Pure: the job's words and the photo's measures in, a typed spec out.

Shape: the photo's own unless the customer asked for another ("16:9", "正方形", "竖版 3:4"), or an exact size
names one. The image model only knows a few ratios: it is asked for the nearest, and the result is cropped back
exactly. Size: resize orders take the size in the words, else 2048 on the long side; every other order keeps
the photo's size (enhance and old photos double a small one), or takes a size the words name.
"""

from __future__ import annotations

import math

from core import words
from core.sizes import SizeRequest, size_request
from protocol.image import (
    LAYER_BACKGROUND,
    LAYER_SUBJECT,
    Operation,
    OutputFormat,
    PhotoMeasures,
    RenderRequest,
    RenderSpec,
)

__all__ = ["MODEL_OPERATIONS", "MODEL_RATIOS", "nearest_model_ratio", "render_spec", "requested_ratio"]

# The ratios Google's image models accept in imageConfig.aspectRatio.
MODEL_RATIOS: tuple[str, ...] = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
# What only a model adds: detail, restoration, a clean background plate, a flat redraw. A cut-out is U²-Net's
# and a resize is exact arithmetic: neither spends an image-model call.
MODEL_OPERATIONS = frozenset({Operation.ENHANCE, Operation.FIX_OLD_PHOTO, Operation.LAYERED, Operation.VECTORIZE})

RESIZE_DEFAULT_SIDE = 2048
MAX_SIDE = 8192  # a resize's largest side
FINISH_MAX_SIDE = 4096  # how far another deliverable grows
UPSCALE_BELOW = 2048  # enhance and old photos double a photo whose long side is under this (up to it)
MIN_SIDE = 16
MAX_PATHS = 800


def render_spec(request: RenderRequest, photo: PhotoMeasures, keyed: bool) -> RenderSpec:
    """The deliverable for this render request of this photo; `keyed` says whether an image model is configured."""
    op = request.operation
    said = request.words
    ratio = _parse_ratio(requested_ratio(request.aspect_ratio, said))
    base_w, base_h = _cover(photo.width, photo.height, ratio)
    asked = _last_size(said)
    width, height = _size(op, base_w, base_h, asked)
    fmt = _format(op, photo, said)
    wants_colour = any(w in s for s in said for w in ("上色", "彩色"))
    return RenderSpec(
        operation=op, width=width, height=height, format=fmt,
        model_ratio=nearest_model_ratio(width, height) if keyed and op in MODEL_OPERATIONS else None,
        monochrome=photo.monochrome and not wants_colour and op is not Operation.VECTORIZE,
        alpha=op is Operation.REMOVE_BG,
        keep_alpha=photo.has_alpha and fmt is OutputFormat.PNG,
        layers=(LAYER_BACKGROUND, LAYER_SUBJECT) if op is Operation.LAYERED else (),
        max_paths=MAX_PATHS if op is Operation.VECTORIZE else 0,
        perspective_fix=request.perspective_fix,
    )


def requested_ratio(stored: str, said: tuple[str, ...]) -> str:
    """The shape the customer asked for ("W:H"), or "" for the photo's own.

    Jobs of releases before issue 14 stored "1:1" when nobody asked (a placeholder, never a request to square a
    photo): it counts only when the words ask for a square.
    """
    if stored == "1:1" and not any(words.aspect_ratio(s) == "1:1" for s in said):
        return ""
    return stored


def nearest_model_ratio(width: int, height: int) -> str:
    """The model ratio closest to width:height (on a log scale, so 2:1 and 1:2 are as far from 1:1)."""
    target = math.log(width / height)
    return min(MODEL_RATIOS, key=lambda r: abs(math.log(_parse_ratio(r) or 1.0) - target))


def _parse_ratio(ratio: str) -> float | None:
    w, _, h = ratio.partition(":")
    if not (w.isdigit() and h.isdigit()) or not int(w) or not int(h):
        return None
    return int(w) / int(h)


def _cover(width: int, height: int, ratio: float | None) -> tuple[int, int]:
    """The largest centred crop of width×height with this ratio (the photo itself when None)."""
    if ratio is None:
        return width, height
    if width / height > ratio:
        return max(1, round(height * ratio)), height
    return width, max(1, round(width / ratio))


def _last_size(said: tuple[str, ...]) -> SizeRequest | None:
    """The size the latest words that name one ask for."""
    for text in reversed(said):
        asked = size_request(text)
        if asked is not None:
            return asked
    return None


def _size(op: Operation, w: int, h: int, asked: SizeRequest | None) -> tuple[int, int]:
    """The deliverable's exact pixels: asked for, else the operation's default, within the limits."""
    # Never smaller than the photo unless asked: a large photo keeps its size.
    limit = MAX_SIDE if op is Operation.RESIZE else min(MAX_SIDE, max(FINISH_MAX_SIDE, w, h))
    if asked is not None and op is not Operation.VECTORIZE:
        if asked.width and asked.height:
            return _within(asked.width, asked.height, limit)
        if asked.width:
            return _within(asked.width, asked.width * h / w, limit)
        if asked.height:
            return _within(asked.height * w / h, asked.height, limit)
        if asked.scale:
            return _within(w * asked.scale, h * asked.scale, limit)
    if op is Operation.RESIZE:
        factor = RESIZE_DEFAULT_SIDE / max(w, h)
    elif op in (Operation.ENHANCE, Operation.FIX_OLD_PHOTO):
        factor = min(2.0, max(1.0, UPSCALE_BELOW / max(w, h)))
    else:
        factor = 1.0
    return _within(w * factor, h * factor, limit)


def _within(w: float, h: float, limit: int) -> tuple[int, int]:
    """Rounded, scaled down (shape kept) to fit `limit`, and at least MIN_SIDE a side."""
    shrink = min(1.0, limit / max(w, h))
    return max(MIN_SIDE, round(w * shrink)), max(MIN_SIDE, round(h * shrink))


def _format(op: Operation, photo: PhotoMeasures, said: tuple[str, ...]) -> OutputFormat:
    """SVG and PSD by operation; cut-outs and old photos PNG; otherwise JPEG for a JPEG photo, unless asked."""
    if op is Operation.VECTORIZE:
        return OutputFormat.SVG
    if op is Operation.LAYERED:
        return OutputFormat.PSD
    if op in (Operation.REMOVE_BG, Operation.FIX_OLD_PHOTO):
        return OutputFormat.PNG
    text = " ".join(said).lower()
    if "png" in text or photo.has_alpha:
        return OutputFormat.PNG
    if "jpg" in text or "jpeg" in text or photo.format in ("JPEG", "MPO"):
        return OutputFormat.JPEG
    return OutputFormat.PNG
