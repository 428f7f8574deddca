"""The local renderer: every operation done with Pillow/numpy (vtracer for SVG, psd-tools for PSD), no network.

Aspect ratio: the default "1:1" means "keep the photo's own ratio" here (the shop's default is not a request
to square a photo); any other ratio, or a ratio written in the notes ("16:9", "3：4"), centre-crops to it.
perspective_fix: a modest auto-straighten (rotates by the dominant edge tilt when it is 0.5°-8°); it does not
undo keystone distortion.
"""

from __future__ import annotations

import io
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import vtracer
from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageOps
from psd_tools import PSDImage

from imaging.analysis import to_rgb
from protocol.image import Operation

ENHANCE_MAX_SIDE = 4096
RESIZE_DEFAULT_SIDE = 2048
RESIZE_MAX_SIDE = 8192
VECTOR_MAX_SIDE = 1024
_MIMES = {"png": "image/png", "svg": "image/svg+xml", "psd": "image/vnd.adobe.photoshop"}
_EXTENSIONS = {Operation.VECTORIZE: "svg", Operation.LAYERED: "psd"}
_SIZE_NOTE = re.compile(r"(\d{2,5})\s*[x×*＊Xх]\s*(\d{2,5})")
_PERCENT_NOTE = re.compile(r"(\d{1,3})\s*[%％]")
_COMMON_RATIOS = frozenset(tuple(r.split(":")) for r in
                           ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "5:4", "4:5", "21:9", "2:1", "1:2"))
_RATIO_NOTE = re.compile(r"(?<![\d.])(\d{1,2})\s*[:：]\s*(\d{1,2})(?![\d.])")


@dataclass(frozen=True)
class LocalRender:
    """A finished local render: the deliverable and a PNG preview of it."""

    path: Path
    mime: str
    preview_path: Path


def render_local(src: Path, operation: Operation, out_dir: Path, stem: str, notes: tuple[str, ...] = (),
                 aspect_ratio: str = "1:1", perspective_fix: bool = False) -> LocalRender:
    """Render `operation` on the photo at `src` into out_dir/{stem}.{png|svg|psd} (written atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as opened:
        img = ImageOps.exif_transpose(opened)
        img.load()
    has_alpha = "A" in img.getbands() or "transparency" in img.info
    photo = img.convert("RGBA") if has_alpha else img.convert("RGB")
    if perspective_fix:
        photo = straighten(photo)
    ratio = _requested_ratio(notes, aspect_ratio)
    if ratio is not None:
        photo = crop_to_ratio(photo, ratio)

    ext = _EXTENSIONS.get(operation, "png")
    path = out_dir / f"{stem}.{ext}"
    if operation is Operation.VECTORIZE:
        svg = vectorize(photo)
        _atomic_write(path, lambda tmp: tmp.write_text(svg, encoding="utf-8"))
        preview = rasterize_svg(svg)
    elif operation is Operation.LAYERED:
        psd = layered(photo)
        _atomic_write(path, psd.save)
        preview = psd.composite().convert("RGB")
    else:
        result = _render_raster(photo, operation, notes)
        _atomic_write(path, lambda tmp: result.save(tmp, "PNG", compress_level=3))
        return LocalRender(path=path, mime=_MIMES["png"], preview_path=path)
    preview_path = out_dir / f"{stem}.preview.png"
    _atomic_write(preview_path, lambda tmp: preview.save(tmp, "PNG", compress_level=3))
    return LocalRender(path=path, mime=_MIMES[ext], preview_path=preview_path)


def _render_raster(photo: Image.Image, operation: Operation, notes: tuple[str, ...]) -> Image.Image:
    """Run a PNG operation on the colours; a photo's own transparency is carried over (remove_bg adds to it)."""
    alpha = photo.getchannel("A") if photo.mode == "RGBA" else None
    result = _RASTER[operation](to_rgb(photo), notes)
    if alpha is not None:
        if operation is Operation.RESIZE:
            kept = resize(alpha.convert("RGB"), notes).getchannel("R")
        else:
            kept = alpha.resize(result.size, Image.Resampling.LANCZOS)
        if result.mode == "RGBA":
            kept = ImageChops.multiply(kept, result.getchannel("A"))
        result = result.convert("RGBA")
        result.putalpha(kept)
    return apply_note_tweaks(result, notes)


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _requested_ratio(notes: tuple[str, ...], aspect_ratio: str) -> float | None:
    for note in reversed(notes):
        # Only well-known ratios: "10:30前要" is a time, not a crop.
        for match in _RATIO_NOTE.finditer(note):
            if (match[1], match[2]) in _COMMON_RATIOS:
                return int(match[1]) / int(match[2])
    match = _RATIO_NOTE.fullmatch(aspect_ratio.strip())
    if match and (match[1], match[2]) != ("1", "1") and int(match[1]) and int(match[2]):
        return int(match[1]) / int(match[2])
    return None


