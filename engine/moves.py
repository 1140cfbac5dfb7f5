"""The moves every transition is made of: enter a stage, start a round, hold and release,
close, publish an event, record a decision. Shared by ``engine.machine`` (messages),
``engine.timers`` (deadlines) and ``engine.planner`` (what to do next)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from decisions.policy import Policy
from engine.rules import available_options
from engine.state import (
    AssessRound,
    CaseState,
    DecisionRecord,
    InfoRound,
    NoteRecord,
    OfferRound,
    PendingContact,
    StageChange,
)
from schemas.assessment import Engagement, FinancialProfile, Tier
from schemas.case import CaseOutcome, CaseStage
from schemas.events import LoanOverdue
from schemas.events import LoanStatusKind as Status
from schemas.outbound import (
    CaseClosed,
    CaseResumed,
    InfoReceived,
    OptionApproved,
    OptionSummary,
    PlanProposed,
    ReassessmentTrigger,
)

CONTACT_DEFERRALS = 3
"""Times a contact blocked on every channel waits for the rules to allow it again."""


@dataclass(frozen=True)
class Context:
    policy: Policy | None
    """The policy in force for this case (None only before it is first loaded)."""
    now: datetime
    """The case's clock."""
    actor: str | None = None
    """The authenticated staff member whose action is being applied, if any."""

    @property
    def rules(self) -> Policy:
        assert self.policy is not None, "the policy is loaded before any decision"
        return self.policy


def take_loan(state: CaseState, loan: LoanOverdue) -> None:
    if state.loan is None or loan.occurred_at >= state.loan.occurred_at:
        state.loan = loan


def take_profile(
    state: CaseState, profile: FinancialProfile, reason: str, context: Context
) -> None:
    """A financial situation, however it came (agent, portal, counter-proposal)."""
    state.profile = profile
    state.profile_is_current = True
    if not state.stages:
        return  # still opening: the information round will find it
    publish_info_received(state, context)
    if state.stage is CaseStage.COLLECT_INFO:
        trigger = state.info.trigger if state.info is not None else None
        start_assessment(state, trigger, "INFO_RECEIVED", context)
    else:
        start_assessment(state, ReassessmentTrigger.BORROWER_REQUEST, reason, context)


def engagement(state: CaseState) -> Engagement:
    return Engagement(
        contact_attempts=state.contacts_made,
        conversations=state.conversations,
        counter_proposals=state.counter_rounds,
        plans_broken=state.broken_plans,
        instalments_missed=state.instalments_missed,
    )


def enter(state: CaseState, stage: CaseStage, reason: str, context: Context) -> None:
    state.stage = stage
    state.round += 1
    state.stages.append(StageChange(stage=stage, at=context.now, reason=reason))
    if state.pending_contact is not None and state.pending_contact.stage is not stage:
        state.pending_contact = None


def start_info_round(
    state: CaseState, trigger: ReassessmentTrigger | None, context: Context
) -> None:
    state.profile_is_current = False
    state.info = InfoRound(requested_at=context.now, trigger=trigger)
    if state.stage is not CaseStage.COLLECT_INFO:
        enter(state, CaseStage.COLLECT_INFO, "PLAN_BROKEN", context)
    want_contact(state, "info_request")


def start_assessment(
    state: CaseState, trigger: ReassessmentTrigger | None, reason: str, context: Context
) -> None:
    void_open_envelope(state)
    state.info = None
    state.offer = None
    state.approval = None
    state.signature = None
    state.assess_round = AssessRound(trigger=trigger)
    enter(state, CaseStage.ASSESS, reason, context)


def open_offer(state: CaseState, context: Context) -> None:
    options = available_options(state)
    if not options:
        escalate_or(state, CaseOutcome.ESCALATED_COLLECTIONS, ["NO_OPTION_AVAILABLE"], context)
        return
    assert state.proposal is not None
    publish(
        state,
        context,
        PlanProposed,
        policy_version=state.proposal.policy_version,
        options=tuple(OptionSummary.of(option) for option in options),
    )
    state.offer = OfferRound(opened_at=context.now)
    want_contact(state, "offer")


def settle_approvals(state: CaseState, option_ids: tuple[str, ...], context: Context) -> None:
    approval = state.approval
    assert approval is not None
    approval.option_ids = [o for o in approval.option_ids if o not in option_ids]
    if approval.option_ids:
        return
    state.approval = None
    assert state.proposal is not None
    for option in state.proposal.offered:
        if option.option_id in state.approved:
            publish(
                state,
                context,
                OptionApproved,
                option_id=option.option_id,
                authority=option.required_authority,
                approved_by=state.approved[option.option_id],
            )
    open_offer(state, context)


def signature_expired(state: CaseState, context: Context) -> None:
    signature = state.signature
    assert signature is not None and signature.agreement is not None
    record(state, context, "signature_expired", signature.agreement.agreement_id)
    repropose(state, "SIGNATURE_EXPIRED", context, fresh_options=False)


def repropose(state: CaseState, reason: str, context: Context, *, fresh_options: bool) -> None:
    """Back to the offer: the same options again, or new ones when the loan moved."""
    state.reproposal_rounds += 1
    if state.reproposal_rounds > context.rules.durations.max_reproposal_rounds:
        escalate_or(
            state, CaseOutcome.ESCALATED_COLLECTIONS, ["SIGNATURE_EXPIRED_TOO_OFTEN"], context
        )
        return
    void_open_envelope(state)
    state.signature = None
    if fresh_options:
        state.proposal = None
        state.approval = None
        state.approved = {}
        state.withdrawn = []
    enter(state, CaseStage.PROPOSE, reason, context)
    if not fresh_options:
        open_offer(state, context)


