"""The find-image index on a real SQLite file: scans follow the folder, look-ups find near copies only."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from imaging.phash import phash
from persistence import image_index
from tests.harness import photo_png


def put(folder: Path, name: str, seed: int, size: tuple[int, int] = (640, 480)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.open(io.BytesIO(photo_png(seed=seed))).convert("RGB").resize(size).save(path)
    return path


def test_a_scan_indexes_new_files_skips_unchanged_and_drops_removed(db_url: str, tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    put(assets, "a.png", 1)
    b = put(assets / "sub", "b.jpg", 2)
    (assets / "readme.txt").write_text("not an image")
    (assets / "broken.png").write_bytes(b"\x89PNG broken")

    first = image_index.scan([(assets, "asset")], now=1.0)
    assert (first.added, first.failed) == (2, 1)
    assert image_index.scan([(assets, "asset")], now=2.0).unchanged == 2

    b.unlink()
    put(assets, "a.png", 3)
    os.utime(assets / "a.png", (10, 10))
    again = image_index.scan([(assets, "asset")], now=3.0)
    assert (again.updated, again.removed) == (1, 1)


def test_lookup_finds_a_resized_copy_nearest_first_and_not_a_different_photo(db_url: str, tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    put(assets, "big.png", 5, (1280, 960))
    put(assets, "other.png", 6)
    image_index.scan([(assets, "asset")], now=1.0)
    wanted = phash(put(tmp_path / "customer", "screenshot.jpg", 5, (300, 225)))

    matches = image_index.lookup(wanted)
    assert [Path(m.path).name for m in matches] == ["big.png"]
    assert (matches[0].width, matches[0].height, matches[0].origin) == (1280, 960, "asset")


def test_added_results_carry_their_job_and_can_be_excluded(db_url: str, tmp_path: Path) -> None:
    result = put(tmp_path / "results", "job-1.png", 7)
    assert image_index.add_file(result, "result", "job-1", now=1.0)
    assert not image_index.add_file(tmp_path / "missing.png", "result", "job-2", now=1.0)

    [match] = image_index.lookup(phash(result))
    assert (match.job_id, match.distance) == ("job-1", 0)
    assert image_index.lookup(phash(result), exclude_paths=frozenset({str(result.resolve())})) == []
