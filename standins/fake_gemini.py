"""Gemini stand-in: a loopback server speaking the REST wire format of ``models.generate_content``.

google-genai talks to ``POST {base_url}/{v1beta|v1}/models/{model}:generateContent`` with the key in
``x-goog-api-key`` and a camelCase JSON body (``contents[].parts[]`` of ``text`` / ``inlineData
{mimeType, data}``, ``generationConfig {responseModalities, responseMimeType, responseSchema |
responseJsonSchema, imageConfig {aspectRatio, imageSize}}``). This server answers the way Google does:

* an *image* request (``responseModalities`` holds ``IMAGE`` or the model name holds ``image``) gets
  an RGB PNG (never alpha) that really is the input transformed -- centre-cropped to the ratio, resized
  to the size Google documents for it (:data:`IMAGE_SIZES_1K`, ×2 for ``imageSize`` 2K, ×4 for 4K),
  sharpened -- plus a short text part. ``aspectRatio`` must be one of the documented ratios; without
  one the input keeps its shape (the nearest documented ratio), and a prompt with no image gets 1:1;
* a *json* request (``responseMimeType: application/json``, or ``text/x.enum`` for a bare enum value)
  gets an answer in the schema's shape: its ``required`` properties (optional ones only when a
  configured answer fills them), enums, ``minimum``/``maximum``, types, nested objects and arrays,
  ``responseSchema`` properties in ``propertyOrdering`` or alphabetical order as Google orders them.
  ``{score, reason}`` uses the configured QA score (clamped into the schema's range), ``{has_text,
  text}`` the configured text answer, ``{risk_verdict, risk_reason}`` the configured risk answer
  (accept by default); a configured value the schema does not allow gives way to one it does;
* a *text* request gets a short Chinese phrase echoing the prompt.

Requests Google refuses are refused here too, with its statuses and message shapes: 400
``INVALID_ARGUMENT`` for an undocumented ``aspectRatio`` or ``imageSize``, an image MIME type Gemini does
not read (anything but PNG, JPEG, WebP, HEIC, HEIF), image bytes that do not decode (HEIC/HEIF only
where Pillow reads them) and a ``responseSchema`` type not in upper case. A missing key is answered
403 ``PERMISSION_DENIED`` and, once ``api_key`` is configured, a different key 400 ``INVALID_ARGUMENT``
/ ``API_KEY_INVALID``.

Control API (JSON):

``POST /_control/faults``
    ``{"faults": [{"kind": "429", "retry_delay_s": 2} | {"kind": "500"} | {"kind": "503"} |
    {"kind": "slow", "delay_s": 5} | {"kind": "safety"} | {"kind": "image_safety"} |
    {"kind": "no_image"} | {"kind": "malformed"}], "model": "optional substring"}``: queued FIFO,
    each consumed by the next request whose model matches. ``safety`` blocks the prompt
    (``promptFeedback.blockReason``), ``image_safety`` returns a candidate finished ``IMAGE_SAFETY``
    without an image, ``no_image`` a candidate with text only, ``malformed`` a 200 whose body is not
    JSON (json requests: a candidate whose text is broken JSON); ``slow`` answers normally late.
``POST /_control/config``
    ``{"qa_score": 0-100, "text": {"has_text", "text"}, "risk": {"verdict": "accept" | "human" | "decline",
    "reason"}, "phrase": "what every phrasing request answers" | null, "api_key": "only key accepted" | null}``.
``GET /_control/requests``
    The request log: ``{seq, at, model, path, kind, prompt, images_in, outcome, render_key}`` each,
    ``render_key`` taken from the ``x-render-key`` header.
``GET /_control/counts``
    Requests by kind and image requests by outcome, from the in-memory log: ``{"image": n, "json": n,
    "text": n, "image_ok": n, "image_429": n, ...}`` (the first four always present; a body that is not
    JSON has no kind and counts in none).
``POST /_control/reset``
    Forget faults, configuration, the in-memory log and so the counts (``seq`` keeps counting).

Run it with ``python -m standins.fake_gemini --port 6080 [--ready-file F] [--log F]``; the ready file
receives ``{"base_url"}`` once listening and ``--log`` receives the request log as JSON lines.
In-process, :class:`FakeGemini` starts on the caller's event loop or in a thread of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import math
import re
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

from aiohttp import web
from PIL import Image, ImageFilter, ImageOps
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["DEFAULT_QA_SCORE", "IMAGE_SIZES_1K", "FakeGemini", "main"]

log = logging.getLogger(__name__)

DEFAULT_QA_SCORE = 85
# The aspect ratios Google documents for its image models and the resolution of each at the default
# (1K) size, from the gemini-2.5-flash-image table of https://ai.google.dev/gemini-api/docs/image-generation.
IMAGE_SIZES_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184), "4:3": (1184, 864),
    "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344), "16:9": (1344, 768), "21:9": (1536, 672),
}
IMAGE_SCALES = {"1K": 1, "2K": 2, "4K": 4}
# What Gemini reads as an image; any other image/* type is refused.
IMAGE_MIMES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
# A photo of a few MB base64-encoded, with room to spare.
MAX_BODY_BYTES = 64 * 1024 * 1024
_URLSAFE = str.maketrans("-_", "+/")
FaultKind = Literal["429", "500", "503", "slow", "safety", "image_safety", "no_image", "malformed"]


_M = TypeVar("_M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaultSpec(_Strict):
    """One injected fault."""

    kind: FaultKind
    retry_delay_s: float = Field(default=2.0, ge=0, description="429: the RetryInfo delay")
    delay_s: float = Field(default=5.0, ge=0, description="slow: how late the answer comes")


class FaultsRequest(_Strict):
    """Body of ``POST /_control/faults``."""

    faults: list[FaultSpec]
    model: str | None = Field(default=None, description="only requests whose model contains this")


class TextAnswer(_Strict):
    """What text detection answers."""

    has_text: bool = False
    text: str = ""


class RiskAnswer(_Strict):
    """What risk assessment answers."""

    verdict: Literal["accept", "human", "decline"] = "accept"
    reason: str = "普通照片"


class ConfigRequest(_Strict):
    """Body of ``POST /_control/config``; omitted fields stay as they are."""

    qa_score: int | None = Field(default=None, ge=0, le=100)
    text: TextAnswer | None = None
    risk: RiskAnswer | None = None
    phrase: str | None = Field(default=None, description="what a phrasing request answers; null = a rewording")
    api_key: str | None = Field(default=None, description="when set, the only key accepted")


@dataclass
class _Queued:
    spec: FaultSpec
    model: str | None


@dataclass
class _Call:
    """One parsed generateContent request."""

    model: str
    kind: str
    prompt: str
    images_in: int
    source: Image.Image | None  # an image request's input, decoded and upright
    aspect_ratio: str | None
    image_size: str
    schema: dict[str, Any] | None
    openapi: bool  # the schema came as responseSchema (OpenAPI style), not responseJsonSchema
    enum_text: bool  # text/x.enum: the answer is the bare enum value, not JSON


class _BadRequest(Exception):
    """The request body is not what the API accepts; ``kind`` is the call's, when it got that far."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


