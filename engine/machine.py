"""The case machine: how a case moves when something happens to it.

``receive(state, message, context)`` applies one message — an inbound event, a person's action
(already checked by ``engine.rules.refusal``), the result of a command, or a ``Tick`` (time
passed, see ``engine.timers``) — and returns a short description of what it did. What the
workflow does next follows from the state alone (``engine.planner.next_command``).

Everything the case needs to continue is in the state (``engine.state``), so a continue-as-new
or a replay can never lose an accepted action. ``receive`` changes the state in place: the
workflow owns the only copy.

Deadlines are instants on the case's clock, anchored where their stage started (the
information request, the offer, the envelope, the plan's due dates). While the case is held
(dispute, operator pause, breathing space) or waits for a human, no stage deadline fires; when
the last hold lifts, every anchor moves by the time spent held.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from decisions.clock import PolicyClock
from decisions.contact_ledger import Interaction
from engine import messages as result
from engine.actions import (
    Approve,
    Assign,
    ChooseOption,
    CounterPropose,
    Decline,
    Dispute,
    Note,
    Pause,
    RecordContact,
    Reject,
    ResolveDispute,
    Resume,
    Retry,
    Sign,
    SituationChanged,
    StartBreathingSpace,
    StartMentalHealthCrisis,
    SubmitFinancials,
    TreatmentEnded,
)
from engine.moves import (
    Context,
    add_note,
    close,
    close_for_status,
    defer_if_every_channel_tried,
    enter,
    escalate_or,
    forget_envelope,
    hold,
    open_offer,
    plan_broken,
    publish,
    publish_info_received,
    record,
    release_if_free,
    repropose,
    settle_approvals,
    start_assessment,
    start_info_round,
    take_loan,
    take_profile,
    want_contact,
)
from engine.rules import breathing_space_end, mental_health_crisis_end, moratorium_first_day
from engine.state import (
    MAX_CONTACT_LOG,
    MAX_REMEMBERED_EVENT_IDS,
    MAX_REMEMBERED_PAYMENTS,
    ApprovalRound,
    CaseState,
    PaymentNote,
    SignatureRound,
    StoredAgreement,
    Tracking,
)
from engine.timers import fire_due_timers
from schemas.assessment import FinancialProfile, Tier
from schemas.case import Attention, CaseOutcome, CaseStage, InstalmentStatus
from schemas.contact import ContactOutcome
from schemas.events import (
    ContactInteraction,
    CustomerHardship,
    Event,
    LoanOverdue,
    LoanPayment,
    LoanStatus,
)
from schemas.events import LoanStatusKind as Status
from schemas.money import Money
from schemas.outbound import (
    AgreementSigned,
    CaseAssessed,
    CaseContacted,
    CaseOpened,
    CasePaused,
    CaseReassessed,
    InstalmentMissed,
    InstalmentPaid,
    PauseReason,
    ReassessmentTrigger,
)
from schemas.plan import ApprovalAuthority

TERMINAL_STATUSES = frozenset({Status.CURED, Status.CHARGED_OFF, Status.CLOSED})


def receive(state: CaseState, message: object, context: Context) -> str:
    """Apply one message to the case; returns what it did, in a few words."""
    if isinstance(message, Event):
        return _on_event(state, message, context)
    if isinstance(message, result.Tick):
        return fire_due_timers(state, context)
    if isinstance(message, result.Result):
        return _on_result(state, message, context)
    handler = _ACTION_HANDLERS.get(type(message))
    if handler is None:
        raise TypeError(f"not a case message: {type(message).__name__}")
    return handler(state, message, context)


def _on_event(state: CaseState, event: Event, context: Context) -> str:
    if event.event_id in state.applied_event_ids:
        return "duplicate event"
    state.applied_event_ids = [*state.applied_event_ids, event.event_id][-MAX_REMEMBERED_EVENT_IDS:]
    if state.closed:
        return "the case is closed"
    if isinstance(event, LoanOverdue):
        if event.delinquent_since > state.delinquent_since:
            close(state, CaseOutcome.SUPERSEDED, ["NEW_EPISODE"], context)
            return "a new delinquency episode supersedes this case"
        if event.delinquent_since == state.delinquent_since:
            take_loan(state, event)
        return "loan position noted"
    if isinstance(event, LoanStatus):
        state.loan_status = event.status
        if event.status in TERMINAL_STATUSES:
            close_for_status(state, event.status, context)
        return f"loan {event.status.value}"
    if isinstance(event, CustomerHardship):
        profile = FinancialProfile.from_hardship(event)
        if state.loan is not None and profile.currency != state.loan.currency:
            record(state, context, "hardship_refused", "CURRENCY_MISMATCH")
            return "hardship declaration in another currency than the loan: not used"
        take_profile(state, profile, "HARDSHIP_DECLARED", context)
        return "hardship declaration received"
    if isinstance(event, LoanPayment):
        return _payment(state, event)
    if isinstance(event, ContactInteraction):
        # Already in the borrower's contact ledger (the stream put it there): the case keeps
        # it for its view and its engagement figures.
        _log_interaction(state, Interaction.of_event(event), "CONTACT_CENTRE", context)
        return "contact-centre interaction noted"
    return "event ignored"


def _payment(state: CaseState, event: LoanPayment) -> str:
    """Kept as a hint for the balance and arrears now; the ledger decides at the checkpoint."""
    if state.loan is not None and event.currency != state.loan.currency:
        return "payment in another currency than the loan: not counted"
    note = PaymentNote(at=event.paid_at, amount=event.amount)
    state.payments = sorted([*state.payments, note], key=lambda p: p.at)[-MAX_REMEMBERED_PAYMENTS:]
    return "payment noted (the ledger decides at the next checkpoint)"


def _submit_financials(state: CaseState, action: SubmitFinancials, context: Context) -> str:
    take_profile(state, action.profile, "INFO_RECEIVED", context)
    return "financial situation received"


def _situation_changed(state: CaseState, action: SituationChanged, context: Context) -> str:
    take_profile(state, action.profile, "SITUATION_CHANGED", context)
    return "re-assessment started"


def _choose_option(state: CaseState, action: ChooseOption, context: Context) -> str:
    record(state, context, "option_chosen", action.option_id)
    state.offer = None
    state.signature = SignatureRound(option_id=action.option_id)
    enter(state, CaseStage.SIGN, "OPTION_CHOSEN", context)
    return f"option {action.option_id} chosen"


def _counter_propose(state: CaseState, action: CounterPropose, context: Context) -> str:
    state.counter_rounds += 1
    if action.note:
        add_note(state, "borrower", action.note, context)
    take_profile(state, action.profile, "COUNTER_PROPOSAL", context)
    return f"counter-proposal {state.counter_rounds} received"


def _decline(state: CaseState, action: Decline, context: Context) -> str:
    record(state, context, "declined", action.reason)
    escalate_or(state, CaseOutcome.DECLINED, [action.reason], context)
    return "declined"


def _sign(state: CaseState, action: Sign, context: Context) -> str:
    assert state.signature is not None
    state.signature.claimed = True
    record(state, context, "signature_claimed", action.envelope_id)
    return "signature received; confirming with the provider"


def _approve(state: CaseState, action: Approve, context: Context) -> str:
    record(state, context, "approved", action.approver_id, *action.option_ids)
    for option_id in action.option_ids:
        state.approved[option_id] = action.approver_id
    settle_approvals(state, action.option_ids, context)
    return f"approved {', '.join(action.option_ids)}"


def _reject(state: CaseState, action: Reject, context: Context) -> str:
    record(state, context, "rejected", action.approver_id, action.reason, *action.option_ids)
    state.withdrawn.extend(action.option_ids)
    settle_approvals(state, action.option_ids, context)
    return f"rejected {', '.join(action.option_ids)}"


def _pause(state: CaseState, action: Pause, context: Context) -> str:
    hold(state, context)
    state.holds.paused = True
    state.holds.paused_until = action.until
    record(state, context, "paused", action.staff_id, action.reason)
    publish(state, context, CasePaused, reason=PauseReason.OPERATOR, until=action.until)
    return f"paused until {action.until.isoformat() if action.until else 'resumed'}"


def _breathing_space(state: CaseState, action: StartBreathingSpace, context: Context) -> str:
    """Held from now; the legal calendar runs from its first day in the borrower's days."""
    first = moratorium_first_day(state, action.starts_on, context.now)
    until = breathing_space_end(state, first, context.rules, context.now)
    last = first + timedelta(days=context.rules.contact.breathing_space_days - 1)
    hold(state, context)
    state.holds.breathing_space_until = until
    state.holds.breathing_space_from = first
    record(
        state,
        context,
        "breathing_space",
        action.staff_id,
        action.reason,
        f"FIRST_DAY_{first:%Y%m%d}",
        f"LAST_DAY_{last:%Y%m%d}",
    )
    publish(state, context, CasePaused, reason=PauseReason.BREATHING_SPACE, until=until)
    return f"breathing space from {first} to {last} (until {until.isoformat()})"


