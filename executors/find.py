"""Find an image (SPEC §3 workflow 1): look a customer's image up in the shop's archive and asset folder.

By a reference photo the customer sent, or by a past job (its result when it has one, else its photo's
look-alikes). Only the shop's own assets and this customer's own originals and results are ever sent:
another customer's photo is never a match. Leaves `find_done` or `find_none` for the conversation.
"""

from __future__ import annotations

import logging
import mimetypes
import time
from pathlib import Path
from typing import Any

from executors.outcome import Outcome
from imaging.fetch import FetchError, fetch_image
from imaging.phash import NotAnImage, phash
from persistence import image_index, job_files, jobs
from persistence.connection import atomic
from persistence.models import ImageJob
from protocol.settings import Settings

log = logging.getLogger("shop.find_image")

RASTER = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"})


def index_roots(settings: Settings) -> list[tuple[Path, str]]:
    """The folders a scan keeps indexed (originals and results are indexed as they are stored)."""
    return [(settings.asset_dir, "asset")]


def find_image(settings: Settings, key: str, payload: dict[str, Any]) -> Outcome:
    """Do one look-up and settle it."""
    customer_id = payload["customer_id"]
    image_index.scan(index_roots(settings), time.time())
    job = jobs.load_job(payload["job_id"]) if payload.get("job_id") else None
    row = ImageJob.get_or_none(ImageJob.job_id == job.job_id) if job else None
    if row is not None and row.result_path and Path(row.result_path).is_file():
        return _found(settings, key, customer_id, Path(row.result_path), "result", f"图片单 {row.job_id} 的结果")
    try:
        query, looked_for = _query(settings, key, payload, row)
    except (FetchError, NotAnImage) as exc:
        log.info("find %s: reference not usable: %s", key, exc)
        return _settle_none(key, customer_id, "参考图打不开")
    if query is None:
        return _settle_none(key, customer_id, looked_for)
    own_jobs = {j.job_id for j in ImageJob.select(ImageJob.job_id).where(ImageJob.customer_id == customer_id)}
    matches = [m for m in image_index.lookup(phash(query), exclude_paths=frozenset({str(query)}), limit=20)
               if m.origin == "asset" or (m.job_id is not None and m.job_id in own_jobs)]
    if not matches:
        return _settle_none(key, customer_id, looked_for)
    best = matches[0]
    return _found(settings, key, customer_id, Path(best.path), best.origin, looked_for)


def _query(settings: Settings, key: str, payload: dict[str, Any], row: ImageJob | None) -> tuple[Path | None, str]:
    """The image to look for, and what it is (for staff when nothing is found)."""
    if payload.get("reference_url"):
        dest = job_files.find_reference(settings.DATA_DIR, key)
        return fetch_image(payload["reference_url"], dest, settings.fetch_allow_hosts).path, "客户发的参考图"
    if row is not None and row.source_path and Path(row.source_path).is_file():
        return Path(row.source_path), f"图片单 {row.job_id} 的原图"
    return None, "没有参考图"


def _found(settings: Settings, key: str, customer_id: str, path: Path, origin: str, looked_for: str) -> Outcome:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    t = time.time()
    with atomic():
        url = settings.public_base_url + jobs.publish(path, mime, "", t)
        event_id = jobs.settle(key, "delivered", "find_done", customer_id, "", {
            "url": url, "is_image": mime in RASTER, "origin": origin, "path": str(path), "looked_for": looked_for,
        }, t)
    return Outcome(customer_id, event_id)


def _settle_none(key: str, customer_id: str, looked_for: str) -> Outcome:
    event_id = jobs.settle(key, "delivered", "find_none", customer_id, "", {"looked_for": looked_for}, time.time())
    return Outcome(customer_id, event_id)
