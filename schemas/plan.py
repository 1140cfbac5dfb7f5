"""Plan options, repayment schedules and the signed agreement (DESIGN §3 propose / sign)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, model_validator

from schemas.assessment import Contract, ReasonCode, Tier
from schemas.money import Amount, Currency, Rate, Share, check_scale

Months = Annotated[int, Field(ge=0, le=600, strict=True)]
PlanMonths = Annotated[int, Field(ge=1, le=600, strict=True)]
OptionId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class Lever(StrEnum):
    """One concession or restructuring device; a plan combines several."""

    ARREARS_CAPITALISATION = "arrears_capitalisation"
    """The arrears join the balance, which is re-amortised."""
    ARREARS_SPREAD = "arrears_spread"
    """The contractual amortisation goes on; the arrears are caught up over a few instalments."""
    TERM_EXTENSION = "term_extension"
    REDUCED_PAYMENT = "reduced_payment"
    """A fixed lower instalment while the hardship lasts, then re-amortised."""
    INTEREST_ONLY = "interest_only"
    PAYMENT_HOLIDAY = "payment_holiday"
    """Nothing due for some months; the interest of those months is capitalised."""
    RATE_REDUCTION = "rate_reduction"
    PENALTY_FEE_WAIVER = "penalty_fee_waiver"
    INTEREST_WAIVER = "interest_waiver"
    """Part of the ordinary interest already owed is forgiven."""
    SETTLEMENT = "settlement"
    """One lump sum, the rest forgiven."""


class PhaseKind(StrEnum):
    HOLIDAY = "holiday"
    """Nothing due; the month's interest is capitalised."""
    INTEREST_ONLY = "interest_only"
    """The month's interest is due, the balance stays."""
    FIXED = "fixed"
    """``payment`` is due each month; interest it does not cover is capitalised."""
    LEVEL = "level"
    """The level annuity that repays the balance by the phase's end (the last phase only)."""


class ApprovalAuthority(StrEnum):
    """Who may approve an option, lowest first."""

    AUTOMATIC = "automatic"
    TEAM_LEAD = "team_lead"
    CREDIT_COMMITTEE = "credit_committee"

    @property
    def level(self) -> int:
        return list(ApprovalAuthority).index(self)


class Phase(Contract):
    kind: PhaseKind
    months: PlanMonths
    payment: Amount | None = None
    """FIXED phases only: the instalment of each month of the phase."""

    @model_validator(mode="after")
    def _payment_for_fixed_only(self) -> Phase:
        if (self.kind is PhaseKind.FIXED) != (self.payment is not None):
            raise ValueError("payment: required exactly for a fixed phase")
        if self.payment is not None and self.payment <= 0:
            raise ValueError("payment: must be above zero")
        return self


