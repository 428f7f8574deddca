"""Rendering in a render worker: render, check the file the order names, score it, re-render, settle the best.

Blocking on purpose: each worker is its own process with one job at a time. Every paid call is
preceded by a recorded attempt, and a stored result is reused instead of asked for again.
"""

from __future__ import annotations

import io
import logging
import mimetypes
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from core.render_prompt import qa_prompt, render_prompt
from core.render_spec import render_spec
from executors.outcome import AlreadySettled, Outcome
from imaging import contract, pipeline
from imaging.limits import check_image_bytes
from imaging.quality import score_result
from integrations.gemini import GeminiClient, GeminiError, SafetyBlocked, with_retries
from persistence import image_index, jobs
from persistence.connection import atomic
from protocol.image import RenderRequest, RenderSpec
from protocol.settings import Settings

log = logging.getLogger("shop.render_worker")

GEMINI_TRIES = 4  # per attempt: 429s, 5xx and timeouts before the render counts as failed
QA_TRIES = 2


@dataclass(frozen=True)
class _Result:
    attempt: int
    path: str
    preview_path: str
    mime: str
    score: int


def render_job(settings: Settings, key: str, payload: dict[str, Any], gemini: GeminiClient | None, system: str = ""
               ) -> Outcome:
    """Render, check the deliverable's contract, quality-check and re-render up to RENDER_MAX_ATTEMPTS; leave
    `render_done` (the best result) or `render_failed`; system names the actor system that renders, in its attempts."""
    request = RenderRequest.model_validate(payload)
    source = Path(request.source_path or "")
    if not source.is_file():
        return _failed(key, payload, "the customer's photo is not on record", "error")
    out_dir = settings.DATA_DIR / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    photo = pipeline.load_photo(source)
    spec = render_spec(request, pipeline.measure(photo), keyed=gemini is not None)
    done = jobs.attempts(request.render_id)
    best: _Result | None = None
    broken: list[str] = []
    for n in range(1, settings.RENDER_MAX_ATTEMPTS + 1):
        stored = done.get(n)
        if stored is not None and stored.status == "done" and stored.path and Path(stored.path).exists():
            result = _Result(n, stored.path, stored.preview_path, stored.mime, stored.score or 0)
        elif stored is not None and stored.status == "failed" and (stored.error or "").startswith(CONTRACT):
            broken.append(stored.error or "")
            continue
        else:
            jobs.start_attempt(request.render_id, n, "gemini" if spec.model_ratio else "local", os.getpid(),
                               time.time(), system=system, operation=spec.operation.value)
            try:
                result = _attempt(gemini, source, photo, spec, request, out_dir, n)
            except contract.ContractBroken as exc:  # a failed attempt: re-rendered, never sent
                log.warning("job %s: attempt %d broke the order's contract: %s", request.job_id, n, exc)
                jobs.finish_attempt(request.render_id, n, time.time(), error=f"{CONTRACT}{exc}")
                broken.append(str(exc))
                continue
            except SafetyBlocked as exc:
                jobs.finish_attempt(request.render_id, n, time.time(), error=f"safety: {exc}")
                return _failed(key, payload, f"blocked by the model's safety filter: {exc}", "safety")
            except GeminiError as exc:
                jobs.finish_attempt(request.render_id, n, time.time(), error=f"{type(exc).__name__}: {exc}")
                return _failed(key, payload, f"Gemini failed after {GEMINI_TRIES} tries: {type(exc).__name__}",
                               "exhausted")
            except Exception as exc:
                log.exception("job %s: render attempt %d failed", request.job_id, n)
                jobs.finish_attempt(request.render_id, n, time.time(), error=f"{type(exc).__name__}: {exc}")
                return _failed(key, payload, f"the renderer failed: {type(exc).__name__}", "error")
            jobs.finish_attempt(request.render_id, n, time.time(), path=result.path, preview_path=result.preview_path,
                                mime=result.mime, score=result.score)
        if best is None or result.score > best.score:
            best = result
        if result.score >= settings.QA_THRESHOLD:
            break
        log.info("job %s: attempt %d scored %d (< %d)", request.job_id, n, result.score, settings.QA_THRESHOLD)
    if best is None:
        return _failed(key, payload, f"no attempt made the file the order names: {broken[-1]}", "contract")
    return _done(settings, key, payload, best)


CONTRACT = "contract: "


def _attempt(gemini: GeminiClient | None, source: Path, photo: Image.Image, spec: RenderSpec,
             request: RenderRequest, out_dir: Path, n: int) -> _Result:
    """One render: the model's part when the spec asks for it, the local finish, the contract, the QA score."""
    model_result = None
    if spec.model_ratio is not None:
        assert gemini is not None
        given, given_mime = pipeline.model_input(spec, photo)
        prompt = render_prompt(spec.operation, spec.model_ratio, request.perspective_fix, request.notes,
                               request.revision_notes)
        image, _ = with_retries(lambda: gemini.render(given, given_mime, prompt, spec.model_ratio or "",
                                                      render_key=f"{request.render_id}#{n}"),
                                max_tries=GEMINI_TRIES, on_retry=_log_retry)
        jobs.count_model_call(request.render_id, n)
        check_image_bytes(image, f"{gemini.image_model}'s result")  # before anything decodes it
        with Image.open(io.BytesIO(image)) as opened:
            opened.load()
            model_result = opened.copy()
    result = pipeline.finish(spec, photo, model_result, request.words)
    made = pipeline.write(spec, result, out_dir, f"{request.render_id}-{n}")
    contract.check(made.path, spec)
    return _Result(n, str(made.path), str(made.preview_path), made.mime, _score(gemini, source, made, spec, request))


def _score(gemini: GeminiClient | None, source: Path, made: pipeline.Deliverable, spec: RenderSpec,
           request: RenderRequest) -> int:
    """The quality check of the preview: the text model's score when keyed, else image measures'."""
    if gemini is not None:
        mime = mimetypes.guess_type(source.name)[0] or "image/png"
        try:
            score, _ = with_retries(lambda: gemini.score_quality(
                source.read_bytes(), made.preview_path.read_bytes(), mime, qa_prompt(spec.operation, request.words),
                result_mime="image/png"), max_tries=QA_TRIES)
            return score
        except GeminiError as exc:
            log.warning("QA by the text model failed (%s): scoring by image measures", type(exc).__name__)
    return score_result(source, made.preview_path, spec.operation)


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


def _failed(key: str, payload: dict[str, Any], reason: str, kind: str) -> Outcome:
    event_id = jobs.settle(key, "delivered", "render_failed", payload["customer_id"], payload["job_id"],
                           {"render_id": payload["render_id"], "reason": reason, "kind": kind}, time.time())
    return Outcome(payload["customer_id"], event_id)
