"""Photo-like test images made with Pillow and numpy (no files shipped)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter


def photo_like(seed: int = 1, size: tuple[int, int] = (1024, 1024)) -> Image.Image:
    """Gradients, shapes, thin lines and a little sensor noise: sharp and clean."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([90 + 120 * x / w, 60 + 140 * y / h, 150 + 40 * np.sin(x / 37) * np.cos(y / 53)], -1)
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, w - 100)), int(rng.integers(0, h - 100))
        box = (x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200)))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    for _ in range(60):
        ends = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(2)]
        draw.line(ends, fill=tuple(int(v) for v in rng.integers(0, 255, 3)), width=int(rng.integers(1, 4)))
    arr = np.asarray(img, np.float32) + rng.normal(0, 2, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def degrade(img: Image.Image, blur: float = 0, noise: float = 0, yellow: float = 0, fade: float = 0,
            speckle: float = 0, seed: int = 2) -> Image.Image:
    """The same photo blurred, noisy, yellowed, faded and/or speckled, like an old or bad phone picture."""
    rng = np.random.default_rng(seed)
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    a = np.asarray(img, np.float32)
    if fade:
        a = 128 + (a - 128) * (1 - fade) + 40 * fade
    if yellow:
        a = a * np.array([1.0, 0.95, 1 - yellow]) + np.array([20 * yellow, 10 * yellow, 0])
    if noise:
        a = a + rng.normal(0, noise, a.shape)
    if speckle:
        hit = rng.random(a.shape[:2]) < speckle
        a[hit] = rng.choice([0, 255], size=(int(hit.sum()), 1))
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))


def product_shot(size: tuple[int, int] = (800, 600), seed: int = 3) -> Image.Image:
    """A subject (a vase-like shape and a box) on an even light studio background."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = Image.new("RGB", size, (236, 238, 240))
    draw = ImageDraw.Draw(img)
    draw.ellipse((w * 0.3, h * 0.2, w * 0.6, h * 0.85), fill=(180, 40, 50))
    draw.rectangle((w * 0.55, h * 0.5, w * 0.75, h * 0.85), fill=(30, 70, 160))
    draw.line([(w * 0.35, h * 0.5), (w * 0.55, h * 0.5)], fill=(250, 220, 90), width=6)
    arr = np.asarray(img, np.float32) + rng.normal(0, 2, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


@pytest.fixture
def save(tmp_path: Path) -> Callable[..., Path]:
    """Save an image into tmp_path under `name` and return its path."""

    def _save(img: Image.Image, name: str = "photo.png", **params: object) -> Path:
        path = tmp_path / name
        img.save(path, **params)
        return path

    return _save
