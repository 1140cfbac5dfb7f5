"""The case workflow: one per loan per delinquency episode (DESIGN §3).

collect_info → assess → propose → sign → track, with every exit (cured, settled, escalated,
declined, written off) and, at any point, a cure, a dispute (pause for review) or a breathing
space (contact and timers paused). Decisions come from the decision core through local
activities (see ``activities/decide.py``); all other I/O through ``CaseActivities``.

Timers are "pausable": a wait counts only unpaused time, so a 60-day breathing space moves
every later checkpoint by 60 days.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.case_activities import (
        CaseActivities,
        ContactRequest,
        LedgerRequest,
        LoanRequest,
        PublishRequest,
        RestructureRequest,
        SignatureRequest,
    )
    from activities.decide import (
        AgreementInput,
        AssessInput,
        ProposeInput,
        assess_case,
        issue_agreement,
        propose_plans,
    )
    from activities.esign import EnvelopeState
    from decisions.clock import PolicyClock
    from schemas.assessment import FinancialProfile, Tier
    from schemas.case import (
        CaseOutcome,
        CaseStage,
        CaseView,
        Checkpoint,
        CheckpointKind,
        InstalmentStatus,
        TrackedInstalment,
    )
    from schemas.contact import ContactHolds
    from schemas.events import (
        CustomerHardship,
        LoanOverdue,
        LoanPayment,
        LoanStatus,
        case_id,
    )
    from schemas.events import LoanStatusKind as Status
    from schemas.money import Money
    from schemas.outbound import (
        AgreementSigned,
        CaseAssessed,
        CaseClosed,
        CaseContacted,
        CaseOpened,
        CasePaused,
        CaseReassessed,
        CaseResumed,
        InfoReceived,
        InstalmentMissed,
        InstalmentPaid,
        OptionApproved,
        OptionSummary,
        PauseReason,
        PlanProposed,
        ReassessmentTrigger,
    )
    from schemas.plan import ApprovalAuthority, PlanType
    from workflows import search_attributes as sa
    from workflows.messages import (
        Accepted,
        Approve,
        CaseAudit,
        CaseStart,
        ChooseOption,
        CounterProposal,
        Decline,
        Dispute,
        Note,
        Pause,
        Reject,
        ResolveDispute,
        Resume,
        SignatureCompleted,
        SituationChanged,
        SubmitFinancials,
    )
    from workflows.state import (
        MAX_CONTACT_LOG,
        MAX_REMEMBERED_EVENT_IDS,
        CaseState,
        DecisionRecord,
        NoteRecord,
        PendingApproval,
        StageChange,
    )

# Core banking and e-signature: wait out outages of hours (the case must not fail), but never
# retry a request the system rejected as wrong.
SYSTEM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["PermanentRejection", "PolicyError"],
)
# A contact is worth a few tries; after that the next reminder is the retry.
CONTACT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=5,
    non_retryable_error_types=["PermanentRejection"],
)
# Pure decision code: a failure is a bug; keep retrying (visible as pending) until it is fixed.
DECISION_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=10))
CALL_TIMEOUT = timedelta(seconds=30)
POLICY_CLOCK_PATCH = "policy-clock"
"""Cases opened before this change run on the server's clock when they replay."""
OFFER_REMINDER_LAG = timedelta(days=3)
OVERRUN_CHECKPOINT = timedelta(days=30)
"""After the last due date, arrears are checked again this often until paid or broken."""
CONTACT_DEFERRALS = 3
"""Times a blocked contact is retried at the moment the rules allow it again."""

TERMINAL_STATUSES = (Status.CURED, Status.CHARGED_OFF, Status.CLOSED)


class _LoanResolved(Exception):
    """Core banking cured, closed or charged off the loan: the case ends whatever its stage."""


class _ReassessRequested(Exception):
    """The borrower's situation changed while an offer, signature or plan was open."""


class _DisputeUpheld(Exception):
    """A human found the dispute justified: the debt is not collected."""