def _mental_health_crisis(
    state: CaseState, action: StartMentalHealthCrisis, context: Context
) -> str:
    first = moratorium_first_day(state, action.starts_on, context.now)
    hold(state, context)
    holds = state.holds
    holds.mental_health_crisis = True
    holds.mental_health_crisis_from = first
    holds.mental_health_crisis_until = None
    holds.treatment_ended_on = None
    record(
        state,
        context,
        "mental_health_crisis",
        action.staff_id,
        action.reason,
        f"FIRST_DAY_{first:%Y%m%d}",
    )
    publish(state, context, CasePaused, reason=PauseReason.MENTAL_HEALTH_CRISIS, until=None)
    return f"mental-health crisis moratorium from {first}, until the end of treatment is recorded"


def _treatment_ended(state: CaseState, action: TreatmentEnded, context: Context) -> str:
    until = mental_health_crisis_end(state, action.ended_on, context.rules)
    last = action.ended_on + timedelta(days=context.rules.contact.mental_health_crisis_extra_days)
    holds = state.holds
    holds.treatment_ended_on = action.ended_on
    holds.mental_health_crisis_until = until
    record(
        state,
        context,
        "treatment_ended",
        action.staff_id,
        action.reason,
        f"ENDED_{action.ended_on:%Y%m%d}",
        f"LAST_DAY_{last:%Y%m%d}",
    )
    return f"treatment ended {action.ended_on}: the moratorium's last day is {last}"


