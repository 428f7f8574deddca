"""Bodies of the operator's endpoints (SPEC §8) beside the Tianwang API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PauseIn(BaseModel):
    """Body of POST /api/conversation/{customer_id}/pause (may be empty)."""

    model_config = ConfigDict(extra="forbid")

    minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60,
                                  description="how long the AI stays silent; default TAKEOVER_MINUTES")
    reason: str = Field(default="", max_length=500, description="why, for other operators")
    by: str = Field(default="operator", min_length=1, max_length=64, description="who paused it")
