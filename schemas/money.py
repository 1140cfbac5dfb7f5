"""Money: ``Decimal`` with a currency, never float."""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# ISO 4217 codes Accord accepts, with their minor units (decimal places).
MINOR_UNITS: dict[str, int] = {
    "CNY": 2,
    "HKD": 2,
    "TWD": 2,
    "SGD": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "JPY": 0,
}
Currency = Literal["CNY", "HKD", "TWD", "SGD", "USD", "EUR", "GBP", "JPY"]


def _no_float(value: Any) -> Any:
    # A JSON number with a fraction arrives as float and may already have lost precision.
    if isinstance(value, float):
        raise ValueError('money must be a decimal string such as "1234.56", not a float')
    if isinstance(value, bool):
        raise ValueError("money must be a decimal string, not a boolean")
    return value


Amount = Annotated[
    Decimal,
    BeforeValidator(_no_float),
    Field(ge=0, allow_inf_nan=False, max_digits=18),
]
"""A non-negative money amount; its scale is checked against the currency by the owning model."""

PositiveAmount = Annotated[Amount, Field(gt=0)]


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-MINOR_UNITS[currency])


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit (banker's rounding)."""
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_EVEN)


def quantize_down(amount: Decimal, currency: str) -> Decimal:
    """Round down to the currency's minor unit: for limits that must never be overstated."""
    return amount.quantize(quantum(currency), rounding=ROUND_FLOOR)


def check_scale(amount: Decimal, currency: str, field: str) -> None:
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MINOR_UNITS[currency]:
        raise ValueError(
            f"{field}: {amount} has more decimal places than {currency} allows "
            f"({MINOR_UNITS[currency]})"
        )


class Money(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    amount: Amount
    currency: Currency

    def model_post_init(self, __context: Any) -> None:
        check_scale(self.amount, self.currency, "amount")

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
