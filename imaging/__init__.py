"""Pillow work with no network; importing it sets Pillow's decompression-bomb guard (imaging.limits)."""

from imaging import limits as _limits  # noqa: F401