class PlanTerms(Contract):
    """Everything a plan is: the schedule follows from these terms alone
    (``decisions.schedules.schedule_of``), so an option carries no schedule.

    Month ``k`` of the plan (1-based) falls due ``k - 1`` months after ``first_due``. Interest
    accrues monthly at ``annual_interest_rate / 12`` on the balance, which starts as the sum of
    the four parts owed under the plan (what the loan owed less what is waived).
    """

    levers: Annotated[tuple[Lever, ...], Field(min_length=1, max_length=len(Lever))]
    currency: Currency
    first_due: date
    annual_interest_rate: Rate
    """The plan's rate."""
    contractual_rate: Rate
    """The loan's rate when the plan was made."""
    remaining_term_months: Months
    """The loan's remaining term when the plan was made: the extension is measured from it."""
    principal: Amount
    interest: Amount
    penalty: Amount
    fees: Amount
    waived_principal: Amount = Decimal(0)
    waived_interest: Amount = Decimal(0)
    waived_penalty: Amount = Decimal(0)
    waived_fees: Amount = Decimal(0)
    phases: Annotated[tuple[Phase, ...], Field(min_length=1, max_length=4)]

    @model_validator(mode="after")
    def _consistent(self) -> PlanTerms:
        if len(set(self.levers)) != len(self.levers):
            raise ValueError("levers: lists a lever twice")
        for name in (
            "principal",
            "interest",
            "penalty",
            "fees",
            "waived_principal",
            "waived_interest",
            "waived_penalty",
            "waived_fees",
        ):
            check_scale(getattr(self, name), self.currency, name)
        for index, phase in enumerate(self.phases, start=1):
            last = index == len(self.phases)
            if last != (phase.kind is PhaseKind.LEVEL):
                raise ValueError("phases: the last phase, and only it, is level")
            if phase.payment is not None:
                check_scale(phase.payment, self.currency, f"phases.{index}.payment")
        if self.balance <= 0:
            raise ValueError("principal: the plan leaves nothing to repay")
        if self.term_months > 600:
            raise ValueError("phases: more than 600 months in all")
        return self

    @property
    def balance(self) -> Decimal:
        """What the plan repays: the parts owed after waivers."""
        return self.principal + self.interest + self.penalty + self.fees

    @property
    def waived(self) -> Decimal:
        return self.waived_principal + self.waived_interest + self.waived_penalty + self.waived_fees

    @property
    def total_outstanding(self) -> Decimal:
        """What the loan owed when the plan was made."""
        return self.balance + self.waived

    @property
    def term_months(self) -> int:
        return sum(phase.months for phase in self.phases)

    @property
    def extension_months(self) -> int:
        # A settlement is one payment on its due date, not a longer loan (even one past maturity).
        if self.is_settlement:
            return 0
        return max(self.term_months - self.remaining_term_months, 0)

    @property
    def relief_months(self) -> int:
        """Months before the level phase (reduced, interest-only, holiday, arrears catch-up)."""
        return self.term_months - self.phases[-1].months

    @property
    def is_settlement(self) -> bool:
        return Lever.SETTLEMENT in self.levers


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
    """Instalments whose principal parts sum exactly to ``balance`` plus the interest
    capitalised during holidays and reduced months; every amount is above zero."""

    currency: Currency
    balance: Amount
    capitalised_interest: Amount = Decimal(0)
    instalments: Annotated[tuple[Instalment, ...], Field(min_length=1, max_length=600)]

    @model_validator(mode="after")
    def _consistent(self) -> RepaymentSchedule:
        check_scale(self.balance, self.currency, "balance")
        check_scale(self.capitalised_interest, self.currency, "capitalised_interest")
        previous: date | None = None
        for index, instalment in enumerate(self.instalments, start=1):
            if instalment.number != index:
                raise ValueError(f"instalments: number {instalment.number} at position {index}")
            if previous is not None and instalment.due_date <= previous:
                raise ValueError(f"instalments: due date of number {index} is not after the last")
            previous = instalment.due_date
            if instalment.amount <= 0:
                raise ValueError(f"instalments: number {index} is not above zero")
            for name in ("principal", "interest", "amount"):
                check_scale(getattr(instalment, name), self.currency, f"instalments.{index}.{name}")
        if self.total_principal != self.balance + self.capitalised_interest:
            raise ValueError(
                f"instalments: principal sums to {self.total_principal}, not balance "
                f"{self.balance} + capitalised interest {self.capitalised_interest}"
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
        """What the borrower pays in all: balance + interest under the plan."""
        return sum((i.amount for i in self.instalments), Decimal(0))

    @property
    def max_instalment(self) -> Decimal:
        return max(i.amount for i in self.instalments)


class PlanOption(Contract):
    """An option the borrower may choose, ranked by expected recovery for the lender.

    Compact on purpose (a case keeps its proposals for months): the terms and the figures the
    case view and events show; the schedule is ``schedule_of(terms)`` when needed.
    """

    option_id: OptionId
    terms: PlanTerms
    instalment_count: Annotated[int, Field(ge=1, le=600, strict=True)]
    first_instalment: Amount
    max_instalment: Amount
    total_payable: Amount
    concession: Amount
    """What the lender gives up: the waivers plus the interest a lower rate forgoes."""
    concession_share: Share
    """``concession / total outstanding`` (rounded up): drives the approval authority."""
    waiver_share: Share
    """``terms.waived / total outstanding`` (rounded up)."""
    required_authority: ApprovalAuthority
    completion_probability: Share
    expected_recovery: Amount
    """Discounted cash the lender expects, never above what the loan owed."""
    rank: Annotated[int, Field(ge=1, strict=True)]

    @property
    def levers(self) -> tuple[Lever, ...]:
        return self.terms.levers

    @property
    def waived(self) -> Decimal:
        return self.terms.waived


class ExcludedOption(Contract):
    """A kind of plan the search tried (or the policy ruled out) and why nothing of it fits."""

    option_id: OptionId
    levers: tuple[Lever, ...]
    reasons: Annotated[tuple[ReasonCode, ...], Field(min_length=1)]


class PlanProposal(Contract):
    """Everything the search considered for one assessment: offered (best first) and
    excluded (each with reasons). No option: ``offered`` is empty and ``no_option_reasons``
    says why, most frequent reason first."""

    policy_version: str
    tier: Tier
    currency: Currency
    offered: tuple[PlanOption, ...]
    excluded: tuple[ExcludedOption, ...]
    no_option_reasons: tuple[ReasonCode, ...] = ()

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


class AgreementRefused(Contract):
    """The chosen option cannot be issued as offered (the loan moved since the offer, or its
    currency changed): the case proposes again instead of re-pricing what was offered."""

    option_id: OptionId
    reasons: Annotated[tuple[ReasonCode, ...], Field(min_length=1)]
