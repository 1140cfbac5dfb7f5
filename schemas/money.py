"""Money: ``Decimal`` with a currency, never float.

Amounts, rates and shares are exact decimals. In JSON they are decimal *strings* only
(``"1234.56"``): no JSON number (a fraction would already have passed through binary floating
point), no exponent (``"1E+2"``), no sign on an amount, no negative zero, no spaces. Python
callers may also pass ``Decimal`` or ``int``; such values are put in canonical form (``-0`` →
``0``, ``1E+2`` → ``100``) so that what is serialised is again a valid decimal string.

Each type's exported JSON Schema is a ``string`` with the very pattern the validator applies,
so a producer that validates against the schema sends what the processor accepts. How many
decimal places an amount may have depends on its currency; the owning model checks that
(``check_scale``) and says so in its schema (``currency_scale_rules``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

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
MAX_MINOR_UNITS = max(MINOR_UNITS.values())

INBOUND_INTEGER_DIGITS = 16
"""Amounts from outside (events, declarations) are below 10^16: 10^15 and more fit."""
INTEGER_DIGITS = 20
"""Amounts Accord computes (totals over a long plan) are below 10^20."""
RATE_PLACES = 8


def _fraction_part(places: int) -> str:
    return rf"(\.[0-9]{{1,{places}}})?" if places else ""


def amount_pattern(places: int, integer_digits: int = INTEGER_DIGITS) -> str:
    """Non-negative decimal string with at most ``places`` decimals, below 10^integer_digits."""
    return rf"^(0|[1-9][0-9]{{0,{integer_digits - 1}}}){_fraction_part(places)}$"


def positive_amount_pattern(places: int, integer_digits: int = INTEGER_DIGITS) -> str:
    return r"^(?!0(\.0*)?$)" + amount_pattern(places, integer_digits).removeprefix("^")


def signed_amount_pattern(places: int, integer_digits: int = INTEGER_DIGITS) -> str:
    # A minus sign only before a non-zero value: no negative zero.
    return r"^(?!-0(\.0*)?$)-?" + amount_pattern(places, integer_digits).removeprefix("^")


FRACTION_PATTERN = rf"^(0(\.[0-9]{{1,{RATE_PLACES}}})?|1(\.0{{1,{RATE_PLACES}}})?)$"
"""A decimal string between 0 and 1 inclusive with at most ``RATE_PLACES`` decimals."""


def _canonical(value: Decimal) -> Decimal:
    if value.is_zero() and value.is_signed():
        value = value.copy_abs()
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        value = value.quantize(Decimal(1))
    return value


def _decimal_validator(
    pattern: str, *, kind: str, example: str, places: int
) -> Callable[[Any, ValidationInfo], Decimal]:
    compiled = re.compile(pattern)
    expected = f'{kind} must be a decimal string such as "{example}"'

    def validate(value: Any, info: ValidationInfo) -> Decimal:
        if isinstance(value, bool | float):
            raise ValueError(f"{expected}, not a {type(value).__name__}")
        if isinstance(value, str):
            if not compiled.fullmatch(value):
                raise ValueError(
                    f"{expected} (no exponent, no negative zero, at most {places} decimals, "
                    f"within range), not {value!r}"
                )
            return Decimal(value)
        if info.mode == "json":
            raise ValueError(f"{expected}, not a JSON number")
        if isinstance(value, int):
            value = Decimal(value)
        if not isinstance(value, Decimal):
            raise ValueError(f"{expected}, not a {type(value).__name__}")
        if not value.is_finite():
            raise ValueError(f"{kind} must be finite, not {value}")
        number = _canonical(value)
        if not compiled.fullmatch(as_text(number)):
            raise ValueError(
                f"{kind} {as_text(number)} is out of range or has more than {places} decimals"
            )
        return number

    return validate


def as_text(value: Decimal) -> str:
    """Fixed-point text, never an exponent."""
    return format(value, "f")


def _described(pattern: str, description: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": pattern, "description": description})


_AS_TEXT = PlainSerializer(as_text, return_type=str, when_used="json")
_AMOUNT = amount_pattern(MAX_MINOR_UNITS)
_POSITIVE = positive_amount_pattern(MAX_MINOR_UNITS)
_SIGNED = signed_amount_pattern(MAX_MINOR_UNITS)
_INBOUND = amount_pattern(MAX_MINOR_UNITS, INBOUND_INTEGER_DIGITS)
_INBOUND_POSITIVE = positive_amount_pattern(MAX_MINOR_UNITS, INBOUND_INTEGER_DIGITS)


def _money(pattern: str, example: str = "1234.56") -> PlainValidator:
    return PlainValidator(
        _decimal_validator(pattern, kind="money", example=example, places=MAX_MINOR_UNITS)
    )


def _fraction(example: str) -> PlainValidator:
    return PlainValidator(
        _decimal_validator(FRACTION_PATTERN, kind="fraction", example=example, places=RATE_PLACES)
    )


Amount = Annotated[
    Decimal,
    _money(_AMOUNT),
    _AS_TEXT,
    _described(
        _AMOUNT, "Money amount, a decimal string; no more decimals than the currency allows."
    ),
]
"""A non-negative money amount; its scale is checked against the currency by the owning model."""
PositiveAmount = Annotated[
    Decimal,
    _money(_POSITIVE),
    _AS_TEXT,
    _described(_POSITIVE, "Money amount above zero, a decimal string."),
]
SignedAmount = Annotated[
    Decimal,
    _money(_SIGNED, example="-1234.56"),
    _AS_TEXT,
    _described(_SIGNED, "Money amount that may be negative, a decimal string."),
]
InboundAmount = Annotated[
    Decimal,
    _money(_INBOUND),
    _AS_TEXT,
    _described(
        _INBOUND,
        "Money amount below 10^16, a decimal string; no more decimals than the currency allows.",
    ),
]
InboundPositiveAmount = Annotated[
    Decimal,
    _money(_INBOUND_POSITIVE),
    _AS_TEXT,
    _described(_INBOUND_POSITIVE, "Money amount above zero and below 10^16, a decimal string."),
]
Rate = Annotated[
    Decimal,
    _fraction("0.0435"),
    _AS_TEXT,
    _described(
        FRACTION_PATTERN,
        "Nominal annual interest rate as a fraction (0.0435 = 4.35 %), a decimal string.",
    ),
]
Share = Annotated[
    Decimal,
    _fraction("0.5"),
    _AS_TEXT,
    _described(FRACTION_PATTERN, "A share between 0 and 1, a decimal string."),
]


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-MINOR_UNITS[currency])


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit (banker's rounding)."""
    return _canonical(amount.quantize(quantum(currency), rounding=ROUND_HALF_EVEN))


