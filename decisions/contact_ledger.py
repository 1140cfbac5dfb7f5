"""The contact ledger of one borrower: every contact with them, either way, across all of their
loans and delinquency episodes, and the one place an outbound attempt is granted.

Pure: ``workflows/contact_ledger.py`` keeps one ledger per borrower in a long-lived workflow and
calls these functions from its handlers, one at a time, so granting an attempt and recording it
is a single step no other case can come between. Two cases of one borrower therefore never
exceed a cap together, and a new case (another loan, a new episode) starts from the same log.

* ``request_attempt`` judges an attempt by the asking case's contact rules against the whole log
  and, when it is allowed, records it at once with its outcome ``UNKNOWN``: an attempt counts
  from the moment it is made, whatever becomes of it. The same attempt id asked again (a retried
  activity) is granted again without a second record; the gateway's idempotency key is the same
  id, so the retry places no second call.
* ``record_outcome`` fills in what the gateway reported; a timed-out attempt stays ``UNKNOWN``.
* ``record_interaction`` adds what happened outside Accord: an inbound call, a conversation an
  agent held, a message the borrower sent, a call placed by hand.

The log keeps only what a rule can still look at (``RETENTION``); no personal data (contact
details are looked up at the moment of contact and never stored here).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from decisions.contact_rules import may_contact
from decisions.policy import ContactRules
from schemas.assessment import Contract
from schemas.contact import (
    ContactAttempt,
    ContactChannel,
    ContactDecision,
    ContactHolds,
    ContactOutcome,
    Direction,
)
from schemas.events import ContactInteraction, OpaqueId

RETENTION = timedelta(days=33)
"""The longest look-back a pack can ask for (a cooldown of up to 30 calendar days, 7-day
windows) plus a day either side for any time zone: older contacts can no longer block."""
MAX_ENTRIES = 5_000
"""A safety bound on one borrower's log within ``RETENTION`` (the caps keep it far below)."""

EntryId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,159}$")]


class AttemptRequest(Contract):
    """A case asks to make one contact attempt now."""

    attempt_id: EntryId
    """Unique per attempt; also the gateway's idempotency key."""
    case_id: str
    debt: OpaqueId
    """The loan the contact is about."""
    channel: ContactChannel
    at: AwareDatetime
    """The case's clock (a simulation's compressed clock is ahead of the server's)."""
    time_zone: str
    holds: ContactHolds
    rules: ContactRules


class OutcomeReport(Contract):
    attempt_id: EntryId
    outcome: ContactOutcome


class Interaction(Contract):
    """A contact that happened without the ledger granting it."""

    interaction_id: EntryId
    """Its source's id (an event id, a staff action's id): recorded once."""
    debt: OpaqueId | None = None
    """The loan it was about (None: none in particular)."""
    channel: ContactChannel
    direction: Direction
    conversation: bool
    """A conversation with the borrower about their debt took place."""
    at: AwareDatetime

    @classmethod
    def of_event(cls, event: ContactInteraction) -> Interaction:
        return cls(
            interaction_id=event.event_id,
            debt=event.loan_id,
            channel=event.channel,
            direction=event.direction,
            conversation=event.conversation,
            at=event.occurred_at,
        )

    def as_entry(self) -> ContactAttempt:
        return ContactAttempt(
            channel=self.channel,
            at=self.at,
            outcome=ContactOutcome.ANSWERED if self.conversation else ContactOutcome.UNANSWERED,
            direction=self.direction,
            debt=self.debt,
            attempt_id=self.interaction_id,
        )


class LedgerState(BaseModel):
    """The ledger workflow owns the only copy; carried whole across continue-as-new."""

    model_config = ConfigDict(extra="ignore")

    borrower_id: OpaqueId
    entries: list[ContactAttempt] = Field(default_factory=list)
    granted: int = 0
    refused: int = 0
    run_count: int = 1


class LedgerView(Contract):
    borrower_id: str
    entries: tuple[ContactAttempt, ...]
    granted: int
    refused: int
    run_count: int


def request_attempt(state: LedgerState, request: AttemptRequest) -> ContactDecision:
    """Grant and record the attempt, or refuse it with the reason and when it may be asked
    again. Never raises for a valid request."""
    if _find(state, request.attempt_id) is not None:
        return ContactDecision(allowed=True)
    forget_old(state, request.at)
    decision = may_contact(
        channel=request.channel,
        now=request.at,
        time_zone=request.time_zone,
        contact_log=state.entries,
        holds=request.holds,
        rules=request.rules,
        debt=request.debt,
    )
    if not decision.allowed:
        state.refused += 1
        return decision
    state.granted += 1
    _append(
        state,
        ContactAttempt(
            channel=request.channel,
            at=request.at,
            outcome=ContactOutcome.UNKNOWN,
            debt=request.debt,
            attempt_id=request.attempt_id,
        ),
    )
    return decision


def record_outcome(state: LedgerState, report: OutcomeReport) -> bool:
    """The gateway's final word on a granted attempt; the first one stands. False when there is
    nothing to change (unknown attempt, outcome already known, or still unknown)."""
    index = _find(state, report.attempt_id)
    if index is None or report.outcome is ContactOutcome.UNKNOWN:
        return False
    entry = state.entries[index]
    if entry.outcome is not ContactOutcome.UNKNOWN:
        return False
    state.entries[index] = entry.model_copy(update={"outcome": report.outcome})
    return True


def record_interaction(state: LedgerState, interaction: Interaction) -> bool:
    """False when this interaction is already recorded."""
    if _find(state, interaction.interaction_id) is not None:
        return False
    _append(state, interaction.as_entry())
    forget_old(state, interaction.at)
    return True


def forget_old(state: LedgerState, now: datetime) -> None:
    """Drop what no rule can look at any more (older than ``RETENTION`` before ``now``)."""
    horizon = now - RETENTION
    if state.entries and min(entry.at for entry in state.entries) < horizon:
        state.entries = [entry for entry in state.entries if entry.at >= horizon]


def view(state: LedgerState) -> LedgerView:
    return LedgerView(
        borrower_id=state.borrower_id,
        entries=tuple(sorted(state.entries, key=lambda entry: entry.at)),
        granted=state.granted,
        refused=state.refused,
        run_count=state.run_count,
    )


def _find(state: LedgerState, entry_id: str) -> int | None:
    for index in range(len(state.entries) - 1, -1, -1):
        if state.entries[index].attempt_id == entry_id:
            return index
    return None


def _append(state: LedgerState, entry: ContactAttempt) -> None:
    state.entries.append(entry)
    if len(state.entries) > MAX_ENTRIES:
        del state.entries[: len(state.entries) - MAX_ENTRIES]
