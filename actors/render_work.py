"""The work a render worker does for one outbox row: download and analyse a photo, or render and check a result.

Blocking on purpose: each worker is its own process with one job at a time. Every paid call is
preceded by a recorded attempt, and a stored result is reused instead of asked for again.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors import placement
from actors.metrics import MeteredGeminiClient
from core import risk
from core.render_prompt import qa_prompt, render_prompt
from imaging.analysis import analyze
from imaging.fetch import FetchError, fetch_image
from imaging.limits import check_image_bytes
from imaging.local_renderer import render_local
from imaging.quality import score_result
from integrations.gemini import GeminiClient, GeminiError, SafetyBlocked, with_retries
from persistence import image_index, jobs
from persistence.db import atomic
from protocol.image import Analysis, Operation
from protocol.settings import Settings

log = logging.getLogger("shop.render_worker")

GEMINI_TRIES = 4  # per attempt: 429s, 5xx and timeouts before the render counts as failed
QA_TRIES = 2


@dataclass(frozen=True)
class Outcome:
    """What a work item left for the conversation: whose it is and the JobEvent written (None if settled before)."""

    customer_id: str
    event_id: int | None


def gemini_client(settings: Settings) -> GeminiClient | None:
    """The Gemini client when a key is configured, else None (the local renderer and measures serve)."""
    if settings.GEMINI_API_KEY is None:
        return None
    return MeteredGeminiClient(settings.GEMINI_API_KEY.get_secret_value(), settings.GEMINI_BASE_URL,
                               settings.GEMINI_IMAGE_MODEL, settings.GEMINI_TEXT_MODEL, settings.GEMINI_TIMEOUT_S)


def allow_hosts(settings: Settings) -> frozenset[str]:
    """FETCH_ALLOW_HOSTS as a set of host or host:port entries."""
    return frozenset(h.strip() for h in settings.FETCH_ALLOW_HOSTS.split(",") if h.strip())


def analyze_photo(settings: Settings, key: str, payload: dict[str, Any], gemini: GeminiClient | None) -> Outcome:
    """Download the customer's photo, analyse it, and leave `analyzed` or `analysis_failed` for the conversation."""
    job_id, customer_id = payload["job_id"], payload["customer_id"]
    images = settings.DATA_DIR / "images"
    images.mkdir(parents=True, exist_ok=True)
    try:
        fetched = fetch_image(payload["url"], images / job_id, allow_hosts(settings))
        analysis = analyze(Path(fetched.path))
        image_index.add_file(Path(fetched.path), "original", job_id, time.time())  # find-image looks here too
    except FetchError as exc:
        log.info("job %s: photo not usable (%s): %s", job_id, exc.reason, exc)
        event_id = jobs.settle(key, "delivered", "analysis_failed", customer_id, job_id,
                               {"reason": exc.reason, "detail": str(exc)}, time.time())
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
    event_id = jobs.settle(key, "delivered", "analyzed", customer_id, job_id,
                           {"analysis": analysis.model_dump(), "source_path": str(fetched.path)}, time.time())
    return Outcome(customer_id, event_id)


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


@dataclass(frozen=True)
class _Result:
    attempt: int
    path: str
    preview_path: str
    mime: str
    score: int


def render_job(settings: Settings, key: str, payload: dict[str, Any], gemini: GeminiClient | None) -> Outcome:
    """Render, quality-check and re-render up to RENDER_MAX_ATTEMPTS; leave `render_done` or `render_failed`."""
    job_id, render_id = payload["job_id"], payload["render_id"]
    source = Path(payload["source_path"] or "")
    if not source.is_file():
        return _failed(key, payload, "the customer's photo is not on record", "error")
    out_dir = settings.DATA_DIR / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    operation = Operation(payload["operation"])
    notes, revision_notes = tuple(payload["notes"]), tuple(payload["revision_notes"])
    prompt = render_prompt(operation, payload["aspect_ratio"], payload["perspective_fix"], notes, revision_notes)
    done = jobs.attempts(render_id)
    best: _Result | None = None
    for n in range(1, settings.RENDER_MAX_ATTEMPTS + 1):
        stored = done.get(n)
        if stored is not None and stored.status == "done" and stored.path and Path(stored.path).exists():
            result = _Result(n, stored.path, stored.preview_path, stored.mime, stored.score or 0)
        else:
            jobs.start_attempt(render_id, n, "gemini" if gemini else "local", os.getpid(), time.time(),
                               system=placement.this_system())
            try:
                result = _attempt(gemini, source, operation, out_dir, f"{render_id}-{n}", prompt, payload, n)
            except SafetyBlocked as exc:
                jobs.finish_attempt(render_id, n, time.time(), error=f"safety: {exc}")
                return _failed(key, payload, f"blocked by the model's safety filter: {exc}", "safety")
            except GeminiError as exc:
                jobs.finish_attempt(render_id, n, time.time(), error=f"{type(exc).__name__}: {exc}")
                return _failed(key, payload, f"Gemini failed after {GEMINI_TRIES} tries: {type(exc).__name__}",
                               "exhausted")
            except Exception as exc:
                log.exception("job %s: render attempt %d failed", job_id, n)
                jobs.finish_attempt(render_id, n, time.time(), error=f"{type(exc).__name__}: {exc}")
                return _failed(key, payload, f"the renderer failed: {type(exc).__name__}", "error")
            jobs.finish_attempt(render_id, n, time.time(), path=result.path, preview_path=result.preview_path,
                                mime=result.mime, score=result.score)
        if best is None or result.score > best.score:
            best = result
        if result.score >= settings.QA_THRESHOLD:
            break
        log.info("job %s: attempt %d scored %d (< %d)", job_id, n, result.score, settings.QA_THRESHOLD)
    assert best is not None
    return _done(settings, key, payload, best)


