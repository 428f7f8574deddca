"""The image job's vocabulary (SPEC §2): operations, complexity, job states, analysis and render results."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Operation(StrEnum):
    """What the shop does to a photo."""

    ENHANCE = "enhance"
    REMOVE_BG = "remove_bg"
    RESIZE = "resize"
    FIX_OLD_PHOTO = "fix_old_photo"
    LAYERED = "layered"
    VECTORIZE = "vectorize"


class Complexity(StrEnum):
    """How hard a photo is to fix; decides the price band."""

    SIMPLE = "simple"
    NORMAL = "normal"
    COMPLEX = "complex"
    HARD = "hard"


class JobState(StrEnum):
    """Where an image job is. `quoting` (photo received, analysis running) precedes SPEC's `pending`."""

    QUOTING = "quoting"
    PENDING = "pending"
    PAID = "paid"
    PROCESSING = "processing"
    AWAITING_CONFIRM = "awaiting_confirm"
    COMPLETED = "completed"
    REVISION = "revision"
    FAILED = "failed"
    TRANSFERRED = "transferred"
    CANCELLED = "cancelled"


TERMINAL_JOB_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.TRANSFERRED, JobState.CANCELLED})


class ChangeType(StrEnum):
    """task_requirement_changes.type (SPEC §2)."""

    ADD_NOTE = "add_note"
    MODIFY_OPERATION = "modify_operation"
    ADD_REQUIREMENT = "add_requirement"


class RiskVerdict(StrEnum):
    """What risk assessment decided before any quote, in order of strictness."""

    ACCEPT = "accept"
    HUMAN = "human"
    DECLINE = "decline"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Analysis(_Frozen):
    """What the analysis of a customer's photo found."""

    width: int = Field(description="pixels")
    height: int = Field(description="pixels")
    format: str = Field(default="", description="Pillow format name, e.g. JPEG")
    blur: float = Field(default=0.0, description="0 sharp … 100 very blurred")
    noise: float = Field(default=0.0, description="0 clean … 100 very noisy")
    damage: float = Field(default=0.0, description="0 intact … 100 badly damaged (scratches, fading, yellowing)")
    complexity: Complexity = Field(description="price band the measures put it in")
    has_text: bool = Field(default=False, description="signs, captions or other text in the image")
    text: str = Field(default="", description="the text found, if any (first 200 characters; not kept with "
                      "photo_deleted)")
    text_source: str = Field(default="none", description="ocr | gemini | none: who detected the text")
    risk: RiskVerdict = Field(default=RiskVerdict.ACCEPT, description="accept, decline politely, or hand to a person")
    risk_reason: str = Field(default="", description="why, in short Chinese for staff and the job view")
    risk_rule: str = Field(default="ok", description="the rule's code: id_document, bank_card, banknote, "
                           "too_small, …")
    risk_source: str = Field(default="rules", description="rules | gemini: whose verdict stands")
    photo_deleted: bool = Field(default=False, description="the photo was deleted once judged, never indexed or "
                                "thumbnailed: an identity document or bank card the shop must not keep (PIPL)")
    phash: str = Field(default="", description="with photo_deleted: the photo's 64-bit perceptual hash, 16 hex digits")
    size_bytes: int = Field(default=0, ge=0, description="with photo_deleted: the photo's size as downloaded, bytes")


class RenderedImage(_Frozen):
    """A finished render: the deliverable file and a raster preview the customer is shown."""

    path: str = Field(description="the deliverable under DATA_DIR/results (PNG, SVG or PSD)")
    mime: str = Field(description="its media type")
    preview_path: str = Field(description="a PNG the IM bridge can show (the file itself when it is a PNG)")
    score: int = Field(description="quality check 0-100")
    qa_passed: bool = Field(description="score reached QA_THRESHOLD")
    attempts: int = Field(description="renders made for this request, QA re-renders included")
    source: str = Field(description="gemini | local")


class OutputFormat(StrEnum):
    """The deliverable's file type."""

    PNG = "png"
    JPEG = "jpeg"
    SVG = "svg"
    PSD = "psd"

    @property
    def mime(self) -> str:
        """Its media type."""
        return _MIMES[self]

    @property
    def extension(self) -> str:
        """Its file-name extension, without the dot."""
        return "jpg" if self is OutputFormat.JPEG else self.value


_MIMES = {OutputFormat.PNG: "image/png", OutputFormat.JPEG: "image/jpeg", OutputFormat.SVG: "image/svg+xml",
          OutputFormat.PSD: "image/vnd.adobe.photoshop"}

# A layered order's PSD, bottom to top; the text layer only when the photo shows text.
LAYER_BACKGROUND, LAYER_SUBJECT, LAYER_TEXT = "背景 Background", "主体 Subject", "文字 Text"


class PhotoMeasures(_Frozen):
    """What the render spec needs to know of the customer's photo."""

    width: int = Field(gt=0, description="pixels, after EXIF rotation")
    height: int = Field(gt=0, description="pixels, after EXIF rotation")
    format: str = Field(default="", description="Pillow format name, e.g. JPEG")
    has_alpha: bool = Field(default=False, description="the photo carries transparency")
    monochrome: bool = Field(default=False, description="a black-and-white (or sepia) photo")


class RenderSpec(_Frozen):
    """The deliverable an order names, decided once (core.render_spec) and executed by both render paths."""

    operation: Operation = Field(description="what is done to the photo")
    width: int = Field(gt=0, description="the deliverable's exact width in pixels (an SVG's width attribute)")
    height: int = Field(gt=0, description="the deliverable's exact height in pixels")
    format: OutputFormat = Field(description="the deliverable's file type")
    model_ratio: str | None = Field(description="aspect ratio asked of the image model; None: no image-model call")
    monochrome: bool = Field(default=False, description="the result stays black-and-white")
    alpha: bool = Field(default=False, description="the deliverable must carry transparency (a cut-out)")
    keep_alpha: bool = Field(default=False, description="the photo's own transparency is carried over")
    layers: tuple[str, ...] = Field(default=(), description="PSD layers that must be there, bottom to top")
    max_paths: int = Field(default=0, description="an SVG's most <path> elements (0: not an SVG)")
    perspective_fix: bool = Field(default=False, description="straighten the photo first")

    @property
    def ratio(self) -> float:
        """width / height of the deliverable."""
        return self.width / self.height


class RenderRequest(_Frozen):
    """The render outbox row's payload: one render request of a job, as the conversation issued it."""

    job_id: str = Field(description="the image job")
    customer_id: str = Field(description="whose job it is")
    render_id: str = Field(description="this render request (job id + -rN)")
    source_path: str | None = Field(description="the customer's photo under DATA_DIR/images")
    operation: Operation = Field(description="what is done to the photo")
    notes: tuple[str, ...] = Field(default=(), description="the customer's requirements, verbatim")
    revision_notes: tuple[str, ...] = Field(default=(), description="what the customer asked to change, verbatim")
    aspect_ratio: str = Field(default="", description="the shape the customer asked for (W:H); empty: the photo's")
    perspective_fix: bool = Field(default=False, description="the customer asked for the photo to be straightened")

    @property
    def words(self) -> tuple[str, ...]:
        """Every note, then every revision note, in the order given."""
        return (*self.notes, *self.revision_notes)