def _record_contact(state: CaseState, action: RecordContact, context: Context) -> str:
    loan = state.loan
    assert loan is not None
    interaction = Interaction(
        interaction_id=f"{state.case_id}-d{len(state.decisions) + 1}",
        debt=state.loan_id,
        channel=action.channel,
        direction=action.direction,
        conversation=action.conversation,
        at=action.at or context.now,
    )
    _log_interaction(state, interaction, action.staff_id, context)
    state.interactions_to_record.append(interaction)
    if action.note:
        add_note(state, action.staff_id, action.note, context)
    return f"{action.direction.value} {action.channel.value} contact recorded"


def _log_interaction(
    state: CaseState, interaction: Interaction, recorded_by: str, context: Context
) -> None:
    entry = interaction.as_entry()
    state.contact_log = sorted([*state.contact_log, entry], key=lambda a: a.at)[-MAX_CONTACT_LOG:]
    if interaction.conversation:
        state.conversations += 1
    record(
        state,
        context,
        "contact_recorded",
        recorded_by,
        interaction.direction.value.upper(),
        interaction.channel.value.upper(),
        "CONVERSATION" if interaction.conversation else "NO_CONVERSATION",
    )


def _dispute(state: CaseState, action: Dispute, context: Context) -> str:
    hold(state, context)
    state.holds.disputed = True
    record(state, context, "disputed", action.raised_by, action.reason)
    publish(state, context, CasePaused, reason=PauseReason.DISPUTE, until=None)
    return "disputed: paused for review"


def _resume(state: CaseState, action: Resume, context: Context) -> str:
    state.holds.paused = False
    state.holds.paused_until = None
    record(state, context, "resumed", action.staff_id)
    if action.note:
        add_note(state, action.staff_id, action.note, context)
    release_if_free(state, context)
    return "resumed" if not state.holds.any() else "pause lifted; other holds remain"


