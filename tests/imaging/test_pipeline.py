"""The render pipeline executes the render spec: every operation, local and with a model's image, makes the file the
order names (checked by imaging.contract), from real photos and from photos made in the test."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from psd_tools import PSDImage

from core.render_spec import render_spec
from imaging import contract, pipeline
from imaging.analysis import measure
from protocol.image import LAYER_BACKGROUND, LAYER_SUBJECT, Operation, OutputFormat, RenderRequest, RenderSpec
from tests import photos
from tests.imaging.conftest import degrade, photo_like

SavePath = Callable[..., Path]


def render(src: Path, op: Operation, out: Path, *notes: str, model: Image.Image | None = None, ratio: str = "",
           perspective_fix: bool = False) -> tuple[pipeline.Deliverable, RenderSpec]:
    """What a render worker does with one attempt: spec, finish, write, contract."""
    request = RenderRequest(job_id="j", customer_id="c", render_id="j-r1", source_path=str(src), operation=op,
                            notes=notes, aspect_ratio=ratio, perspective_fix=perspective_fix)
    photo = pipeline.load_photo(src)
    spec = render_spec(request, pipeline.measure(photo), keyed=model is not None)
    made = pipeline.write(spec, pipeline.finish(spec, photo, model, request.words), out, "j-r1-1")
    contract.check(made.path, spec)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "temporary files are renamed away"
    return made, spec


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img


def model_answer(src: Path, size: tuple[int, int]) -> Image.Image:
    """What an image model returns: the picture at its own resolution for the nearest ratio, RGB, no alpha."""
    return _open(src).convert("RGB").resize(size, Image.Resampling.LANCZOS)


@pytest.mark.parametrize("op", list(Operation))
def test_every_operation_makes_the_file_its_order_names_from_a_real_photo(op: Operation, tmp_path: Path) -> None:
    made, spec = render(photos.CAT.path, op, tmp_path)
    assert made.mime == spec.format.mime and made.path.suffix == f".{spec.format.extension}"
    preview = _open(made.preview_path)
    assert preview.format == "PNG" and max(preview.size) <= pipeline.PREVIEW_SIDE


@pytest.mark.parametrize("op", [Operation.ENHANCE, Operation.FIX_OLD_PHOTO, Operation.LAYERED, Operation.VECTORIZE])
def test_a_models_image_of_another_shape_is_brought_back_exactly(op: Operation, tmp_path: Path, save: SavePath
                                                                ) -> None:
    src = save(photo_like(size=(400, 300)), "four-three.png")
    made, spec = render(src, op, tmp_path, model=model_answer(src, (1024, 1024)))  # a model that squared it
    assert spec.model_ratio == "4:3" and spec.ratio == pytest.approx(4 / 3)
    if spec.format in (OutputFormat.PNG, OutputFormat.JPEG):
        assert _open(made.path).size == (spec.width, spec.height) == (800, 600)


def test_enhance_doubles_a_small_photo_and_sharpens(save: SavePath, tmp_path: Path) -> None:
    src = save(degrade(photo_like(size=(640, 480)), blur=1.2), "soft.png")
    made, _ = render(src, Operation.ENHANCE, tmp_path)
    result = _open(made.path)
    assert result.size == (1280, 960) and result.mode == "RGB"
    back = measure(result.resize((640, 480), Image.Resampling.LANCZOS))
    assert back["sharpness"] > measure(_open(src))["sharpness"]


def test_a_jpeg_photo_enhanced_stays_a_jpeg(tmp_path: Path) -> None:
    src = tmp_path / "p.jpg"
    photos.PRODUCT.open().convert("RGB").save(src, "JPEG")
    made, _ = render(src, Operation.ENHANCE, tmp_path / "out")
    assert made.mime == "image/jpeg" and _open(made.path).format == "JPEG"


@pytest.mark.parametrize(("notes", "size"), [
    ((), (2048, 1536)), (("改成800x600",), (800, 600)), (("要1920*1080的",), (1920, 1080)),
    (("缩小到50%",), (320, 240)), (("2寸",), (413, 579)),
])
def test_resize_is_exactly_the_size_written(notes: tuple[str, ...], size: tuple[int, int], save: SavePath,
                                            tmp_path: Path) -> None:
    src = save(photo_like(size=(640, 480)), "p.png")
    made, _ = render(src, Operation.RESIZE, tmp_path, *notes)
    assert _open(made.path).size == size


def test_a_cut_out_keeps_the_subject_and_clears_the_background(tmp_path: Path) -> None:
    made, _ = render(photos.CAT.path, Operation.REMOVE_BG, tmp_path)
    cut = _open(made.path)
    assert cut.mode == "RGBA" and cut.size == photos.CAT.size
    alpha = np.asarray(cut.getchannel("A"))
    (left, top, right, bottom) = photos.CAT.box or (0, 0, 0, 0)
    assert (alpha[top:bottom, left:right] > 200).mean() > 0.5
    for bl, bt, br, bb in photos.CAT.background:
        assert (alpha[bt:bb, bl:br] < 30).mean() > 0.9


def test_layers_are_named_and_stack_to_the_photo(tmp_path: Path) -> None:
    made, _ = render(photos.PORTRAIT.path, Operation.LAYERED, tmp_path)
    psd = PSDImage.open(made.path)
    assert [layer.name for layer in psd][:2] == [LAYER_BACKGROUND, LAYER_SUBJECT]
    composite = np.asarray(psd.composite().convert("RGB"), dtype=np.float32)
    assert np.abs(composite - np.asarray(photos.PORTRAIT.open().convert("RGB"), dtype=np.float32)).mean() < 8


def test_the_svg_parses_with_a_viewbox_and_few_enough_paths(tmp_path: Path) -> None:
    made, spec = render(photos.LOGO.path, Operation.VECTORIZE, tmp_path)
    root = ET.fromstring(made.path.read_bytes())
    assert root.get("viewBox") and 1 <= len(list(root.iter("{http://www.w3.org/2000/svg}path"))) <= spec.max_paths


def test_a_shape_asked_for_crops_and_a_time_does_not(save: SavePath, tmp_path: Path) -> None:
    src = save(photo_like(size=(400, 300)), "p.png")
    keep, _ = render(src, Operation.ENHANCE, tmp_path / "keep", ratio="1:1")  # a legacy placeholder
    wide, _ = render(src, Operation.ENHANCE, tmp_path / "wide", ratio="16:9")
    square, _ = render(src, Operation.ENHANCE, tmp_path / "sq", "裁成1:1", ratio="1:1")
    timed, _ = render(src, Operation.ENHANCE, tmp_path / "t", "10:30前要")
    assert _open(keep.path).size == _open(timed.path).size == (800, 600)
    assert _open(wide.path).size == (800, 450) and _open(square.path).size == (600, 600)


def test_perspective_fix_straightens_a_tilted_photo(save: SavePath, tmp_path: Path) -> None:
    grid = Image.new("RGB", (800, 600), (240, 240, 240))
    draw = ImageDraw.Draw(grid)
    for x in range(0, 800, 50):
        draw.line([(x, 0), (x, 600)], fill=(20, 20, 20), width=3)
    for y in range(0, 600, 50):
        draw.line([(0, y), (800, y)], fill=(20, 20, 20), width=3)
    tilted = grid.rotate(4, resample=Image.Resampling.BICUBIC, fillcolor=(240, 240, 240))
    made, _ = render(save(tilted, "tilted.png"), Operation.RESIZE, tmp_path, "100%", perspective_fix=True)
    gray = np.asarray(_open(made.path).convert("L"), dtype=np.float32)
    assert (gray < 128).mean(axis=0).max() > 0.8, "vertical lines run straight down again"


@pytest.mark.parametrize("operation", [Operation.ENHANCE, Operation.RESIZE])
def test_a_transparent_png_stays_transparent(operation: Operation, save: SavePath, tmp_path: Path) -> None:
    logo = photo_like(size=(400, 300)).convert("RGBA")
    ImageDraw.Draw(logo).rectangle((0, 0, 199, 299), fill=(0, 0, 0, 0))
    made, _ = render(save(logo, "logo.png"), operation, tmp_path, "改成800x600")
    result = _open(made.path)
    assert result.mode == "RGBA" and result.size == (800, 600)
    alpha = np.asarray(result.getchannel("A"))
    assert alpha[:, :392].max() == 0 and alpha[:, 408:].min() == 255


def test_a_black_and_white_photo_stays_black_and_white(save: SavePath, tmp_path: Path) -> None:
    src = save(photo_like(size=(600, 400)).convert("L").convert("RGB"), "bw.png")
    made, spec = render(src, Operation.FIX_OLD_PHOTO, tmp_path, model=model_answer(src, (1248, 832)).point(
        lambda v: v).convert("RGB"))
    assert spec.monochrome
    rgb = np.asarray(_open(made.path).convert("RGB"), dtype=np.int16)
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() <= 1


def test_the_contract_refuses_what_the_order_does_not_name(tmp_path: Path, save: SavePath) -> None:
    src = save(photo_like(size=(400, 300)), "p.png")
    _, spec = render(src, Operation.REMOVE_BG, tmp_path / "ok")
    flat = save(photo_like(size=(400, 300)), "flat.png")  # RGB: no transparency at all
    with pytest.raises(contract.ContractBroken, match="no alpha"):
        contract.check(flat, spec)
    wrong = save(photo_like(size=(300, 300)).convert("RGBA"), "square.png")
    with pytest.raises(contract.ContractBroken, match="300×300, the order names 400×300"):
        contract.check(wrong, spec)
    svg = tmp_path / "bad.svg"
    svg.write_text("<svg xmlns='http://www.w3.org/2000/svg'><path d='M0 0'/>")
    svg_spec = spec.model_copy(update={"format": OutputFormat.SVG, "max_paths": 10})
    with pytest.raises(contract.ContractBroken, match="does not parse"):
        contract.check(svg, svg_spec)