def quantize_down(amount: Decimal, currency: str) -> Decimal:
    """Round down to the currency's minor unit: for limits that must never be overstated."""
    return _canonical(amount.quantize(quantum(currency), rounding=ROUND_FLOOR))


def check_scale(amount: Decimal, currency: str, field: str) -> None:
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MINOR_UNITS[currency]:
        raise ValueError(
            f"{field}: {amount} has more decimal places than {currency} allows "
            f"({MINOR_UNITS[currency]})"
        )


def currency_scale_rules(fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """JSON Schema rules: for each currency with fewer minor units than the most, the money
    ``fields`` of an object in that currency match a pattern with that many decimals."""
    rules = []
    for places in sorted({p for p in MINOR_UNITS.values() if p < MAX_MINOR_UNITS}):
        currencies = sorted(c for c, p in MINOR_UNITS.items() if p == places)
        rules.append(
            {
                "if": {"properties": {"currency": {"enum": currencies}}, "required": ["currency"]},
                "then": {
                    "properties": {
                        field: {"pattern": rf"^[^.]*{_fraction_part(places)}$"} for field in fields
                    }
                },
            }
        )
    return rules


class Money(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        json_schema_extra=lambda schema: schema.setdefault("allOf", []).extend(
            currency_scale_rules(("amount",))
        ),
    )

    amount: Amount
    currency: Currency

    @model_validator(mode="after")
    def _scale(self) -> Money:
        check_scale(self.amount, self.currency, "amount")
        return self

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
