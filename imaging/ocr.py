"""Offline text detection with RapidOCR (PP-OCR ONNX models shipped inside the `rapidocr` wheel; no download)."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

MIN_SCORE = 0.6
# Photo texture sometimes reads as a stray glyph; real text has at least two letters, digits or CJK characters.
_MEANINGFUL = re.compile(r"[0-9A-Za-z\u3400-\u9fff\uac00-\ud7af\u3040-\u30ff]")
# Larger photos are scaled down first: detection time grows with pixels (~2 s at 1600 px on 2 cores).
_MAX_SIDE = 1600

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


def detect_text(path: Path) -> tuple[bool, str]:
    """Whether the image shows legible text, and that text (lines joined by spaces)."""
    with Image.open(path) as opened:
        opened.draft("RGB", (_MAX_SIDE, _MAX_SIDE))
        img = ImageOps.exif_transpose(opened).convert("RGB")
    img.thumbnail((_MAX_SIDE, _MAX_SIDE), Image.Resampling.LANCZOS)
    # A PIL image, not the path: RapidOCR would fetch a path that looks like a URL.
    result = _get_engine()(img)
    lines = [text.strip() for text, score in zip(result.txts or (), result.scores or (), strict=True)
             if score >= MIN_SCORE and len(_MEANINGFUL.findall(text)) >= 2]
    return bool(lines), " ".join(lines)
