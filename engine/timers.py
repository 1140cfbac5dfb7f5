"""Deadlines: every checkpoint a case waits for, on its own clock, and what happens when one
passes. Anchored where their stage started; frozen while the case is held or waits for a human
(``engine.moves.release_if_free`` moves every anchor by the time held)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from decisions.local_days import days_later, start_of_day
from decisions.policy import Policy
from engine.moves import (
    Context,
    escalate_or,
    record,
    release_if_free,
    settle_approvals,
    signature_expired,
    start_assessment,
    want_contact,
)
from engine.rules import borrower_zone
from engine.state import CaseState
from schemas.case import CaseOutcome, CaseStage, CheckpointKind
from schemas.outbound import (
    ReassessmentTrigger,
)

OVERRUN_CHECKPOINT = timedelta(days=30)
"""After the last due date, arrears are checked again this often until paid or broken."""


@dataclass(frozen=True)
class Timer:
    at: datetime
    kind: CheckpointKind


def timers(state: CaseState, policy: Policy | None) -> list[Timer]:
    """Every deadline the case is waiting for now, on its own clock."""
    if state.closed or not state.stages or policy is None:
        return []
    holds = state.holds
    if holds.any():
        end = holds.next_timed_end()
        return [Timer(end, CheckpointKind.HOLD_ENDS)] if end is not None else []
    if state.attention is not None:
        return []
    durations = policy.durations
    zone = borrower_zone(state)
    found: list[Timer] = []
    stage = state.stage
    if stage is CaseStage.COLLECT_INFO and state.info is not None:
        found += _reminders_and_deadline(
            state.info.requested_at,
            state.info.reminders_sent,
            durations.info_reminder_days,
            durations.info_deadline_days,
            CheckpointKind.INFO_REMINDER,
            CheckpointKind.INFO_DEADLINE,
            zone,
            state.borrower_calendar,
        )
    elif stage is CaseStage.PROPOSE:
        if state.approval is not None:
            lapse = durations.approval_sla * (state.approval.escalations + 1)
            found.append(Timer(state.approval.requested_at + lapse, CheckpointKind.APPROVAL_SLA))
        if state.offer is not None:
            found += _reminders_and_deadline(
                state.offer.opened_at,
                state.offer.reminders_sent,
                durations.offer_reminder_days,
                durations.offer_response_days,
                CheckpointKind.OFFER_REMINDER,
                CheckpointKind.OFFER_DEADLINE,
                zone,
                state.borrower_calendar,
            )
    elif stage is CaseStage.SIGN and state.signature is not None:
        signature = state.signature
        if signature.sent_at is not None and signature.signed_at is None:
            found += _reminders_and_deadline(
                signature.sent_at,
                signature.reminders_sent,
                durations.signature_reminder_days,
                durations.signature_expiry_days,
                CheckpointKind.SIGNATURE_REMINDER,
                CheckpointKind.SIGNATURE_EXPIRY,
                zone,
                state.borrower_calendar,
            )
    elif stage is CaseStage.TRACK and state.tracking is not None:
        if not state.tracking.ledger_due:
            found.append(Timer(_checkpoint_at(state, policy), CheckpointKind.INSTALMENT_DUE))
        found.append(Timer(state.tracking.next_reassessment_at, CheckpointKind.REASSESSMENT))
    pending = state.pending_contact
    if pending is not None and pending.retry_at is not None:
        found.append(Timer(pending.retry_at, CheckpointKind.CONTACT_DEFERRED))
    return found


def next_timer(state: CaseState, policy: Policy | None) -> Timer | None:
    found = timers(state, policy)
    return min(found, key=lambda timer: timer.at) if found else None


def _reminders_and_deadline(
    anchor: datetime,
    reminders_sent: int,
    reminder_days: tuple[int, ...],
    deadline_days: int,
    reminder_kind: CheckpointKind,
    deadline_kind: CheckpointKind,
    time_zone: str,
    borrower_calendar: bool,
) -> list[Timer]:
    """Reminders ``N`` days after the anchor; the deadline at the end of the borrower's
    calendar day ``deadline_days`` after it (what they were told is a date, not an instant).
    A run recorded before cases kept the borrower's calendar: ``deadline_days`` x 24 h."""
    deadline = (
        days_later(anchor, deadline_days, time_zone)
        if borrower_calendar
        else anchor + timedelta(days=deadline_days)
    )
    found = [Timer(deadline, deadline_kind)]
    days = sorted(reminder_days)
    if reminders_sent < len(days):
        found.append(Timer(anchor + timedelta(days=days[reminders_sent]), reminder_kind))
    return found