def _resolve_dispute(state: CaseState, action: ResolveDispute, context: Context) -> str:
    verdict = "UPHELD" if action.upheld else "REJECTED"
    record(state, context, "dispute_resolved", action.staff_id, verdict)
    add_note(state, action.staff_id, action.note, context)
    state.holds.disputed = False
    if action.upheld:
        close(state, CaseOutcome.WRITTEN_OFF, ["DISPUTE_UPHELD"], context)
        return "dispute upheld: the case closes"
    release_if_free(state, context)
    return "dispute rejected: the case resumes"


def _note(state: CaseState, action: Note, context: Context) -> str:
    add_note(state, action.author_id, action.text, context)
    return "noted"


def _assign(state: CaseState, action: Assign, context: Context) -> str:
    state.assigned_to = action.assignee
    record(state, context, "assigned", action.staff_id, action.assignee or "UNASSIGNED")
    return f"assigned to {action.assignee or 'nobody'}"


def _retry(state: CaseState, action: Retry, context: Context) -> str:
    assert state.attention is not None
    record(state, context, "retried", action.staff_id, state.attention.reason)
    if action.note:
        add_note(state, action.staff_id, action.note, context)
    state.attention = None
    return "the step is tried again"


_ACTION_HANDLERS: dict[type, Callable[[CaseState, Any, Context], str]] = {
    SubmitFinancials: _submit_financials,
    SituationChanged: _situation_changed,
    ChooseOption: _choose_option,
    CounterPropose: _counter_propose,
    Decline: _decline,
    Sign: _sign,
    Approve: _approve,
    Reject: _reject,
    Pause: _pause,
    StartBreathingSpace: _breathing_space,
    Dispute: _dispute,
    Resume: _resume,
    ResolveDispute: _resolve_dispute,
    Note: _note,
    Assign: _assign,
    Retry: _retry,
    StartMentalHealthCrisis: _mental_health_crisis,
    TreatmentEnded: _treatment_ended,
    RecordContact: _record_contact,
}


def _on_result(state: CaseState, message: result.Result, context: Context) -> str:
    # Results that must be taken whatever happened meanwhile: what was done out there is done.
    if isinstance(message, result.Published):
        del state.outbox[: message.count]
        return "published"
    if isinstance(message, result.EnvelopeVoided):
        forget_envelope(state, message.envelope_id)
        record(state, context, "envelope_voided", message.envelope_id)
        return "envelope voided"
    if isinstance(message, result.ContactTried | result.ContactFailed):
        state.contact_seq += 1  # answered: the next attempt gets a new id
    if isinstance(message, result.ContactTried) and message.attempt is not None:
        return _contact_made(state, message, context)
    if isinstance(message, result.InteractionRecorded):
        state.interactions_to_record = [
            i for i in state.interactions_to_record if i.interaction_id != message.interaction_id
        ]
        return "contact put in the borrower's ledger"
    if isinstance(message, result.TimeZoneRead):
        state.time_zone = message.time_zone
        return f"borrower's time zone {message.time_zone}"
    if isinstance(message, result.EnvelopeSent) and not _current(state, message):
        state.envelopes_to_void.append(message.envelope_id)
        return "envelope no longer wanted: voiding it"
    if isinstance(message, result.CallFailed) and message.call == "record_interaction":
        if state.interactions_to_record:
            dropped = state.interactions_to_record.pop(0)
            record(state, context, "contact_not_recorded", dropped.interaction_id, message.reason)
        return "the ledger refused a recorded contact: noted"
    if isinstance(message, result.CallFailed) and message.call == "void_envelope":
        if state.envelopes_to_void:
            record(state, context, "void_failed", state.envelopes_to_void[0], message.reason)
            state.envelopes_to_void.pop(0)
        return "void failed: recorded"
    if not _current(state, message) or state.closed:
        return "stale result ignored"
    handler = _RESULT_HANDLERS[type(message)]
    outcome: str = handler(state, message, context)
    return outcome


def _current(state: CaseState, message: result.Result) -> bool:
    return message.round == state.round


