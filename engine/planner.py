"""What the workflow should do next, derived from the state alone: publish the outbox, void
an envelope no longer wanted, call a system or the decision core, contact the borrower, wait
until the next checkpoint, or finish."""

from __future__ import annotations

from datetime import timedelta

from decisions.local_days import local_date
from engine import commands as do
from engine.moves import Context, engagement
from engine.rules import borrower_zone
from engine.state import (
    CaseState,
    PendingContact,
)
from engine.timers import next_timer
from schemas.case import CaseStage
from schemas.contact import ContactChannel


def next_command(state: CaseState, context: Context) -> do.Command:
    """The one thing the workflow should do next."""
    if state.outbox:
        return do.Publish(round=state.round, events=tuple(state.outbox))
    if state.interactions_to_record:  # the ledger must know, held or closed
        return _record_interaction(state)
    if state.envelopes_to_void:
        return do.VoidEnvelope(round=state.round, envelope_id=state.envelopes_to_void[0])
    if state.closed:
        return do.Finish(round=state.round)
    if state.holds.any() or state.attention is not None:
        return _wait(state, context)
    if state.policy_version is None or context.policy is None:
        # Opening, or a new run after continue-as-new: the policy in force now.
        return do.LoadPolicy(round=state.round, portfolio=portfolio(state))
    if not state.stages:
        return _opening(state)
    if state.borrower_calendar and state.time_zone is None and state.loan is not None:
        # Opened before cases learned it: read it in the first run that may.
        return do.ReadTimeZone(round=state.round, borrower_id=state.loan.borrower_id)
    work = _stage_work(state, context)
    if work is not None:
        return work
    pending = state.pending_contact
    if pending is not None and pending.retry_at is None:
        return _contact(state, pending, context)
    return _wait(state, context)


def portfolio(state: CaseState) -> str | None:
    """The loan's portfolio picks the case's policy (a simulation registers its own)."""
    return state.loan.portfolio if state.loan is not None else None


def _opening(state: CaseState) -> do.Command:
    loan = state.loan
    if not state.loan_confirmed:
        return do.ReadLoan(round=state.round, reported=loan)
    assert loan is not None
    if state.borrower_calendar and state.time_zone is None:
        return do.ReadTimeZone(round=state.round, borrower_id=loan.borrower_id)
    return do.ReadCredit(round=state.round, borrower_id=loan.borrower_id)


def _record_interaction(state: CaseState) -> do.Command:
    assert state.loan is not None
    return do.RecordInteraction(
        round=state.round,
        borrower_id=state.loan.borrower_id,
        interaction=state.interactions_to_record[0],
    )


def _stage_work(state: CaseState, context: Context) -> do.Command | None:
    stage, round_ = state.stage, state.round
    if stage is CaseStage.ASSESS:
        assess = state.assess_round
        assert assess is not None
        if not assess.policy_loaded:
            return do.LoadPolicy(round=round_, portfolio=portfolio(state))
        if not assess.loan_read:
            return do.ReadLoan(round=round_, reported=state.loan)
        assert state.loan is not None and state.credit is not None
        return do.Assess(
            round=round_,
            loan=state.loan,
            profile=state.profile if state.profile_is_current else None,
            credit=state.credit,
            engagement=engagement(state),
        )
    if stage is CaseStage.PROPOSE and state.proposal is None:
        assert state.loan is not None and state.assessment is not None
        # The borrower's calendar: their "today", not the server's.
        first_due = local_date(context.now, borrower_zone(state)) + timedelta(
            days=context.rules.durations.first_instalment_days
        )
        return do.Propose(
            round=round_, loan=state.loan, assessment=state.assessment, first_due=first_due
        )
    if stage is CaseStage.SIGN:
        return _signing_work(state, context)
    if stage is CaseStage.TRACK and state.tracking is not None and state.tracking.ledger_due:
        assert state.agreement is not None
        return do.ReadLedger(round=round_, since=state.agreement.issued_at.date())
    return None


def _signing_work(state: CaseState, context: Context) -> do.Command | None:
    signature, round_ = state.signature, state.round
    assert signature is not None and state.loan is not None
    if not signature.loan_read:
        return do.ReadLoan(round=round_, reported=state.loan)
    if signature.agreement is None:
        assert state.proposal is not None
        option = next(o for o in state.proposal.offered if o.option_id == signature.option_id)
        return do.IssueAgreement(
            round=round_,
            agreement_id=f"{state.case_id}-a{state.agreements_issued + 1}",
            option=option,
            loan=state.loan,
            issued_at=context.now,
            time_zone=borrower_zone(state),
        )
    if signature.envelope_id is None:
        return do.SendForSignature(
            round=round_,
            agreement=signature.agreement.expand(),
            borrower_id=state.loan.borrower_id,
        )
    if signature.signed_at is not None:
        return do.ApplyRestructure(
            round=round_, agreement=signature.agreement.expand(), applied_at=signature.signed_at
        )
    if signature.claimed:
        return do.CheckSignature(round=round_, envelope_id=signature.envelope_id)
    return None


def _contact(state: CaseState, pending: PendingContact, context: Context) -> do.Contact:
    assert state.loan is not None
    channels = [channel.value for channel in context.rules.contact_channels]
    start = min(state.contacts_made, len(channels) - 1)
    ladder = channels[start:] + channels[:start]
    channel = next(c for c in ladder if c not in pending.tried)
    return do.Contact(
        round=state.round,
        channel=ContactChannel(channel),
        template=pending.template,
        attempt_id=f"{state.case_id}-a{state.contact_seq + 1}-{channel}",
        holds=state.holds.for_contact_rules(),
        borrower_id=state.loan.borrower_id,
        loan_id=state.loan_id,
    )


def _wait(state: CaseState, context: Context) -> do.Wait:
    timer = next_timer(state, context.policy)
    if timer is None:
        return do.Wait(round=state.round, until=None, kind=None)
    return do.Wait(round=state.round, until=timer.at, kind=timer.kind)
