"""Limits on every image the service takes in: bytes, and pixels checked from the header before any decoding.

Importing the `imaging` package sets Pillow's own decompression-bomb guard to MAX_PIXELS as well, so
every Image.open in these processes refuses (DecompressionBombError) an image of more than twice that,
whatever path it came by; the explicit checks here refuse anything over MAX_PIXELS with a clear message.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # a customer's photo, or a rendered result
MAX_PIXELS = 40_000_000  # e.g. 8000 × 5000: far above any phone camera, far below what exhausts memory

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageTooLarge(ValueError):
    """An image over MAX_IMAGE_BYTES or MAX_PIXELS; the message says which, and by how much."""


def check_image_bytes(data: bytes, what: str) -> tuple[int, int]:
    """The (width, height) of an encoded image, read from its header; ImageTooLarge over the limits,
    ValueError when it is not an image at all."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"{what} is {len(data)} bytes, over the {MAX_IMAGE_BYTES}-byte limit")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(f"{what} is too large to decode safely: {exc}") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ValueError(f"{what} is not an image that can be opened: {type(exc).__name__}") from None
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(f"{what} is {width}x{height} pixels, over the {MAX_PIXELS}-pixel limit")
    return width, height


def check_image_file(path: Path, what: str) -> tuple[int, int]:
    """check_image_bytes for a file, reading no more than MAX_IMAGE_BYTES + 1 of it."""
    with path.open("rb") as fh:
        data = fh.read(MAX_IMAGE_BYTES + 1)
    return check_image_bytes(data, what)
