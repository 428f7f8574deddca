"""The find-image index: a perceptual hash per image of the shop's archive (originals, results, assets).

Originals and results are added as they are stored (with their job); asset folders are scanned, and a
scan only hashes files whose size or mtime changed, so calling it before every look-up is cheap.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from peewee import fn
from PIL import Image

from imaging.phash import MATCH_DISTANCE, NotAnImage, phash
from persistence.connection import atomic
from persistence.models import IndexedImage

log = logging.getLogger("shop.image_index")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class ScanStats:
    """What one scan did."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Match:
    """An indexed image near the one looked for."""

    path: str
    origin: str
    job_id: str | None
    distance: int
    width: int
    height: int


def _files(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return found


def _row_values(path: Path, origin: str, job_id: str | None, now: float) -> dict:
    st = path.stat()
    with Image.open(path) as img:
        width, height = img.size
    return {"path": str(path), "origin": origin, "job_id": job_id, "phash": f"{phash(path):016x}", "width": width,
            "height": height, "size": st.st_size, "mtime": st.st_mtime, "indexed_at": now}


def scan(roots: list[tuple[Path, str]], now: float) -> ScanStats:
    """Bring the index of these folders up to date: new and changed files hashed, gone ones removed."""
    added = updated = removed = unchanged = failed = 0
    for root, origin in roots:
        prefix = str(root.resolve()) + os.sep
        # An exact prefix: peewee's startswith is a LIKE, case-blind (an /Assets root would take /assets files).
        under = fn.SUBSTR(IndexedImage.path, 1, len(prefix)) == prefix
        known = {r.path: r for r in IndexedImage.select().where(under)}
        present = set()
        for path in _files(root.resolve()) if root.is_dir() else []:
            key = str(path)
            present.add(key)
            row = known.get(key)
            try:
                st = path.stat()
                if row is not None and row.size == st.st_size and row.mtime == st.st_mtime:
                    unchanged += 1
                    continue
                values = _row_values(path, origin, None, now)
            except (NotAnImage, OSError, ValueError, Image.DecompressionBombError) as exc:
                log.info("image index: %s skipped (%s)", path, exc)
                failed += 1
                continue
            with atomic():
                _upsert(values)
            added, updated = (added + 1, updated) if row is None else (added, updated + 1)
        gone = [p for p in known if p not in present]
        if gone:
            with atomic():
                removed += IndexedImage.delete().where(IndexedImage.path.in_(gone)).execute()
    return ScanStats(added, updated, removed, unchanged, failed)


def _upsert(values: dict) -> None:
    # ON CONFLICT … DO UPDATE, not SQLite's INSERT OR REPLACE: PostgreSQL has no REPLACE.
    IndexedImage.insert(**values).on_conflict(
        conflict_target=[IndexedImage.path],
        preserve=[getattr(IndexedImage, k) for k in values if k != "path"]).execute()


def add_file(path: Path, origin: str, job_id: str | None, now: float) -> bool:
    """Index one stored file now (an original or a result); False when it is not a readable image."""
    try:
        values = _row_values(path.resolve(), origin, job_id, now)
    except (NotAnImage, OSError, ValueError, Image.DecompressionBombError):
        return False
    _upsert(values)
    return True


def lookup(hash_: int, max_distance: int = MATCH_DISTANCE, exclude_paths: frozenset[str] = frozenset(),
           limit: int = 5) -> list[Match]:
    """Indexed images within max_distance of hash_, nearest first, ties: more pixels first."""
    found = []
    for row in IndexedImage.select().iterator():
        d = (int(row.phash, 16) ^ hash_).bit_count()
        if d <= max_distance and row.path not in exclude_paths:
            found.append(Match(row.path, row.origin, row.job_id, d, row.width, row.height))
    found.sort(key=lambda m: (m.distance, -m.width * m.height))
    return found[:limit]
