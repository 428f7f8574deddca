"""Gemini stand-in: a loopback server speaking the REST wire format of ``models.generate_content``.

google-genai talks to ``POST {base_url}/{v1beta|v1}/models/{model}:generateContent`` with the key in
``x-goog-api-key`` and a camelCase JSON body (``contents[].parts[]`` of ``text`` / ``inlineData
{mimeType, data}``, ``generationConfig {responseModalities, responseMimeType, responseSchema |
responseJsonSchema, imageConfig {aspectRatio}}``). This server answers the way Google does:

* an *image* request (``responseModalities`` holds ``IMAGE`` or the model name holds ``image``) gets
  a PNG that really is the input transformed (centre-cropped to ``aspectRatio`` when given, scaled
  ×2 capped at 2048 px, sharpened) plus a short text part;
* a *json* request (``responseMimeType: application/json``) gets JSON text satisfying the schema:
  ``{score, reason}`` uses the configured QA score, ``{has_text, text}`` the configured text
  answer, ``{risk_verdict, risk_reason}`` the configured risk answer (accept by default),
  any other schema is filled with plausible values by type;
* a *text* request gets a short Chinese phrase echoing the prompt.

A missing key is answered 403 ``PERMISSION_DENIED`` and, once ``api_key`` is configured, a different
key 400 ``INVALID_ARGUMENT`` / ``API_KEY_INVALID`` -- the statuses Google itself uses.

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
    "reason"}, "api_key": "only key accepted" | null}``.
``GET /_control/requests``
    The request log: ``{seq, at, model, path, kind, prompt, images_in, outcome, render_key}`` each,
    ``render_key`` taken from the ``x-render-key`` header.
``POST /_control/reset``
    Forget faults, configuration and the in-memory log (``seq`` keeps counting).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

from aiohttp import web
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["DEFAULT_QA_SCORE", "FakeGemini", "main"]

log = logging.getLogger(__name__)

DEFAULT_QA_SCORE = 85
MAX_SIDE = 2048
# Gemini's answer to a prompt without an image to edit; any size would do.
BLANK_SIDE = 1024
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
    images: list[bytes]
    aspect_ratio: str | None
    schema: dict[str, Any] | None


class _BadRequest(Exception):
    """The request body is not what the API accepts."""


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

    def reset(self) -> None:
        """Forget faults, configuration and the in-memory log."""
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

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    # ------------------------------------------------------------------ the API

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["call"].partition(":")
        if method != "generateContent" or not model:
            return _google_error(404, "NOT_FOUND", f"Method not found: {request.match_info['call']}")
        render_key = request.headers.get("x-render-key", "")
        try:
            call = _read_call(model, await request.read())
        except _BadRequest as exc:
            self._record(request, model, "", "", 0, "400", render_key)
            return _google_error(400, "INVALID_ARGUMENT", str(exc))

        given = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        with self._lock:
            wanted = self._api_key
        if not given:
            self._record(request, model, call.kind, call.prompt, len(call.images), "403", render_key)
            return _google_error(403, "PERMISSION_DENIED", _NO_KEY_MESSAGE)
        if wanted is not None and given != wanted:
            self._record(request, model, call.kind, call.prompt, len(call.images), "400", render_key)
            return _google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                                 [_error_info("API_KEY_INVALID")])

        fault = self._take_fault(model)
        outcome = fault.kind if fault is not None else "ok"
        self._record(request, model, call.kind, call.prompt, len(call.images), outcome, render_key)
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
            # Pillow on a large photo takes a while; keep the loop answering other requests.
            png = await asyncio.to_thread(_transform, call.images[0] if call.images else None, call.aspect_ratio)
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
            schema = call.schema or {"type": "object"}
            text = json.dumps(_fill(schema, schema, overrides), ensure_ascii=False)
        else:
            with self._lock:
                fixed = self._phrase
            text = fixed if fixed is not None else _phrase(call.prompt)
        return _response(call, [{"text": text}], out_tokens=max(1, len(text) // 2))


# ---------------------------------------------------------------------- request → call

def _read_call(model: str, raw: bytes) -> _Call:
    """Parse the camelCase request body the SDK sends."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _BadRequest(f"Invalid JSON payload received. {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("contents"), list) or not body["contents"]:
        raise _BadRequest("* GenerateContentRequest.contents: contents is not specified")
    texts: list[str] = []
    images: list[bytes] = []
    for content in body["contents"]:
        for part in (content or {}).get("parts") or []:
            if "text" in part:
                texts.append(str(part["text"]))
            elif "inlineData" in part:
                try:
                    # The SDK sends URL-safe base64; Google accepts the standard alphabet too.
                    data = str(part["inlineData"].get("data", "")).translate(_URLSAFE)
                    images.append(base64.b64decode(data, validate=True))
                except (binascii.Error, AttributeError):
                    raise _BadRequest("Invalid value at 'contents[0].parts[1].inline_data.data'") from None
    config = body.get("generationConfig") or {}
    modalities = [str(m).upper() for m in config.get("responseModalities") or []]
    if "IMAGE" in modalities or "image" in model.lower():
        kind = "image"
    elif config.get("responseMimeType") == "application/json":
        kind = "json"
    else:
        kind = "text"
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    aspect = (config.get("imageConfig") or {}).get("aspectRatio")
    return _Call(model, kind, "\n".join(texts), images, aspect, schema if isinstance(schema, dict) else None)


