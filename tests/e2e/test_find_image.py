"""Find an image (SPEC §3 workflow 1), through the launcher: the shop's archive and asset folder, by look.

A low-resolution copy finds the shop's HD original in ASSET_DIR; "之前做的那张原图" sends the customer's own
past result; an image the shop does not have (or another customer's) goes to a designer.
"""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.test_image_job import ASK_EMAIL, images, jobs_of, pay, send_photo, texts, wait_text
from tests.harness import Launcher, photo_png, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

FOUND = "找到了"
HANDED_OFF = "好的,已帮您安排设计师处理,请稍候"


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("assets")
    (folder / "海报").mkdir()
    (folder / "海报" / "poster-hd.png").write_bytes(photo_png(seed=91, size=(1600, 1200)))
    (folder / "other.png").write_bytes(photo_png(seed=92, size=(1200, 900)))
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, assets: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("find") / "shop", {"DEBOUNCE_S": "0.8", "ASSET_DIR": str(assets)})
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read()


def small_copy(png: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").resize((400, 300)).save(out, "JPEG", quality=70)
    return out.getvalue()


def test_a_small_copy_finds_the_hd_original_in_the_asset_folder(shop: Launcher, assets: Path) -> None:
    send_photo(shop, "fd_hd", small_copy((assets / "海报" / "poster-hd.png").read_bytes()))
    shop.customer_says("fd_hd", "text", "有这张的高清原图吗")
    wait_text(shop, "fd_hd", FOUND)
    (url,) = images(shop, "fd_hd")
    assert fetch(url) == (assets / "海报" / "poster-hd.png").read_bytes()
    assert jobs_of(shop, "fd_hd") == [] and not any("元" in t for t in texts(shop, "fd_hd"))  # looked up, not quoted


def test_an_asset_added_while_running_is_found(shop: Launcher, assets: Path) -> None:
    (assets / "new-arrival.png").write_bytes(photo_png(seed=93, size=(1400, 1000)))
    send_photo(shop, "fd_new", small_copy((assets / "new-arrival.png").read_bytes()))
    shop.customer_says("fd_new", "text", "帮我找一下这张图的原图")
    wait_text(shop, "fd_new", FOUND)
    assert fetch(images(shop, "fd_new")[0]) == (assets / "new-arrival.png").read_bytes()


def test_the_original_of_a_past_job_is_its_result_file(shop: Launcher) -> None:
    send_photo(shop, "fd_past", photo_png(seed=94))
    wait_text(shop, "fd_past", "元")
    pay(shop, "fd_past")
    wait_text(shop, "fd_past", ASK_EMAIL)
    result_url = jobs_of(shop, "fd_past")[0]["result_url"]
    shop.customer_says("fd_past", "text", "之前做的那张原图再发我一下")
    wait_text(shop, "fd_past", FOUND)
    sent = images(shop, "fd_past")[-1]
    assert fetch(sent) == fetch(result_url)


def test_an_unknown_image_or_another_customers_goes_to_a_designer(shop: Launcher) -> None:
    mine = photo_png(seed=95)
    send_photo(shop, "fd_owner", mine)
    wait_text(shop, "fd_owner", "元")
    # Another customer holding a copy of fd_owner's photo must not be sent fd_owner's original.
    send_photo(shop, "fd_stranger", small_copy(mine))
    shop.customer_says("fd_stranger", "text", "找图,要高清原图")
    wait_text(shop, "fd_stranger", HANDED_OFF, timeout=40)
    assert images(shop, "fd_stranger") == []
    view = wait_for(lambda: (h := shop.query(
        "SELECT rule, status FROM handoff WHERE customer_id = ?", "fd_stranger")) and h, 10, 0.1, "a hand-off")
    assert view == [("find_image", "assigned")]