def crop_to_ratio(img: Image.Image, ratio: float) -> Image.Image:
    """The largest centred crop with width/height == ratio."""
    w, h = img.size
    if w / h > ratio:
        new_w = max(1, round(h * ratio))
        left = (w - new_w) // 2
        return img.crop((left, 0, left + new_w, h))
    new_h = max(1, round(w / ratio))
    top = (h - new_h) // 2
    return img.crop((0, top, w, top + new_h))


def straighten(img: Image.Image, max_degrees: float = 8.0) -> Image.Image:
    """Rotate by the tilt that best lines edges up with the rows and columns (0.5°-max_degrees), cropping off
    the corners the rotation exposes; a photo with no clear tilt is returned as it is."""
    small = img.convert("L")
    small.thumbnail((400, 400))
    edges = small.filter(ImageFilter.FIND_EDGES)

    def alignment(angle: float) -> float:
        # Straight lines pile their edge pixels into few rows/columns: high variance of the projections.
        arr = np.asarray(edges.rotate(angle, resample=Image.Resampling.BILINEAR), dtype=np.float32)
        return float(arr.sum(axis=0).var() + arr.sum(axis=1).var())

    coarse = max(np.arange(-max_degrees, max_degrees + 0.01, 0.5), key=alignment)
    tilt = float(max(np.arange(coarse - 0.4, coarse + 0.41, 0.1), key=alignment))
    if abs(tilt) < 0.5 or alignment(tilt) < 1.3 * alignment(0.0):
        return img
    rotated = img.rotate(tilt, resample=Image.Resampling.BICUBIC, expand=False)
    w, h = img.size
    rad = math.radians(abs(tilt))
    # Largest axis-aligned rectangle of the original ratio inside the rotated frame.
    scale = 1 / (math.cos(rad) + math.sin(rad) * max(w / h, h / w))
    cw, ch = int(w * scale), int(h * scale)
    left, top = (w - cw) // 2, (h - ch) // 2
    return rotated.crop((left, top, left + cw, top + ch))


def enhance(img: Image.Image, _notes: tuple[str, ...] = ()) -> Image.Image:
    """Mild denoise, ×2 LANCZOS upscale (long side capped at ENHANCE_MAX_SIDE), unsharp mask, gentle contrast."""
    denoised = Image.blend(img, img.filter(ImageFilter.MedianFilter(3)), 0.5)
    factor = min(2.0, ENHANCE_MAX_SIDE / max(img.size))
    if factor > 1.0:
        size = (round(img.width * factor), round(img.height * factor))
        denoised = denoised.resize(size, Image.Resampling.LANCZOS)
    sharp = denoised.filter(ImageFilter.UnsharpMask(radius=2.0, percent=140, threshold=2))
    sharp = ImageOps.autocontrast(sharp, cutoff=0.3)
    return ImageEnhance.Color(sharp).enhance(1.05)


