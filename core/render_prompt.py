"""The instructions the Gemini models get: the render prompt, the quality-check prompt, text detection.

Pure text building. Customer notes are passed on verbatim (Chinese kept) inside clearly marked blocks,
so the model reads them as wishes about the picture rather than as instructions to itself.
"""

from __future__ import annotations

import re

from protocol.image import Operation

__all__ = ["MODEL_INSTRUCTIONS", "OPERATION_INSTRUCTIONS", "TEXT_DETECT_PROMPT", "qa_prompt", "render_prompt"]

# What the image model is asked, for the operations that spend a model call (core.render_spec.MODEL_OPERATIONS).
MODEL_INSTRUCTIONS: dict[Operation, str] = {
    Operation.ENHANCE: (
        "Enhance this photo: make it sharp and clear, recover fine detail, remove blur, noise and compression "
        "artefacts, and balance exposure and colour naturally. Keep the content, composition, colours and the "
        "identity of every person exactly as they are."
    ),
    Operation.FIX_OLD_PHOTO: (
        "Restore this old photo: remove any remaining scratches, dust, stains, tears and creases, correct fading and "
        "yellowing, restore natural tones and contrast, and sharpen faces while keeping each person's identity. "
        "Keep a black-and-white photo black-and-white."
    ),
    Operation.LAYERED: (
        "Remove the main subject (the people, animals or objects in the foreground) and any text from this photo, "
        "and fill where they were with the background that would be behind them, continuing its lines, textures and "
        "lighting, so the result is the empty scene: a clean background plate. Change nothing else."
    ),
    Operation.VECTORIZE: (
        "Redraw this image as a clean, flat vector-style illustration ready to be traced to SVG: solid flat "
        "colour regions, smooth crisp outlines, a limited palette, no noise, gradients or photographic texture. "
        "Keep the shapes, proportions and layout of the original."
    ),
}

# What the shop delivers, for the quality check (which sees the original and a PNG preview of the deliverable).
OPERATION_INSTRUCTIONS: dict[Operation, str] = {
    **MODEL_INSTRUCTIONS,
    Operation.REMOVE_BG: (
        "Cut out the main subject: the whole subject kept, complete with clean edges (hair and fine detail "
        "included), everything else transparent (shown on white here)."
    ),
    Operation.RESIZE: "Resize the photo to the requested size and shape without distorting the subject.",
    Operation.LAYERED: (
        "Split the photo into layers (a clean background, the subject, any text); the image shown is the layers "
        "stacked, which must look like the original."
    ),
    Operation.VECTORIZE: (
        "Redraw the image as a flat-colour vector illustration (the image shown is the SVG rendered): shapes, "
        "proportions, layout and the main colours of the original kept."
    ),
}

_ASPECT_RATIO = re.compile(r"[1-9]\d{0,2}:[1-9]\d{0,2}")

_PERSPECTIVE = (
    "Correct the perspective: straighten converging lines and keystone distortion so the main subject is seen "
    "head-on, with vertical lines vertical and horizontal lines level."
)

_KEEP = (
    "Do not add any text, watermark, logo or border. Keep any text already in the image exactly as written, "
    "legible and unchanged."
)

TEXT_DETECT_PROMPT = (
    "Does this image contain any visible text: signs, captions, labels, printed or handwritten characters in "
    "any language (Chinese included), numbers or watermarks? Answer as JSON: has_text is true when there is "
    "any, and text is that text exactly as written (at most 200 characters), or an empty string when there is none."
)


def render_prompt(
    operation: Operation,
    aspect_ratio: str,
    perspective_fix: bool,
    notes: tuple[str, ...],
    revision_notes: tuple[str, ...],
) -> str:
    """The image model's instruction for one render; every note and revision note appears verbatim.

    ``aspect_ratio`` is ``W:H`` (e.g. ``1:1``, ``16:9``); anything else, or an operation the model has no part in
    (a cut-out, a resize), raises ``ValueError``.
    """
    if not _ASPECT_RATIO.fullmatch(aspect_ratio):
        raise ValueError(f"aspect ratio must look like 16:9, got {aspect_ratio!r}")
    if operation not in MODEL_INSTRUCTIONS:
        raise ValueError(f"{operation.value} is done locally: the image model has no part in it")
    lines = [
        MODEL_INSTRUCTIONS[operation],
        f"Output aspect ratio: {aspect_ratio} (width:height).",
    ]
    if perspective_fix:
        lines.append(_PERSPECTIVE)
    if operation is not Operation.LAYERED:  # the plate leaves the text out: it gets a layer of its own
        lines.append(_KEEP)
    lines += _quoted(
        "The customer's requirements, quoted exactly as written (they may be in Chinese); follow every one:",
        notes,
    )
    lines += _quoted(
        "The customer asked for these changes to the previous result, quoted exactly as written (they may be in "
        "Chinese); they take priority over everything above except the rules about text:",
        revision_notes,
    )
    lines.append("Return the finished image.")
    return "\n".join(lines)


def qa_prompt(operation: Operation, notes: tuple[str, ...]) -> str:
    """The text model's instruction for the quality check of a render (original first, result second)."""
    lines = [
        "You are the quality checker of a photo-retouching shop. The first image is the customer's original, "
        "the second is the shop's result. The job was:",
        OPERATION_INSTRUCTIONS[operation],
    ]
    lines += _quoted("The customer's requirements, quoted exactly as written:", notes)
    lines.append(
        "Score the result from 0 to 100 for how well it does the job and meets every requirement: 90-100 ready to "
        "deliver, 70-89 acceptable with small flaws, below 70 must be redone (wrong operation, lost or distorted "
        "content, changed faces, artefacts, added or garbled text). Answer as JSON: score is the integer score, "
        "reason one short sentence in Simplified Chinese naming the main strength or flaw."
    )
    return "\n".join(lines)


def _quoted(heading: str, notes: tuple[str, ...]) -> list[str]:
    """A heading and one «…»-quoted line per non-blank note; nothing when there are none."""
    kept = [note.strip() for note in notes if note.strip()]
    if not kept:
        return []
    return [heading, *(f"- «{note}»" for note in kept)]

RISK_PROMPT = (
    "你是修图店的审核员。看这张客户发来要修的图片,判断能不能接单,用 JSON 回答 risk_verdict 和 risk_reason。"
    "decline:身份证、护照、驾驶证等身份证件,纸币,色情或暴力内容,明显是伪造或篡改证明材料的请求;"
    "human:证书、执照、公章、合同等需要人判断的,或者你拿不准的;accept:其他普通照片。"
    "risk_reason 用一句简短的中文说明原因。"
)
