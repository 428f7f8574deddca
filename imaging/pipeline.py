"""Runs a RenderSpec: the local step before the image model, the exact local finish after it, and the files.

Both render paths execute the same spec. With a key the model adds what only a model can (detail, restoration,
a clean background plate, a flat redraw) and gets `model_input`; `finish` then makes the deliverable exactly:
shape, size, alpha, SVG, PSD layers. Without a key `finish` does every step locally.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps
from psd_tools import PSDImage

from imaging import cutout, layers, ocr, restore, vector
from imaging.analysis import to_rgb
from imaging.retouch import apply_note_tweaks, enhance, straighten
from imaging.shape import crop_to_ratio, fit
from protocol.image import Operation, OutputFormat, PhotoMeasures, RenderSpec

MODEL_INPUT_SIDE = 2048  # what the model gets: larger costs upload time and tokens for nothing it can use
PREVIEW_SIDE = 1600
JPEG_QUALITY = 92

Result = Image.Image | PSDImage | str  # a raster, a layered PSD, or SVG text


@dataclass(frozen=True)
class Deliverable:
    """A finished render on disk: the file the customer gets and a PNG preview for the chat."""

    path: Path
    mime: str
    preview_path: Path


def load_photo(src: Path) -> Image.Image:
    """The customer's photo upright (EXIF rotation applied), as RGB or, when it has transparency, RGBA."""
    with Image.open(src) as opened:
        img = ImageOps.exif_transpose(opened)
        img.load()
        fmt = opened.format or ""
    has_alpha = "A" in img.getbands() or "transparency" in img.info
    photo = img.convert("RGBA" if has_alpha else "RGB")
    photo.info["format"] = fmt
    return photo


def measure(photo: Image.Image) -> PhotoMeasures:
    """What the render spec needs of a photo loaded by load_photo."""
    return PhotoMeasures(width=photo.width, height=photo.height, format=str(photo.info.get("format", "")),
                         has_alpha=photo.mode == "RGBA", monochrome=restore.is_monochrome(to_rgb(photo)))


def _framed(spec: RenderSpec, photo: Image.Image) -> Image.Image:
    """The photo straightened when asked and cropped to the deliverable's shape (not yet resized)."""
    if spec.perspective_fix:
        photo = straighten(photo)
    return crop_to_ratio(photo, spec.ratio)


def model_input(spec: RenderSpec, photo: Image.Image) -> tuple[bytes, str]:
    """What the image model is given (JPEG bytes, media type): the framed photo, an old one cleaned of scratches
    and dust first, no larger than MODEL_INPUT_SIDE."""
    img = to_rgb(_framed(spec, photo))
    img.thumbnail((MODEL_INPUT_SIDE, MODEL_INPUT_SIDE), Image.Resampling.LANCZOS)
    if spec.operation is Operation.FIX_OLD_PHOTO:
        img = _restored(img)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue(), "image/jpeg"


def finish(spec: RenderSpec, photo: Image.Image, model_result: Image.Image | None,
           notes: tuple[str, ...] = ()) -> Result:
    """The deliverable the spec names, made from the photo and, for the operations that ask it, the model's image.

    Notes' simple requests (brighter, more vivid, black and white) apply where no model read them."""
    op, size = spec.operation, (spec.width, spec.height)
    framed = _framed(spec, photo)
    model = fit(to_rgb(model_result), *size) if model_result is not None else None
    if op is Operation.VECTORIZE:
        return vector.trace_svg(model or fit(to_rgb(framed), *size), width=spec.width, height=spec.height,
                                max_paths=spec.max_paths)
    if op is Operation.LAYERED:
        fitted = fit(to_rgb(framed), *size)
        return layers.layered_psd(fitted, plate=model, text_boxes=ocr.text_boxes(fitted))
    if op is Operation.REMOVE_BG:
        return _tweaked(cutout.cut_out(fit(framed, *size)), notes, model is None)
    if op is Operation.RESIZE:
        return _tweaked(fit(framed, *size), notes, True)
    if model is not None:
        result = model
    elif op is Operation.FIX_OLD_PHOTO:
        result = fit(_restored(to_rgb(framed)), *size)
    else:
        result = enhance(to_rgb(framed), size)
    if spec.monochrome:
        result = ImageOps.grayscale(result).convert("RGB")
    if spec.keep_alpha and framed.mode == "RGBA":
        result = result.convert("RGBA")
        result.putalpha(fit(framed.getchannel("A"), *size))
    return _tweaked(result, notes, model is None)


def _restored(rgb: Image.Image) -> Image.Image:
    """An old photo's scratches and dust filled, fading fixed; its captions kept (thin strokes look like scratches)."""
    return restore.restore_old_photo(rgb, keep=ocr.text_boxes(rgb))


def _tweaked(img: Image.Image, notes: tuple[str, ...], local: bool) -> Image.Image:
    return apply_note_tweaks(img, notes) if local else img


def write(spec: RenderSpec, result: Result, out_dir: Path, stem: str) -> Deliverable:
    """The deliverable and its preview under out_dir, each written whole (a crash leaves no half file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fmt = spec.format
    path = out_dir / f"{stem}.{fmt.extension}"
    if isinstance(result, str):
        _atomic_write(path, lambda tmp: tmp.write_text(result, encoding="utf-8"))
        preview = vector.svg_preview(result, PREVIEW_SIDE)
    elif isinstance(result, PSDImage):
        _atomic_write(path, result.save)
        preview = result.topil() or result.composite()  # save() stored the composite: no second composite
    elif fmt is OutputFormat.JPEG:
        _atomic_write(path, lambda tmp: to_rgb(result).save(tmp, "JPEG", quality=JPEG_QUALITY, optimize=True))
        preview = result
    else:
        # Level 3: within ~10 % of the smallest file, at a third of level 6's time on a 4 MP picture.
        _atomic_write(path, lambda tmp: result.save(tmp, "PNG", compress_level=3))
        preview = result
    preview = preview.copy()
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    preview_path = out_dir / f"{stem}.preview.png"
    _atomic_write(preview_path, lambda tmp: preview.save(tmp, "PNG", compress_level=3))
    return Deliverable(path=path, mime=fmt.mime, preview_path=preview_path)


def _atomic_write(path: Path, save: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
