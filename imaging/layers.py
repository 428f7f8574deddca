"""The layered PSD: a clean background plate, the cut-out subject on transparency and the photo's text on top.

Every layer keeps the photo's own pixels where it shows them, so the composite is the photo again (up to the
plate showing through the subject's soft edge).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image
from psd_tools import PSDImage

from imaging import cutout
from imaging.analysis import to_rgb
from imaging.ocr import Box
from protocol.image import LAYER_BACKGROUND, LAYER_SUBJECT, LAYER_TEXT

# Telea's cost grows with the hole's area: fill at this size, then upscale the filled part (a filled hole has no
# fine detail to lose). At 4 MP it takes 0.4 s of CPU here against 1.6 s at 1024 px, and looks the same.
_INPAINT_SIDE = 512
_INPAINT_RADIUS = 5
# The hole covers the subject's faint halo too, or the plate keeps a ghost of the subject's outline.
_HOLE_ALPHA = 8
_HOLE_GROW = 0.012  # of the long side


def layered_psd(photo: Image.Image, *, plate: Image.Image | None = None,
                text_boxes: list[Box] | None = None) -> PSDImage:
    """A PSD of the photo: background, subject and (when text_boxes has any) text layers, bottom to top.

    `plate` is the background without the subject (an image model's, resized to the photo when it differs); without
    it the subject, and any text, are inpainted out of the photo."""
    rgb = to_rgb(photo)
    alpha = cutout.matte(rgb)
    boxes = text_boxes or []
    if plate is None:
        background = clean_plate(rgb, alpha, boxes)
    else:
        background = to_rgb(plate)
        if background.size != rgb.size:
            background = background.resize(rgb.size, Image.Resampling.LANCZOS)

    psd = PSDImage.new("RGB", rgb.size)
    _add_layer(psd, background, LAYER_BACKGROUND)
    # Layers are stored trimmed to what they show, as Photoshop does: a smaller file, less memory.
    left, top, right, bottom = alpha.getbbox() or (0, 0, *rgb.size)
    subject = rgb.crop((left, top, right, bottom))
    subject.putalpha(alpha.crop((left, top, right, bottom)))
    _add_layer(psd, subject, LAYER_SUBJECT, left, top)
    if boxes:
        left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
        right, bottom = max(b[2] for b in boxes), max(b[3] for b in boxes)
        text = rgb.crop((left, top, right, bottom))
        shown = Image.new("L", text.size, 0)
        for box in boxes:
            shown.paste(255, (box[0] - left, box[1] - top, box[2] - left, box[3] - top))
        text.putalpha(shown)
        _add_layer(psd, text, LAYER_TEXT, left, top)
    return psd


def _add_layer(psd: PSDImage, img: Image.Image, name: str, left: int = 0, top: int = 0) -> None:
    # From an array: an RGBA image given as a PIL image to an RGB document becomes an opaque layer with a layer mask,
    # not a layer on transparency.
    layer = psd.create_pixel_layer_from_array(np.asarray(img), name="layer", left=left, top=top)
    # A name given above is written as the legacy Mac Roman name, which cannot hold Chinese; the setter stores the
    # Unicode name that Photoshop and GIMP show.
    layer.name = name


def clean_plate(rgb: Image.Image, alpha: Image.Image, boxes: Sequence[Box] = ()) -> Image.Image:
    """The photo with the subject (where alpha shows it) and the boxes filled in from their surroundings (Telea)."""
    width, height = rgb.size
    scale = min(1.0, _INPAINT_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    hole_full = Image.fromarray(((np.asarray(alpha) > _HOLE_ALPHA) * 255).astype(np.uint8), "L")
    for box in boxes:
        hole_full.paste(255, box)
    small = rgb.resize(size, Image.Resampling.BOX) if scale < 1 else rgb
    hole = np.asarray(hole_full.resize(size, Image.Resampling.BOX) if scale < 1 else hole_full)
    grow = max(1, round(_HOLE_GROW * max(size)))
    hole = cv2.dilate((hole > 0).astype(np.uint8) * 255, cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                                                  (2 * grow + 1, 2 * grow + 1)))
    filled = Image.fromarray(cv2.inpaint(np.asarray(small), hole, _INPAINT_RADIUS, cv2.INPAINT_TELEA))
    mask = Image.fromarray(hole, "L")
    if scale < 1:
        filled = filled.resize(rgb.size, Image.Resampling.BILINEAR)
        mask = mask.resize(rgb.size, Image.Resampling.BILINEAR)
    return Image.composite(filled, rgb, mask)