def _checkpoint_at(state: CaseState, policy: Policy) -> datetime:
    """The start of the day after due date + grace in the borrower's calendar (a payment on the
    last day counts), moved by the time the plan spent on hold."""
    tracking, agreement = state.tracking, state.agreement
    assert tracking is not None and agreement is not None
    schedule = agreement.schedule
    if tracking.next_index < len(schedule):
        due = schedule.due_date(tracking.next_index)
    else:
        last = schedule.due_date(len(schedule) - 1)
        due = last + OVERRUN_CHECKPOINT * (tracking.overrun_checkpoints + 1)
    day_after = due + policy.durations.grace + timedelta(days=1)
    return start_of_day(day_after, borrower_zone(state)) + tracking.schedule_shift


def fire_due_timers(state: CaseState, context: Context) -> str:
    fired = []
    for _ in range(50):  # each firing moves its deadline on or ends the stage
        due = [timer for timer in timers(state, context.policy) if timer.at <= context.now]
        if not due:
            break
        timer = min(due, key=lambda t: t.at)
        _fire(state, timer.kind, context)
        fired.append(timer.kind.value)
    return f"fired {', '.join(fired)}" if fired else "nothing due"


def _fire(state: CaseState, kind: CheckpointKind, context: Context) -> None:
    durations = context.rules.durations
    if kind is CheckpointKind.HOLD_ENDS:
        holds = state.holds
        if holds.breathing_space_until is not None and holds.breathing_space_until <= context.now:
            holds.breathing_space_until = holds.breathing_space_from = None
            record(state, context, "breathing_space_ended", "HOLD_ENDED")
        if holds.paused and holds.paused_until is not None and holds.paused_until <= context.now:
            holds.paused, holds.paused_until = False, None
            record(state, context, "pause_ended", "HOLD_ENDED")
        crisis_ends = holds.mental_health_crisis_until
        if holds.mental_health_crisis and crisis_ends is not None and crisis_ends <= context.now:
            holds.mental_health_crisis, holds.mental_health_crisis_until = False, None
            holds.mental_health_crisis_from = holds.treatment_ended_on = None
            record(state, context, "mental_health_crisis_ended", "HOLD_ENDED")
        release_if_free(state, context)
    elif kind is CheckpointKind.INFO_REMINDER:
        assert state.info is not None
        state.info.reminders_sent += 1
        want_contact(state, "info_reminder")
    elif kind is CheckpointKind.INFO_DEADLINE:
        trigger = state.info.trigger if state.info is not None else None
        start_assessment(state, trigger, "INFO_DEADLINE_PASSED", context)
    elif kind is CheckpointKind.APPROVAL_SLA:
        approval = state.approval
        assert approval is not None
        if approval.escalations >= 1:
            state.withdrawn.extend(approval.option_ids)
            record(state, context, "approval_lapsed", "APPROVAL_SLA_LAPSED", *approval.option_ids)
            settle_approvals(state, tuple(approval.option_ids), context)
        else:
            approval.escalations += 1
            record(
                state, context, "approval_escalated", "APPROVAL_SLA_LAPSED", approval.required.value
            )
    elif kind is CheckpointKind.OFFER_REMINDER:
        assert state.offer is not None
        state.offer.reminders_sent += 1
        want_contact(state, "offer_reminder")
    elif kind is CheckpointKind.OFFER_DEADLINE:
        escalate_or(state, CaseOutcome.ESCALATED_COLLECTIONS, ["NO_ANSWER_TO_OFFER"], context)
    elif kind is CheckpointKind.SIGNATURE_REMINDER:
        assert state.signature is not None
        state.signature.reminders_sent += 1
        want_contact(state, "signature_reminder")
    elif kind is CheckpointKind.SIGNATURE_EXPIRY:
        signature_expired(state, context)
    elif kind is CheckpointKind.INSTALMENT_DUE:
        tracking = state.tracking
        assert tracking is not None and state.agreement is not None
        if tracking.next_index >= len(state.agreement.schedule):
            tracking.overrun_checkpoints += 1
        tracking.next_index = min(tracking.next_index + 1, len(state.agreement.schedule))
        tracking.ledger_due = True
    elif kind is CheckpointKind.REASSESSMENT:
        assert state.tracking is not None
        state.tracking.next_reassessment_at = context.now + durations.reassessment_interval
        start_assessment(state, ReassessmentTrigger.PERIODIC, "PERIODIC_REASSESSMENT", context)
    elif kind is CheckpointKind.CONTACT_DEFERRED:
        assert state.pending_contact is not None
        state.pending_contact.retry_at = None
