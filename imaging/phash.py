"""Perceptual hash (64-bit DCT pHash) of an image: copies that were resized, recompressed or brightened stay close.

The image is flattened on white, turned grey, shrunk to 32×32; the top-left 8×8 of its 2-D DCT (the lowest
frequencies, without the DC term's influence on the median) is compared with its median, one bit each.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MATCH_DISTANCE = 10  # bits of 64: resized/recompressed copies differ by a few, different photos by ~32
_SIDE = 32
_LOW = 8


class NotAnImage(Exception):
    """The file could not be read as an image."""


@cache
def _dct_matrix(n: int = _SIDE) -> np.ndarray:
    k = np.arange(n)
    m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


def _hash(img: Image.Image) -> int:
    img.draft("L", (_SIDE * 4, _SIDE * 4))
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        img = flat
    grey = np.asarray(img.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS), dtype=np.float64)
    d = _dct_matrix()
    low = (d @ grey @ d.T)[:_LOW, :_LOW].flatten()
    bits = low > np.median(low[1:])
    return int("".join("1" if b else "0" for b in bits), 2)


def phash(path: Path) -> int:
    """The 64-bit perceptual hash of an image file; NotAnImage when it is not one."""
    try:
        with Image.open(path) as img:
            return _hash(img)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise NotAnImage(f"{path.name}: {type(exc).__name__}") from None


def distance(a: int, b: int) -> int:
    """Hamming distance between two hashes."""
    return (a ^ b).bit_count()
