"""Old-photo repair: scratches and dust found on the luminance and inpainted (OpenCV Telea), fading and
yellowing stretched out per channel, then a gentle contrast curve and sharpening.

A black-and-white or sepia-toned photo comes back neutral grey (R=G=B): it is never colourised.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageFilter

from imaging.analysis import to_rgb

Box = tuple[int, int, int, int]
MASK_MAX_SIDE = 2048
# Chroma left once the tone curve is taken away, relative to the tonal range: below it, monochrome (measured
# on scikit-image's photos aged and JPEG-compressed: grey ones ≤ 0.085, colour ones ≥ 0.105).
_MONO_RATIO = 0.095
_INPAINT_RADIUS = 3
_STRETCH_PERCENTILES = (0.5, 99.5)
_MAX_GAIN = 3.0
_WHITE_LIFT = 0.3
# Damage must stand out by _FLOOR of the photo's tonal range, _BUSY times the typical top-hat answer
# around it and _EDGE times the local range of the photo without thin structures, and its marks must average
# _STRENGTH times the floor; a line may have _INSIDE of its pixels farther than _THIN from its edge. Tuned on
# scikit-image's photos with drawn scratches and dust: 72-99 % of the damage found (mean 85 %), and
# 0.2-1.3 % of an undamaged portrait, cat or coffee cup masked, thin real lines and highlights mostly.
_FLOOR = 0.18
_BUSY = 4.0
_EDGE = 3.0
_STRENGTH = 2.0
_THIN = 2.5
_INSIDE = 0.1


def is_monochrome(img: Image.Image) -> bool:
    """Whether the photo is black-and-white, possibly toned (sepia, yellowed): its colour follows its brightness."""
    # A small copy averages away JPEG's chroma noise; real colour comes in regions that survive it.
    small = to_rgb(img)
    small.thumbnail((64, 64), Image.Resampling.BOX)
    arr = np.asarray(small, dtype=np.float32).reshape(-1, 3)
    luma = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    chroma = arr[:, [0, 2]] - luma[:, None]
    # A toned print's tint varies smoothly with brightness (sepia shadows are browner): what a quadratic in
    # the brightness cannot explain is colour.
    powers = np.vander(luma / 255, 3)
    coef, *_ = np.linalg.lstsq(powers, chroma, rcond=None)
    residual = np.hypot(*(chroma - powers @ coef).T)
    # Fading shrinks colour and contrast alike, so the measure is relative to the tonal range.
    low, high = np.percentile(luma, [2, 98])
    return float(np.percentile(residual, 95)) < _MONO_RATIO * max(float(high - low), 40.0)


def scratch_mask(img: Image.Image, keep: Sequence[Box] = ()) -> Image.Image:
    """Mode L mask (255 = damage) of thin bright/dark scratches and dust specks, at the photo's size; the
    `keep` boxes (left, top, right, bottom), e.g. OCR's text lines, are never masked."""
    lum = np.asarray(to_rgb(img).convert("L"))
    return Image.fromarray(_scratch_mask(lum, keep))


def restore_old_photo(img: Image.Image, keep: Sequence[Box] = ()) -> Image.Image:
    """The photo repaired (scratches and dust inpainted, fading and yellowing corrected), RGB, same size.

    Pass OCR's text boxes as `keep`: letter strokes look like scratches and dust to the mask."""
    rgb = to_rgb(img)
    mono = is_monochrome(rgb)
    lum = np.asarray(rgb.convert("L"))
    mask = _scratch_mask(lum, keep)
    # Monochrome work happens on the luminance alone, so nothing can bring a tint back.
    pixels = lum if mono else np.asarray(rgb)
    if mask.any():
        pixels = cv2.inpaint(np.ascontiguousarray(pixels), mask, _INPAINT_RADIUS, cv2.INPAINT_TELEA)
    pixels = _gentle_contrast(_stretch(pixels))
    out = Image.fromarray(pixels)
    out = out.filter(ImageFilter.UnsharpMask(radius=1.2, percent=60, threshold=2))
    return out.convert("RGB")


def _scratch_mask(lum: np.ndarray, keep: Sequence[Box]) -> np.ndarray:
    """The damage mask for a uint8 luminance, computed at ≤ MASK_MAX_SIDE and brought back to its size."""
    h, w = lum.shape
    scale = min(1.0, MASK_MAX_SIDE / max(h, w))
    work = lum if scale == 1.0 else cv2.resize(lum, (round(w * scale), round(h * scale)),
                                               interpolation=cv2.INTER_AREA)
    mask = _thin_damage(work)
    if scale != 1.0:
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    # Scratch borders are soft: a pixel more each side lets the inpainting start from clean colour.
    grow = max(3, round(3 / scale) | 1)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    for left, top, right, bottom in keep:
        mask[max(0, top):max(0, bottom), max(0, left):max(0, right)] = 0
    return mask


