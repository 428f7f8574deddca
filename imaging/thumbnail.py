"""Small JPEG thumbnails of stored images for the console, made once and cached on disk.

The cache name carries the source's path, size and modification time, so a re-rendered result gets a new
thumbnail and a stale one is never served.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

SIDE = 240  # px, the longest side: sharp on a phone at 2x in a 120 px cell
MAX_PIXELS = 80_000_000  # our own stored images are bounded by the fetch and render limits; this is a backstop


class NoThumbnail(Exception):
    """The file is missing or cannot be read as an image."""


def cached_path(src: Path, cache_dir: Path, side: int = SIDE) -> Path:
    """Where src's thumbnail is (or would be) cached; NoThumbnail when src is not there."""
    try:
        st = src.stat()
    except OSError:
        raise NoThumbnail(f"{src.name} is not there") from None
    key = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}|{side}".encode()).hexdigest()[:32]
    return cache_dir / f"{key}.jpg"


def thumbnail(src: Path, cache_dir: Path, side: int = SIDE) -> Path:
    """The cached thumbnail of src (made now if missing); NoThumbnail when src is not a readable image."""
    out = cached_path(src, cache_dir, side)
    if out.is_file():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        with Image.open(src) as img:
            if img.width * img.height > MAX_PIXELS:
                raise NoThumbnail(f"{src.name} is {img.width}x{img.height}, too large to preview")
            img.draft("RGB", (side * 2, side * 2))  # JPEG: decode at a reduced scale, far cheaper
            small = ImageOps.exif_transpose(img)
            small.thumbnail((side, side), Image.Resampling.LANCZOS)
            if small.mode in ("RGBA", "LA", "PA") or (small.mode == "P" and "transparency" in small.info):
                # A transparent result (background removed) on a light checkerboard, as editors show it.
                rgba = small.convert("RGBA")
                flat = _checkerboard(rgba.size)
                flat.alpha_composite(rgba)
                small = flat
            tmp = out.with_suffix(f".{os.getpid()}.tmp")
            small.convert("RGB").save(tmp, "JPEG", quality=80, optimize=True)
            tmp.replace(out)  # atomic: a concurrent reader never sees half a file
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise NoThumbnail(f"{src.name}: {type(exc).__name__}") from None
    return out


def _checkerboard(size: tuple[int, int], cell: int = 8) -> Image.Image:
    board = Image.new("RGBA", size, (255, 255, 255, 255))
    grey = Image.new("RGBA", (cell, cell), (220, 220, 220, 255))
    for y in range(0, size[1], cell):
        for x in range((y // cell) % 2 * cell, size[0], cell * 2):
            board.paste(grey, (x, y))
    return board
