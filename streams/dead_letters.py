"""Dead-letter records: the original key and value, untouched, with why and where from in headers.

Shared by the stream processor (writes) and ``accord dlq`` (reads, re-drives). Header values are
ids, offsets and validation messages only; never the payload, which may carry financial data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import ValidationError
from pydantic_core import ErrorDetails

HEADER_PREFIX = "accord.dlq."
ERROR = HEADER_PREFIX + "error"
ERROR_KIND = HEADER_PREFIX + "error_kind"
ORIGINAL_TOPIC = HEADER_PREFIX + "topic"
ORIGINAL_PARTITION = HEADER_PREFIX + "partition"
ORIGINAL_OFFSET = HEADER_PREFIX + "offset"
EVENT_ID = HEADER_PREFIX + "event_id"
DEAD_LETTERED_AT = HEADER_PREFIX + "dead_lettered_at"

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


class ErrorKind(StrEnum):
    MALFORMED = "malformed"  # not JSON, or not an object
    SCHEMA_INVALID = "schema_invalid"  # JSON, but breaks the event contract
    KEY_MISMATCH = "key_mismatch"  # the Kafka key is not the event's loan_id
    TEMPORAL_REJECTED = "temporal_rejected"  # Temporal refused it permanently
    UNEXPECTED = "unexpected"  # a bug on our side; re-drive after the fix


@dataclass(frozen=True)
class Rejection:
    kind: ErrorKind
    reason: str
    event_id: str | None = None


def describe_validation_error(error: ValidationError) -> Rejection:
    """Field paths and messages, never the input values (they may be personal or financial)."""
    details = error.errors(include_input=False, include_url=False, include_context=False)
    malformed = any(detail["type"] in ("json_invalid", "model_type") for detail in details)
    reason = "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or '<root>'}: {_message(detail)}"
        for detail in details
    )
    return Rejection(ErrorKind.MALFORMED if malformed else ErrorKind.SCHEMA_INVALID, reason)


def _message(detail: ErrorDetails) -> str:
    # Pydantic's own messages state the constraint; a model validator's may quote the value.
    if detail["type"] in ("value_error", "assertion_error"):
        return _NUMBER.sub("<n>", detail["msg"])
    return detail["msg"]


def dead_letter_headers(
    rejection: Rejection,
    *,
    topic: str,
    partition: int,
    offset: int,
    original_headers: Iterable[tuple[str, bytes]] = (),
) -> list[tuple[str, bytes]]:
    # Earlier dead-letter headers (a re-driven message that failed again) are replaced, not stacked.
    kept = without_dead_letter_headers(original_headers)
    ours = {
        ERROR: rejection.reason,
        ERROR_KIND: rejection.kind.value,
        ORIGINAL_TOPIC: topic,
        ORIGINAL_PARTITION: str(partition),
        ORIGINAL_OFFSET: str(offset),
        DEAD_LETTERED_AT: datetime.now(UTC).isoformat(),
    }
    if rejection.event_id:
        ours[EVENT_ID] = rejection.event_id
    return kept + [(k, v.encode()) for k, v in ours.items()]


def header_map(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in headers or () if k.startswith(HEADER_PREFIX)}


def without_dead_letter_headers(
    headers: Iterable[tuple[str, bytes]] | None,
) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in headers or () if not k.startswith(HEADER_PREFIX)]


def event_id_of(raw: bytes | None) -> str | None:
    """Best-effort ``event_id`` of an invalid message, so operators can find it; ids only."""
    try:
        value = json.loads(raw or b"")
    except ValueError:
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) and len(event_id) <= 64 else None