def _thin_damage(lum: np.ndarray) -> np.ndarray:
    """Thin lines and small specks much brighter or darker than their surroundings (uint8 0/255 mask)."""
    side = max(lum.shape)
    # The disc must be wider than a scratch or a speck; dust grows with the scan's resolution.
    size = 5 if side < 300 else max(7, round(side / 200) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    # Top-hat / black-hat: what an opening / closing with a disc removes, i.e. structures thinner than the disc.
    response = cv2.max(cv2.morphologyEx(lum, cv2.MORPH_TOPHAT, kernel),
                       cv2.morphologyEx(lum, cv2.MORPH_BLACKHAT, kernel))
    # Texture (fur, foliage, folds) answers everywhere: ask more of a pixel where many of its neighbours
    # answer too (a median ignores the scratch itself, a small part of any window), and where the photo
    # with its thin structures removed still varies (a highlight along an edge is content, not damage).
    window = max(15, side // 40) | 1
    busy = cv2.medianBlur(response, window).astype(np.float32)
    # A median twice the disc wide removes anything the disc flags, blobs as wide as the disc included.
    edges = cv2.morphologyEx(cv2.medianBlur(lum, 2 * size - 1), cv2.MORPH_GRADIENT, kernel).astype(np.float32)
    low, high = np.percentile(lum[::4, ::4], [1, 99])
    floor = max(12.0, _FLOOR * float(high - low))
    threshold = np.maximum(floor, np.maximum(_BUSY * busy, _EDGE * edges))
    candidate = (response > threshold).astype(np.uint8)
    return _keep_thin(candidate, response, side, floor)


def _keep_thin(candidate: np.ndarray, response: np.ndarray, side: int, floor: float) -> np.ndarray:
    """Keep the components shaped like scratches (thin lines, crossing or not) or dust (small specks)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    if count <= 1:
        return candidate * 255
    where = labels > 0
    ids = labels[where]
    area = np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
    strength = np.bincount(ids, response[where], count) / area
    # A line's pixels all lie near its edge; a patch of content has an inside. Crossings and a speck on a
    # scratch make a little inside too, hence a share rather than none.
    inside = np.bincount(ids, cv2.distanceTransform(candidate, cv2.DIST_L2, 3)[where] > _THIN, count) / area
    length = np.hypot(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    # Damage is paper showing through or dirt on it, far from the photo's own tones: only strong marks count.
    speck = length <= max(12.0, side / 100)
    keep = (strength >= _STRENGTH * floor) & (speck | (inside <= _INSIDE))
    keep[0] = False
    return (keep[labels] * 255).astype(np.uint8)


def _stretch(pixels: np.ndarray) -> np.ndarray:
    """Each channel's 0.5th-99.5th percentiles stretched to black and to a common white: undoes lifted
    blacks (fading) and a colour cast (yellowing)."""
    flat = pixels.reshape(-1, 1 if pixels.ndim == 2 else pixels.shape[2])
    low, high = np.percentile(flat[::7], _STRETCH_PERCENTILES, axis=0)
    # Fading lifts the blacks, but a dim photo may never have had a white: the white is only lifted part of
    # the way from the brightest channel's, so a low-key photo is not blown out.
    top = float(high.max())
    white = top + _WHITE_LIFT * (253.0 - top)
    gain = np.minimum((white - 3.0) / np.maximum(high - low, 1.0), _MAX_GAIN)
    lut = np.clip((np.arange(256, dtype=np.float32)[:, None] - low) * gain + 3.0, 0, 255).astype(np.uint8)
    if pixels.ndim == 2:
        return cv2.LUT(pixels, lut[:, 0])
    return np.dstack([cv2.LUT(pixels[..., c], lut[:, c]) for c in range(pixels.shape[2])])


def _gentle_contrast(pixels: np.ndarray, strength: float = 0.15) -> np.ndarray:
    """A mild S-curve: a little more midtone contrast without clipping the ends."""
    x = np.arange(256, dtype=np.float32) / 255
    curve = (1 - strength) * x + strength * x * x * (3 - 2 * x)
    lut = np.clip(curve * 255 + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(pixels, lut)
