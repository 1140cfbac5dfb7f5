"""The case workflow: one per loan per delinquency episode, a thin shell over the case machine.

Everything a case decides is in ``engine/`` (pure, passed through the sandbox). This module only
connects it to Temporal:

* the handlers — one signal for every inbound event, one update for every person's action
  (validated by ``engine.rules.refusal``), queries for the view and the audit trail — feed each
  message into ``engine.machine.receive``; none of them awaits anything;
* the run loop asks ``engine.planner.next_command`` what to do, carries it out as an activity,
  a local activity (the decision core) or a timer, and feeds the result back;
* search attributes are kept equal to the state's projection; long cases continue-as-new
  with their whole state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.case_activities import (
        CaseActivities,
        ContactRequest,
        LedgerRequest,
        LoanRequest,
        PublishRequest,
        RecordContactRequest,
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
    from decisions.policy import Policy
    from engine import commands as do
    from engine import messages as msg
    from engine.actions import Accepted, CaseAction, CaseAudit
    from engine.machine import receive
    from engine.moves import Context
    from engine.planner import next_command
    from engine.policies import shared
    from engine.rules import refusal
    from engine.state import CaseStart, CaseState
    from engine.view import case_audit, case_view, projection
    from schemas.case import CaseView
    from schemas.events import InboundEvent, case_id
    from schemas.plan import AgreementRefused
    from workflows import search_attributes as sa

EVENT_SIGNAL = "event"
ACT_UPDATE = "act"

CALL_TIMEOUT = timedelta(seconds=30)
# Core banking and e-signature: wait out outages of hours, then ask a human; never retry a
# request the system refused as wrong.
SYSTEM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["PermanentRejection", "PolicyError"],
)
SYSTEM_PATIENCE = timedelta(hours=24)
# A contact is worth a few tries; after that the next channel or reminder is the retry.
CONTACT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=5,
    non_retryable_error_types=["PermanentRejection"],
)
# Pure decision code: a failure is a bug or bad data; three tries, then a human looks.
DECISION_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=["PolicyError"])
# Case events must reach Kafka, recorded contacts the borrower's ledger: retried until it is
# back (explicitly unbounded).
PUBLISH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)

_ATTRIBUTE_KEYS: dict[str, SearchAttributeKey[Any]] = {
    "stage": sa.CASE_STAGE,
    "risk_tier": sa.RISK_TIER,
    "days_past_due": sa.DAYS_PAST_DUE,
    "outstanding_amount": sa.OUTSTANDING_AMOUNT,
    "product": sa.PRODUCT_TYPE,
    "next_checkpoint_at": sa.NEXT_CHECKPOINT_AT,
    "next_checkpoint_kind": sa.NEXT_CHECKPOINT_KIND,
    "policy_version": sa.POLICY_VERSION,
}


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow:
    @workflow.init
    def __init__(self, start: CaseStart) -> None:
        if start.carried is not None:
            self._state = start.carried
            self._state.run_count += 1
        else:
            self._state = CaseState(
                case_id=case_id(start.loan_id, start.delinquent_since),
                loan_id=start.loan_id,
                delinquent_since=start.delinquent_since,
                opened_at=workflow.now(),
            )
        self._policy: Policy | None = shared(start.policy) if start.policy else None
        self._event_limit = start.continue_as_new_after_events
        self._changes = 0
        self._attributes: dict[str, Any] = {}

    # --- the run loop ------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: CaseStart) -> CaseView:
        del start  # all of it is in self._state: a carried policy copy must not stay alive here
        while True:
            command = next_command(self._state, self._context())
            if isinstance(command, do.Finish):
                break
            if isinstance(command, do.Wait):
                await self._wait(command)
            else:
                self._feed(await self._carry_out(command))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view()

    async def _wait(self, command: do.Wait) -> None:
        info = workflow.info()
        if (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._event_limit
        ):
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                CaseStart(
                    loan_id=self._state.loan_id,
                    delinquent_since=self._state.delinquent_since,
                    continue_as_new_after_events=self._event_limit,
                    carried=self._state,
                    policy=self._policy,
                )
            )
        self._upsert()
        seen = self._changes
        timeout = None
        if command.until is not None:
            delay = command.until - self._now()
            if delay <= timedelta(0):
                self._feed(msg.Tick())
                return
            timeout = self._server_delay(delay)
        try:
            await workflow.wait_condition(lambda: self._changes != seen, timeout=timeout)
        except TimeoutError:
            self._feed(msg.Tick())

    # --- handlers ----------------------------------------------------------------------------

    @workflow.signal(name=EVENT_SIGNAL)
    def receive(self, event: InboundEvent) -> None:
        self._feed(event)

    @workflow.update(name=ACT_UPDATE)
    def act(self, action: CaseAction) -> Accepted:
        detail = self._feed(action)
        return Accepted(stage=self._state.stage, detail=detail)

    @act.validator
    def _refuse_invalid(self, action: CaseAction) -> None:
        reason = refusal(self._state, action, self._policy, self._now())
        if reason is not None:
            raise ApplicationError(reason, type="ActionRefused", non_retryable=True)

    @workflow.query(name="view")
    def view(self) -> CaseView:
        return case_view(self._state, self._policy)

    @workflow.query(name="audit")
    def audit(self) -> CaseAudit:
        return case_audit(self._state)

    @workflow.query(name="applied_event_ids")
    def applied_event_ids(self) -> list[str]:
        return sorted(self._state.applied_event_ids)

    # --- carrying out commands ---------------------------------------------------------------

    async def _carry_out(self, command: do.Command) -> object:
        try:
            return await _CALLS[type(command)](self, command)
        except ActivityError as error:
            return _failure(command, error)

    async def _publish(self, command: do.Publish) -> msg.Result:
        await workflow.execute_activity_method(
            CaseActivities.publish_case_events,
            PublishRequest(events=list(command.events)),
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=PUBLISH_RETRY,
        )
        return msg.Published(round=command.round, count=len(command.events))

    async def _load_policy(self, command: do.LoadPolicy) -> msg.Result:
        policy = await workflow.execute_local_activity_method(
            CaseActivities.load_policy,
            command.portfolio,
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=DECISION_RETRY,
        )
        self._policy = shared(policy)
        return msg.PolicyLoaded(
            round=command.round,
            version=policy.version,
            contact_rules_version=policy.contact.version,
            time_scale=policy.durations.time_scale,
        )

    async def _read_loan(self, command: do.ReadLoan) -> msg.Result:
        loan = await self._system(
            CaseActivities.read_loan,
            LoanRequest(loan_id=self._state.loan_id, reported=command.reported),
        )
        return msg.LoanRead(round=command.round, loan=loan)

    async def _read_time_zone(self, command: do.ReadTimeZone) -> msg.Result:
        zone = await self._system(CaseActivities.borrower_time_zone, command.borrower_id)
        return msg.TimeZoneRead(round=command.round, time_zone=zone)

    async def _record_interaction(self, command: do.RecordInteraction) -> msg.Result:
        await workflow.execute_activity_method(
            CaseActivities.record_contact,
            RecordContactRequest(borrower_id=command.borrower_id, interaction=command.interaction),
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=PUBLISH_RETRY,
        )
        return msg.InteractionRecorded(
            round=command.round, interaction_id=command.interaction.interaction_id
        )

    async def _read_credit(self, command: do.ReadCredit) -> msg.Result:
        credit = await self._system(CaseActivities.read_credit_record, command.borrower_id)
        return msg.CreditRead(round=command.round, credit=credit)

    async def _assess(self, command: do.Assess) -> msg.Result:
        assessment = await self._decide(
            assess_case,
            AssessInput(
                loan=command.loan,
                profile=command.profile,
                credit=command.credit,
                engagement=command.engagement,
                policy=self._rules,
            ),
        )
        return msg.Assessed(round=command.round, assessment=assessment)

    async def _propose(self, command: do.Propose) -> msg.Result:
        proposal = await self._decide(
            propose_plans,
            ProposeInput(
                loan=command.loan,
                assessment=command.assessment,
                policy=self._rules,
                first_due=command.first_due,
            ),
        )
        return msg.Proposed(round=command.round, proposal=proposal)

    async def _issue_agreement(self, command: do.IssueAgreement) -> msg.Result:
        issued = await self._decide(
            issue_agreement,
            AgreementInput(
                agreement_id=command.agreement_id,
                case_id=self._state.case_id,
                option=command.option,
                loan=command.loan,
                policy=self._rules,
                issued_at=command.issued_at,
                time_zone=command.time_zone,
            ),
        )
        if isinstance(issued, AgreementRefused):
            return msg.AgreementNotIssued(round=command.round, reasons=issued.reasons)
        return msg.AgreementIssued(round=command.round, agreement=issued)

    async def _send_for_signature(self, command: do.SendForSignature) -> msg.Result:
        envelope_id = await self._system(
            CaseActivities.send_for_signature,
            SignatureRequest(agreement=command.agreement, borrower_id=command.borrower_id),
        )
        return msg.EnvelopeSent(round=command.round, envelope_id=envelope_id)

    async def _check_signature(self, command: do.CheckSignature) -> msg.Result:
        status = await self._system(CaseActivities.signature_status, command.envelope_id)
        return msg.SignatureChecked(
            round=command.round, state=status.state.value, signed_at=status.signed_at
        )

    async def _void_envelope(self, command: do.VoidEnvelope) -> msg.Result:
        await self._system(CaseActivities.void_envelope, command.envelope_id)
        return msg.EnvelopeVoided(round=command.round, envelope_id=command.envelope_id)

    async def _apply_restructure(self, command: do.ApplyRestructure) -> msg.Result:
        receipt = await self._system(
            CaseActivities.apply_restructure,
            RestructureRequest(agreement=command.agreement, applied_at=command.applied_at),
        )
        return msg.RestructureApplied(round=command.round, restructure_ref=receipt.restructure_ref)

    async def _read_ledger(self, command: do.ReadLedger) -> msg.Result:
        ledger = await self._system(
            CaseActivities.read_ledger,
            LedgerRequest(loan_id=self._state.loan_id, since=command.since),
        )
        return msg.LedgerRead(
            round=command.round, paid_total=ledger.paid_total, last_paid_at=ledger.last_paid_at
        )

    async def _contact(self, command: do.Contact) -> msg.Result:
        outcome = await workflow.execute_activity_method(
            CaseActivities.contact_borrower,
            ContactRequest(
                case_id=self._state.case_id,
                borrower_id=command.borrower_id,
                loan_id=command.loan_id,
                channel=command.channel,
                template=command.template,
                attempt_id=command.attempt_id,
                holds=command.holds,
                rules=self._rules.contact,
                policy_clock=self._state.clock,
            ),
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=CONTACT_RETRY,
        )
        return msg.ContactTried(
            round=command.round,
            channel=command.channel.value,
            decision=outcome.decision,
            attempt=outcome.attempt,
        )

    async def _system(self, method: Callable[..., Awaitable[Any]], arg: Any) -> Any:
        return await workflow.execute_activity_method(
            method,
            arg,
            start_to_close_timeout=CALL_TIMEOUT,
            schedule_to_close_timeout=SYSTEM_PATIENCE,
            retry_policy=SYSTEM_RETRY,
        )

    async def _decide(self, function: Callable[..., Awaitable[Any]], arg: Any) -> Any:
        return await workflow.execute_local_activity(
            function, arg, start_to_close_timeout=CALL_TIMEOUT, retry_policy=DECISION_RETRY
        )

    # --- state ---------------------------------------------------------------------------------

    def _feed(self, message: object) -> str:
        detail = receive(self._state, message, self._context())
        self._changes += 1
        self._upsert()
        return detail

    def _context(self) -> Context:
        return Context(policy=self._policy, now=self._now())

    @property
    def _rules(self) -> Policy:
        assert self._policy is not None
        return self._policy

    def _now(self) -> datetime:
        """The case's clock: the server's, unless a simulation compressed the case's time."""
        now = workflow.now()
        clock = self._state.clock
        return now if clock is None else clock.policy_time(now)

    def _server_delay(self, policy_delay: timedelta) -> timedelta:
        clock = self._state.clock
        return policy_delay if clock is None else clock.server_delay(policy_delay)

    def _upsert(self) -> None:
        """Keep the search attributes equal to the state; only changes go to history."""
        values = vars(projection(self._state, self._policy))
        updates: list[SearchAttributeUpdate[Any]] = []
        for name, value in values.items():
            if self._attributes.get(name, "unset") == value:
                continue
            self._attributes[name] = value
            key = _ATTRIBUTE_KEYS[name]
            updates.append(key.value_unset() if value is None else key.value_set(value))
        if updates:
            workflow.upsert_search_attributes(updates)


