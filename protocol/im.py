"""IM bridge wire frames (SPEC §5): JSON text frames over one WebSocket."""

from __future__ import annotations

import json
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

MAX_FRAME_BYTES = 4 * 1024 * 1024  # one WebSocket frame from the bridge; a longer one closes the connection
MAX_TEXT_CHARS = 4000  # a text (or URL) longer than this is stored cut to this length, marked
MAX_STRUCTURED_CHARS = 4096  # order and payment content, as JSON
TRUNCATED_MARK = "…[truncated]"


class MessageKind(StrEnum):
    """What a customer-side frame carries."""

    TEXT = "text"
    IMAGE = "image"
    ORDER = "order"
    PAYMENT = "payment"
    STAFF = "staff"


class MsgType(IntEnum):
    """What the system sends: 0 text, 1 image, 2 file, 3 link."""

    TEXT = 0
    IMAGE = 1
    FILE = 2
    LINK = 3


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FrameCustomer(BaseModel):
    """Customer identity on a message frame."""

    id: str = Field(min_length=1, max_length=128)
    name: str = Field(default="", max_length=128)


class MessageFrame(_Frame):
    """Bridge → system: a customer (or staff) message."""

    type: Literal["message"] = "message"
    msg_id: str = Field(min_length=1, max_length=200, description="bridge's id; unique, used to dedupe")
    acc_id: str = Field(default="", max_length=128, description="the shop account")
    acc_type: str = Field(default="", max_length=64, description="platform, e.g. AliWorkbench")
    customer: FrameCustomer
    kind: MessageKind
    content: Any = Field(description="text, image URL, or {order_id, amount}")
    ts: str = Field(default="", description="ISO 8601 time the customer sent it (cut to 64 characters)")

    @field_validator("content")
    @classmethod
    def _bounded(cls, content: Any) -> Any:
        # A message is stored before it is acknowledged, and refusing it would only make the bridge resend
        # it: an overlong text is kept, cut; an overlong order or payment is not a real one.
        if isinstance(content, str):
            if len(content) > MAX_TEXT_CHARS:
                return content[:MAX_TEXT_CHARS - len(TRUNCATED_MARK)] + TRUNCATED_MARK
            return content
        if len(json.dumps(content, ensure_ascii=False)) > MAX_STRUCTURED_CHARS:
            raise ValueError(f"content is over {MAX_STRUCTURED_CHARS} characters as JSON")
        return content

    @field_validator("ts")
    @classmethod
    def _short_ts(cls, ts: str) -> str:
        return ts[:64]


class AckFrame(_Frame):
    """System → bridge: the message is stored."""

    type: Literal["ack"] = "ack"
    msg_id: str


class SendFrame(_Frame):
    """System → bridge: show this to the customer."""

    type: Literal["send"] = "send"
    send_id: str = Field(description="stable across retries; the bridge shows one send_id once")
    acc_id: str = ""
    acc_type: str = ""
    customer_id: str
    msg_type: MsgType
    content: str


class SentFrame(_Frame):
    """Bridge → system: the send reached the customer."""

    type: Literal["sent"] = "sent"
    send_id: str


class SendFailedFrame(_Frame):
    """Bridge → system: the send did not reach the customer."""

    type: Literal["send_failed"] = "send_failed"
    send_id: str
    error: str = ""


InboundFrame = Annotated[MessageFrame | SentFrame | SendFailedFrame, Field(discriminator="type")]
inbound_frame = TypeAdapter(InboundFrame)
