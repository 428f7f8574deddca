"""score_result on real renders and on the failures QA must catch (blank, garbage, unchanged, no alpha)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imaging.quality import score_result
from protocol.image import Operation
from tests.imaging.conftest import degrade, photo_like, product_shot
from tests.imaging.test_pipeline import render

SavePath = Callable[..., Path]
_STUDIO = (Operation.REMOVE_BG, Operation.LAYERED)


@pytest.fixture
def photo(save: SavePath) -> Path:
    return save(degrade(photo_like(size=(800, 600)), blur=1, noise=4), "photo.jpg", quality=90)


@pytest.fixture
def product(save: SavePath) -> Path:
    return save(product_shot(), "product.jpg", quality=90)


@pytest.mark.parametrize("operation", list(Operation))
def test_a_good_local_render_passes(operation: Operation, photo: Path, product: Path, tmp_path: Path) -> None:
    src = product if operation in _STUDIO else photo
    made, _ = render(src, operation, tmp_path / "out")
    assert score_result(src, made.preview_path, operation) >= 70


@pytest.mark.parametrize("operation", list(Operation))
def test_blank_and_garbage_fail(operation: Operation, photo: Path, save: SavePath) -> None:
    blank = save(Image.new("RGB", (800, 600), (128, 128, 128)), "blank.png")
    noise = np.random.default_rng(1).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    garbage = save(Image.fromarray(noise), "garbage.png")
    assert score_result(photo, blank, operation) < 40
    assert score_result(photo, garbage, operation) < 40


def test_unreadable_result_scores_zero(photo: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"<html>502 Bad Gateway</html>")
    assert score_result(photo, junk, Operation.ENHANCE) == 0
    assert score_result(photo, tmp_path / "missing.png", Operation.ENHANCE) == 0


def test_the_original_sent_back_unchanged_fails(photo: Path, save: SavePath) -> None:
    same = save(Image.open(photo), "same.png")
    for operation in (Operation.ENHANCE, Operation.FIX_OLD_PHOTO, Operation.RESIZE):
        assert score_result(photo, same, operation) < 70


def test_remove_bg_without_transparency_fails(product: Path, save: SavePath) -> None:
    opaque = save(Image.open(product).convert("RGB").resize((801, 600)), "opaque.png")
    assert score_result(product, opaque, Operation.REMOVE_BG) < 70
    fully_clear = Image.open(product).convert("RGBA")
    fully_clear.putalpha(0)
    assert score_result(product, save(fully_clear, "clear.png"), Operation.REMOVE_BG) < 70


def test_enhance_that_blurs_or_shrinks_scores_lower(photo: Path, save: SavePath, tmp_path: Path) -> None:
    good = score_result(photo, render(photo, Operation.ENHANCE, tmp_path)[0].path, Operation.ENHANCE)
    worse = degrade(photo_like(size=(800, 600)), blur=3).resize((400, 300))
    bad = score_result(photo, save(worse, "worse.png"), Operation.ENHANCE)
    assert bad < 70 <= good
