"""The files an image job left under DATA_DIR, and dropping them: its photo, its results, their thumbnails.

A job's files are named for it (images/<job_id>, results/<job_id>-r<n>-<attempt>.*), so attempts that broke the
order's contract, left by no row, go with the rest. The files go first and the rows that name them after, in one
transaction: a crash between the two leaves rows naming missing files (served as 404, dropped again next time),
never a file no row leads back to.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import peewee

from imaging.thumbnail import NoThumbnail, cached_path
from persistence.connection import atomic
from persistence.models import ImageJob, IndexedImage, PublicFile, RenderAttempt

IMAGES = "images"  # customers' photos, as downloaded
RESULTS = "results"  # rendered files and their previews
THUMBS = "thumbs"  # the console's thumbnails of either
MAILS = "outbox-mail"  # the file mailer's .eml files, results attached (without SMTP_HOST)


def find_reference(data_dir: Path, key: str) -> Path:
    """Where a photo a customer sent to find an image by is kept: images/find-<16 hex of its outbox key's sha256>."""
    return data_dir / IMAGES / f"find-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def files_of(data_dir: Path, job_ids: Iterable[str]) -> dict[str, list[Path]]:
    """The files each job has under DATA_DIR now: by name, and every path its rows name."""
    ids = list(job_ids)
    named: dict[str, set[str]] = {job_id: set() for job_id in ids}
    for row in ImageJob.select(ImageJob.job_id, ImageJob.source_path, ImageJob.result_path).where(
            ImageJob.job_id.in_(ids)):
        named[row.job_id].update(p for p in (row.source_path, row.result_path) if p)
    for published in PublicFile.select(PublicFile.job_id, PublicFile.path).where(PublicFile.job_id.in_(ids)):
        named[published.job_id].add(published.path)
    for job_id in ids:
        for attempt in _attempts(job_id).select(RenderAttempt.path, RenderAttempt.preview_path):
            named[job_id].update(p for p in (attempt.path, attempt.preview_path) if p)
    # Each folder is listed once for the whole batch: a glob per job reads a folder of thousands of files each time.
    # Job ids hold no "." or "-": images/<job_id>[.part], results/<job_id>-r<n>-<attempt>.<ext>.
    for folder, sep in ((IMAGES, "."), (RESULTS, "-")):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(data_dir / folder):
                job_id = entry.name.split(sep, 1)[0]
                if job_id in named and (sep == "." or "-" in entry.name):
                    named[job_id].add(entry.path)
    return {job_id: sorted(p for p in map(Path, named[job_id]) if p.is_file()) for job_id in ids}


def _attempts(job_id: str) -> peewee.ModelSelect:
    """The render attempts of a job (render ids are <job_id>-r<n>)."""
    return RenderAttempt.select().where(RenderAttempt.render_id.startswith(f"{job_id}-r"))


def delete_files(data_dir: Path, paths: Iterable[Path]) -> Counter[str]:
    """Delete the files and their cached thumbnails; how many of each kind went (photos, results, thumbnails)."""
    gone: Counter[str] = Counter()
    for path in paths:
        with contextlib.suppress(NoThumbnail, OSError):
            cached_path(path, data_dir / THUMBS).unlink()
            gone["thumbnails"] += 1
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            gone["photos" if path.parent.name == IMAGES else "results"] += 1
    return gone


def drop(data_dir: Path, job_ids: list[str]) -> Counter[str]:
    """Delete the jobs' files, then forget every path to them (the jobs, their attempts, published URLs, the
    find-image index); the jobs' rows and history stay. How many files of each kind went."""
    gone = delete_files(data_dir, [p for paths in files_of(data_dir, job_ids).values() for p in paths])
    with atomic():
        ImageJob.update(source_path=None, result_path=None).where(ImageJob.job_id.in_(job_ids)).execute()
        for job_id in job_ids:
            RenderAttempt.update(path=None, preview_path=None).where(
                RenderAttempt.id.in_(_attempts(job_id).select(RenderAttempt.id))).execute()
        PublicFile.delete().where(PublicFile.job_id.in_(job_ids)).execute()
        IndexedImage.delete().where(IndexedImage.job_id.in_(job_ids)).execute()
    return gone
