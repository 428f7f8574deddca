"""Bodies of the console's operator actions (/console/api/…); who acts comes from the session, never the body."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsolePauseIn(_Body):
    """POST /console/api/conversations/{customer_id}/pause (may be empty)."""

    minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60,
                                  description="how long the AI stays silent; default TAKEOVER_MINUTES")
    reason: str = Field(default="", max_length=500, description="why, for other operators")


class StaffMessageIn(_Body):
    """POST /console/api/conversations/{customer_id}/message: text to the customer, as staff."""

    text: str = Field(min_length=1, max_length=2000, description="what the customer reads")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank")
        return value


class ReasonIn(_Body):
    """POST /console/api/jobs/{job_id}/handoff and /console/api/tasks/{task_id}/cancel (may be empty)."""

    reason: str = Field(default="", max_length=500, description="why, for the designer or the record")
