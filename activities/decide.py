"""The decision core, run as local activities by the case workflow.

Why local activities rather than calling ``decisions`` inside the workflow: a case lives for
months, across many deployments of the decision core. A local activity's result is recorded
in history, so a case replays exactly the decisions it made (and the borrower saw), even after
the tier rules or the schedule rounding change; only new decisions use the new code. These
functions only forward to ``decisions``; no rule lives here. Input the decision core refuses
(``ValueError``: a declaration in another currency, an assessment under another policy) is a
non-retryable ``InvalidDecisionInput`` failure, so a case never hangs retrying it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict
from temporalio import activity
from temporalio.exceptions import ApplicationError

from decisions.plans import issue_agreement as issue_agreement_for
from decisions.plans import propose
from decisions.policy import Policy
from decisions.tiering import assess
from schemas.assessment import Assessment, CreditRecord, Engagement, FinancialProfile
from schemas.events import LoanOverdue
from schemas.plan import Agreement, AgreementRefused, PlanOption, PlanProposal

ResultT = TypeVar("ResultT")


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class AssessInput(_Input):
    loan: LoanOverdue
    profile: FinancialProfile | None
    credit: CreditRecord
    engagement: Engagement
    policy: Policy


class ProposeInput(_Input):
    loan: LoanOverdue
    assessment: Assessment
    policy: Policy
    first_due: date


class AgreementInput(_Input):
    agreement_id: str
    case_id: str
    option: PlanOption
    loan: LoanOverdue
    policy: Policy
    issued_at: AwareDatetime
    time_zone: str = "UTC"
    """The borrower's: due dates and the signature deadline are their calendar days."""


def _decided(decide: Callable[[], ResultT]) -> ResultT:
    try:
        return decide()
    except ValueError as error:
        raise ApplicationError(
            str(error), type="InvalidDecisionInput", non_retryable=True
        ) from None


@activity.defn
async def assess_case(request: AssessInput) -> Assessment:
    return _decided(
        lambda: assess(
            request.loan, request.profile, request.credit, request.engagement, request.policy
        )
    )


@activity.defn
async def propose_plans(request: ProposeInput) -> PlanProposal:
    return _decided(
        lambda: propose(request.loan, request.assessment, request.policy, request.first_due)
    )


@activity.defn
async def issue_agreement(request: AgreementInput) -> Agreement | AgreementRefused:
    return _decided(
        lambda: issue_agreement_for(
            agreement_id=request.agreement_id,
            case_id=request.case_id,
            option=request.option,
            loan=request.loan,
            policy=request.policy,
            issued_at=request.issued_at,
            time_zone=request.time_zone,
        )
    )


DECISION_ACTIVITIES = [assess_case, propose_plans, issue_agreement]
