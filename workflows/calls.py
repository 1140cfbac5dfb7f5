"""How the case workflow carries out each command of the case machine: which activity (or
local activity, for the decision core) with which timeouts and retries, and what it tells the
machine back (``engine.messages``).

Passed through the workflow sandbox with ``engine/``: loaded once per worker process rather
than once per cached case, so the sandbox only re-executes the small workflow class. Everything
here is deterministic — it only schedules activities and maps their results.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

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
from decisions.clock import PolicyClock
from decisions.policy import Policy
from engine import commands as do
from engine import messages as msg
from schemas.plan import AgreementRefused

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


# A call made as a local activity (``_locally``): a blip is retried within the workflow task,
# three tries in about three seconds; anything longer is an outage, waited out by an activity.
LOCAL_TRIES = 3
LOCAL_CALL_TIMEOUT = timedelta(seconds=10)


@dataclass(frozen=True)
class CaseContext:
    """What the calls need to know of the running case."""

    case_id: str
    loan_id: str
    policy: Policy | None
    clock: PolicyClock | None
    local_calls: bool = False
    """Read the ledger and publish with local activities (``workflows.case.LOCAL_CALLS_PATCH``)."""

    @property
    def rules(self) -> Policy:
        assert self.policy is not None, "the policy is loaded before any decision"
        return self.policy


async def carry_out(command: do.Command, case: CaseContext) -> object:
    """The command's result as a message for the machine; a failure is a message too."""
    try:
        return await _CALLS[type(command)](case, command)
    except (ActivityError, ApplicationError) as error:
        # A failed activity arrives as ActivityError; a failed local activity (the decision
        # core) as the ApplicationError it raised.
        return _failure(command, error)


async def _publish(case: CaseContext, command: do.Publish) -> msg.Result:
    request = PublishRequest(events=list(command.events))
    await _locally_first(
        case,
        CaseActivities.publish_case_events,
        request,
        PUBLISH_RETRY,
        lambda: workflow.execute_activity_method(
            CaseActivities.publish_case_events,
            request,
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=PUBLISH_RETRY,
        ),
    )
    return msg.Published(round=command.round, count=len(command.events))


async def _load_policy(case: CaseContext, command: do.LoadPolicy) -> msg.Result:
    policy = await workflow.execute_local_activity_method(
        CaseActivities.load_policy,
        command.portfolio,
        start_to_close_timeout=CALL_TIMEOUT,
        retry_policy=DECISION_RETRY,
    )
    return msg.PolicyLoaded(
        round=command.round,
        policy=policy,
        version=policy.version,
        contact_rules_version=policy.contact.version,
        time_scale=policy.durations.time_scale,
    )


async def _read_loan(case: CaseContext, command: do.ReadLoan) -> msg.Result:
    loan = await _system(
        CaseActivities.read_loan,
        LoanRequest(loan_id=case.loan_id, reported=command.reported),
    )
    return msg.LoanRead(round=command.round, loan=loan)


async def _read_time_zone(case: CaseContext, command: do.ReadTimeZone) -> msg.Result:
    zone = await _system(CaseActivities.borrower_time_zone, command.borrower_id)
    return msg.TimeZoneRead(round=command.round, time_zone=zone)


async def _record_interaction(case: CaseContext, command: do.RecordInteraction) -> msg.Result:
    await workflow.execute_activity_method(
        CaseActivities.record_contact,
        RecordContactRequest(borrower_id=command.borrower_id, interaction=command.interaction),
        start_to_close_timeout=CALL_TIMEOUT,
        retry_policy=PUBLISH_RETRY,
    )
    return msg.InteractionRecorded(
        round=command.round, interaction_id=command.interaction.interaction_id
    )


async def _read_credit(case: CaseContext, command: do.ReadCredit) -> msg.Result:
    credit = await _system(CaseActivities.read_credit_record, command.borrower_id)
    return msg.CreditRead(round=command.round, credit=credit)


async def _assess(case: CaseContext, command: do.Assess) -> msg.Result:
    assessment = await _decide(
        assess_case,
        AssessInput(
            loan=command.loan,
            profile=command.profile,
            credit=command.credit,
            engagement=command.engagement,
            policy=case.rules,
        ),
    )
    return msg.Assessed(round=command.round, assessment=assessment)


async def _propose(case: CaseContext, command: do.Propose) -> msg.Result:
    proposal = await _decide(
        propose_plans,
        ProposeInput(
            loan=command.loan,
            assessment=command.assessment,
            policy=case.rules,
            first_due=command.first_due,
        ),
    )
    return msg.Proposed(round=command.round, proposal=proposal)


async def _issue_agreement(case: CaseContext, command: do.IssueAgreement) -> msg.Result:
    issued = await _decide(
        issue_agreement,
        AgreementInput(
            agreement_id=command.agreement_id,
            case_id=case.case_id,
            option=command.option,
            loan=command.loan,
            policy=case.rules,
            issued_at=command.issued_at,
            time_zone=command.time_zone,
        ),
    )
    if isinstance(issued, AgreementRefused):
        return msg.AgreementNotIssued(round=command.round, reasons=issued.reasons)
    return msg.AgreementIssued(round=command.round, agreement=issued)