def resize(img: Image.Image, notes: tuple[str, ...] = ()) -> Image.Image:
    """To the size in the notes ("800x600", "1920*1080": cover and centre-crop; "50%": scale), else fit
    RESIZE_DEFAULT_SIDE on the long side."""
    for note in reversed(notes):
        if match := _SIZE_NOTE.search(note):
            size = (min(int(match[1]), RESIZE_MAX_SIDE), min(int(match[2]), RESIZE_MAX_SIDE))
            if min(size) >= 16:
                return ImageOps.fit(img, size, Image.Resampling.LANCZOS)
        if match := _PERCENT_NOTE.search(note):
            factor = int(match[1]) / 100
            if 0.05 <= factor <= 4:
                return _scale(img, factor)
    return _scale(img, RESIZE_DEFAULT_SIDE / max(img.size))


def _scale(img: Image.Image, factor: float) -> Image.Image:
    factor = min(factor, RESIZE_MAX_SIDE / max(img.size))
    size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    return img.resize(size, Image.Resampling.LANCZOS)


def fix_old_photo(img: Image.Image, _notes: tuple[str, ...] = ()) -> Image.Image:
    """Despeckle, grey-world white balance (removes yellowing), autocontrast, a little colour and sharpening."""
    clean = img.filter(ImageFilter.MedianFilter(3))
    arr = np.asarray(clean, dtype=np.float32)
    means = arr.reshape(-1, 3).mean(axis=0)
    gains = np.clip(means.mean() / np.maximum(means, 1.0), 0.6, 1.8)
    balanced = Image.fromarray(np.clip(arr * gains, 0, 255).astype(np.uint8))
    balanced = ImageOps.autocontrast(balanced, cutoff=1.0)
    balanced = ImageEnhance.Color(balanced).enhance(1.1)
    return balanced.filter(ImageFilter.UnsharpMask(radius=1.5, percent=70, threshold=3))


def remove_bg(img: Image.Image, _notes: tuple[str, ...] = ()) -> Image.Image:
    """RGBA with the background made transparent: pixels near the border colour and connected to the border,
    with a feathered edge."""
    rgb = to_rgb(img)
    arr = np.asarray(rgb, dtype=np.float32)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    bg = np.median(border, axis=0)
    border_dist = np.linalg.norm(border - bg, axis=1)
    threshold = float(np.clip(np.percentile(border_dist, 90) * 1.5, 24.0, 90.0))
    dist = np.linalg.norm(arr - bg, axis=2)

    # Connectivity on a small copy (fast), then back to full size for the edge.
    small = Image.fromarray((dist < threshold).astype(np.uint8) * 255)
    small.thumbnail((384, 384), Image.Resampling.BOX)
    candidate = np.asarray(small) > 127
    reach = _border_connected(candidate)
    region = Image.fromarray(reach.astype(np.uint8) * 255).resize(rgb.size, Image.Resampling.BILINEAR)
    region = region.filter(ImageFilter.GaussianBlur(1.5))
    near_bg = np.clip((2 * threshold - dist) / threshold, 0.0, 1.0)
    background = (np.asarray(region, dtype=np.float32) / 255) * near_bg
    alpha = Image.fromarray(np.clip(255 * (1 - background), 0, 255).astype(np.uint8))
    alpha = alpha.filter(ImageFilter.GaussianBlur(0.8))
    out = rgb.convert("RGBA")
    out.putalpha(alpha)
    return out


def _border_connected(candidate: np.ndarray) -> np.ndarray:
    """Cells of `candidate` 4-connected to the image border (repeated dilation inside the candidate)."""
    reach = np.zeros_like(candidate)
    reach[0], reach[-1], reach[:, 0], reach[:, -1] = candidate[0], candidate[-1], candidate[:, 0], candidate[:, -1]
    while True:
        grown = reach.copy()
        for _ in range(8):
            grown[1:] |= grown[:-1]
            grown[:-1] |= grown[1:]
            grown[:, 1:] |= grown[:, :-1]
            grown[:, :-1] |= grown[:, 1:]
            grown &= candidate
        if np.array_equal(grown, reach):
            return reach
        reach = grown


