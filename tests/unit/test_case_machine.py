"""The case machine without a server: every action in every stage, every exit, holds over holds,
continue-as-new, and the defects of the first case workflow (each named after what it broke)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from decisions.local_days import days_later, end_of_day, local_date
from engine import commands as do
from engine.actions import (
    ACTIONS,
    Approve,
    Assign,
    CaseAction,
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
from engine.state import CaseStart
from schemas.assessment import CreditRecord
from schemas.case import CaseOutcome, CaseStage, CheckpointKind
from schemas.events import LoanStatus
from tests.unit.case_driver import POLICY, Driver, Refused, borrower, loan

pytestmark = pytest.mark.unit

DAY = timedelta(days=1)


def tight_budget():
    """Affordable 700.00 a month: only a plan with concessions fits, and it needs a team lead."""
    return borrower(
        hardship_reason=None,
        temporary=False,
        expected_recovery_months=None,
        monthly_income=Decimal("8100.00"),
    )


def rich_budget():
    return borrower(
        hardship_reason=None,
        temporary=False,
        expected_recovery_months=None,
        monthly_income=Decimal("20000.00"),
        essential_expenses=Decimal("5000.00"),
        other_debt_payments=Decimal("0.00"),
    )


def status(kind: str, suffix: str = "1"):
    return LoanStatus(
        event_id=f"st-{kind}-{suffix}",
        occurred_at=loan().occurred_at,
        schema_version=1,
        loan_id=loan().loan_id,
        status=kind,
    )


# --- the stage x action matrix ---------------------------------------------------------------


def _at(stage: str) -> Driver:
    if stage == "opening":
        return Driver()
    if stage == "collect_info":
        return Driver().opened()
    if stage == "assess":
        driver = Driver().opened()
        driver.act(SubmitFinancials(profile=borrower()))
        return driver
    if stage == "propose_awaiting_approval":
        driver = Driver().opened()
        driver.act(SubmitFinancials(profile=tight_budget()))
        driver.run()
        assert driver.state.approval is not None and driver.state.offer is None
        return driver
    if stage == "propose_offer_open":
        return Driver().offered()
    if stage == "sign":
        return Driver().signing()
    if stage == "track":
        return Driver().tracking()
    if stage == "collect_info_in_crisis":
        driver = Driver().opened()
        driver.act(StartMentalHealthCrisis(staff_id="S-1"))
        return driver
    driver = Driver().opened()
    driver.send(status("cured"))
    return driver


def _action(name: str, driver: Driver) -> CaseAction:
    state = driver.state
    offered = state.proposal.offered[0].option_id if state.proposal else "term_extension_6m"
    pending = tuple(state.approval.option_ids) if state.approval else ("penalty_waiver",)
    envelope = state.signature.envelope_id if state.signature else None
    actions: dict[str, CaseAction] = {
        "submit_financials": SubmitFinancials(profile=borrower()),
        "choose_option": ChooseOption(option_id=offered),
        "counter_propose": CounterPropose(profile=borrower()),
        "decline": Decline(),
        "sign": Sign(envelope_id=envelope or "env-unknown"),
        "situation_changed": SituationChanged(profile=borrower()),
        "approve": Approve(option_ids=pending, approver_id="S-1", authority="credit_committee"),
        "reject": Reject(option_ids=pending, approver_id="S-1", authority="credit_committee"),
        "pause": Pause(staff_id="S-1"),
        "resume": Resume(staff_id="S-1"),
        "breathing_space": StartBreathingSpace(staff_id="S-1"),
        "dispute": Dispute(raised_by="S-1"),
        "resolve_dispute": ResolveDispute(staff_id="S-1", upheld=False, note="checked"),
        "note": Note(author_id="S-1", text="called"),
        "assign": Assign(staff_id="S-1", assignee="S-2"),
        "retry": Retry(staff_id="S-1"),
        "mental_health_crisis": StartMentalHealthCrisis(staff_id="S-1"),
        "treatment_ended": TreatmentEnded(staff_id="S-1", ended_on=driver.now.date()),
        "record_contact": RecordContact(staff_id="S-1", direction="inbound", conversation=True),
    }
    return actions[name]


ANYWHERE = {
    "pause",
    "breathing_space",
    "mental_health_crisis",
    "dispute",
    "note",
    "record_contact",
    "assign",
}
ALLOWED = {
    "opening": set(),
    "collect_info": {"submit_financials"} | ANYWHERE,
    "assess": {"situation_changed"} | ANYWHERE,
    "propose_awaiting_approval": {"approve", "reject", "situation_changed"} | ANYWHERE,
    "propose_offer_open": {"choose_option", "counter_propose", "decline", "situation_changed"}
    | ANYWHERE,
    "sign": {"sign", "decline", "situation_changed"} | ANYWHERE,
    "track": {"situation_changed"} | ANYWHERE,
    "collect_info_in_crisis": {"submit_financials", "treatment_ended"}
    | ANYWHERE - {"mental_health_crisis"},
    "closed": set(),
}
ACTION_NAMES = sorted(action.model_fields["action"].default for action in ACTIONS)


@pytest.mark.parametrize("stage", sorted(ALLOWED))
@pytest.mark.parametrize("name", ACTION_NAMES)
def test_every_action_in_every_stage_is_applied_or_refused_with_its_reason(stage, name):
    driver = _at(stage)
    action = _action(name, driver)
    before = driver.state.model_dump_json()
    reason = driver.refusal(action)
    if name in ALLOWED[stage]:
        assert reason is None, reason
        detail = driver.act(action)
        assert detail
        driver.run()  # whatever it started, the machine carries on without raising
    else:
        assert reason is not None and reason.startswith(f"{name}:"), reason
        assert driver.state.model_dump_json() == before, "a refusal changed the case"


def test_refusals_say_what_to_do():
    opening, closed = _at("opening"), _at("closed")
    assert "still opening" in (opening.refusal(Note(author_id="S", text="x")) or "")
    assert "the case is closed (cured on" in (closed.refusal(Note(author_id="S", text="x")) or "")
    track = _at("track")
    assert "only in stage collect_info; the case is in track" in (
        track.refusal(SubmitFinancials(profile=borrower())) or ""
    )


# --- every exit ------------------------------------------------------------------------------


def _closed(driver: Driver) -> tuple[CaseOutcome | None, list[str]]:
    assert isinstance(driver.run(), do.Finish)
    assert driver.kinds()[-1] == "closed"
    return driver.state.outcome, driver.state.outcome_reasons


def test_exit_plan_completed_is_cured():
    driver = Driver().tracking()
    agreement = driver.state.agreement
    assert agreement is not None
    driver.paid_total = agreement.schedule.total_payable
    driver.advance(45 * DAY)
    assert _closed(driver) == (CaseOutcome.CURED, ["PLAN_COMPLETED"])


@pytest.mark.parametrize(
    ("kind", "outcome", "reason"),
    [
        ("cured", CaseOutcome.CURED, "LOAN_CURED"),
        ("closed", CaseOutcome.CURED, "LOAN_CLOSED"),
        ("charged_off", CaseOutcome.WRITTEN_OFF, "LOAN_CHARGED_OFF"),
    ],
)
@pytest.mark.parametrize("stage", ["collect_info", "propose_offer_open", "sign", "track"])
def test_exit_by_core_banking_status_in_any_stage(stage, kind, outcome, reason):
    driver = _at(stage)
    driver.send(status(kind))
    assert _closed(driver) == (outcome, [reason])


def test_exit_non_responsive_is_escalated():
    driver = Driver().opened()
    driver.advance(15 * DAY)
    outcome, reasons = _closed(driver)
    assert outcome is CaseOutcome.ESCALATED_COLLECTIONS
    assert reasons[:2] == ["NO_INFO_BY_DEADLINE", "NO_ANSWERED_CONTACT"]


def test_exit_no_option_available():
    driver = Driver().opened()
    broke = borrower(monthly_income=Decimal("0.00"), temporary=False)
    driver.act(SubmitFinancials(profile=broke))
    assert _closed(driver) == (CaseOutcome.ESCALATED_COLLECTIONS, ["NO_OPTION_AVAILABLE"])


def test_exit_offer_unanswered_at_the_end_of_the_borrowers_last_day():
    driver = Driver().offered()
    last_day = local_date(driver.now, driver.time_zone) + POLICY.durations.offer_response_days * DAY
    deadline = end_of_day(last_day, driver.time_zone)
    driver.advance(deadline - driver.now - timedelta(minutes=1))
    assert driver.state.outcome is None
    driver.advance(2 * timedelta(minutes=1))
    assert _closed(driver) == (CaseOutcome.ESCALATED_COLLECTIONS, ["NO_ANSWER_TO_OFFER"])


def test_exit_declined():
    driver = Driver().offered()
    driver.act(Decline())
    assert _closed(driver) == (CaseOutcome.DECLINED, ["BORROWER_DECLINED"])


def test_exit_wilful_default_goes_to_legal():
    driver = Driver(credit=CreditRecord(broken_agreements=1)).opened()
    driver.act(SubmitFinancials(profile=rich_budget()))
    driver.run()
    assert driver.state.assessment is not None and driver.state.assessment.tier == "wilful"
    driver.act(Decline())
    outcome, reasons = _closed(driver)
    assert outcome is CaseOutcome.ESCALATED_LEGAL and reasons[0] == "WILFUL_DEFAULT"


def test_exit_plan_broken_twice():
    driver = Driver().tracking()
    # Nothing paid: two missed instalments break the plan.
    driver.until(lambda state: state.broken_plans == 1, within=100 * DAY)
    assert driver.state.stage is CaseStage.COLLECT_INFO and driver.state.broken_plans == 1
    driver.act(SubmitFinancials(profile=borrower()))
    driver.run()
    assert driver.state.proposal is not None
    driver.act(ChooseOption(option_id=driver.state.proposal.offered[0].option_id))
    driver.run()
    assert driver.state.signature is not None and driver.state.signature.envelope_id
    driver.act(Sign(envelope_id=driver.state.signature.envelope_id))
    driver.advance(100 * DAY)
    assert _closed(driver) == (CaseOutcome.ESCALATED_COLLECTIONS, ["PLAN_BROKEN_AGAIN"])


def test_exit_signature_expired_too_often():
    driver = Driver().offered()
    option = driver.state.proposal.offered[0].option_id  # type: ignore[union-attr]
    for _ in range(POLICY.durations.max_reproposal_rounds + 1):
        driver.act(ChooseOption(option_id=option))
        driver.advance(11 * DAY)
    assert _closed(driver) == (
        CaseOutcome.ESCALATED_COLLECTIONS,
        ["SIGNATURE_EXPIRED_TOO_OFTEN"],
    )


def test_exit_dispute_upheld_writes_off():
    driver = Driver().tracking()
    driver.act(Dispute(raised_by="S-1"))
    driver.act(ResolveDispute(staff_id="S-2", upheld=True, note="fraud"))
    assert _closed(driver) == (CaseOutcome.WRITTEN_OFF, ["DISPUTE_UPHELD"])


def test_exit_new_episode_supersedes_the_case():
    driver = Driver().tracking()
    later = driver.loan.model_copy(
        update={"event_id": "ovd-next", "delinquent_since": driver.loan.delinquent_since + DAY}
    )
    driver.send(later)
    assert _closed(driver) == (CaseOutcome.SUPERSEDED, ["NEW_EPISODE"])


# --- the first workflow's defects ------------------------------------------------------------


def test_decline_while_signing_closes_and_voids_the_envelope():
    driver = Driver().signing()
    envelope = driver.state.signature.envelope_id  # type: ignore[union-attr]
    driver.act(Decline())
    assert _closed(driver) == (CaseOutcome.DECLINED, ["BORROWER_DECLINED"])
    voided = [c.envelope_id for c in driver.issued if isinstance(c, do.VoidEnvelope)]
    assert voided == [envelope]
    assert [c for c in driver.issued if isinstance(c, do.CheckSignature)] == []


def test_update_accepted_just_before_continue_as_new_is_carried():
    driver = Driver().tracking()
    driver.act(SituationChanged(profile=borrower()))
    carried = CaseStart.model_validate_json(
        CaseStart(
            loan_id=driver.loan.loan_id,
            delinquent_since=driver.loan.delinquent_since,
            carried=driver.state,
        ).model_dump_json()
    )
    assert carried.carried is not None
    driver.state, driver.policy_in_memory = carried.carried, False
    assert driver.state.stage is CaseStage.ASSESS
    issued = len(driver.issued)
    driver.run()
    # The carried events go out first, then the new run loads the policy in force.
    assert [type(c) for c in driver.issued[issued : issued + 2]] == [do.Publish, do.LoadPolicy]
    assert driver.state.stage is CaseStage.PROPOSE and driver.kinds()[-3] == "reassessed"


def test_breathing_space_inside_a_dispute_ends_on_its_own():
    driver = Driver().tracking()
    driver.act(Dispute(raised_by="S-1"))
    driver.act(StartBreathingSpace(staff_id="S-1"))
    assert "use resolve_dispute" in (driver.refusal(Resume(staff_id="S-1")) or "")
    driver.act(ResolveDispute(staff_id="S-1", upheld=False, note="debt confirmed"))
    assert driver.state.holds.any(), "the breathing space still holds the case"
    assert "ends by itself" in (driver.refusal(Resume(staff_id="S-1")) or "")
    driver.advance(61 * DAY)
    assert not driver.state.holds.any()
    assert driver.kinds().count("resumed") == 1
    audit = [(r.kind, r.summary[:2]) for r in driver.state.decisions]
    assert ("breathing_space", ("S-1", "BREATHING_SPACE")) in audit  # not OPERATOR_PAUSE


def test_unconfirmed_signature_claim_keeps_the_expiry_window():
    driver = Driver().signing()
    signature = driver.state.signature
    assert signature is not None and signature.sent_at is not None
    expiry = days_later(signature.sent_at, POLICY.durations.signature_expiry_days, "Asia/Shanghai")
    driver.advance(9 * DAY)
    driver.signature_state = "sent"  # the provider has not seen a signature
    driver.act(Sign(envelope_id=signature.envelope_id or ""))
    wait = driver.run()
    assert "signature_unconfirmed" in driver.decisions()
    assert isinstance(wait, do.Wait) and wait.kind is CheckpointKind.SIGNATURE_EXPIRY
    assert wait.until == expiry


def test_offer_reminders_and_quiet_hour_deferrals_are_named_for_what_they_are():
    driver = Driver().offered()
    wait = driver.run()
    assert isinstance(wait, do.Wait) and wait.kind is CheckpointKind.OFFER_REMINDER
    driver.contact_blocked_until = driver.now + 3 * DAY + timedelta(hours=5)
    wait = driver.advance(3 * DAY + timedelta(minutes=1))
    assert isinstance(wait, do.Wait) and wait.kind is CheckpointKind.CONTACT_DEFERRED
    assert wait.until == driver.contact_blocked_until


def test_reassessment_while_signing_voids_the_envelope():
    driver = Driver().signing()
    envelope = driver.state.signature.envelope_id  # type: ignore[union-attr]
    driver.act(SituationChanged(profile=borrower()))
    driver.run()
    assert any(isinstance(c, do.VoidEnvelope) and c.envelope_id == envelope for c in driver.issued)
    assert "envelope_voided" in driver.decisions()


def test_periodic_reassessment_moves_with_holds():
    driver = Driver().tracking()
    tracking = driver.state.tracking
    assert tracking is not None
    due = tracking.next_reassessment_at
    driver.act(Pause(staff_id="S-1"))
    driver.advance(10 * DAY)
    driver.act(Resume(staff_id="S-1"))
    assert tracking.next_reassessment_at == due + 10 * DAY
    assert tracking.schedule_shift == 10 * DAY


def test_a_failing_decision_waits_for_a_human_then_retries():
    driver = Driver().opened()
    driver.fail.add(do.Assess)
    driver.act(SubmitFinancials(profile=borrower()))
    wait = driver.run()
    attention = driver.state.attention
    assert attention is not None and attention.reason == "SYSTEM_REJECTED"
    assert isinstance(wait, do.Wait) and wait.until is None
    assert driver.advance(30 * DAY) == wait.__class__(round=wait.round, until=None, kind=None)
    driver.fail.clear()
    driver.act(Retry(staff_id="S-1", note="fixed the policy"))
    driver.run()
    assert driver.state.stage is CaseStage.PROPOSE and driver.state.attention is None


def test_a_case_that_cannot_open_waits_for_a_human_instead_of_looping():
    driver = Driver()
    driver.fail.add(do.ReadLoan)
    wait = driver.run()
    assert isinstance(wait, do.Wait) and wait.until is None
    assert [type(c) for c in driver.issued] == [do.LoadPolicy, do.ReadLoan]
    assert driver.state.attention is not None and not driver.state.stages
    assert "still opening" in (driver.refusal(Note(author_id="S-1", text="x")) or "")
    driver.fail.clear()
    driver.act(Retry(staff_id="S-1", note="loan loaded in core banking"))
    driver.run()
    assert driver.state.stage is CaseStage.COLLECT_INFO and driver.state.stages


def test_staff_actions_never_wait_for_kafka():
    driver = Driver().tracking()
    driver.act(Pause(staff_id="S-1"))
    # Applied at once; the event waits in the outbox for the run loop to publish.
    assert driver.state.holds.paused
    assert [event.kind for event in driver.state.outbox] == ["paused"]


# --- holds over holds ------------------------------------------------------------------------

HOLDS = ("dispute", "pause", "breathing_space")


def _start(driver: Driver, hold: str) -> None:
    starts = {
        "dispute": Dispute(raised_by="S-1"),
        "pause": Pause(staff_id="S-1"),
        "breathing_space": StartBreathingSpace(staff_id="S-1"),
    }
    driver.act(starts[hold])


def _end(driver: Driver, hold: str) -> datetime:
    """End the hold; returns when it ended."""
    if hold == "dispute":
        driver.act(ResolveDispute(staff_id="S-1", upheld=False, note="checked"))
    elif hold == "pause":
        driver.act(Resume(staff_id="S-1"))
    else:
        until = driver.state.holds.breathing_space_until
        assert until is not None
        driver.advance(max(until - driver.now, timedelta(0)) + timedelta(minutes=1))
        return until
    return driver.now


@pytest.mark.parametrize("ends", list(itertools.permutations(HOLDS)))
@pytest.mark.parametrize("starts", list(itertools.permutations(HOLDS)))
def test_overlapping_holds_in_every_order(starts, ends):
    driver = Driver().tracking()
    tracking = driver.state.tracking
    assert tracking is not None
    first = driver.run()
    assert isinstance(first, do.Wait) and first.kind is CheckpointKind.INSTALMENT_DUE
    held_from = driver.now
    for hold in starts:
        _start(driver, hold)
        driver.advance(DAY)
    issued_before = len(driver.issued)
    released = driver.now
    for index, hold in enumerate(ends):
        released = _end(driver, hold)
        assert driver.state.holds.any() == (index < len(ends) - 1)
        if index < len(ends) - 1:
            driver.advance(DAY)
    # Nothing but publishing happened while held: no contact, no ledger read, no decision.
    assert all(isinstance(c, do.Publish) for c in driver.issued[issued_before:])
    after = driver.run()
    assert driver.kinds().count("paused") == 3 and driver.kinds().count("resumed") == 1
    assert tracking.schedule_shift == released - held_from
    assert isinstance(after, do.Wait) and after.until == first.until + (released - held_from)


# --- continue-as-new carries everything ------------------------------------------------------


def test_the_whole_state_survives_continue_as_new():
    driver = Driver().signing()
    driver.act(Dispute(raised_by="S-1"))
    driver.fail.add(do.CheckSignature)
    driver.act(Note(author_id="S-1", text="borrower called"))
    driver.act(Assign(staff_id="S-1", assignee="S-9"))
    start = CaseStart(
        loan_id=driver.loan.loan_id,
        delinquent_since=driver.loan.delinquent_since,
        carried=driver.state,
    )
    again = CaseStart.model_validate_json(start.model_dump_json())
    assert again.carried == driver.state
    assert again.carried is not None and again.carried.outbox  # unpublished events carried


def test_a_refused_action_is_not_applied():
    driver = Driver().opened()
    with pytest.raises(Refused, match="choose_option: only in stage propose"):
        driver.act(ChooseOption(option_id="term_extension_6m"))