def _policy_loaded(state: CaseState, message: result.PolicyLoaded, context: Context) -> str:
    state.policy_version = message.version
    state.contact_rules_version = message.contact_rules_version
    if not state.stages and state.clock is None and message.time_scale > 1:
        state.clock = PolicyClock(anchor=context.now, time_scale=message.time_scale)
    if state.assess_round is not None:
        state.assess_round.policy_loaded = True
    return f"policy {message.version}"


def _loan_read(state: CaseState, message: result.LoanRead, context: Context) -> str:
    take_loan(state, message.loan)
    if not state.stages:
        state.loan_confirmed = True
    elif state.stage is CaseStage.ASSESS and state.assess_round is not None:
        state.assess_round.loan_read = True
    elif state.stage is CaseStage.SIGN and state.signature is not None:
        state.signature.loan_read = True
    return "loan read"


def _credit_read(state: CaseState, message: result.CreditRead, context: Context) -> str:
    state.credit = message.credit
    loan = state.loan
    assert loan is not None
    enter(state, CaseStage.COLLECT_INFO, "CASE_OPENED", context)
    record(state, context, "opened", f"DPD_{loan.days_past_due}")
    publish(
        state,
        context,
        CaseOpened,
        delinquent_since=state.delinquent_since,
        days_past_due=loan.days_past_due,
        overdue=Money(amount=loan.overdue_amount, currency=loan.currency),
        policy_version=state.policy_version,
    )
    if state.profile_is_current:  # declared before the case opened
        publish_info_received(state, context)
        start_assessment(state, None, "INFO_RECEIVED", context)
    else:
        start_info_round(state, None, context)
    return "case opened"


def _assessed(state: CaseState, message: result.Assessed, context: Context) -> str:
    assessment = message.assessment
    previous = state.assessment.tier if state.assessment is not None else None
    trigger = state.assess_round.trigger if state.assess_round is not None else None
    state.assessment = assessment
    state.assess_round = None
    record(state, context, "assessment", assessment.tier.value, *assessment.reasons)
    if trigger is None:
        affordability = assessment.affordability
        publish(
            state,
            context,
            CaseAssessed,
            tier=assessment.tier,
            reasons=assessment.reasons,
            policy_version=assessment.policy_version,
            affordable_instalment=(
                Money(amount=affordability.affordable_instalment, currency=affordability.currency)
                if affordability is not None
                else None
            ),
        )
    else:
        publish(
            state,
            context,
            CaseReassessed,
            trigger=trigger,
            previous_tier=previous,
            tier=assessment.tier,
            reasons=assessment.reasons,
            policy_version=assessment.policy_version,
        )
    if trigger is ReassessmentTrigger.PERIODIC and state.tracking is not None:
        # The plan in force stays; the new assessment is on record for the next decision.
        enter(state, CaseStage.TRACK, "PERIODIC_REASSESSMENT_DONE", context)
        return f"re-assessed {assessment.tier.value}: the plan continues"
    if assessment.tier is Tier.NON_RESPONSIVE:
        close(state, CaseOutcome.ESCALATED_COLLECTIONS, list(assessment.reasons), context)
        return "non-responsive: escalated"
    state.proposal = None
    state.approval = None
    state.approved = {}
    state.withdrawn = []
    enter(state, CaseStage.PROPOSE, f"TIER_{assessment.tier.value.upper()}", context)
    return f"assessed {assessment.tier.value}"


def _proposed(state: CaseState, message: result.Proposed, context: Context) -> str:
    proposal = message.proposal
    state.proposal = proposal
    record(
        state,
        context,
        "proposal",
        *(f"OFFER_{option.option_id}" for option in proposal.offered),
        *(f"EXCLUDED_{o.option_id}:{'+'.join(o.reasons)}" for o in proposal.excluded),
    )
    needing = [
        option
        for option in proposal.offered
        if option.required_authority is not ApprovalAuthority.AUTOMATIC
    ]
    if not needing:
        open_offer(state, context)
        return "options proposed"
    required = max((option.required_authority for option in needing), key=lambda a: a.level)
    state.approval = ApprovalRound(
        option_ids=[option.option_id for option in needing],
        required=required,
        requested_at=context.now,
    )
    record(state, context, "approval_requested", required.value, *(o.option_id for o in needing))
    return "options proposed; some wait for approval"