# ---------------------------------------------------------------------- answers

def _response(call: _Call, parts: list[dict[str, Any]], out_tokens: int, finish: str = "STOP") -> dict[str, Any]:
    prompt_tokens = max(1, len(call.prompt) // 4) + 258 * len(call.images)
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


def _transform(data: bytes | None, aspect_ratio: str | None) -> bytes:
    """The input really transformed: cropped to the ratio, scaled ×2 (≤ 2048 px), sharpened, as PNG."""
    if data is None:
        img = Image.linear_gradient("L").resize((BLANK_SIDE, BLANK_SIDE)).convert("RGB")
    else:
        try:
            img = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        except (UnidentifiedImageError, OSError):
            img = Image.new("RGB", (BLANK_SIDE, BLANK_SIDE), "white")
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    ratio = _ratio(aspect_ratio)
    if ratio is not None:
        w, h = img.size
        if w / h > ratio:
            new_w = max(1, round(h * ratio))
            img = img.crop(((w - new_w) // 2, 0, (w - new_w) // 2 + new_w, h))
        else:
            new_h = max(1, round(w / ratio))
            img = img.crop((0, (h - new_h) // 2, w, (h - new_h) // 2 + new_h))
    scale = min(2.0, MAX_SIDE / max(img.size))
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    img = img.resize(size, Image.Resampling.LANCZOS).filter(ImageFilter.UnsharpMask(radius=2, percent=120))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _ratio(aspect_ratio: str | None) -> float | None:
    """``"16:9"`` → 16/9; None for anything else."""
    w, _, h = (aspect_ratio or "").partition(":")
    try:
        ratio = float(w) / float(h)
    except (ValueError, ZeroDivisionError):
        return None
    return ratio if ratio > 0 else None


def _fill(schema: dict[str, Any], root: dict[str, Any], overrides: dict[str, Any] | None = None) -> Any:
    """A value satisfying ``schema`` (OpenAPI-style ``responseSchema`` or JSON Schema), by type.

    Top-level properties named in ``overrides`` take the given value when its type fits.
    """
    schema = _resolve(schema, root)
    if schema.get("enum"):
        return schema["enum"][0]
    kind = _kind(schema)
    if kind == "object":
        props: dict[str, Any] = schema.get("properties") or {}
        value: dict[str, Any] = {}
        for key in schema.get("required", list(props)):
            prop = _resolve(props.get(key, {"type": "string"}), root)
            wanted = (overrides or {}).get(key)
            value[key] = wanted if _fits(wanted, _kind(prop)) else _fill(prop, root)
        return value
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [_fill(schema.get("items") or {"type": "string"}, root) for _ in range(count)]
    if kind in ("integer", "number"):
        low = float(schema.get("minimum", 0))
        high = float(schema.get("maximum", max(low, 1.0)))
        number = min(max(1.0, low), high)
        return int(number) if kind == "integer" else number
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "示例"


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` and take the first branch of ``anyOf`` / ``oneOf`` / ``allOf``."""
    while True:
        if "$ref" in schema:
            target: Any = root
            for key in str(schema["$ref"]).removeprefix("#/").split("/"):
                target = target.get(key, {}) if isinstance(target, dict) else {}
            schema = target if isinstance(target, dict) else {}
            continue
        combo = next((schema[c] for c in ("anyOf", "oneOf", "allOf") if schema.get(c)), None)
        if combo is None:
            return schema
        schema = combo[0]


def _kind(schema: dict[str, Any]) -> str:
    """The schema's type, lower case (responseSchema writes ``OBJECT``), nullable unions reduced."""
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    return str(kind).lower()


def _fits(value: Any, kind: str) -> bool:
    if value is None:
        return False
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return kind == "string" and isinstance(value, str)


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