class FakeGemini:
    """The stand-in server. Control methods are thread-safe; start/stop belong to one loop or thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None) -> None:
        """Configure; nothing is bound until :meth:`start` (or :meth:`start_thread`). Port 0 picks one."""
        self.host = host
        self.port = port
        self.log_path = log_path
        self._lock = threading.Lock()
        self._faults: list[_Queued] = []
        self._qa_score = DEFAULT_QA_SCORE
        self._text = TextAnswer()
        self._risk = RiskAnswer()
        self._phrase: str | None = None
        self._api_key: str | None = None
        self._log: list[dict[str, Any]] = []
        self._seq = 0
        self._log_file: TextIO | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and serve on the running loop; afterwards :attr:`port` is the real port."""
        if self._runner is not None:
            raise RuntimeError("FakeGemini already started")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("a", encoding="utf-8")
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.add_routes([
            web.post(r"/{version:v1beta|v1}/models/{call}", self._generate),
            web.post("/_control/faults", self._control_faults),
            web.post("/_control/config", self._control_config),
            web.get("/_control/requests", self._control_requests),
            web.get("/_control/counts", self._control_counts),
            web.post("/_control/reset", self._control_reset),
        ])
        # Cancel a slow answer when its client gives up, as a real server stops work; and do not
        # let one hold up shutdown.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        log.info("Gemini stand-in on %s", self.base_url)

    async def stop(self) -> None:
        """Stop serving and close the log file. Safe to call twice."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def start_thread(self) -> FakeGemini:
        """Serve from a thread with its own event loop (for synchronous callers); returns self."""
        if self._thread is not None:
            raise RuntimeError("FakeGemini already started")
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="fake-gemini", daemon=True)
        self._thread.start()
        self._loop = loop
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
        except BaseException:
            self.stop_thread()
            raise
        return self

    def stop_thread(self) -> None:
        """Stop a server started by :meth:`start_thread` and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeGemini:
        return self.start_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    @property
    def base_url(self) -> str:
        """What to give the SDK as ``HttpOptions.base_url``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------ control

    def add_faults(self, faults: list[FaultSpec], model: str | None = None) -> None:
        """Queue faults, consumed one per request whose model contains ``model`` (any when None)."""
        with self._lock:
            self._faults.extend(_Queued(spec, model) for spec in faults)

    def configure(self, config: ConfigRequest) -> None:
        """Change the QA score, the text-detection or risk answer, or the accepted key."""
        with self._lock:
            if config.qa_score is not None:
                self._qa_score = config.qa_score
            if config.text is not None:
                self._text = config.text
            if config.risk is not None:
                self._risk = config.risk
            if "phrase" in config.model_fields_set:
                self._phrase = config.phrase
            if "api_key" in config.model_fields_set:
                self._api_key = config.api_key

    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first."""
        with self._lock:
            return [dict(entry) for entry in self._log]

    def counts(self) -> dict[str, int]:
        """Requests by kind (``image``, ``json``, ``text``) and image requests by outcome (``image_ok``, ...)."""
        counts = Counter({"image": 0, "json": 0, "text": 0, "image_ok": 0})
        with self._lock:
            for entry in self._log:
                if entry["kind"]:
                    counts[entry["kind"]] += 1
                if entry["kind"] == "image":
                    counts[f"image_{entry['outcome']}"] += 1
        return dict(counts)

    def reset(self) -> None:
        """Forget faults, configuration and the in-memory log (and with it the counts)."""
        with self._lock:
            self._faults.clear()
            self._qa_score = DEFAULT_QA_SCORE
            self._text = TextAnswer()
            self._risk = RiskAnswer()
            self._phrase = None
            self._api_key = None
            self._log.clear()

    async def _control_faults(self, request: web.Request) -> web.Response:
        body = await _parse(request, FaultsRequest)
        if isinstance(body, web.Response):
            return body
        self.add_faults(body.faults, body.model)
        with self._lock:
            queued = len(self._faults)
        return web.json_response({"queued": queued})

    async def _control_config(self, request: web.Request) -> web.Response:
        body = await _parse(request, ConfigRequest)
        if isinstance(body, web.Response):
            return body
        self.configure(body)
        return web.json_response({"ok": True})

    async def _control_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests())

    async def _control_counts(self, request: web.Request) -> web.Response:
        return web.json_response(self.counts())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    # ------------------------------------------------------------------ the API

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["call"].partition(":")
        if method != "generateContent" or not model:
            return _google_error(404, "NOT_FOUND", f"Method not found: {request.match_info['call']}")
        render_key = request.headers.get("x-render-key", "")
        raw = await request.read()
        try:
            # Decoding the input photo takes a while; keep the loop answering other requests.
            call = await asyncio.to_thread(_read_call, model, raw)
        except _BadRequest as exc:
            self._record(request, model, exc.kind, "", 0, "400", render_key)
            return _google_error(400, "INVALID_ARGUMENT", str(exc))

        given = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        with self._lock:
            wanted = self._api_key
        if not given:
            self._record(request, model, call.kind, call.prompt, call.images_in, "403", render_key)
            return _google_error(403, "PERMISSION_DENIED", _NO_KEY_MESSAGE)
        if wanted is not None and given != wanted:
            self._record(request, model, call.kind, call.prompt, call.images_in, "400", render_key)
            return _google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                                 [_error_info("API_KEY_INVALID")])

        fault = self._take_fault(model)
        outcome = fault.kind if fault is not None else "ok"
        self._record(request, model, call.kind, call.prompt, call.images_in, outcome, render_key)
        if fault is not None:
            answer = _fault_answer(fault, call)
            if answer is not None:
                return answer
            await asyncio.sleep(fault.delay_s)  # "slow": then answer as usual
        return web.json_response(await self._answer(call))

    def _take_fault(self, model: str) -> FaultSpec | None:
        with self._lock:
            for i, queued in enumerate(self._faults):
                if queued.model is None or queued.model in model:
                    return self._faults.pop(i).spec
        return None

    def _record(self, request: web.Request, model: str, kind: str, prompt: str, images_in: int,
                outcome: str, render_key: str) -> None:
        with self._lock:
            self._seq += 1
            entry = {"seq": self._seq, "at": time.time(), "model": model, "path": request.path, "kind": kind,
                     "prompt": prompt, "images_in": images_in, "outcome": outcome, "render_key": render_key}
            self._log.append(entry)
            if self._log_file is not None:
                self._log_file.write(json.dumps(entry, ensure_ascii=False) + "\n")
                self._log_file.flush()

    async def _answer(self, call: _Call) -> dict[str, Any]:
        if call.kind == "image":
            png = await asyncio.to_thread(_transform, call.source, _output_size(call))
            parts: list[dict[str, Any]] = [
                {"text": "Here is the retouched image."},
                {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}},
            ]
            return _response(call, parts, out_tokens=1290)
        if call.kind == "json":
            with self._lock:
                overrides = {"score": self._qa_score, "reason": "细节清晰自然,符合要求。",
                             "has_text": self._text.has_text, "text": self._text.text,
                             "risk_verdict": self._risk.verdict, "risk_reason": self._risk.reason}
            schema = call.schema or {"type": "OBJECT" if call.openapi else "object"}
            value = _Filler(schema, call.openapi).fill(schema, overrides)
            text = str(value) if call.enum_text else json.dumps(value, ensure_ascii=False)
        else:
            with self._lock:
                fixed = self._phrase
            text = fixed if fixed is not None else _phrase(call.prompt)
        return _response(call, [{"text": text}], out_tokens=max(1, len(text) // 2))


# ---------------------------------------------------------------------- request → call

_RATIO_LIST = ", ".join(f"'{r}'" for r in list(IMAGE_SIZES_1K)[:-1]) + f", or '{list(IMAGE_SIZES_1K)[-1]}'"
# Google's wording for an enum-like string field out of range (seen live for aspect_ratio).
_BAD_ASPECT_RATIO = ("* GenerateContentRequest.generation_config.image_config.aspect_ratio: "
                     f"aspect_ratio must be one of {_RATIO_LIST}.\n")
_BAD_IMAGE_SIZE = ("* GenerateContentRequest.generation_config.image_config.image_size: "
                   "image_size must be one of '1K', '2K', or '4K'.\n")
_BAD_IMAGE = "Provided image is not valid."
# responseSchema types are proto enum names, upper case on the wire; "object" is refused.
_OPENAPI_TYPES = frozenset({"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})


def _read_call(model: str, raw: bytes) -> _Call:
    """Parse the request body the SDK sends (camelCase, a few fields snake_case), refusing what Google refuses."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _BadRequest(f"Invalid JSON payload received. {exc}") from None
    if not isinstance(body, dict):
        raise _BadRequest("Invalid JSON payload received. Expected an object.")
    config = _at(body, "generationConfig") or {}
    modalities = [str(m).upper() for m in _at(config, "responseModalities") or []]
    mime = _at(config, "responseMimeType")
    if "IMAGE" in modalities or "image" in model.lower():
        kind = "image"
    elif mime in ("application/json", "text/x.enum"):
        kind = "json"
    else:
        kind = "text"
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _BadRequest("* GenerateContentRequest.contents: contents is not specified", kind)

    texts: list[str] = []
    blobs: list[tuple[str, bytes]] = []
    for i, content in enumerate(contents):
        for j, part in enumerate((content or {}).get("parts") or []):
            if "text" in part:
                texts.append(str(part["text"]))
            elif _at(part, "inlineData") is not None:
                blobs.append(_inline_data(_at(part, "inlineData"), f"contents[{i}].parts[{j}].inline_data", kind))
    pictures = [data for blob_mime, data in blobs if blob_mime.startswith("image/")]
    for data in pictures[1:] if kind == "image" else pictures:
        _decode(data, kind, load=False)
    source = _decode(pictures[0], kind, load=True) if kind == "image" and pictures else None

    image_config = _at(config, "imageConfig") or {}
    aspect = _at(image_config, "aspectRatio") or None  # "" is proto3's "not set"
    if aspect is not None and aspect not in IMAGE_SIZES_1K:
        raise _BadRequest(_BAD_ASPECT_RATIO, kind)
    image_size = _at(image_config, "imageSize") or "1K"
    if image_size not in IMAGE_SCALES:
        raise _BadRequest(_BAD_IMAGE_SIZE, kind)

    json_schema, api_schema = _at(config, "responseJsonSchema"), _at(config, "responseSchema")
    openapi = json_schema is None and api_schema is not None
    if openapi:
        _check_openapi(api_schema, "generation_config.response_schema", kind)
    schema = json_schema if json_schema is not None else api_schema
    return _Call(model, kind, "\n".join(texts), len(blobs), source, aspect, image_size,
                 schema if isinstance(schema, dict) else None, openapi, mime == "text/x.enum")


def _at(obj: dict[str, Any], name: str) -> Any:
    """Field ``name`` of a request object: Google's JSON parser takes the snake_case spelling the SDK sends
    for some fields (``inlineData.mime_type``, ``responseSchema.min_items``) as well as camelCase."""
    if name in obj:
        return obj[name]
    return obj.get(re.sub(r"(?<=[a-z])([A-Z])", r"_\1", name).lower())


def _inline_data(blob: Any, where: str, kind: str) -> tuple[str, bytes]:
    """An ``inlineData`` part's media type and bytes."""
    try:
        mime = str(_at(blob, "mimeType") or "")
        # The SDK sends URL-safe base64; Google accepts the standard alphabet too.
        data = base64.b64decode(str(blob.get("data", "")).translate(_URLSAFE), validate=True)
    except (binascii.Error, AttributeError):
        raise _BadRequest(f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed", kind) from None
    if mime.startswith("image/") and mime not in IMAGE_MIMES:
        raise _BadRequest(f"Unsupported MIME type: {mime}", kind)
    return mime, data


def _decode(data: bytes, kind: str, load: bool) -> Image.Image:
    """The image in ``data`` (upright and decoded when ``load``, else only its header read)."""
    try:
        img = Image.open(io.BytesIO(data))
        # exif_transpose returns a loaded copy: this is where truncated data shows.
        return ImageOps.exif_transpose(img) if load else img
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise _BadRequest(_BAD_IMAGE, kind) from None


def _check_openapi(schema: Any, where: str, kind: str) -> None:
    """Refuse a ``responseSchema`` whose types are not Google's enum names, as its JSON parser does."""
    if not isinstance(schema, dict):
        return
    given = schema.get("type")
    if given is not None and given not in _OPENAPI_TYPES:
        raise _BadRequest(f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage."
                          f"v1beta.Type), {json.dumps(given, ensure_ascii=False)}", kind)
    for i, prop in enumerate((schema.get("properties") or {}).values()):
        _check_openapi(prop, f"{where}.properties[{i}].value", kind)
    _check_openapi(schema.get("items"), f"{where}.items", kind)
    for i, branch in enumerate(_at(schema, "anyOf") or []):
        _check_openapi(branch, f"{where}.any_of[{i}]", kind)


# ---------------------------------------------------------------------- answers

def _response(call: _Call, parts: list[dict[str, Any]], out_tokens: int, finish: str = "STOP") -> dict[str, Any]:
    prompt_tokens = max(1, len(call.prompt) // 4) + 258 * call.images_in
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": out_tokens,
                          "totalTokenCount": prompt_tokens + out_tokens},
        "modelVersion": call.model,
        "responseId": uuid.uuid4().hex[:22],
    }


def _fault_answer(fault: FaultSpec, call: _Call) -> web.Response | None:
    """The answer a fault stands for; None for ``slow``, which answers normally after a delay."""
    if fault.kind == "429":
        delay = f"{fault.retry_delay_s:g}s"
        return _google_error(
            429, "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}],
            headers={"Retry-After": str(math.ceil(fault.retry_delay_s))},
        )
    if fault.kind == "500":
        return _google_error(500, "INTERNAL", "An internal error has occurred. Please retry or report in "
                                              "https://developers.generativeai.google/guide/troubleshooting")
    if fault.kind == "503":
        return _google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    if fault.kind == "safety":
        return web.json_response({
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "HIGH"}]},
            "usageMetadata": {"promptTokenCount": 1, "totalTokenCount": 1},
            "modelVersion": call.model,
        })
    if fault.kind == "image_safety":
        answer = _response(call, [], out_tokens=0, finish="IMAGE_SAFETY")
        candidate = answer["candidates"][0]
        del candidate["content"]
        candidate["finishMessage"] = ("Unable to show the generated image. The generated image was filtered out "
                                      "because it violated Google's Generative AI Prohibited Use policy.")
        return web.json_response(answer)
    if fault.kind == "no_image":
        return web.json_response(_response(call, [{"text": "I can't edit this image."}], out_tokens=8))
    if fault.kind == "malformed":
        if call.kind == "json":
            return web.json_response(_response(call, [{"text": '{"score": "high", "reason'}], out_tokens=8))
        # What a misbehaving proxy in front of the API sends: a 200 that is not JSON at all.
        return web.Response(text='{"candidates": [{"content": <html>upstream', content_type="application/json")
    return None


_NO_KEY_MESSAGE = ("Method doesn't allow unregistered callers (callers without established identity). "
                   "Please use API Key or other form of API consumer identity to call this API.")


def _error_info(reason: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
            "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}


def _google_error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None,
                  headers: dict[str, str] | None = None) -> web.Response:
    """An error in Google's JSON format."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=code, headers=headers)


def _phrase(prompt: str) -> str:
    """A rewording of the fixed reply the prompt quotes (facts kept), else a short phrase echoing the prompt."""
    quoted = re.search(r"固定回复[^「]*「(.+?)」", prompt)
    if quoted:
        return f"亲,{quoted.group(1)}~"
    gist = " ".join(prompt.split())[:30]
    return f"好的,收到~「{gist}」这就给您安排。" if gist else "好的,收到~"


def _output_size(call: _Call) -> tuple[int, int]:
    """The table size of the asked ratio, else of the documented ratio nearest the input's shape, else 1:1."""
    if call.aspect_ratio is not None:
        ratio = call.aspect_ratio
    elif call.source is not None:
        shape = math.log(call.source.width / call.source.height)
        # Compared as logarithms: 2:1 and 1:2 are equally far from 1:1.
        ratio = min(IMAGE_SIZES_1K, key=lambda r: abs(shape - math.log(_nominal(r))))
    else:
        ratio = "1:1"
    width, height = IMAGE_SIZES_1K[ratio]
    scale = IMAGE_SCALES[call.image_size]
    return width * scale, height * scale


def _nominal(ratio: str) -> float:
    """``"16:9"`` → 16/9."""
    width, _, height = ratio.partition(":")
    return int(width) / int(height)


def _transform(source: Image.Image | None, size: tuple[int, int]) -> bytes:
    """``source`` cropped from the centre to ``size``'s shape, resized to it, sharpened a little: an RGB PNG."""
    if source is None:
        img = Image.linear_gradient("L").resize(size).convert("RGB")
    else:
        img = _flatten(source)
        img = img.resize(size, Image.Resampling.LANCZOS, box=_cover_box(img.size, size), reducing_gap=3.0)
    img = img.filter(ImageFilter.UnsharpMask(radius=1.5, percent=60, threshold=2))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _flatten(img: Image.Image) -> Image.Image:
    """``img`` as RGB, any transparency laid on white: the model never returns alpha."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return img.convert("RGB")


def _cover_box(size: tuple[int, int], target: tuple[int, int]) -> tuple[float, float, float, float]:
    """The largest centred region of an image of ``size`` that has ``target``'s shape."""
    (width, height), (want_w, want_h) = size, target
    if width * want_h > height * want_w:
        crop_w = height * want_w / want_h
        return (width - crop_w) / 2, 0, (width + crop_w) / 2, height
    crop_h = width * want_h / want_w
    return 0, (height - crop_h) / 2, width, (height + crop_h) / 2


class _Filler:
    """Values in a response schema's shape, as the model writes them under constrained decoding."""

    def __init__(self, root: dict[str, Any], openapi: bool) -> None:
        """``root`` is the whole schema (for ``$ref``); ``openapi`` says it came as ``responseSchema``."""
        self.root = root
        self.openapi = openapi

    def fill(self, schema: dict[str, Any], overrides: dict[str, Any] | None = None) -> Any:
        """A value satisfying ``schema``; an object's properties named in ``overrides`` take that value if it fits."""
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        kind = _kind(schema)
        if kind == "object":
            return self._object(schema, overrides or {})
        if kind == "array":
            return self._array(schema)
        if kind in ("integer", "number"):
            low = float(schema.get("minimum", 0))
            high = float(schema.get("maximum", max(low, 1.0)))
            if kind == "integer":
                return min(max(1, math.ceil(low)), math.floor(high))
            return min(max(1.0, low), high)
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return _string(schema)

    def _object(self, schema: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties") or {}
        required = list(schema.get("required") or [])
        # Only required properties are certain in a real answer; an optional one appears here only when
        # a configured answer fills it, so a caller that relies on another one fails here first.
        names = [n for n in props if n in required or n in overrides] + [n for n in required if n not in props]
        if self.openapi:
            # Google writes responseSchema properties in propertyOrdering, else alphabetically (and
            # responseJsonSchema ones in the schema's own order).
            order = list(_at(schema, "propertyOrdering") or sorted(names))
            names.sort(key=lambda n: order.index(n) if n in order else len(order))
        value: dict[str, Any] = {}
        for name in names:
            prop = self._resolve(props.get(name, {"type": "string"}))
            given = _conform(overrides.get(name), prop)
            value[name] = given if given is not None else self.fill(prop)
        return value

    def _array(self, schema: dict[str, Any]) -> list[Any]:
        prefix: list[dict[str, Any]] = _at(schema, "prefixItems") or []
        low = int(_at(schema, "minItems") or 1)
        high = _at(schema, "maxItems")
        count = max(1, low, len(prefix))
        count = min(count, int(high)) if high is not None else count
        items = schema.get("items") or {"type": "string"}
        return [self.fill(prefix[i] if i < len(prefix) else items) for i in range(count)]

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Follow ``$ref`` and take the first branch of ``anyOf`` / ``oneOf`` / ``allOf``."""
        while True:
            if "$ref" in schema:
                target: Any = self.root
                for key in str(schema["$ref"]).removeprefix("#/").split("/"):
                    target = target.get(key, {}) if isinstance(target, dict) else {}
                schema = target if isinstance(target, dict) else {}
                continue
            combo = next((_at(schema, c) for c in ("anyOf", "oneOf", "allOf") if _at(schema, c)), None)
            if combo is None:
                return schema
            schema = combo[0]


def _kind(schema: dict[str, Any]) -> str:
    """The schema's type, lower case (responseSchema writes ``OBJECT``), nullable unions reduced."""
    kind = schema.get("type")
    if kind is None:
        return "array" if "items" in schema or _at(schema, "prefixItems") is not None else "object"
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    return str(kind).lower()


def _string(schema: dict[str, Any]) -> str:
    """A string of the schema's format and length."""
    text = {"date-time": "2026-01-01T00:00:00Z", "date": "2026-01-01"}.get(schema.get("format", ""), "示例")
    text = text.ljust(int(_at(schema, "minLength") or 0), "例")
    high = _at(schema, "maxLength")
    return text[:int(high)] if high is not None else text


def _conform(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` as far as ``schema`` allows (numbers clamped into range); None when it does not fit at all."""
    if value is None:
        return None
    if schema.get("enum"):
        return value if value in schema["enum"] else None
    kind = _kind(schema)
    if kind in ("integer", "number") and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = schema.get("minimum"), schema.get("maximum")
        if kind == "integer":
            value = round(value)
            low = math.ceil(low) if low is not None else None
            high = math.floor(high) if high is not None else None
        value = max(value, low) if low is not None else value
        return min(value, high) if high is not None else value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "string" and isinstance(value, str):
        high = _at(schema, "maxLength")
        return value[:int(high)] if high is not None else value
    return None


async def _parse(request: web.Request, model: type[_M]) -> _M | web.Response:
    """The request's JSON body as ``model``, or a 400 saying what is wrong."""
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        return web.json_response({"error": str(exc)}, status=400)


# ---------------------------------------------------------------------- command line

async def _run(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT."""
    fake = FakeGemini(args.host, args.port, args.log)
    await fake.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        print(f"Gemini stand-in: {fake.base_url}", flush=True)
        if args.ready_file is not None:
            # Written whole then renamed, so a process polling for it never reads half a file.
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"base_url": fake.base_url}))
            tmp.replace(args.ready_file)
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``python -m standins.fake_gemini [--host H] [--port N] ...``."""
    parser = argparse.ArgumentParser(prog="python -m standins.fake_gemini", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port, 0 = any (default 0)")
    parser.add_argument("--ready-file", type=Path, default=None, help="write {base_url} here once listening")
    parser.add_argument("--log", type=Path, default=None, help="append the request log to this JSON-lines file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