def _refuse(message: str) -> ApplicationError:
    return ApplicationError(message, type="ActionRefused", non_retryable=True)


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow:
    @workflow.init
    def __init__(self, start: CaseStart) -> None:
        if start.carried is not None:
            self.s = start.carried.model_copy(update={"run_count": start.carried.run_count + 1})
        else:
            self.s = CaseState(
                loan_id=start.loan_id,
                delinquent_since=start.delinquent_since,
                case_id=case_id(start.loan_id, start.delinquent_since),
            )
        self._event_limit = start.continue_as_new_after_events
        self._offer_open = False
        self._reassess_requested = False
        self._dispute_upheld = False
        self._last_attributes: dict[str, Any] = {}

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, start: CaseStart) -> CaseView:
        try:
            if start.carried is None:
                await self._open()
            while self.s.outcome is None:
                try:
                    await self._run_stage()
                except _ReassessRequested:
                    self._reassess_requested = False
                    self.s.reassessment_trigger = ReassessmentTrigger.BORROWER_REQUEST
                    self._enter(CaseStage.ASSESS, "SITUATION_CHANGED")
                    await self._info_received()
        except _LoanResolved:
            await self._close_for_status()
        except _DisputeUpheld:
            await self._close(CaseOutcome.WRITTEN_OFF, ["DISPUTE_UPHELD"])
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view()

    async def _run_stage(self) -> None:
        stage = self.s.stage
        if stage is CaseStage.COLLECT_INFO:
            await self._collect_info()
        elif stage is CaseStage.ASSESS:
            await self._assess()
        elif stage is CaseStage.PROPOSE:
            await self._propose()
        elif stage is CaseStage.SIGN:
            await self._sign()
        elif stage is CaseStage.TRACK:
            await self._track()

    # ------------------------------------------------------------------ stages

    async def _open(self) -> None:
        self.s.opened_at = self._now()
        self._enter(CaseStage.COLLECT_INFO, "CASE_OPENED")
        policy = await workflow.execute_activity_method(
            CaseActivities.load_policy,
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=SYSTEM_RETRY,
        )
        self.s.policy = policy
        if workflow.patched(POLICY_CLOCK_PATCH) and policy.durations.time_scale > 1:
            assert self.s.opened_at is not None
            self.s.clock = PolicyClock(
                anchor=self.s.opened_at, time_scale=policy.durations.time_scale
            )
        self._upsert(policy_version=policy.version)
        loan = await self._system(
            CaseActivities.read_loan, LoanRequest(loan_id=self.s.loan_id, reported=self.s.loan)
        )
        self._take_loan(loan)
        assert self.s.loan is not None
        self.s.credit = await self._system(
            CaseActivities.read_credit_record, self.s.loan.borrower_id
        )
        self._record("opened", f"DPD_{self.s.loan.days_past_due}")
        await self._publish(
            CaseOpened,
            delinquent_since=self.s.delinquent_since,
            days_past_due=self.s.loan.days_past_due,
            overdue=Money(amount=self.s.loan.overdue_amount, currency=self.s.loan.currency),
            policy_version=policy.version,
        )

    async def _collect_info(self) -> None:
        if self.s.info_requested_at is None:
            self.s.info_requested_at = self._now()
        fresh = self._has_fresh_profile
        if not fresh():
            await self._remind_until(
                fresh,
                first="info_request",
                reminder="info_reminder",
                reminder_kind=CheckpointKind.INFO_REMINDER,
            )
        if fresh():
            await self._info_received()
        self._enter(CaseStage.ASSESS, "INFO_RECEIVED" if fresh() else "INFO_DEADLINE_PASSED")

    async def _info_received(self) -> None:
        """Whichever way it came (portal event, agent update, counter-proposal)."""
        assert self.s.profile is not None
        await self._publish(
            InfoReceived,
            hardship_reason=self.s.profile.hardship_reason,
            temporary=self.s.profile.temporary,
        )

    async def _assess(self) -> None:
        policy = self._policy
        loan = await self._system(
            CaseActivities.read_loan, LoanRequest(loan_id=self.s.loan_id, reported=self.s.loan)
        )
        self._take_loan(loan)
        assert self.s.loan is not None and self.s.credit is not None
        # Only what the borrower told us in this round counts; silence is information.
        profile = self.s.profile if self._has_fresh_profile() else None
        previous_tier = self.s.assessment.tier if self.s.assessment else None
        assessment = await workflow.execute_local_activity(
            assess_case,
            AssessInput(
                loan=self.s.loan,
                profile=profile,
                credit=self.s.credit,
                contact_log=tuple(self.s.contact_log),
                policy=policy,
            ),
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=DECISION_RETRY,
        )
        self.s.assessment = assessment
        self._record("assessment", assessment.tier.value, *assessment.reasons)
        self._upsert(risk_tier=assessment.tier.value)
        trigger = self.s.reassessment_trigger
        if trigger is None:
            await self._publish(
                CaseAssessed,
                tier=assessment.tier,
                reasons=assessment.reasons,
                policy_version=assessment.policy_version,
                affordable_instalment=(
                    Money(
                        amount=assessment.affordability.affordable_instalment,
                        currency=assessment.affordability.currency,
                    )
                    if assessment.affordability
                    else None
                ),
            )
        else:
            await self._publish(
                CaseReassessed,
                trigger=trigger,
                previous_tier=previous_tier,
                tier=assessment.tier,
                reasons=assessment.reasons,
                policy_version=assessment.policy_version,
            )
        self.s.reassessment_trigger = None
        if trigger is ReassessmentTrigger.PERIODIC and self.s.schedule:
            # The plan in force stays; the new assessment is on record for the next decision.
            self._enter(CaseStage.TRACK, "PERIODIC_REASSESSMENT_DONE")
            return
        if assessment.tier is Tier.NON_RESPONSIVE:
            await self._close(CaseOutcome.ESCALATED_COLLECTIONS, list(assessment.reasons))
            return
        self.s.proposal = None
        self.s.approved_option_ids = []
        self.s.withdrawn_option_ids = []
        self.s.chosen_option_id = None
        self._enter(CaseStage.PROPOSE, f"TIER_{assessment.tier.value.upper()}")

    async def _propose(self) -> None:
        policy = self._policy
        assert self.s.loan is not None and self.s.assessment is not None
        if self.s.proposal is None:
            first_due = self._now().date() + timedelta(days=policy.durations.first_instalment_days)
            proposal = await workflow.execute_local_activity(
                propose_plans,
                ProposeInput(
                    loan=self.s.loan,
                    assessment=self.s.assessment,
                    policy=policy,
                    first_due=first_due,
                ),
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=DECISION_RETRY,
            )
            self.s.proposal = proposal
            self._record(
                "proposal",
                *(f"OFFER_{o.option_id}" for o in proposal.offered),
                *(f"EXCLUDED_{o.option_id}:{'+'.join(o.reasons)}" for o in proposal.excluded),
            )
            await self._seek_approval()
        options = self._available_options()
        if not options:
            reasons = ["NO_OPTION_AVAILABLE"]
            await self._escalate_or(CaseOutcome.ESCALATED_COLLECTIONS, reasons)
            return
        await self._publish(
            PlanProposed,
            policy_version=self.s.proposal.policy_version,
            options=tuple(OptionSummary.of(option) for option in options),
        )
        self._offer_open = True
        try:
            await self._remind_until(
                self._offer_answered,
                first="offer",
                reminder="offer_reminder",
                reminder_kind=CheckpointKind.INFO_DEADLINE,
            )
        finally:
            self._offer_open = False
        if self.s.chosen_option_id is not None:
            self._enter(CaseStage.SIGN, "OPTION_CHOSEN")
        elif self.s.counter_profile is not None:
            self.s.profile = self.s.counter_profile
            self.s.profile_received_at = self._now()
            self.s.counter_profile = None
            self.s.reassessment_trigger = ReassessmentTrigger.BORROWER_REQUEST
            self._enter(CaseStage.ASSESS, "COUNTER_PROPOSAL")
            await self._info_received()
        elif self.s.declined_reason is not None:
            await self._escalate_or(CaseOutcome.DECLINED, [self.s.declined_reason])
        else:
            await self._escalate_or(CaseOutcome.ESCALATED_COLLECTIONS, ["NO_ANSWER_TO_OFFER"])

    async def _remind_until(
        self,
        ready: Callable[[], bool],
        *,
        first: str,
        reminder: str,
        reminder_kind: CheckpointKind,
    ) -> None:
        """The first contact, then a reminder on each of the policy's reminder days, until
        ``ready()`` or the deadline (``info_deadline_days`` after the first contact)."""
        durations = self._policy.durations
        await self._contact(first, until=ready)
        elapsed = 0
        for day in (*durations.info_reminder_days, durations.info_deadline_days):
            deadline = day == durations.info_deadline_days
            kind = CheckpointKind.INFO_DEADLINE if deadline else reminder_kind
            if await self._wait_for(timedelta(days=day - elapsed), kind, ready):
                return
            elapsed = day
            if not deadline:
                await self._contact(reminder, until=ready)

    async def _seek_approval(self) -> None:
        """Options above the automatic authority wait for a human, within the SLA; a lapsed
        SLA escalates one level; a second lapse withdraws them."""
        assert self.s.proposal is not None
        needing = [
            o
            for o in self.s.proposal.offered
            if o.required_authority != ApprovalAuthority.AUTOMATIC
        ]
        if not needing:
            return
        required = max((o.required_authority for o in needing), key=lambda a: a.level)
        self.s.pending_approval = PendingApproval(
            option_ids=tuple(o.option_id for o in needing),
            required=required,
            requested_at=self._now(),
        )
        self._record("approval_requested", required.value, *(o.option_id for o in needing))
        decided = lambda: self.s.pending_approval is None  # noqa: E731
        sla = self._policy.durations.approval_sla
        while not await self._wait_for(sla, CheckpointKind.APPROVAL_SLA, decided):
            pending = self.s.pending_approval
            assert pending is not None
            if pending.escalations >= 1:
                self.s.withdrawn_option_ids.extend(pending.option_ids)
                self._record("approval_lapsed", "APPROVAL_SLA_LAPSED", *pending.option_ids)
                self.s.pending_approval = None
                break
            pending.escalations += 1
            self._record("approval_escalated", "APPROVAL_SLA_LAPSED", pending.required.value)
        approvers = self._approvers
        for option_id in self.s.approved_option_ids:
            option = self.s.proposal.option(option_id)
            await self._publish(
                OptionApproved,
                option_id=option_id,
                authority=option.required_authority,
                approved_by=approvers.get(option_id, "unknown"),
            )

    async def _sign(self) -> None:
        policy = self._policy
        assert self.s.proposal is not None and self.s.chosen_option_id and self.s.loan
        option = self.s.proposal.option(self.s.chosen_option_id)
        self.s.agreements_issued += 1
        agreement = await workflow.execute_local_activity(
            issue_agreement,
            AgreementInput(
                agreement_id=f"{self.s.case_id}-a{self.s.agreements_issued}",
                case_id=self.s.case_id,
                option=option,
                loan=self.s.loan,
                policy=policy,
                issued_at=self._now(),
            ),
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=DECISION_RETRY,
        )
        self.s.agreement = agreement
        self._record("agreement", agreement.agreement_id, option.option_id)
        self.s.signature_claimed = False
        self.s.envelope_id = await self._system(
            CaseActivities.send_for_signature,
            SignatureRequest(agreement=agreement, borrower_id=self.s.loan.borrower_id),
        )
        durations = policy.durations
        signed_at: datetime | None = None
        elapsed = 0
        await self._contact("signature_request", until=self._signature_claimed)
        for day in (*durations.signature_reminder_days, durations.signature_expiry_days):
            kind = (
                CheckpointKind.SIGNATURE_EXPIRY
                if day == durations.signature_expiry_days
                else CheckpointKind.SIGNATURE_REMINDER
            )
            remaining = timedelta(days=day - elapsed)
            while await self._wait_for(remaining, kind, self._signature_claimed):
                started = self._now()
                signed_at = await self._confirm_signature()
                if signed_at is not None:
                    break
                remaining -= self._now() - started
            if signed_at is not None or self.s.declined_reason is not None:
                break
            elapsed = day
            if kind is CheckpointKind.SIGNATURE_REMINDER:
                await self._contact("signature_reminder", until=self._signature_claimed)
        if signed_at is None and self.s.declined_reason is not None:
            await self._escalate_or(CaseOutcome.DECLINED, [self.s.declined_reason])
            return
        if signed_at is None:
            self.s.reproposal_rounds += 1
            self._record("signature_expired", agreement.agreement_id)
            if self.s.reproposal_rounds > durations.max_reproposal_rounds:
                await self._escalate_or(
                    CaseOutcome.ESCALATED_COLLECTIONS, ["SIGNATURE_EXPIRED_TOO_OFTEN"]
                )
                return
            self.s.chosen_option_id = None
            self._enter(CaseStage.PROPOSE, "SIGNATURE_EXPIRED")
            return
        receipt = await self._system(
            CaseActivities.apply_restructure,
            RestructureRequest(agreement=agreement, applied_at=signed_at),
        )
        self.s.schedule = [TrackedInstalment(instalment=i) for i in agreement.schedule.instalments]
        self.s.next_instalment = 0
        self.s.overrun_checkpoints = 0
        self.s.schedule_shift = timedelta(0)
        self.s.consecutive_missed = 0
        self.s.next_reassessment_at = self._now() + durations.reassessment_interval
        self._record("signed", agreement.agreement_id, receipt.restructure_ref)
        await self._publish(
            AgreementSigned,
            agreement_id=agreement.agreement_id,
            option_id=agreement.option_id,
            terms=agreement.terms,
            schedule=agreement.schedule,
            signed_at=signed_at,
        )
        self._enter(CaseStage.TRACK, "AGREEMENT_SIGNED")

    async def _track(self) -> None:
        assert self.s.agreement is not None
        agreement = self.s.agreement
        grace = self._policy.durations.grace
        while True:
            await self._continue_as_new_if_long()
            checkpoint_at = self._next_instalment_checkpoint(grace)
            assert self.s.next_reassessment_at is not None
            if self.s.next_reassessment_at < checkpoint_at:
                await self._wait_for(
                    self.s.next_reassessment_at - self._now(),
                    CheckpointKind.REASSESSMENT,
                    lambda: False,
                )
                self.s.next_reassessment_at = (
                    self._now() + self._policy.durations.reassessment_interval
                )
                self.s.reassessment_trigger = ReassessmentTrigger.PERIODIC
                self._enter(CaseStage.ASSESS, "PERIODIC_REASSESSMENT")
                return
            await self._wait_for(
                checkpoint_at - self._now(), CheckpointKind.INSTALMENT_DUE, lambda: False
            )
            if self.s.next_instalment >= len(self.s.schedule):
                self.s.overrun_checkpoints += 1
            await self._check_ledger(min(self.s.next_instalment, len(self.s.schedule) - 1))
            self.s.next_instalment = min(self.s.next_instalment + 1, len(self.s.schedule))
            if all(t.status is InstalmentStatus.PAID for t in self.s.schedule):
                settled = agreement.terms.plan_type is PlanType.LUMP_SUM_SETTLEMENT
                await self._close(
                    CaseOutcome.SETTLED if settled else CaseOutcome.CURED,
                    ["SETTLEMENT_PAID" if settled else "PLAN_COMPLETED"],
                )
                return
            if self.s.consecutive_missed >= agreement.default_after_missed_instalments:
                await self._plan_broken()
                return

    async def _check_ledger(self, upto: int) -> None:
        """The ledger is the truth: mark each instalment paid once cumulative payments cover
        it, missed once its checkpoint passed uncovered."""
        assert self.s.agreement is not None
        ledger = await self._system(
            CaseActivities.read_ledger,
            LedgerRequest(loan_id=self.s.loan_id, since=self.s.agreement.issued_at.date()),
        )
        currency = self.s.agreement.schedule.currency
        covered = Decimal(0)
        newly_paid: list[TrackedInstalment] = []
        newly_missed: list[TrackedInstalment] = []
        for index, tracked in enumerate(self.s.schedule):
            covered += tracked.instalment.amount
            if ledger.paid_total >= covered:
                if tracked.status is not InstalmentStatus.PAID:
                    tracked = tracked.model_copy(
                        update={
                            "status": InstalmentStatus.PAID,
                            "paid_amount": tracked.instalment.amount,
                            "paid_at": ledger.last_paid_at or self._now(),
                        }
                    )
                    newly_paid.append(tracked)
            elif index <= upto and tracked.status is InstalmentStatus.SCHEDULED:
                tracked = tracked.model_copy(update={"status": InstalmentStatus.MISSED})
                newly_missed.append(tracked)
            self.s.schedule[index] = tracked
        missed = sum(1 for t in self.s.schedule if t.status is InstalmentStatus.MISSED)
        self.s.consecutive_missed = missed + (self.s.overrun_checkpoints if missed else 0)
        for tracked in newly_paid:
            assert tracked.paid_at is not None
            await self._publish(
                InstalmentPaid,
                number=tracked.instalment.number,
                due_date=tracked.instalment.due_date,
                amount=Money(amount=tracked.instalment.amount, currency=currency),
                paid_at=tracked.paid_at,
            )
        for tracked in newly_missed:
            await self._publish(
                InstalmentMissed,
                number=tracked.instalment.number,
                due_date=tracked.instalment.due_date,
                amount_due=Money(amount=tracked.instalment.amount, currency=currency),
                consecutive_missed=max(self.s.consecutive_missed, 1),
            )
        limit = self.s.agreement.default_after_missed_instalments
        if newly_missed and self.s.consecutive_missed < limit:
            await self._contact("missed_instalment", until=lambda: False)

    async def _plan_broken(self) -> None:
        self.s.broken_plans += 1
        self._record("plan_broken", f"BROKEN_{self.s.broken_plans}")
        if self.s.broken_plans > 1:
            await self._close(CaseOutcome.ESCALATED_COLLECTIONS, ["PLAN_BROKEN_AGAIN"])
            return
        # Re-assess once, on the borrower's current circumstances: ask for them again.
        self.s.reassessment_trigger = ReassessmentTrigger.BROKEN_PLAN
        self.s.info_requested_at = self._now()
        self.s.schedule = []
        self._enter(CaseStage.COLLECT_INFO, "PLAN_BROKEN")

    # ------------------------------------------------------------------ waiting, pausing

    async def _wait_for(
        self, duration: timedelta, kind: CheckpointKind, ready: Callable[[], bool]
    ) -> bool:
        """Wait until ``ready()`` (True) or until ``duration`` of unpaused time passed (False).
        Raises when the loan is resolved, a dispute upheld or a re-assessment requested."""
        remaining = duration
        while True:
            self._raise_interrupts()
            if ready():
                return True
            if self._paused():
                await self._hold()
                continue
            if remaining <= timedelta(0):
                return False
            self._set_checkpoint(kind, self._now() + remaining)
            started = self._now()
            try:
                await workflow.wait_condition(
                    lambda: ready() or self._paused() or self._interrupt_pending(),
                    timeout=self._server_delay(remaining),
                )
            except TimeoutError:
                remaining = timedelta(0)
                continue
            remaining -= self._now() - started

    async def _hold(self) -> None:
        """Sit out a pause; a breathing space or timed pause lifts itself."""
        holds = self.s.holds
        until = holds.breathing_space_until or (holds.paused_until if holds.paused else None)
        if holds.disputed:
            until = None
        self._set_checkpoint(CheckpointKind.HOLD_ENDS, until)
        started = self._now()
        try:
            await workflow.wait_condition(
                lambda: not self._paused() or self._interrupt_pending(),
                timeout=self._server_delay(until - self._now()) if until else None,
            )
        except TimeoutError:
            self.s.holds = ContactHolds(disputed=holds.disputed)
            self._record("resumed", "HOLD_ENDED")
            await self._publish(CaseResumed)
        finally:
            if self.s.stage is CaseStage.TRACK:
                self.s.schedule_shift += self._now() - started

    def _paused(self) -> bool:
        holds = self.s.holds
        return holds.disputed or holds.paused or holds.breathing_space_until is not None

    def _interrupt_pending(self) -> bool:
        return (
            self._loan_resolved()
            or self._dispute_upheld
            or (self._reassess_requested and self._reassess_interrupts())
        )

    def _raise_interrupts(self) -> None:
        if self._loan_resolved():
            raise _LoanResolved
        if self._dispute_upheld:
            raise _DisputeUpheld
        if self._reassess_requested and self._reassess_interrupts():
            raise _ReassessRequested

    def _reassess_interrupts(self) -> bool:
        return self.s.stage in (CaseStage.PROPOSE, CaseStage.SIGN, CaseStage.TRACK)

    def _loan_resolved(self) -> bool:
        status = self.s.loan_status
        return status is not None and status.status in TERMINAL_STATUSES

    async def _continue_as_new_if_long(self) -> None:
        info = workflow.info()
        if (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._event_limit
        ):
            await workflow.wait_condition(workflow.all_handlers_finished)
            self._record("continued_as_new", f"EVENTS_{info.get_current_history_length()}")
            workflow.continue_as_new(
                CaseStart(
                    loan_id=self.s.loan_id,
                    delinquent_since=self.s.delinquent_since,
                    continue_as_new_after_events=self._event_limit,
                    carried=self.s,
                )
            )

    # ------------------------------------------------------------------ I/O helpers

    async def _system(self, method: Callable[..., Any], arg: Any) -> Any:
        return await workflow.execute_activity_method(
            method, arg, start_to_close_timeout=CALL_TIMEOUT, retry_policy=SYSTEM_RETRY
        )

    async def _contact(self, template: str, *, until: Callable[[], bool]) -> None:
        """One contact on the channel ladder (SMS → e-mail → phone by policy), each channel
        checked against the contact rules by the activity before it is tried. When every
        channel is blocked for now, wait (pausably) until the rules allow it again."""
        assert self.s.loan is not None
        policy = self._policy
        channels = list(policy.contact_channels)
        for _ in range(CONTACT_DEFERRALS):
            if self._paused() or until():
                return
            start = min(self.s.contacts_made, len(channels) - 1)
            earliest: datetime | None = None
            for channel in channels[start:] + channels[:start]:
                try:
                    result = await workflow.execute_activity_method(
                        CaseActivities.contact_borrower,
                        ContactRequest(
                            case_id=self.s.case_id,
                            borrower_id=self.s.loan.borrower_id,
                            channel=channel,
                            template=template,
                            idempotency_key=(
                                f"{self.s.case_id}-c{self.s.contacts_made + 1}-{channel.value}"
                            ),
                            contact_log=tuple(self.s.contact_log),
                            holds=self.s.holds,
                            rules=policy.contact,
                            policy_clock=self.s.clock,
                        ),
                        start_to_close_timeout=CALL_TIMEOUT,
                        retry_policy=CONTACT_RETRY,
                    )
                except ActivityError:
                    self._record("contact_failed", channel.value, template)
                    continue
                if result.attempt is not None:
                    self.s.contact_log = [*self.s.contact_log, result.attempt][-MAX_CONTACT_LOG:]
                    self.s.contacts_made += 1
                    await self._publish(
                        CaseContacted, channel=channel, outcome=result.attempt.outcome
                    )
                    return
                decision = result.decision
                self._record("contact_blocked", channel.value, decision.reason or "BLOCKED")
                if decision.next_allowed_at is not None and (
                    earliest is None or decision.next_allowed_at < earliest
                ):
                    earliest = decision.next_allowed_at
            if earliest is None:
                return
            await self._wait_for(earliest - self._now(), CheckpointKind.HOLD_ENDS, until)

    async def _publish(self, event_type: type, **fields: Any) -> None:
        self.s.published_count += 1
        event = event_type(
            event_id=f"{self.s.case_id}-e{self.s.published_count:05d}",
            occurred_at=self._now(),
            schema_version=1,
            case_id=self.s.case_id,
            loan_id=self.s.loan_id,
            **fields,
        )
        await workflow.execute_activity_method(
            CaseActivities.publish_case_event,
            PublishRequest(event=event),
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=SYSTEM_RETRY,
        )

    async def _close(self, outcome: CaseOutcome, reasons: list[str]) -> None:
        self.s.outcome = outcome
        self.s.outcome_reasons = reasons
        self.s.closed_at = self._now()
        self._set_checkpoint(None, None)
        self._record("closed", outcome.value, *reasons)
        self._enter(CaseStage.CLOSED, reasons[0])
        await self._publish(CaseClosed, outcome=outcome, reasons=tuple(reasons))

    async def _close_for_status(self) -> None:
        assert self.s.loan_status is not None
        status = self.s.loan_status.status
        if status is Status.CHARGED_OFF:
            await self._close(CaseOutcome.WRITTEN_OFF, ["LOAN_CHARGED_OFF"])
        elif status is Status.CLOSED:
            settled = (
                self.s.agreement is not None
                and self.s.agreement.terms.plan_type is PlanType.LUMP_SUM_SETTLEMENT
            )
            await self._close(
                CaseOutcome.SETTLED if settled else CaseOutcome.CURED, ["LOAN_CLOSED"]
            )
        else:
            await self._close(CaseOutcome.CURED, ["LOAN_CURED"])

    async def _escalate_or(self, outcome: CaseOutcome, reasons: list[str]) -> None:
        """A wilful borrower who does not take the strict plan goes to legal."""
        if self.s.assessment is not None and self.s.assessment.tier is Tier.WILFUL:
            await self._close(CaseOutcome.ESCALATED_LEGAL, ["WILFUL_DEFAULT", *reasons])
        else:
            await self._close(outcome, reasons)

    # ------------------------------------------------------------------ state helpers

    def _now(self) -> datetime:
        """The case's clock: the server's, unless a simulation compressed the case's time."""
        now = workflow.now()
        return now if self.s.clock is None else self.s.clock.policy_time(now)

    def _server_delay(self, policy_delay: timedelta) -> timedelta:
        return policy_delay if self.s.clock is None else self.s.clock.server_delay(policy_delay)

    @property
    def _policy(self) -> Any:
        assert self.s.policy is not None
        return self.s.policy

    @property
    def _approvers(self) -> dict[str, str]:
        approvers: dict[str, str] = {}
        for record in self.s.decisions:
            if record.kind == "approved":
                approver, *option_ids = record.summary
                approvers.update(dict.fromkeys(option_ids, approver))
        return approvers

    def _has_fresh_profile(self) -> bool:
        received, requested = self.s.profile_received_at, self.s.info_requested_at
        return (
            self.s.profile is not None
            and received is not None
            and requested is not None
            and received >= requested
        )

    def _offer_answered(self) -> bool:
        return (
            self.s.chosen_option_id is not None
            or self.s.counter_profile is not None
            or self.s.declined_reason is not None
        )

    def _signature_claimed(self) -> bool:
        return self.s.signature_claimed or self.s.declined_reason is not None

    async def _confirm_signature(self) -> datetime | None:
        assert self.s.envelope_id is not None
        status = await self._system(CaseActivities.signature_status, self.s.envelope_id)
        self.s.signature_claimed = False
        if status.state is EnvelopeState.SIGNED:
            # A compressed case signs on its own clock, not the vendor's.
            return (status.signed_at if self.s.clock is None else None) or self._now()
        self._record("signature_unconfirmed", status.state.value)
        return None

    def _available_options(self) -> list[Any]:
        assert self.s.proposal is not None
        return [
            o
            for o in self.s.proposal.offered
            if o.option_id not in self.s.withdrawn_option_ids
            and (
                o.required_authority == ApprovalAuthority.AUTOMATIC
                or o.option_id in self.s.approved_option_ids
            )
        ]

    def _next_instalment_checkpoint(self, grace: timedelta) -> datetime:
        schedule = self.s.schedule
        if self.s.next_instalment < len(schedule):
            due = schedule[self.s.next_instalment].instalment.due_date
        else:
            due = schedule[-1].instalment.due_date + OVERRUN_CHECKPOINT * (
                self.s.overrun_checkpoints + 1
            )
        # The day after due date + grace, 00:00 UTC: payments made on the last day count.
        return (
            datetime.combine(due + grace + timedelta(days=1), time(0), UTC) + self.s.schedule_shift
        )

    def _take_loan(self, loan: LoanOverdue) -> None:
        if self.s.loan is None or loan.occurred_at >= self.s.loan.occurred_at:
            self.s.loan = loan
            self._upsert(
                days_past_due=loan.days_past_due,
                outstanding=sa.outstanding_projection(loan.total_outstanding),
                product=loan.product.value,
            )

    def _enter(self, stage: CaseStage, reason: str) -> None:
        self.s.stage = stage
        self.s.stages.append(StageChange(stage=stage, at=self._now(), reason=reason))
        self._upsert(stage=stage.value)
        workflow.logger.info("case %s stage %s (%s)", self.s.case_id, stage.value, reason)

    def _record(self, kind: str, *summary: str) -> None:
        policy = self.s.policy
        self.s.decisions.append(
            DecisionRecord(
                kind=kind,
                at=self._now(),
                policy_version=policy.version if policy else "none",
                contact_rules_version=policy.contact.version if policy else None,
                summary=summary,
            )
        )

    def _set_checkpoint(self, kind: CheckpointKind | None, at: datetime | None) -> None:
        self.s.next_checkpoint = (
            Checkpoint(kind=kind, at=at) if kind is not None and at is not None else None
        )
        self._upsert(next_checkpoint=at)

    def _upsert(self, **values: Any) -> None:
        """Keep the search attributes current; only changed ones are written to history."""
        keys = {
            "stage": sa.CASE_STAGE,
            "risk_tier": sa.RISK_TIER,
            "days_past_due": sa.DAYS_PAST_DUE,
            "outstanding": sa.OUTSTANDING_AMOUNT,
            "product": sa.PRODUCT_TYPE,
            "next_checkpoint": sa.NEXT_CHECKPOINT_AT,
            "policy_version": sa.POLICY_VERSION,
        }
        updates = []
        for name, value in values.items():
            if self._last_attributes.get(name, "unset") == value:
                continue
            self._last_attributes[name] = value
            key = keys[name]
            updates.append(key.value_unset() if value is None else key.value_set(value))
        if updates:
            workflow.upsert_search_attributes(updates)

    def _remember(self, event_id: str) -> bool:
        """True the first time an event id is seen (Kafka redelivers)."""
        if event_id in self.s.applied_event_ids:
            return False
        self.s.applied_event_ids = [*self.s.applied_event_ids, event_id][-MAX_REMEMBERED_EVENT_IDS:]
        return True

    # ------------------------------------------------------------------ signals (Kafka)

    @workflow.signal(name="overdue")
    def on_overdue(self, event: LoanOverdue) -> None:
        if self._remember(event.event_id):
            self._take_loan(event)

    @workflow.signal(name="payment")
    def on_payment(self, event: LoanPayment) -> None:
        # Only remembered: instalments are settled against the ledger at each checkpoint.
        self._remember(event.event_id)

    @workflow.signal(name="loan_status")
    def on_loan_status(self, event: LoanStatus) -> None:
        if self._remember(event.event_id):
            self.s.loan_status = event

    @workflow.signal(name="hardship")
    def on_hardship(self, event: CustomerHardship) -> None:
        if not self._remember(event.event_id) or self.s.outcome is not None:
            return
        self._take_profile(FinancialProfile.from_hardship(event))

    def _take_profile(self, profile: FinancialProfile) -> None:
        self.s.profile = profile
        self.s.profile_received_at = self._now()
        if self.s.stage in (CaseStage.PROPOSE, CaseStage.SIGN, CaseStage.TRACK):
            self._reassess_requested = True
            self.s.info_requested_at = self._now()

    # ------------------------------------------------------------------ updates (people)

    def _require_open(self) -> None:
        if self.s.outcome is not None:
            raise _refuse(f"the case is closed ({self.s.outcome.value})")
        if self.s.policy is None:
            raise _refuse("the case is still opening; try again shortly")

    def _require_stage(self, action: str, *stages: CaseStage) -> None:
        self._require_open()
        if self.s.stage not in stages:
            allowed = ", ".join(s.value for s in stages)
            raise _refuse(f"{action}: only in stage {allowed}; the case is in {self.s.stage.value}")

    def _accepted(self, detail: str = "") -> Accepted:
        return Accepted(stage=self.s.stage, detail=detail)

    @workflow.update(name="submit_financials")
    def submit_financials(self, request: SubmitFinancials) -> Accepted:
        self._take_profile(request.profile)
        return self._accepted("financial situation received")

    @submit_financials.validator
    def _validate_submit_financials(self, request: SubmitFinancials) -> None:
        self._require_stage("submit_financials", CaseStage.COLLECT_INFO)
        self._require_currency(request.profile)

    def _require_currency(self, profile: FinancialProfile) -> None:
        if self.s.loan is not None and profile.currency != self.s.loan.currency:
            raise _refuse(
                f"profile.currency: {profile.currency}, but the loan is in {self.s.loan.currency}"
            )

    @workflow.update(name="choose_option")
    def choose_option(self, request: ChooseOption) -> Accepted:
        self.s.chosen_option_id = request.option_id
        return self._accepted(f"option {request.option_id} chosen")

    @choose_option.validator
    def _validate_choose_option(self, request: ChooseOption) -> None:
        self._require_offer_open("choose_option")
        available = [o.option_id for o in self._available_options()]
        if request.option_id not in available:
            raise _refuse(
                f"choose_option: {request.option_id!r} is not on offer "
                f"(offered: {', '.join(available)})"
            )

    def _require_offer_open(self, action: str) -> None:
        self._require_stage(action, CaseStage.PROPOSE)
        if not self._offer_open:
            raise _refuse(f"{action}: no offer is open yet (waiting for approval or options)")
        if self._offer_answered():
            raise _refuse(f"{action}: the offer was already answered")

    @workflow.update(name="counter_propose")
    def counter_propose(self, request: CounterProposal) -> Accepted:
        self.s.counter_rounds += 1
        self.s.counter_profile = request.profile
        if request.note:
            self._add_note("borrower", request.note)
        return self._accepted(f"counter-proposal {self.s.counter_rounds} received")

    @counter_propose.validator
    def _validate_counter_propose(self, request: CounterProposal) -> None:
        self._require_offer_open("counter_propose")
        self._require_currency(request.profile)
        limit = self._policy.durations.max_counter_proposals
        if self.s.counter_rounds >= limit:
            raise _refuse(f"counter_propose: the limit of {limit} counter-proposals is reached")

    @workflow.update(name="decline")
    def decline(self, request: Decline) -> Accepted:
        self.s.declined_reason = request.reason
        return self._accepted("declined")

    @decline.validator
    def _validate_decline(self, request: Decline) -> None:
        self._require_stage("decline", CaseStage.PROPOSE, CaseStage.SIGN)
        if self.s.stage is CaseStage.PROPOSE and not self._offer_open:
            raise _refuse("decline: no offer is open yet")

    @workflow.update(name="approve")
    def approve(self, request: Approve) -> Accepted:
        self._record("approved", request.approver_id, *request.option_ids)
        self.s.approved_option_ids.extend(request.option_ids)
        self._settle_pending(request.option_ids)
        return self._accepted(f"approved {', '.join(request.option_ids)}")

    @approve.validator
    def _validate_approve(self, request: Approve) -> None:
        self._validate_approval("approve", request.option_ids, request.authority)

    @workflow.update(name="reject")
    def reject(self, request: Reject) -> Accepted:
        self._record("rejected", request.approver_id, request.reason, *request.option_ids)
        self.s.withdrawn_option_ids.extend(request.option_ids)
        self._settle_pending(request.option_ids)
        return self._accepted(f"rejected {', '.join(request.option_ids)}")

    @reject.validator
    def _validate_reject(self, request: Reject) -> None:
        self._validate_approval("reject", request.option_ids, request.authority)

    def _validate_approval(
        self, action: str, option_ids: tuple[str, ...], authority: ApprovalAuthority
    ) -> None:
        self._require_stage(action, CaseStage.PROPOSE)
        pending = self.s.pending_approval
        if pending is None:
            raise _refuse(f"{action}: nothing is waiting for approval")
        unknown = [o for o in option_ids if o not in pending.option_ids]
        if unknown:
            raise _refuse(f"{action}: {', '.join(unknown)} not waiting for approval")
        assert self.s.proposal is not None
        for option_id in option_ids:
            needed = self.s.proposal.option(option_id).required_authority
            if authority.level < needed.level:
                raise _refuse(
                    f"{action}: {option_id} needs {needed.value} authority, not {authority.value}"
                )

    def _settle_pending(self, option_ids: tuple[str, ...]) -> None:
        pending = self.s.pending_approval
        assert pending is not None
        left = tuple(o for o in pending.option_ids if o not in option_ids)
        self.s.pending_approval = pending.model_copy(update={"option_ids": left}) if left else None

    @workflow.update(name="sign")
    def sign(self, request: SignatureCompleted) -> Accepted:
        self.s.signature_claimed = True
        return self._accepted("signature received; confirming with the provider")

    @sign.validator
    def _validate_sign(self, request: SignatureCompleted) -> None:
        self._require_stage("sign", CaseStage.SIGN)
        if self.s.envelope_id is None or request.envelope_id != self.s.envelope_id:
            raise _refuse("sign: not the envelope this case is waiting for")

    @workflow.update(name="pause")
    async def pause(self, request: Pause) -> Accepted:
        now = self._now()
        if request.breathing_space:
            until = now + self._policy.contact.breathing_space
            self.s.holds = self.s.holds.model_copy(update={"breathing_space_until": until})
            reason = PauseReason.BREATHING_SPACE
        else:
            until = request.until
            self.s.holds = self.s.holds.model_copy(update={"paused": True, "paused_until": until})
            reason = PauseReason.OPERATOR
        self._record("paused", request.staff_id, request.reason)
        await self._publish(CasePaused, reason=reason, until=until)
        return self._accepted(f"paused until {until.isoformat() if until else 'resumed'}")

    @pause.validator
    def _validate_pause(self, request: Pause) -> None:
        self._require_open()
        if request.breathing_space and request.until is not None:
            raise _refuse("pause: a breathing space lasts as the contact rules say; omit until")
        if request.until is not None and request.until <= self._now():
            raise _refuse("pause: until is in the past")
        holds = self.s.holds
        if request.breathing_space and holds.breathing_space_until is not None:
            raise _refuse("pause: a breathing space is already running")
        if not request.breathing_space and holds.paused:
            raise _refuse("pause: the case is already paused")

    @workflow.update(name="resume")
    async def resume(self, request: Resume) -> Accepted:
        self.s.holds = self.s.holds.model_copy(update={"paused": False, "paused_until": None})
        self._record("resumed", request.staff_id)
        if request.note:
            self._add_note(request.staff_id, request.note)
        await self._publish(CaseResumed)
        return self._accepted("resumed")

    @resume.validator
    def _validate_resume(self, request: Resume) -> None:
        self._require_open()
        holds = self.s.holds
        if not holds.paused:
            if holds.disputed:
                raise _refuse("resume: the case is disputed; use resolve_dispute")
            if holds.breathing_space_until is not None:
                raise _refuse("resume: a breathing space ends by itself; it cannot be resumed")
            raise _refuse("resume: the case is not paused")

    @workflow.update(name="dispute")
    async def dispute(self, request: Dispute) -> Accepted:
        self.s.holds = self.s.holds.model_copy(update={"disputed": True})
        self._record("disputed", request.raised_by, request.reason)
        await self._publish(CasePaused, reason=PauseReason.DISPUTE, until=None)
        return self._accepted("disputed: paused for review")

    @dispute.validator
    def _validate_dispute(self, request: Dispute) -> None:
        self._require_open()
        if self.s.holds.disputed:
            raise _refuse("dispute: the case is already disputed")

    @workflow.update(name="resolve_dispute")
    async def resolve_dispute(self, request: ResolveDispute) -> Accepted:
        verdict = "UPHELD" if request.upheld else "REJECTED"
        self._record("dispute_resolved", request.staff_id, verdict)
        self._add_note(request.staff_id, request.note)
        self.s.holds = self.s.holds.model_copy(update={"disputed": False})
        if request.upheld:
            self._dispute_upheld = True
            return self._accepted("dispute upheld: the case closes")
        await self._publish(CaseResumed)
        return self._accepted("dispute rejected: the case resumes")

    @resolve_dispute.validator
    def _validate_resolve_dispute(self, request: ResolveDispute) -> None:
        self._require_open()
        if not self.s.holds.disputed:
            raise _refuse("resolve_dispute: the case is not disputed")

    @workflow.update(name="note")
    def note(self, request: Note) -> Accepted:
        self._add_note(request.author_id, request.text)
        return self._accepted("noted")

    @note.validator
    def _validate_note(self, request: Note) -> None:
        self._require_open()

    def _add_note(self, author_id: str, text: str) -> None:
        self.s.notes.append(NoteRecord(author_id=author_id, at=self._now(), text=text))

    @workflow.update(name="situation_changed")
    def situation_changed(self, request: SituationChanged) -> Accepted:
        self._take_profile(request.profile)
        return self._accepted("re-assessment requested")

    @situation_changed.validator
    def _validate_situation_changed(self, request: SituationChanged) -> None:
        self._require_stage("situation_changed", CaseStage.PROPOSE, CaseStage.SIGN, CaseStage.TRACK)
        self._require_currency(request.profile)
        if self._reassess_requested:
            raise _refuse("situation_changed: a re-assessment is already under way")

    # ------------------------------------------------------------------ queries

    @workflow.query(name="applied_event_ids")
    def applied_event_ids(self) -> list[str]:
        return sorted(self.s.applied_event_ids)

    @workflow.query(name="view")
    def view(self) -> CaseView:
        s = self.s
        assessment = s.assessment
        return CaseView(
            case_id=s.case_id,
            loan_id=s.loan_id,
            stage=s.stage,
            policy_version=s.policy.version if s.policy else "pending",
            opened_at=s.opened_at or self._now(),
            time_scale=s.clock.time_scale if s.clock else 1,
            tier=assessment.tier if assessment else None,
            reasons=assessment.reasons if assessment else (),
            assessment=assessment,
            proposal=s.proposal,
            agreement=s.agreement,
            schedule=tuple(s.schedule),
            next_checkpoint=s.next_checkpoint,
            contact_log=tuple(s.contact_log),
            holds=s.holds,
            outcome=s.outcome,
            outcome_reasons=tuple(s.outcome_reasons),
            closed_at=s.closed_at,
        )

    @workflow.query(name="audit")
    def audit(self) -> CaseAudit:
        return CaseAudit(
            stages=tuple(self.s.stages),
            decisions=tuple(self.s.decisions),
            notes=tuple(self.s.notes),
            run_count=self.s.run_count,
        )


__all__ = ["CaseStart", "CaseWorkflow"]