def plan_broken(state: CaseState, context: Context) -> None:
    state.broken_plans += 1
    record(state, context, "plan_broken", f"BROKEN_{state.broken_plans}")
    if state.broken_plans > 1:
        close(state, CaseOutcome.ESCALATED_COLLECTIONS, ["PLAN_BROKEN_AGAIN"], context)
        return
    # Re-assess once, on the borrower's current circumstances: ask for them again.
    state.tracking = None
    start_info_round(state, ReassessmentTrigger.BROKEN_PLAN, context)


def want_contact(state: CaseState, template: str) -> None:
    state.pending_contact = PendingContact(template=template, stage=state.stage)


def defer_if_every_channel_tried(state: CaseState, context: Context) -> None:
    pending = state.pending_contact
    assert pending is not None
    channels = {channel.value for channel in context.rules.contact_channels}
    if not channels <= set(pending.tried):
        return
    if pending.earliest_allowed is None or pending.deferrals >= CONTACT_DEFERRALS:
        record(state, context, "contact_abandoned", pending.template)
        state.pending_contact = None
        return
    pending.retry_at = pending.earliest_allowed
    pending.earliest_allowed = None
    pending.tried = []
    pending.deferrals += 1


def hold(state: CaseState, context: Context) -> None:
    """Called before a hold is put on: the held time starts when the first hold does."""
    if not state.holds.any():
        state.holds.held_since = context.now


def release_if_free(state: CaseState, context: Context) -> None:
    holds = state.holds
    if holds.any() or holds.held_since is None:
        return
    move_deadlines(state, context.now - holds.held_since)
    holds.held_since = None
    publish(state, context, CaseResumed)


def move_deadlines(state: CaseState, by: timedelta) -> None:
    if state.info is not None:
        state.info.requested_at += by
    if state.approval is not None:
        state.approval.requested_at += by
    if state.offer is not None:
        state.offer.opened_at += by
    if state.signature is not None and state.signature.sent_at is not None:
        state.signature.sent_at += by
    if state.tracking is not None:
        state.tracking.schedule_shift += by
        state.tracking.next_reassessment_at += by
    if state.pending_contact is not None:
        state.pending_contact.retry_at = None  # the rules are asked again now


def void_open_envelope(state: CaseState) -> None:
    signature = state.signature
    if (
        signature is not None
        and signature.envelope_id is not None
        and signature.signed_at is None
        and signature.envelope_id not in state.envelopes_to_void
    ):
        state.envelopes_to_void.append(signature.envelope_id)


def forget_envelope(state: CaseState, envelope_id: str) -> None:
    state.envelopes_to_void = [e for e in state.envelopes_to_void if e != envelope_id]


def close(state: CaseState, outcome: CaseOutcome, reasons: list[str], context: Context) -> None:
    void_open_envelope(state)
    state.outcome = outcome
    state.outcome_reasons = reasons
    state.closed_at = context.now
    state.pending_contact = None
    state.attention = None
    record(state, context, "closed", outcome.value, *reasons)
    enter(state, CaseStage.CLOSED, reasons[0], context)
    publish(state, context, CaseClosed, outcome=outcome, reasons=tuple(reasons))


def close_for_status(state: CaseState, status: Status, context: Context) -> None:
    if status is Status.CHARGED_OFF:
        close(state, CaseOutcome.WRITTEN_OFF, ["LOAN_CHARGED_OFF"], context)
    elif status is Status.CLOSED:
        settled = state.agreement is not None and state.agreement.terms.is_settlement
        close(
            state, CaseOutcome.SETTLED if settled else CaseOutcome.CURED, ["LOAN_CLOSED"], context
        )
    else:
        close(state, CaseOutcome.CURED, ["LOAN_CURED"], context)


def escalate_or(
    state: CaseState, outcome: CaseOutcome, reasons: list[str], context: Context
) -> None:
    """A wilful borrower who does not take the strict plan goes to legal."""
    if state.assessment is not None and state.assessment.tier is Tier.WILFUL:
        close(state, CaseOutcome.ESCALATED_LEGAL, ["WILFUL_DEFAULT", *reasons], context)
    else:
        close(state, outcome, reasons, context)


def publish_info_received(state: CaseState, context: Context) -> None:
    profile = state.profile
    assert profile is not None
    publish(
        state,
        context,
        InfoReceived,
        hardship_reason=profile.hardship_reason,
        temporary=profile.temporary,
    )


def publish(state: CaseState, context: Context, event_type: type, **fields: Any) -> None:
    state.published_count += 1
    state.outbox.append(
        event_type(
            event_id=f"{state.case_id}-e{state.published_count:05d}",
            occurred_at=context.now,
            schema_version=1,
            case_id=state.case_id,
            loan_id=state.loan_id,
            **fields,
        )
    )


def record(state: CaseState, context: Context, kind: str, *summary: str) -> None:
    state.decisions.append(
        DecisionRecord(
            kind=kind,
            at=context.now,
            policy_version=state.policy_version or "none",
            contact_rules_version=state.contact_rules_version,
            summary=summary,
            by=context.actor,
        )
    )


def add_note(state: CaseState, author_id: str, text: str, context: Context) -> None:
    state.notes.append(NoteRecord(author_id=author_id, at=context.now, text=text))
