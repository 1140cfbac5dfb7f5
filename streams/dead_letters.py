"""Dead-letter records: the original key and value, with why and where from in headers.

A value too large for the producer's request size (a message can fit the broker's limit and not
the producer's) is cut to fit, and says so: ``truncated_from`` carries the original size and the
reason says it was cut; the whole original is still at its topic, partition and offset.

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

from aiokafka.record.default_records import DefaultRecordBatchBuilder
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
TRUNCATED_FROM = HEADER_PREFIX + "truncated_from"  # the original value's size in bytes
VALUE_DROPPED = HEADER_PREFIX + "value_dropped"  # the broker refused even the cut value
# Room kept below the producer's limit for what aiokafka's estimate leaves out (batch framing).
SIZE_MARGIN = 512

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


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    truncated: bool = False


def dead_letter(
    rejection: Rejection,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    original_headers: Iterable[tuple[str, bytes]] = (),
    max_bytes: int,
) -> DeadLetter:
    """The dead-letter record of a message, within ``max_bytes`` (the producer's request size):
    whole if it fits; else the value cut to fit, and if even the original headers do not fit,
    only ours."""
    where = {"topic": topic, "partition": partition, "offset": offset}
    kept = without_dead_letter_headers(original_headers)
    headers = kept + dead_letter_headers(rejection, **where)
    if record_size(key, value, headers) <= max_bytes:
        return DeadLetter(key, value, headers)
    size = len(value or b"")
    reason = f"{rejection.reason} (value truncated from {size} bytes)"
    cut = Rejection(rejection.kind, reason, rejection.event_id)
    ours = dead_letter_headers(cut, **where, truncated_from=size)
    headers = kept + ours if record_size(key, b"", kept + ours) <= max_bytes else ours
    room = max(0, max_bytes - record_size(key, b"", headers) - SIZE_MARGIN)
    return DeadLetter(key, (value or b"")[:room], headers, truncated=True)


def without_value(letter: DeadLetter) -> DeadLetter:
    """The last resort when the broker refuses the record: the reason and where the original
    is, no value."""
    return DeadLetter(letter.key, None, [*letter.headers, (VALUE_DROPPED, b"1")], truncated=True)


def is_partial(headers: Iterable[tuple[str, bytes]] | None) -> bool:
    """A dead letter whose value was cut or dropped: re-drive the original from its topic."""
    names = {name for name, _ in headers or ()}
    return TRUNCATED_FROM in names or VALUE_DROPPED in names


def record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """What aiokafka's producer compares with its ``max_request_size``."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)  # type: ignore[arg-type]


def dead_letter_headers(
    rejection: Rejection,
    *,
    topic: str,
    partition: int,
    offset: int,
    truncated_from: int | None = None,
) -> list[tuple[str, bytes]]:
    """Ours only. Earlier dead-letter headers (a re-driven message that failed again) are
    replaced, not stacked."""
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
    if truncated_from is not None:
        ours[TRUNCATED_FROM] = str(truncated_from)
    return [(k, v.encode()) for k, v in ours.items()]


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
