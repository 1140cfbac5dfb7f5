"""What the stream knows per loan, kept in two faust tables (changelog-backed, keyed by loan id):

* ``open_cases`` — the loan's open case: written ``opening`` by the processor when it starts the
  case, ``open`` on the case's own ``opened`` event on ``case.events.v1``, removed on its
  ``closed`` event (or when Temporal says the case is gone). Payment, status and hardship
  events read it instead of asking Temporal; a loan without an entry costs no call.
* ``held_hardship`` — the latest hardship declaration of a loan that had no open case, until
  the case opens or ``durations.hardship_hold_days`` of the policy pass.

``LoanBook`` is a typed view over the two mappings (plain dicts in unit tests). Case ids of one
loan sort by episode (``case-<loan>-<YYYYMMDD>``), so "newer" is a string comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from aiokafka.partitioner import murmur2
from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.events import CustomerHardship

OPEN_CASES_TABLE = "open_cases"
HELD_HARDSHIP_TABLE = "held_hardship"

Table = MutableMapping[bytes, Any]  # a faust Table with raw keys and JSON values, or a dict


class CaseState(StrEnum):
    OPENING = "opening"  # started by this stream; its ``opened`` event not seen yet
    OPEN = "open"  # its ``opened`` event seen


class OpenCase(BaseModel):
    model_config = ConfigDict(frozen=True)

    case_id: str
    state: CaseState


class HeldHardship(BaseModel):
    model_config = ConfigDict(frozen=True)

    event: CustomerHardship
    expires_at: AwareDatetime


def loan_key(loan_id: str) -> bytes:
    """The Kafka key of every loan-keyed topic, and so of both tables."""
    return loan_id.encode()


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the Kafka clients' default partitioner (Java's and aiokafka's) gives
    ``key``: how the inbound topics, ``case.events.v1`` and the tables' changelogs agree."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class LoanBook:
    def __init__(self, open_cases: Table, held_hardship: Table) -> None:
        self._open = open_cases
        self._held = held_hardship

    # --- open cases

    def has_case(self, loan_id: str) -> bool:
        """The fast question most events ask (no parsing)."""
        return loan_key(loan_id) in self._open

    def open_case(self, loan_id: str) -> OpenCase | None:
        raw = self._open.get(loan_key(loan_id))
        return OpenCase.model_validate(raw) if raw is not None else None

    def case_starting(self, loan_id: str, case_id: str) -> None:
        """This stream started (or signalled) ``case_id``: known from now on, unless a newer
        case is; an ``open`` entry for the same case stays ``open``."""
        self._record(loan_id, case_id, CaseState.OPENING, replace_same=False)

    def case_opened(self, loan_id: str, case_id: str) -> None:
        self._record(loan_id, case_id, CaseState.OPEN, replace_same=True)

    def case_closed(self, loan_id: str, case_id: str) -> bool:
        """Forget the loan's case if it is ``case_id`` (a late event of an older case is not)."""
        current = self.open_case(loan_id)
        if current is None or current.case_id != case_id:
            return False
        del self._open[loan_key(loan_id)]
        return True

    def open_case_count(self) -> int:
        return len(self._open)

    def _record(self, loan_id: str, case_id: str, state: CaseState, *, replace_same: bool) -> None:
        current = self.open_case(loan_id)
        if current is not None and (
            current.case_id > case_id or (current.case_id == case_id and not replace_same)
        ):
            return
        if current == OpenCase(case_id=case_id, state=state):
            return  # unchanged: no changelog write
        self._open[loan_key(loan_id)] = OpenCase(case_id=case_id, state=state).model_dump(
            mode="json"
        )

    # --- hardship declarations waiting for their case

    def hold(self, event: CustomerHardship, expires_at: datetime) -> bool:
        """Keep the declaration for the loan's next case; True if it replaced an older one
        (the latest declaration is the borrower's current situation)."""
        key = loan_key(event.loan_id)
        replaced = key in self._held
        self._held[key] = HeldHardship(event=event, expires_at=expires_at).model_dump(mode="json")
        return replaced

    def held_for(self, loan_id: str, now: datetime) -> tuple[CustomerHardship | None, bool]:
        """The loan's held declaration; ``(None, True)`` if there is one but it has expired."""
        key = loan_key(loan_id)
        raw = self._held.get(key)
        if raw is None:
            return None, False
        held = HeldHardship.model_validate(raw)
        if held.expires_at <= now:
            return None, True
        return held.event, False

    def release_held(self, loan_id: str) -> None:
        """Forget the loan's held declaration (applied, or expired)."""
        self._held.pop(loan_key(loan_id), None)

    def expired_held(self, now: datetime, owned: Callable[[bytes], bool]) -> Iterator[bytes]:
        """Keys of held declarations past their expiry, among the keys this process owns."""
        for key, raw in list(self._held.items()):
            if owned(key) and HeldHardship.model_validate(raw).expires_at <= now:
                yield key

    def drop_held(self, key: bytes) -> None:
        self._held.pop(key, None)

    def held_count(self) -> int:
        return len(self._held)
