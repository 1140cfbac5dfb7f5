"""The one error body every service answers with, and which statuses a client may retry."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Worth trying again later: the system was busy, down or timed out. Any other 4xx means the
request itself was refused, and repeating it cannot help."""


class ErrorDetail(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    code: str
    """Machine-readable, e.g. ``unknown_loan``, ``idempotency_conflict``, ``not_synchronised``."""
    message: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    error: ErrorDetail


def is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500
