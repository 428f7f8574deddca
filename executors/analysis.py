"""Analysis of a customer's photo in a render worker: download it, measure it, and judge its risk.

A photo judged an identity document or bank card (core.risk.sensitive) is deleted before its verdict is stored,
and never indexed: the job keeps the verdict, the photo's perceptual hash and size, not its pixels or its text.
Deleting first means a worker that dies in between leaves the row pending, and its re-drive downloads the photo to
the same path and deletes it again.

Blocking on purpose: each worker is its own process with one job at a time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from core import risk
from executors.outcome import Outcome
from imaging.analysis import analyze
from imaging.fetch import FetchError, fetch_image
from imaging.phash import NotAnImage, phash
from integrations.gemini import GeminiClient, GeminiError, with_retries
from observability.metrics import DELETED
from persistence import image_index, job_files, jobs
from protocol.image import Analysis
from protocol.settings import Settings

log = logging.getLogger("shop.render_worker")


def analyze_photo(settings: Settings, key: str, payload: dict[str, Any], gemini: GeminiClient | None) -> Outcome:
    """Download the customer's photo, analyse it, and leave `analyzed` or `analysis_failed` for the conversation."""
    job_id, customer_id = payload["job_id"], payload["customer_id"]
    images = settings.DATA_DIR / job_files.IMAGES
    images.mkdir(parents=True, exist_ok=True)
    try:
        fetched = fetch_image(payload["url"], images / job_id, settings.fetch_allow_hosts)
        analysis = analyze(Path(fetched.path))
    except FetchError as exc:
        log.info("job %s: photo not usable (%s): %s", job_id, exc.reason, exc)
        event_id = jobs.settle(key, "delivered", "analysis_failed", customer_id, job_id,
                               {"reason": exc.reason, "detail": str(exc)}, time.time())
        if event_id is not None:
            # An earlier attempt that died after its download (a sensitive photo, perhaps) left a file no row names.
            job_files.delete_files(settings.DATA_DIR, [images / job_id])
        return Outcome(customer_id, event_id)
    if gemini is not None and not analysis.has_text:
        # The vision model sees text the offline OCR misses (stylised signs); it can only add, never clear.
        try:
            found, text = with_retries(lambda: gemini.detect_text(Path(fetched.path).read_bytes(), fetched.mime),
                                       max_tries=2)
            if found:
                analysis = analysis.model_copy(update={"has_text": True, "text": text[:200], "text_source": "gemini"})
        except GeminiError as exc:
            log.warning("job %s: Gemini text detection failed (%s); OCR's answer stands", job_id, type(exc).__name__)
    analysis = _with_risk(analysis, Path(fetched.path), fetched.mime, gemini, job_id)
    source_path: str | None = str(fetched.path)
    if risk.sensitive(risk.Assessment(analysis.risk, analysis.risk_reason, analysis.risk_rule)):
        analysis, source_path = _forget_photo(settings.DATA_DIR, Path(fetched.path), fetched.size, analysis), None
        log.info("job %s: photo deleted, not kept (%s)", job_id, analysis.risk_rule)
    else:
        image_index.add_file(Path(fetched.path), "original", job_id, time.time())  # find-image looks here too
    event_id = jobs.settle(key, "delivered", "analyzed", customer_id, job_id,
                           {"analysis": analysis.model_dump(), "source_path": source_path}, time.time())
    return Outcome(customer_id, event_id)


def _forget_photo(data_dir: Path, path: Path, size: int, analysis: Analysis) -> Analysis:
    """Delete a photo the shop must not keep (and any partial download of it); the analysis to store instead:
    its perceptual hash and size, and not the text read off it (a name, an ID or card number)."""
    try:
        digest = f"{phash(path):016x}"
    except NotAnImage:
        digest = ""  # the photo goes all the same
    gone = job_files.delete_files(data_dir, [path, path.with_name(path.name + ".part")])
    if gone["photos"]:
        DELETED.labels("photos", "sensitive").inc()
    return analysis.model_copy(update={"text": "", "phash": digest, "size_bytes": size, "photo_deleted": True})


def _with_risk(analysis: Analysis, path: Path, mime: str, gemini: GeminiClient | None, job_id: str) -> Analysis:
    """The analysis with its risk verdict: the offline rules', made stricter by the vision model's when keyed."""
    verdict = risk.assess(analysis.width, analysis.height, analysis.blur, analysis.noise, analysis.damage,
                          analysis.text)
    source = "rules"
    if gemini is not None:
        try:
            said, why = with_retries(lambda: gemini.assess_risk(path.read_bytes(), mime), max_tries=2)
            stricter = risk.stricter(verdict, risk.Assessment(said, f"模型判断:{why}"[:200], f"gemini_{said.value}"))
            source = "gemini" if stricter is not verdict else source
            verdict = stricter
        except GeminiError as exc:
            log.warning("job %s: Gemini risk check failed (%s); the rules' verdict stands", job_id, type(exc).__name__)
    return analysis.model_copy(update={"risk": verdict.verdict, "risk_reason": verdict.reason,
                                       "risk_rule": verdict.rule, "risk_source": source})
