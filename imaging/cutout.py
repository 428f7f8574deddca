"""Offline cut-out: U²-Net (u2netp, ONNX) finds the subject, a guided filter lays the matte onto the photo's edges.

The weights are put in the venv at install time (`python -m imaging.cutout_weights`); nothing is downloaded here.
"""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageChops

from imaging import cutout_weights
from imaging.analysis import to_rgb

_INPUT_SIDE = 320  # U²-Net was trained on 320×320
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # ImageNet statistics, as in U²-Net's training
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_LEVELS = (0.2, 0.8)  # the band of the mask stretched to 0-1 (see _saliency)
# The guided filter's coefficients are computed at this size and upsampled: its cost stays flat on a 12 MP photo.
_REFINE_SIDE = 1024
_GUIDE_EPS = 1e-3
# Two threads: 0.34 s instead of 0.56 s a cut-out on an idle 2-core machine, for ~12 % more CPU. Spinning off: the
# render workers and the suite share the cores, and a spinning pool burns what another process needs.
_THREADS = 2

_session: Any = None
_lock = threading.Lock()


class CutoutWeightsMissing(RuntimeError):
    """The U²-Net weights file is not where the install step puts it."""


def preload() -> None:
    """Import onnxruntime now: called before the actor system forks, so that render workers share it instead of
    each importing it at its first cut-out."""
    import onnxruntime  # noqa: F401


def _get_session() -> Any:
    """The ONNX session, built once per process (loading the graph takes a moment)."""
    global _session
    with _lock:
        if _session is None:
            import onnxruntime as ort

            path = cutout_weights.weights_path()
            if not path.is_file():
                raise CutoutWeightsMissing(f"no cut-out weights at {path}: run `python -m imaging.cutout_weights` "
                                           "(make does it at install)")
            options = ort.SessionOptions()
            options.intra_op_num_threads = _THREADS
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            _session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return _session


def _saliency(rgb: Image.Image) -> np.ndarray:
    """U²-Net's mask for the photo, 320×320 float32 in [0, 1]."""
    small = rgb.resize((_INPUT_SIDE, _INPUT_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    arr = np.asarray(small, dtype=np.float32)
    arr = (arr / max(float(arr.max()), 1e-6) - _MEAN) / _STD
    session = _get_session()
    inputs = {session.get_inputs()[0].name: arr.transpose(2, 0, 1)[np.newaxis]}
    # Only the fused first output: asking for it alone spares the six side outputs' upsampling.
    pred = session.run([session.get_outputs()[0].name], inputs)[0][0, 0]
    low, high = float(pred.min()), float(pred.max())
    pred = (pred - low) / max(high - low, 1e-6)
    # u2netp is unsure in the middle: a haze over busy backgrounds (a flag beside a portrait) and half-transparent
    # fur on a cat's body. Stretching that band clears the one and fills the other; edges stay graded.
    return np.clip((pred - _LEVELS[0]) / (_LEVELS[1] - _LEVELS[0]), 0.0, 1.0)


def _guided(guide: np.ndarray, src: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """He et al.'s guided filter with a grey guide: per-pixel a, b such that output = a * guide + b."""
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    var_i = box(guide * guide) - mean_i * mean_i
    a = (box(guide * src) - mean_i * mean_p) / (var_i + _GUIDE_EPS)
    b = mean_p - a * mean_i
    return box(a), box(b)


def matte(img: Image.Image) -> Image.Image:
    """The subject's soft alpha (mode L, the photo's size): 255 on the subject, 0 on the background, graded edges."""
    rgb = to_rgb(img)
    coarse = _saliency(rgb)
    width, height = rgb.size
    scale = min(1.0, _REFINE_SIDE / max(width, height))
    work_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    work = rgb.resize(work_size, Image.Resampling.BILINEAR, reducing_gap=2.0) if scale < 1 else rgb
    guide = np.asarray(work.convert("L"), dtype=np.float32) / 255
    mask = cv2.resize(coarse, work_size, interpolation=cv2.INTER_LINEAR)
    # Upscaled from 320 px, the mask's outline is a few of its pixels wide (~1/100 of the side): the filter needs
    # about that reach to re-cut it along the photo's own edges.
    a, b = _guided(guide, mask, radius=max(2, round(max(work_size) / 120)))
    if scale < 1:
        a = cv2.resize(a, (width, height), interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(b, (width, height), interpolation=cv2.INTER_LINEAR)
        guide = np.asarray(rgb.convert("L"), dtype=np.float32) / 255
    alpha = a * guide
    alpha += b
    np.clip(alpha, 0.0, 1.0, out=alpha)
    alpha *= 255
    return Image.fromarray((alpha + 0.5).astype(np.uint8), "L")


def cut_out(img: Image.Image) -> Image.Image:
    """The photo as RGBA with the background transparent; the subject's colours, and any transparency the photo
    had, are the photo's own."""
    alpha = matte(img)
    out = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        alpha = ImageChops.multiply(alpha, out.getchannel("A"))
    out.putalpha(alpha)
    return out
