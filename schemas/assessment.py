"""What the bank knows about the borrower, and what it concluded (DESIGN §3 assess)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from schemas.events import CustomerHardship, HardshipReason
from schemas.lean import LeanModel
from schemas.money import Amount, Currency, InboundAmount, Share, SignedAmount, check_scale

ReasonCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,63}$")]
"""A machine-stable, human-readable reason, e.g. ``DPD_OVER_90``."""

Count = Annotated[int, Field(ge=0, le=10_000, strict=True)]


class Contract(LeanModel):
    """Base of every Accord model: immutable.

    Unknown fields are ignored, because these models are also read back from workflow
    histories: a field removed later must not break the replay of a case that recorded it.
    Input from outside (Kafka, CLI, policy files) is parsed with ``extra="forbid"``, so a
    producer's typo is still refused there (``schemas.events.parse_inbound``).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


class Tier(StrEnum):
    LIGHT = "light"
    MODERATE = "moderate"
    SEVERE = "severe"
    WILFUL = "wilful"
    NON_RESPONSIVE = "non_responsive"


class HardshipKind(StrEnum):
    NONE = "none"
    TEMPORARY = "temporary"
    LASTING = "lasting"


class FinancialProfile(Contract):
    """The borrower's declared monthly situation."""

    currency: Currency
    monthly_income: InboundAmount
    essential_expenses: InboundAmount
    other_debt_payments: InboundAmount
    household_size: Annotated[int, Field(ge=1, le=30, strict=True)]
    hardship_reason: HardshipReason | None = None
    temporary: bool = Field(default=False, strict=True)
    expected_recovery_months: Annotated[int, Field(ge=1, le=60, strict=True)] | None = None
    lump_sum_available: InboundAmount | None = None
    """Savings or other money the borrower can pay at once (needed for a settlement)."""

    @model_validator(mode="after")
    def _money_scale(self) -> FinancialProfile:
        for name in ("monthly_income", "essential_expenses", "other_debt_payments"):
            check_scale(getattr(self, name), self.currency, name)
        if self.lump_sum_available is not None:
            check_scale(self.lump_sum_available, self.currency, "lump_sum_available")
        return self

    @classmethod
    def from_hardship(cls, event: CustomerHardship) -> FinancialProfile:
        return cls(
            currency=event.currency,
            monthly_income=event.monthly_income,
            essential_expenses=event.essential_expenses,
            other_debt_payments=event.other_debt_payments,
            household_size=event.household_size,
            hardship_reason=event.reason,
            temporary=event.temporary,
            expected_recovery_months=event.expected_recovery_months,
            lump_sum_available=event.lump_sum_available,
        )


class CreditRecord(Contract):
    """The borrower's history with the bank, pulled from core banking."""

    delinquencies_last_24_months: Count = 0
    """Earlier delinquency episodes, not counting the current one."""
    broken_agreements: Count = 0
    """Earlier negotiated plans the borrower did not keep."""


class Engagement(Contract):
    """What the case has seen of the borrower's willingness, counted by the case (DESIGN §3).

    Lateness is not here on purpose: being late is why there is a case, not a sign of
    unwillingness. Wilfulness needs evidence from these counts or from the credit record.
    """

    contact_attempts: Count = 0
    """Contact attempts made in this case (any channel, any outcome)."""
    conversations: Count = 0
    """Attempts that reached the borrower: answered calls, replies."""
    offers_declined: Count = 0
    """Offers the borrower turned down in this case."""
    counter_proposals: Count = 0
    """Counter-proposals the borrower made (negotiating is engagement, not refusal)."""
    plans_broken: Count = 0
    """Agreements signed in this case and then broken."""
    instalments_missed: Count = 0
    """Instalments promised under an agreement of this case and not paid."""


class Affordability(Contract):
    """Disposable income = income - essential expenses - other debt service; the affordable
    instalment is at most the policy share of it (never negative)."""

    currency: Currency
    disposable_income: SignedAmount
    """May be negative: the borrower is short every month."""
    share: Share
    affordable_instalment: Amount
    hardship: HardshipKind
    recovery_months: Annotated[int, Field(ge=1, le=60, strict=True)] | None = None
    """Temporary hardship only: after this many instalments the borrower can pay again up to
    ``post_recovery_instalment``."""
    post_recovery_instalment: Amount | None = None
    lump_sum_available: Amount | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Affordability:
        for name in (
            "disposable_income",
            "affordable_instalment",
            "post_recovery_instalment",
            "lump_sum_available",
        ):
            value = getattr(self, name)
            if value is not None:
                check_scale(value, self.currency, name)
        temporary = self.hardship is HardshipKind.TEMPORARY
        if temporary != (self.recovery_months is not None):
            raise ValueError("recovery_months: required exactly when the hardship is temporary")
        if temporary != (self.post_recovery_instalment is not None):
            raise ValueError(
                "post_recovery_instalment: required exactly when the hardship is temporary"
            )
        return self

    def limit_for(self, month: int) -> Decimal:
        """The most the borrower can pay in the given (1-based) month of a plan."""
        if (
            self.recovery_months is not None
            and self.post_recovery_instalment is not None
            and month > self.recovery_months
        ):
            return max(self.affordable_instalment, self.post_recovery_instalment)
        return self.affordable_instalment


class Assessment(Contract):
    """A tier with the reasons for it, under a named policy version."""

    tier: Tier
    reasons: Annotated[tuple[ReasonCode, ...], Field(min_length=1)]
    policy_version: str
    days_past_due: Annotated[int, Field(ge=0, le=3650, strict=True)]
    affordability: Affordability | None = None
    """None when the borrower gave no financial information."""