def vectorize(img: Image.Image) -> str:
    """An SVG of stacked colour polygons traced by vtracer from a colour-reduced copy."""
    small = to_rgb(img)
    small.thumbnail((VECTOR_MAX_SIDE, VECTOR_MAX_SIDE), Image.Resampling.LANCZOS)
    reduced = small.filter(ImageFilter.MedianFilter(3)).quantize(24, dither=Image.Dither.NONE).convert("RGB")
    buf = io.BytesIO()
    reduced.save(buf, "PNG")
    return vtracer.convert_raw_image_to_svg(buf.getvalue(), img_format="png", colormode="color",
                                           hierarchical="stacked", mode="polygon", filter_speckle=4,
                                           color_precision=6, layer_difference=16)


_NUMBERS = re.compile(r"-?\d+(?:\.\d+)?")


def rasterize_svg(svg: str) -> Image.Image:
    """A PNG-able raster of a polygon-only SVG (vtracer's polygon mode); subpaths combine even-odd."""
    root = ET.fromstring(svg)
    width, height = round(float(root.get("width", "1"))), round(float(root.get("height", "1")))
    canvas = Image.new("RGB", (max(width, 1), max(height, 1)), "white")
    for element in root.iter("{http://www.w3.org/2000/svg}path"):
        dx, dy = (float(v) for v in _NUMBERS.findall(element.get("transform", "translate(0,0)"))[:2])
        polygons = []
        for sub in re.split(r"(?=M)", element.get("d", "")):
            coords = [float(v) for v in _NUMBERS.findall(sub)]
            points = [(coords[i] + dx, coords[i + 1] + dy) for i in range(0, len(coords) - 1, 2)]
            if len(points) >= 3:
                polygons.append(points)
        fill = element.get("fill", "#000000")
        if len(polygons) == 1:
            ImageDraw.Draw(canvas).polygon(polygons[0], fill=fill)
            continue
        mask = Image.new("1", canvas.size, 0)
        for points in polygons:
            layer = Image.new("1", canvas.size, 0)
            ImageDraw.Draw(layer).polygon(points, fill=1)
            mask = ImageChops.logical_xor(mask, layer)
        canvas.paste(fill, mask=mask)
    return canvas


def layered(img: Image.Image) -> PSDImage:
    """A PSD with the photo as the background layer and the cut-out subject (alpha) above it."""
    rgb = to_rgb(img)
    psd = PSDImage.new("RGB", rgb.size)
    psd.create_pixel_layer(rgb, name="Background")
    psd.create_pixel_layer(remove_bg(rgb), name="Subject")
    return psd


_BRIGHTER = ("亮一点", "亮一些", "提亮", "调亮", "太暗", "brighter")
_DARKER = ("暗一点", "暗一些", "压暗", "调暗", "太亮", "darker")
_VIVID = ("鲜艳", "饱和", "vivid")


def apply_note_tweaks(img: Image.Image, notes: tuple[str, ...]) -> Image.Image:
    """Simple requests in the customer's notes: brighter/darker, more vivid, black and white (alpha kept)."""
    text = " ".join(notes).lower()
    alpha = img.getchannel("A") if img.mode == "RGBA" else None
    rgb = img.convert("RGB")
    if any(word in text for word in _BRIGHTER):
        rgb = ImageEnhance.Brightness(rgb).enhance(1.15)
    elif any(word in text for word in _DARKER):
        rgb = ImageEnhance.Brightness(rgb).enhance(0.87)
    if any(word in text for word in _VIVID):
        rgb = ImageEnhance.Color(rgb).enhance(1.25)
    if "黑白" in text:
        rgb = ImageOps.grayscale(rgb).convert("RGB")
    if alpha is not None:
        rgb.putalpha(alpha)
    return rgb


_RASTER: dict[Operation, Callable[[Image.Image, tuple[str, ...]], Image.Image]] = {
    Operation.ENHANCE: enhance,
    Operation.RESIZE: resize,
    Operation.FIX_OLD_PHOTO: fix_old_photo,
    Operation.REMOVE_BG: remove_bg,
}
