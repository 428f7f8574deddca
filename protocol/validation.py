"""Pydantic's validation errors as people read them: one "field: what is wrong" per problem."""

from __future__ import annotations

from pydantic import ValidationError


def problems(exc: ValidationError, whole: str) -> list[str]:
    """Each error as "field: message" (whole names the thing itself when the error is not about one field)."""
    return [f"{'.'.join(str(p) for p in err['loc']) or whole}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()]
