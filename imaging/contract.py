"""The deliverable's contract, checked on the file itself before anything is sent or mailed.

check(path, spec) raises ContractBroken naming every way the file differs from what the order names: its type,
exact size (hence shape), alpha for a cut-out, black-and-white kept, a PSD's named layers, an SVG that parses
with a viewBox and a bounded number of paths.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from psd_tools import PSDImage

from protocol.image import OutputFormat, RenderSpec

# A cut-out clears some of the picture and keeps some of it: each at least this share of the pixels.
MIN_CLEAR_SHARE = 0.01
MIN_OPAQUE_SHARE = 0.01
MONO_TOLERANCE = 3.0  # mean |R-G| + |G-B| a black-and-white result may show (JPEG chroma noise)
_SVG = "{http://www.w3.org/2000/svg}"
_PIL_FORMATS = {OutputFormat.PNG: "PNG", OutputFormat.JPEG: "JPEG"}


class ContractBroken(Exception):
    """The file is not the deliverable the order names; ``problems`` lists how."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def check(path: Path, spec: RenderSpec) -> None:
    """Raise ContractBroken unless the file at `path` is the deliverable `spec` names."""
    if not path.is_file() or path.stat().st_size == 0:
        raise ContractBroken([f"no file at {path.name}"])
    if spec.format is OutputFormat.SVG:
        problems = _svg(path, spec)
    elif spec.format is OutputFormat.PSD:
        problems = _psd(path, spec)
    else:
        problems = _raster(path, spec)
    if problems:
        raise ContractBroken(problems)


def _size(what: str, size: tuple[int, int], spec: RenderSpec) -> list[str]:
    if size != (spec.width, spec.height):
        return [f"{what} is {size[0]}×{size[1]}, the order names {spec.width}×{spec.height}"]
    return []


def _raster(path: Path, spec: RenderSpec) -> list[str]:
    try:
        with Image.open(path) as img:
            img.load()
            fmt, size, bands = img.format, img.size, img.getbands()
            pixels = np.asarray(img.convert("RGBA"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        return [f"not a readable image ({type(exc).__name__})"]
    problems = []
    if fmt != _PIL_FORMATS[spec.format]:
        problems.append(f"a {fmt} file, the order names {spec.format.value.upper()}")
    problems += _size("the image", size, spec)
    if spec.alpha:
        alpha = pixels[..., 3]
        if "A" not in bands:
            problems.append("no alpha channel: a cut-out must be transparent around the subject")
        elif (alpha < 16).mean() < MIN_CLEAR_SHARE:
            problems.append("nothing transparent: the background was not cleared")
        elif (alpha > 240).mean() < MIN_OPAQUE_SHARE:
            problems.append("nothing opaque: the subject was cleared too")
    if spec.monochrome:
        rgb = pixels[..., :3].astype(np.int16)
        spread = float(np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean())
        if spread > MONO_TOLERANCE:
            problems.append(f"colour added to a black-and-white photo (channel spread {spread:.1f})")
    return problems


def _psd(path: Path, spec: RenderSpec) -> list[str]:
    try:
        psd = PSDImage.open(path)
    except Exception as exc:  # psd-tools raises whatever its parser hits on a broken file
        return [f"not a readable PSD ({type(exc).__name__})"]
    problems = _size("the PSD", psd.size, spec)
    names = [layer.name for layer in psd]
    wanted = list(spec.layers)
    if [n for n in names if n in wanted] != wanted:
        problems.append(f"layers {names}, the order needs {wanted} in that order")
    return problems


def _svg(path: Path, spec: RenderSpec) -> list[str]:
    try:
        root = ET.fromstring(path.read_bytes())
    except ET.ParseError as exc:
        return [f"the SVG does not parse: {exc}"]
    if root.tag != f"{_SVG}svg":
        return [f"the root element is {root.tag}, not svg"]
    problems = []
    box = (root.get("viewBox") or "").replace(",", " ").split()
    try:
        if len(box) != 4 or float(box[2]) <= 0 or float(box[3]) <= 0:
            problems.append(f"viewBox {root.get('viewBox')!r} is not four numbers with a positive size")
    except ValueError:
        problems.append(f"viewBox {root.get('viewBox')!r} is not four numbers")
    try:
        size = (round(float(root.get("width", "0"))), round(float(root.get("height", "0"))))
        problems += _size("the SVG", size, spec)
    except ValueError:
        problems.append("width/height are not numbers")
    paths = sum(1 for _ in root.iter(f"{_SVG}path"))
    if not 1 <= paths <= spec.max_paths:
        problems.append(f"{paths} paths, the order allows 1 to {spec.max_paths}")
    return problems
