"""What staff read: the case view, the audit trail and the search-attribute projection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from decisions.policy import Policy
from engine.actions import CaseAudit
from engine.state import CaseState
from engine.timers import next_timer
from schemas.case import CaseView, Checkpoint, InstalmentStatus, TrackedInstalment
from schemas.plan import Agreement


def case_view(state: CaseState, policy: Policy | None) -> CaseView:
    assessment = state.assessment
    timer = next_timer(state, policy)
    assert state.opened_at is not None
    return CaseView(
        case_id=state.case_id,
        loan_id=state.loan_id,
        stage=state.stage,
        policy_version=state.policy_version or "pending",
        opened_at=state.opened_at,
        time_scale=state.clock.time_scale if state.clock is not None else 1,
        tier=assessment.tier if assessment is not None else None,
        reasons=assessment.reasons if assessment is not None else (),
        assessment=assessment,
        proposal=state.proposal,
        agreement=shown_agreement(state),
        envelope_id=state.signature.envelope_id if state.signature is not None else None,
        schedule=tracked_instalments(state),
        next_checkpoint=Checkpoint(kind=timer.kind, at=timer.at) if timer is not None else None,
        contact_log=tuple(state.contact_log),
        holds=state.holds.for_contact_rules(),
        holds_in_force=state.holds.in_force(),
        time_zone=state.time_zone,
        attention=state.attention,
        assigned_to=state.assigned_to,
        outcome=state.outcome,
        outcome_reasons=tuple(state.outcome_reasons),
        closed_at=state.closed_at,
    )


def shown_agreement(state: CaseState) -> Agreement | None:
    """The agreement out for signature while signing, else the one in force."""
    if state.signature is not None and state.signature.agreement is not None:
        return state.signature.agreement.expand()
    return state.agreement.expand() if state.agreement is not None else None


def tracked_instalments(state: CaseState) -> tuple[TrackedInstalment, ...]:
    if state.agreement is None or state.tracking is None:
        return ()
    tracking = state.tracking
    tracked = []
    for instalment, status in zip(
        state.agreement.schedule.expand().instalments, tracking.statuses, strict=True
    ):
        paid = status is InstalmentStatus.PAID
        tracked.append(
            TrackedInstalment(
                instalment=instalment,
                status=status,
                paid_amount=instalment.amount if paid else None,
                paid_at=tracking.paid_at.get(instalment.number) if paid else None,
            )
        )
    return tuple(tracked)


def case_audit(state: CaseState) -> CaseAudit:
    return CaseAudit(
        stages=tuple(state.stages),
        decisions=tuple(state.decisions),
        notes=tuple(state.notes),
        run_count=state.run_count,
    )


@dataclass(frozen=True)
class Projection:
    """The values of the case's search attributes (no personal data, no exact amounts)."""

    stage: str
    risk_tier: str | None
    days_past_due: int | None
    outstanding_amount: int | None
    product: str | None
    next_checkpoint_at: datetime | None
    next_checkpoint_kind: str | None
    policy_version: str | None


def projection(state: CaseState, policy: Policy | None) -> Projection:
    loan, assessment = state.loan, state.assessment
    timer = next_timer(state, policy)
    return Projection(
        stage=state.stage.value,
        risk_tier=assessment.tier.value if assessment is not None else None,
        days_past_due=loan.days_past_due if loan is not None else None,
        outstanding_amount=whole_units(loan.total_outstanding) if loan is not None else None,
        product=loan.product.value if loan is not None else None,
        next_checkpoint_at=timer.at if timer is not None else None,
        next_checkpoint_kind=timer.kind.value if timer is not None else None,
        policy_version=state.policy_version,
    )


def whole_units(amount: Decimal) -> int:
    """Whole currency units, rounded up: a filter projection only, exact (no float)."""
    return int(amount.to_integral_value(rounding=ROUND_CEILING))