def _attempt(gemini: GeminiClient | None, source: Path, operation: Operation, out_dir: Path, stem: str, prompt: str,
             payload: dict[str, Any], n: int) -> _Result:
    if gemini is None:
        notes = tuple(payload["notes"]) + tuple(payload["revision_notes"])
        local = render_local(source, operation, out_dir, stem, notes, payload["aspect_ratio"],
                             payload["perspective_fix"])
        score = score_result(source, Path(local.preview_path), operation)
        return _Result(n, str(local.path), str(local.preview_path), local.mime, score)
    mime = mimetypes.guess_type(source.name)[0] or "image/png"
    original = source.read_bytes()
    image, out_mime = with_retries(lambda: gemini.render(original, mime, prompt, payload["aspect_ratio"],
                                                         render_key=f"{payload['render_id']}#{n}"),
                                   max_tries=GEMINI_TRIES, on_retry=_log_retry)
    check_image_bytes(image, f"{gemini.image_model}'s result")  # before anything decodes it
    ext = mimetypes.guess_extension(out_mime) or ".png"
    path = out_dir / f"{stem}{ext}"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(image)
    tmp.replace(path)
    try:
        score, _ = with_retries(lambda: gemini.score_quality(original, image, out_mime, qa_prompt(
            operation, tuple(payload["notes"]) + tuple(payload["revision_notes"]))), max_tries=QA_TRIES)
    except GeminiError as exc:
        log.warning("QA by the text model failed (%s): scoring by image measures", type(exc).__name__)
        score = score_result(source, path, operation)
    return _Result(n, str(path), str(path), out_mime, score)


def _log_retry(exc: GeminiError, delay: float) -> None:
    log.warning("Gemini %s; retrying in %.1fs", type(exc).__name__, delay)


def _done(settings: Settings, key: str, payload: dict[str, Any], best: _Result) -> Outcome:
    base = settings.public_base_url
    t = time.time()
    image_index.add_file(Path(best.preview_path), "result", payload["job_id"], t)
    with atomic():
        result_url = base + jobs.publish(Path(best.path), best.mime, payload["job_id"], t)
        preview_url = result_url if best.preview_path == best.path else base + jobs.publish(
            Path(best.preview_path), "image/png", payload["job_id"], t)
        event_id = jobs.settle(key, "delivered", "render_done", payload["customer_id"], payload["job_id"], {
            "render_id": payload["render_id"], "result_url": result_url, "preview_url": preview_url,
            "score": best.score, "qa_passed": best.score >= settings.QA_THRESHOLD, "attempts": best.attempt,
            "result_path": best.path,
        }, t, extras={"result_path": best.path})
        if event_id is None:
            raise AlreadySettled  # roll the published files back: the first settlement's URLs stand
    return Outcome(payload["customer_id"], event_id)


class AlreadySettled(Exception):
    """The row was settled by an earlier run (a re-drive after a crash): this run's outcome is dropped."""


def _failed(key: str, payload: dict[str, Any], reason: str, kind: str) -> Outcome:
    event_id = jobs.settle(key, "delivered", "render_failed", payload["customer_id"], payload["job_id"],
                           {"render_id": payload["render_id"], "reason": reason, "kind": kind}, time.time())
    return Outcome(payload["customer_id"], event_id)