_CALLS: dict[type, Callable[[CaseWorkflow, Any], Awaitable[object]]] = {
    do.Publish: CaseWorkflow._publish,
    do.LoadPolicy: CaseWorkflow._load_policy,
    do.ReadLoan: CaseWorkflow._read_loan,
    do.ReadCredit: CaseWorkflow._read_credit,
    do.ReadTimeZone: CaseWorkflow._read_time_zone,
    do.RecordInteraction: CaseWorkflow._record_interaction,
    do.Assess: CaseWorkflow._assess,
    do.Propose: CaseWorkflow._propose,
    do.IssueAgreement: CaseWorkflow._issue_agreement,
    do.SendForSignature: CaseWorkflow._send_for_signature,
    do.CheckSignature: CaseWorkflow._check_signature,
    do.VoidEnvelope: CaseWorkflow._void_envelope,
    do.ApplyRestructure: CaseWorkflow._apply_restructure,
    do.ReadLedger: CaseWorkflow._read_ledger,
    do.Contact: CaseWorkflow._contact,
}

_DECISIONS = (do.LoadPolicy, do.Assess, do.Propose, do.IssueAgreement)


def _failure(command: do.Command, error: ActivityError) -> msg.Result:
    """What a failed command tells the case: which call, and whether a human must look."""
    cause = error.cause
    kind = cause.type if isinstance(cause, ApplicationError) else None
    detail = str(cause) if cause is not None else str(error)
    if isinstance(command, do.Contact):
        return msg.ContactFailed(round=command.round, channel=command.channel.value, detail=detail)
    if isinstance(command, do.LoadPolicy) and kind == "PolicyError":
        reason = "POLICY_ERROR"
    elif isinstance(command, _DECISIONS):
        reason = "DECISION_FAILED"
    elif kind == "PermanentRejection":
        reason = "SYSTEM_REJECTED"
    else:
        reason = "SYSTEM_UNAVAILABLE"
    call = _call_name(command)
    return msg.CallFailed(round=command.round, call=call, reason=reason, detail=detail)


def _call_name(command: do.Command) -> str:
    name = type(command).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


__all__ = ["ACT_UPDATE", "EVENT_SIGNAL", "CaseStart", "CaseWorkflow"]