def _agreement_issued(state: CaseState, message: result.AgreementIssued, context: Context) -> str:
    assert state.signature is not None
    state.agreements_issued += 1
    state.signature.agreement = StoredAgreement.of(message.agreement)
    record(state, context, "agreement", message.agreement.agreement_id, state.signature.option_id)
    return "agreement issued"


def _agreement_not_issued(
    state: CaseState, message: result.AgreementNotIssued, context: Context
) -> str:
    record(state, context, "agreement_not_issued", *message.reasons)
    repropose(state, message.reasons[0], context, fresh_options=True)
    return "the loan moved since the offer: new options"


def _envelope_sent(state: CaseState, message: result.EnvelopeSent, context: Context) -> str:
    assert state.signature is not None
    state.signature.envelope_id = message.envelope_id
    state.signature.sent_at = context.now
    record(state, context, "sent_for_signature", message.envelope_id)
    want_contact(state, "signature_request")
    return "sent for signature"


def _signature_checked(state: CaseState, message: result.SignatureChecked, context: Context) -> str:
    signature = state.signature
    assert signature is not None
    signature.claimed = False
    if message.state == "signed":
        # A compressed case signs on its own clock, not the vendor's.
        vendor_time = message.signed_at if state.clock is None else None
        signature.signed_at = vendor_time or context.now
        return "signature confirmed"
    if message.state == "declined":
        record(state, context, "signature_declined", signature.envelope_id or "")
        signature.envelope_id = None  # declined at the provider: nothing to void
        escalate_or(state, CaseOutcome.DECLINED, ["SIGNATURE_DECLINED"], context)
        return "declined at the provider"
    record(state, context, "signature_unconfirmed", message.state.upper())
    return "the provider does not confirm the signature"


def _restructure_applied(
    state: CaseState, message: result.RestructureApplied, context: Context
) -> str:
    signature = state.signature
    assert signature is not None and signature.agreement is not None
    assert signature.signed_at is not None
    agreement = signature.agreement
    state.agreement = agreement
    state.proposal = None  # history now (kept in the case's events): the agreement is what counts
    state.approved, state.withdrawn = {}, []
    state.tracking = Tracking(
        statuses=[InstalmentStatus.SCHEDULED] * len(agreement.schedule),
        next_reassessment_at=context.now + context.rules.durations.reassessment_interval,
        restructure_ref=message.restructure_ref,
    )
    state.signature = None
    record(state, context, "signed", agreement.agreement_id, message.restructure_ref)
    publish(
        state,
        context,
        AgreementSigned,
        agreement_id=agreement.agreement_id,
        option_id=agreement.option_id,
        terms=agreement.terms,
        schedule=agreement.schedule.expand(),
        signed_at=signature.signed_at,
    )
    enter(state, CaseStage.TRACK, "AGREEMENT_SIGNED", context)
    return "signed and applied"


