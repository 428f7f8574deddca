"""Offline text detection with RapidOCR (PP-OCR ONNX models shipped inside the `rapidocr` wheel; no download)."""

from __future__ import annotations

import math
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

MIN_SCORE = 0.6
# Photo texture sometimes reads as a stray glyph; real text has at least two letters, digits or CJK characters.
_MEANINGFUL = re.compile(r"[0-9A-Za-z\u3400-\u9fff\uac00-\ud7af\u3040-\u30ff]")
# Larger photos are scaled down first: detection time grows with pixels (~2 s at 1600 px on 2 cores).
_MAX_SIDE = 1600

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), in pixels

_engine: Any = None
_lock = threading.Lock()


def _get_engine() -> Any:
    """The RapidOCR engine, built once per process (loading the models takes a moment)."""
    global _engine
    with _lock:
        if _engine is None:
            from rapidocr import RapidOCR

            _engine = RapidOCR(params={"Global.log_level": "error"})
        return _engine


def preload() -> None:
    """Import RapidOCR's code (not its models) now. Called before the actor system forks, so that every render
    worker shares it instead of importing it at its first photo (~1.4 s of CPU each)."""
    import rapidocr  # noqa: F401


def _legible_lines(img: Image.Image) -> list[tuple[str, np.ndarray]]:
    """The lines RapidOCR reads in img (RGB, at most _MAX_SIDE px) with their corner points in img's pixels."""
    # A PIL image, not the path: RapidOCR would fetch a path that looks like a URL.
    result = _get_engine()(img)
    quads = result.boxes if result.boxes is not None else ()
    return [(text.strip(), quad) for text, score, quad in zip(result.txts or (), result.scores or (), quads,
                                                              strict=True)
            if score >= MIN_SCORE and len(_MEANINGFUL.findall(text)) >= 2]


def detect_text(path: Path) -> tuple[bool, str]:
    """Whether the image shows legible text, and that text (lines joined by spaces)."""
    with Image.open(path) as opened:
        opened.draft("RGB", (_MAX_SIDE, _MAX_SIDE))
        img = ImageOps.exif_transpose(opened).convert("RGB")
    img.thumbnail((_MAX_SIDE, _MAX_SIDE), Image.Resampling.LANCZOS)
    lines = [text for text, _quad in _legible_lines(img)]
    return bool(lines), " ".join(lines)


def text_boxes(img: Image.Image) -> list[Box]:
    """The legible lines' boxes (left, top, right, bottom) in img's own pixels, rounded outwards."""
    small = img.convert("RGB")
    small.thumbnail((_MAX_SIDE, _MAX_SIDE), Image.Resampling.LANCZOS)
    sx, sy = img.width / small.width, img.height / small.height
    boxes = []
    for _text, quad in _legible_lines(small):
        xs, ys = quad[:, 0] * sx, quad[:, 1] * sy
        box = (max(0, math.floor(xs.min())), max(0, math.floor(ys.min())),
               min(img.width, math.ceil(xs.max())), min(img.height, math.ceil(ys.max())))
        if box[0] < box[2] and box[1] < box[3]:
            boxes.append(box)
    return boxes
