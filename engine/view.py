"""What staff read: the case view, the audit trail and the search-attribute projection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import ROUND_CEILING, Decimal

from decisions.policy import Policy
from engine.actions import CaseAudit
from engine.balance import amount_band, balance_now
from engine.state import CaseState
from engine.timers import next_timer
from schemas.case import (
    ApprovalStatus,
    BalanceNow,
    CaseView,
    Checkpoint,
    InstalmentStatus,
    TrackedInstalment,
)
from schemas.money import quantize
from schemas.plan import Agreement, ApprovalAuthority


def case_view(state: CaseState, policy: Policy | None, now: datetime | None = None) -> CaseView:
    """``now``: the case's clock, for the balance and arrears now (None: not shown)."""
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
        balance=balance_view(state, now) if now is not None else None,
        approval=approval_status(state),
        approved_by=dict(state.approved),
        portfolio=state.loan.portfolio if state.loan is not None else None,
        broken_plans=state.broken_plans,
        outcome=state.outcome,
        outcome_reasons=tuple(state.outcome_reasons),
        closed_at=state.closed_at,
    )


def balance_view(state: CaseState, now: datetime) -> BalanceNow | None:
    balance = balance_now(state, now)
    if balance is None:
        return None
    currency = balance.currency
    return BalanceNow(
        currency=currency,
        outstanding=quantize(balance.outstanding, currency),
        arrears=quantize(balance.arrears, currency),
        overdue_since=balance.overdue_since,
        days_past_due=balance.days_past_due(now.date()),
        paid_since_basis=quantize(balance.paid_since_basis, currency),
        last_payment_at=balance.last_payment_at,
        basis="plan" if balance.basis == "plan" else "loan",
    )


def approval_status(state: CaseState) -> ApprovalStatus | None:
    approval = state.approval
    if approval is None or not approval.option_ids:
        return None
    return ApprovalStatus(
        option_ids=tuple(approval.option_ids),
        required=approval.required,
        requested_at=approval.requested_at,
        escalations=approval.escalations,
    )


def awaiting_authorities(state: CaseState) -> list[str]:
    """The authorities the options still waiting for approval need, lowest first."""
    approval, proposal = state.approval, state.proposal
    if approval is None or proposal is None:
        return []
    needed = {
        option.required_authority
        for option in proposal.offered
        if option.option_id in approval.option_ids
    }
    return [authority.value for authority in ApprovalAuthority if authority in needed]


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
    """The values of the case's search attributes (``workflows.search_attributes``): no
    personal data, no exact amounts (the visibility store is not encrypted)."""

    stage: str
    risk_tier: str | None
    days_past_due: int | None
    """As of the case's last change; ``overdue_since`` gives it exactly on any day."""
    overdue_since: datetime | None
    outstanding_band: int | None
    arrears_band: int | None
    product: str | None
    portfolio: str | None
    next_checkpoint_at: datetime | None
    next_checkpoint_kind: str | None
    policy_version: str | None
    holds: list[str]
    breathing_space_ends_at: datetime | None
    awaiting_approval: list[str]
    assigned_to: str | None
    attention: str | None
    plan_broken: bool
    outcome: str | None


CALENDAR_DEPENDENT = frozenset({"days_past_due", "overdue_since", "arrears_band"})
"""The projected values that move with the calendar as well as with the state (a plan's next
instalment falling due, one more day late): the workflow refreshes them at fixed points of its
history, never on a comparison with the clock (``workflows.case``, patch ``steady-attributes``).
"""


def projection(state: CaseState, policy: Policy | None, now: datetime) -> Projection:
    loan, assessment, holds = state.loan, state.assessment, state.holds
    timer = next_timer(state, policy)
    balance = balance_now(state, now)
    held = [
        name
        for name, on in (
            ("dispute", holds.disputed),
            ("pause", holds.paused),
            ("breathing_space", holds.breathing_space_until is not None),
            ("mental_health_crisis", holds.mental_health_crisis),
        )
        if on
    ]
    return Projection(
        stage=state.stage.value,
        risk_tier=assessment.tier.value if assessment is not None else None,
        days_past_due=balance.days_past_due(now.date()) if balance is not None else None,
        overdue_since=(
            datetime.combine(balance.overdue_since, time(0), UTC)
            if balance is not None and balance.overdue_since is not None
            else None
        ),
        outstanding_band=amount_band(balance.outstanding) if balance is not None else None,
        arrears_band=amount_band(balance.arrears) if balance is not None else None,
        product=loan.product.value if loan is not None else None,
        portfolio=loan.portfolio if loan is not None else None,
        next_checkpoint_at=timer.at if timer is not None else None,
        next_checkpoint_kind=timer.kind.value if timer is not None else None,
        policy_version=state.policy_version,
        holds=held,
        breathing_space_ends_at=holds.breathing_space_until,
        awaiting_approval=awaiting_authorities(state),
        assigned_to=state.assigned_to,
        attention=state.attention.reason if state.attention is not None else None,
        plan_broken=state.broken_plans > 0,
        outcome=state.outcome.value if state.outcome is not None else None,
    )


@dataclass(frozen=True)
class ProjectionV1:
    """The search attributes of cases that ran before the desk's attributes existed (their
    histories replay with exactly these values: ``workflows.case``, patch ``desk-attributes``).
    """

    stage: str
    risk_tier: str | None
    days_past_due: int | None
    outstanding_amount: int | None
    product: str | None
    next_checkpoint_at: datetime | None
    next_checkpoint_kind: str | None
    policy_version: str | None


def projection_v1(state: CaseState, policy: Policy | None) -> ProjectionV1:
    loan, assessment = state.loan, state.assessment
    timer = next_timer(state, policy)
    return ProjectionV1(
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