def _ledger_read(state: CaseState, message: result.LedgerRead, context: Context) -> str:
    """The ledger is the truth: an instalment is paid once cumulative payments cover it, missed
    once its checkpoint passed uncovered."""
    tracking, agreement = state.tracking, state.agreement
    assert tracking is not None and agreement is not None
    tracking.ledger_due = False
    tracking.paid_total = message.paid_total
    tracking.ledger_read_at = context.now
    schedule = agreement.schedule
    currency = schedule.currency
    upto = min(tracking.next_index, len(schedule)) - 1
    covered = Decimal(0)
    newly_paid: list[int] = []
    newly_missed: list[int] = []
    for index in range(len(schedule)):
        covered += schedule.amount(index)
        status = tracking.statuses[index]
        if message.paid_total >= covered:
            if status is not InstalmentStatus.PAID:
                tracking.statuses[index] = InstalmentStatus.PAID
                tracking.paid_at[index + 1] = message.last_paid_at or context.now
                newly_paid.append(index)
        elif index <= upto and status is InstalmentStatus.SCHEDULED:
            tracking.statuses[index] = InstalmentStatus.MISSED
            newly_missed.append(index)
    missed = tracking.statuses.count(InstalmentStatus.MISSED)
    tracking.consecutive_missed = missed + (tracking.overrun_checkpoints if missed else 0)
    state.instalments_missed += len(newly_missed)
    for index in newly_paid:
        publish(
            state,
            context,
            InstalmentPaid,
            number=index + 1,
            due_date=schedule.due_date(index),
            amount=Money(amount=schedule.amount(index), currency=currency),
            paid_at=tracking.paid_at[index + 1],
        )
    for index in newly_missed:
        publish(
            state,
            context,
            InstalmentMissed,
            number=index + 1,
            due_date=schedule.due_date(index),
            amount_due=Money(amount=schedule.amount(index), currency=currency),
            consecutive_missed=max(tracking.consecutive_missed, 1),
        )
    if all(status is InstalmentStatus.PAID for status in tracking.statuses):
        settled = agreement.terms.is_settlement
        close(
            state,
            CaseOutcome.SETTLED if settled else CaseOutcome.CURED,
            ["SETTLEMENT_PAID" if settled else "PLAN_COMPLETED"],
            context,
        )
        return "plan completed"
    if tracking.consecutive_missed >= agreement.default_after_missed_instalments:
        plan_broken(state, context)
        return "plan broken"
    if newly_missed:
        want_contact(state, "missed_instalment")
    return f"{len(newly_paid)} paid, {len(newly_missed)} missed"


def _contact_made(state: CaseState, message: result.ContactTried, context: Context) -> str:
    """A contact that happened is on record whatever the case did meanwhile."""
    attempt = message.attempt
    assert attempt is not None
    state.contact_log = [*state.contact_log, attempt][-MAX_CONTACT_LOG:]
    state.contacts_made += 1
    if attempt.outcome is ContactOutcome.ANSWERED:
        state.conversations += 1
    pending = state.pending_contact
    if pending is not None and _current(state, message):
        state.pending_contact = None
    publish(state, context, CaseContacted, channel=attempt.channel, outcome=attempt.outcome)
    return f"contacted by {attempt.channel.value}"


def _contact_blocked(state: CaseState, message: result.ContactTried, context: Context) -> str:
    pending = state.pending_contact
    if pending is None:
        return "no contact wanted any more"
    decision = message.decision
    record(state, context, "contact_blocked", message.channel, decision.reason or "BLOCKED")
    pending.tried.append(message.channel)
    allowed_at = decision.next_allowed_at
    if allowed_at is not None and (
        pending.earliest_allowed is None or allowed_at < pending.earliest_allowed
    ):
        pending.earliest_allowed = allowed_at
    defer_if_every_channel_tried(state, context)
    return f"{message.channel} blocked: {decision.reason}"


def _contact_failed(state: CaseState, message: result.ContactFailed, context: Context) -> str:
    pending = state.pending_contact
    record(state, context, "contact_failed", message.channel, pending.template if pending else "")
    if pending is not None:
        pending.tried.append(message.channel)
        defer_if_every_channel_tried(state, context)
    return f"{message.channel} failed"


def _contact_tried(state: CaseState, message: result.ContactTried, context: Context) -> str:
    return _contact_blocked(state, message, context)


def _call_failed(state: CaseState, message: result.CallFailed, context: Context) -> str:
    state.attention = Attention(reason=message.reason, detail=message.detail, since=context.now)
    record(state, context, "attention", message.reason, message.call)
    return f"{message.call} failed: waiting for a human"


_RESULT_HANDLERS: dict[type, Callable[[CaseState, Any, Context], str]] = {
    result.PolicyLoaded: _policy_loaded,
    result.LoanRead: _loan_read,
    result.CreditRead: _credit_read,
    result.Assessed: _assessed,
    result.Proposed: _proposed,
    result.AgreementIssued: _agreement_issued,
    result.AgreementNotIssued: _agreement_not_issued,
    result.EnvelopeSent: _envelope_sent,
    result.SignatureChecked: _signature_checked,
    result.RestructureApplied: _restructure_applied,
    result.LedgerRead: _ledger_read,
    result.ContactTried: _contact_tried,
    result.ContactFailed: _contact_failed,
    result.CallFailed: _call_failed,
}