async def _send_for_signature(case: CaseContext, command: do.SendForSignature) -> msg.Result:
    envelope_id = await _system(
        CaseActivities.send_for_signature,
        SignatureRequest(agreement=command.agreement, borrower_id=command.borrower_id),
    )
    return msg.EnvelopeSent(round=command.round, envelope_id=envelope_id)


async def _check_signature(case: CaseContext, command: do.CheckSignature) -> msg.Result:
    status = await _system(CaseActivities.signature_status, command.envelope_id)
    return msg.SignatureChecked(
        round=command.round, state=status.state.value, signed_at=status.signed_at
    )


async def _void_envelope(case: CaseContext, command: do.VoidEnvelope) -> msg.Result:
    await _system(CaseActivities.void_envelope, command.envelope_id)
    return msg.EnvelopeVoided(round=command.round, envelope_id=command.envelope_id)


async def _apply_restructure(case: CaseContext, command: do.ApplyRestructure) -> msg.Result:
    receipt = await _system(
        CaseActivities.apply_restructure,
        RestructureRequest(agreement=command.agreement, applied_at=command.applied_at),
    )
    return msg.RestructureApplied(round=command.round, restructure_ref=receipt.restructure_ref)


async def _read_ledger(case: CaseContext, command: do.ReadLedger) -> msg.Result:
    request = LedgerRequest(loan_id=case.loan_id, since=command.since)
    ledger = await _locally_first(
        case,
        CaseActivities.read_ledger,
        request,
        SYSTEM_RETRY,
        lambda: _system(CaseActivities.read_ledger, request),
    )
    return msg.LedgerRead(
        round=command.round, paid_total=ledger.paid_total, last_paid_at=ledger.last_paid_at
    )


async def _contact(case: CaseContext, command: do.Contact) -> msg.Result:
    outcome = await workflow.execute_activity_method(
        CaseActivities.contact_borrower,
        ContactRequest(
            case_id=case.case_id,
            borrower_id=command.borrower_id,
            loan_id=command.loan_id,
            channel=command.channel,
            template=command.template,
            attempt_id=command.attempt_id,
            holds=command.holds,
            rules=case.rules.contact,
            policy_clock=case.clock,
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


async def _system(method: Callable[..., Awaitable[Any]], arg: Any) -> Any:
    return await workflow.execute_activity_method(
        method,
        arg,
        start_to_close_timeout=CALL_TIMEOUT,
        schedule_to_close_timeout=SYSTEM_PATIENCE,
        retry_policy=SYSTEM_RETRY,
    )


async def _locally_first(
    case: CaseContext,
    method: Callable[..., Awaitable[Any]],
    arg: Any,
    retry: RetryPolicy,
    as_activity: Callable[[], Awaitable[Any]],
) -> Any:
    """The call as a local activity when the run makes local calls (``_locally``), otherwise,
    or once its local tries failed, as the activity ``as_activity`` starts."""
    if case.local_calls:
        done, result = await _locally(method, arg, retry)
        if done:
            return result
    return await as_activity()


async def _locally(
    method: Callable[..., Awaitable[Any]], arg: Any, retry: RetryPolicy
) -> tuple[bool, Any]:
    """The call as a local activity, within the current workflow task (no task of its own for
    its result): (True, its result), or (False, None) if ``LOCAL_TRIES`` tries failed, for the
    caller to go on with an activity. An outage is waited out there: a local activity's retries
    past a minute would each add a timer to the history. A refusal (a non-retryable error) is
    final."""
    refusals = list(retry.non_retryable_error_types or ())
    try:
        result = await workflow.execute_local_activity_method(
            method,
            arg,
            start_to_close_timeout=LOCAL_CALL_TIMEOUT,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                maximum_attempts=LOCAL_TRIES,
                non_retryable_error_types=refusals,
            ),
        )
    except (ActivityError, ApplicationError) as error:
        cause = error.cause if isinstance(error, ActivityError) else error
        if isinstance(cause, ApplicationError) and (cause.non_retryable or cause.type in refusals):
            raise
        return False, None
    return True, result


async def _decide(function: Callable[..., Awaitable[Any]], arg: Any) -> Any:
    return await workflow.execute_local_activity(
        function, arg, start_to_close_timeout=CALL_TIMEOUT, retry_policy=DECISION_RETRY
    )


_CALLS: dict[type, Callable[[CaseContext, Any], Awaitable[object]]] = {
    do.Publish: _publish,
    do.LoadPolicy: _load_policy,
    do.ReadLoan: _read_loan,
    do.ReadCredit: _read_credit,
    do.ReadTimeZone: _read_time_zone,
    do.RecordInteraction: _record_interaction,
    do.Assess: _assess,
    do.Propose: _propose,
    do.IssueAgreement: _issue_agreement,
    do.SendForSignature: _send_for_signature,
    do.CheckSignature: _check_signature,
    do.VoidEnvelope: _void_envelope,
    do.ApplyRestructure: _apply_restructure,
    do.ReadLedger: _read_ledger,
    do.Contact: _contact,
}

_DECISIONS = (do.LoadPolicy, do.Assess, do.Propose, do.IssueAgreement)


def _failure(command: do.Command, error: ActivityError | ApplicationError) -> msg.Result:
    """What a failed command tells the case: which call, and whether a human must look."""
    cause = error.cause if isinstance(error, ActivityError) else error
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
