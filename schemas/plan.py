"""Plan options, repayment schedules and the signed agreement (DESIGN §3 propose / sign)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, model_validator

from schemas.assessment import Contract, ReasonCode, Tier
from schemas.money import Amount, Currency, check_scale

Rate = Annotated[Decimal, Field(ge=0, le=1, max_digits=12, allow_inf_nan=False)]
"""A nominal annual interest rate as a fraction, e.g. ``0.0435``."""
Share = Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False)]
Months = Annotated[int, Field(ge=0, le=600, strict=True)]
OptionId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class PlanType(StrEnum):
    TERM_EXTENSION = "term_extension"
    ARREARS_SPREAD = "arrears_spread"
    REDUCED_PAYMENT = "reduced_payment"
    RATE_REDUCTION = "rate_reduction"
    PENALTY_WAIVER = "penalty_waiver"
    """Partial waiver of penalty interest and fees, the rest re-amortised (with extension)."""
    LUMP_SUM_SETTLEMENT = "lump_sum_settlement"


class ApprovalAuthority(StrEnum):
    """Who may approve an option, lowest first."""

    AUTOMATIC = "automatic"
    TEAM_LEAD = "team_lead"
    CREDIT_COMMITTEE = "credit_committee"

    @property
    def level(self) -> int:
        return list(ApprovalAuthority).index(self)


class Instalment(Contract):
    number: Annotated[int, Field(ge=1, le=600, strict=True)]
    due_date: date
    principal: Amount
    """Reduces the restructured balance (which includes capitalised arrears, penalty and fees)."""
    interest: Amount
    """Interest accrued under the plan's rate since the previous instalment."""
    amount: Amount

    @model_validator(mode="after")
    def _split_adds_up(self) -> Instalment:
        if self.principal + self.interest != self.amount:
            raise ValueError(
                f"amount: {self.amount} is not principal {self.principal}"
                f" + interest {self.interest}"
            )
        return self


class RepaymentSchedule(Contract):
    """Instalments whose principal parts sum exactly to ``balance`` (rounding in the last one)."""

    currency: Currency
    balance: Amount
    annual_interest_rate: Rate
    instalments: Annotated[tuple[Instalment, ...], Field(min_length=1, max_length=600)]

    @model_validator(mode="after")
    def _consistent(self) -> RepaymentSchedule:
        check_scale(self.balance, self.currency, "balance")
        previous: date | None = None
        for index, instalment in enumerate(self.instalments, start=1):
            if instalment.number != index:
                raise ValueError(f"instalments: number {instalment.number} at position {index}")
            if previous is not None and instalment.due_date <= previous:
                raise ValueError(f"instalments: due date of number {index} is not after the last")
            previous = instalment.due_date
            for name in ("principal", "interest", "amount"):
                check_scale(getattr(instalment, name), self.currency, f"instalments.{index}.{name}")
        if self.total_principal != self.balance:
            raise ValueError(
                f"instalments: principal sums to {self.total_principal}, not balance {self.balance}"
            )
        return self

    @property
    def total_principal(self) -> Decimal:
        return sum((i.principal for i in self.instalments), Decimal(0))

    @property
    def total_interest(self) -> Decimal:
        return sum((i.interest for i in self.instalments), Decimal(0))

    @property
    def total_payable(self) -> Decimal:
        """What the borrower pays in all: balance + plan interest."""
        return sum((i.amount for i in self.instalments), Decimal(0))

    @property
    def max_instalment(self) -> Decimal:
        return max(i.amount for i in self.instalments)


class PlanTerms(Contract):
    """The levers of one option; the schedule follows from them and the loan."""

    plan_type: PlanType
    term_months: Annotated[int, Field(ge=1, le=600, strict=True)]
    """Number of monthly instalments."""
    annual_interest_rate: Rate
    extension_months: Months = 0
    """Months added to the loan's remaining term."""
    waived: Amount = Decimal(0)
    """Penalty interest and fees forgiven; for a settlement, everything above the lump sum."""
    reduced_months: Months = 0
    reduction_share: Share = Decimal(0)
    """During the first ``reduced_months`` the instalment is this much below the level one."""
    arrears_spread_months: Months = 0


class PlanOption(Contract):
    """An option the borrower may choose, ranked by expected recovery for the lender."""

    option_id: OptionId
    terms: PlanTerms
    schedule: RepaymentSchedule
    total_outstanding: Amount
    """What the loan owed before the plan (principal + interest + penalty + fees)."""
    waiver_share: Share
    """``terms.waived / total_outstanding``: drives the approval authority."""
    required_authority: ApprovalAuthority
    completion_probability: Share
    expected_recovery: Amount
    rank: Annotated[int, Field(ge=1, strict=True)]

    @property
    def plan_type(self) -> PlanType:
        return self.terms.plan_type


class ExcludedOption(Contract):
    option_id: OptionId
    plan_type: PlanType
    reasons: Annotated[tuple[ReasonCode, ...], Field(min_length=1)]


class PlanProposal(Contract):
    """Everything the policy let us consider for one assessment: offered (best first) and
    excluded (each with reasons)."""

    policy_version: str
    tier: Tier
    currency: Currency
    offered: tuple[PlanOption, ...]
    excluded: tuple[ExcludedOption, ...]

    def option(self, option_id: str) -> PlanOption:
        for candidate in self.offered:
            if candidate.option_id == option_id:
                return candidate
        raise KeyError(f"option_id: {option_id!r} was not offered")


class Agreement(Contract):
    """The restructuring the borrower signs: amount, term, rate, schedule and default clause."""

    agreement_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    case_id: str
    policy_version: str
    option_id: OptionId
    terms: PlanTerms
    schedule: RepaymentSchedule
    required_authority: ApprovalAuthority
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    """Unsigned by then: the offer lapses."""
    default_after_missed_instalments: Annotated[int, Field(ge=1, le=12, strict=True)]
    """Default clause: this many consecutive missed instalments break the agreement."""

    @model_validator(mode="after")
    def _expiry_after_issue(self) -> Agreement:
        if self.expires_at <= self.issued_at:
            raise ValueError("expires_at: not after issued_at")
        return self
