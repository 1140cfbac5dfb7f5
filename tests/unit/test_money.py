"""Strict money: decimal strings only, and the exported JSON Schema accepts exactly what the
stream processor accepts."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter, ValidationError

from schemas.assessment import Affordability
from schemas.events import INBOUND_EVENTS, json_schemas, parse_inbound
from schemas.money import Amount, Money, Rate
from tests.unit.test_schemas import OVERDUE

pytestmark = pytest.mark.unit

PAYMENT = {
    "event_id": "evt-3",
    "occurred_at": "2026-03-02T09:00:00+08:00",
    "schema_version": 1,
    "loan_id": "L-1001",
    "currency": "CNY",
    "amount": "100.00",
    "paid_at": "2026-03-02T08:00:00+08:00",
    "channel": "card",
}
HARDSHIP = {
    "event_id": "evt-2",
    "occurred_at": "2026-03-01T09:00:00+08:00",
    "schema_version": 1,
    "loan_id": "L-1001",
    "borrower_id": "B-77",
    "currency": "CNY",
    "monthly_income": "3500.00",
    "essential_expenses": "2200.00",
    "other_debt_payments": "0.00",
    "household_size": 2,
    "reason": "job_loss",
    "temporary": True,
    "lump_sum_available": None,
}
SCHEMAS = json_schemas()


def accepted_by_processor(topic: str, document: dict[str, Any]) -> bool:
    try:
        parse_inbound(topic, json.dumps(document))
    except ValidationError:
        return False
    return True


def accepted_by_schema(topic: str, document: dict[str, Any]) -> bool:
    return Draft202012Validator(SCHEMAS[topic]).is_valid(document)


decimal_texts = st.one_of(
    st.from_regex(r"\A-?[0-9]{1,18}(\.[0-9]{0,3})?\Z"),
    st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
    st.decimals(Decimal(0), Decimal(1), places=4).map(str),
    st.decimals(Decimal(0), Decimal(1), places=9).map(str),
    st.sampled_from(
        [
            "0",
            "0.00",
            "-0.00",
            "-0",
            "1E+2",
            "1e2",
            "0.5",
            "1",
            "1.0",
            "1.00000000",
            "1.000000001",
            "01.00",
            " 1.00",
            "1.00 ",
            "+1.00",
            ".5",
            "5.",
            "9999999999999999.99",
            "10000000000000000",
            "1000000000000000",
            "NaN",
            "Infinity",
            "",
        ]
    ),
)
json_values = st.one_of(
    decimal_texts,
    st.integers(-5, 10**17),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)


@settings(max_examples=400, deadline=None)
@given(
    topic_field=st.sampled_from(
        [
            ("loan.overdue.v1", OVERDUE, "fees_outstanding"),
            ("loan.overdue.v1", OVERDUE, "contractual_instalment"),
            ("loan.overdue.v1", OVERDUE, "annual_interest_rate"),
            ("loan.payment.v1", PAYMENT, "amount"),
            ("customer.hardship.v1", HARDSHIP, "lump_sum_available"),
            ("customer.hardship.v1", HARDSHIP, "monthly_income"),
        ]
    ),
    currency=st.sampled_from(["CNY", "JPY", "USD"]),
    value=json_values,
)
def test_the_schema_accepts_exactly_what_the_processor_accepts(topic_field, currency, value):
    topic, base, name = topic_field
    document = {**base, "currency": currency, name: value}
    if currency == "JPY":  # the rest of the document in whole yen
        for key in INBOUND_EVENTS[topic].MONEY_FIELDS:
            if key != name and isinstance(base.get(key), str):
                document[key] = base[key].split(".")[0]
    assert accepted_by_processor(topic, document) == accepted_by_schema(topic, document), (
        value,
        currency,
    )


@pytest.mark.parametrize(
    "text", ["-0.00", "-0", "1E+2", "1e2", "01", "1.", ".5", "+1", " 1", "1.001", "NaN", ""]
)
def test_amount_text_that_is_not_a_plain_decimal_is_refused(text: str):
    with pytest.raises(ValidationError, match="decimal string"):
        TypeAdapter(Amount).validate_json(json.dumps(text))


@pytest.mark.parametrize("value", [100, 1.5, True])
def test_json_numbers_and_booleans_are_refused_for_money_and_rates(value: object):
    for kind in (Amount, Rate):
        with pytest.raises(ValidationError, match="decimal string"):
            TypeAdapter(kind).validate_json(json.dumps(value))


def test_python_decimals_are_made_canonical_so_they_serialise_as_valid_text():
    adapter = TypeAdapter(Amount)
    assert adapter.dump_json(adapter.validate_python(Decimal("-0.00"))) == b'"0.00"'
    assert adapter.dump_json(adapter.validate_python(Decimal("1E+2"))) == b'"100"'
    assert TypeAdapter(Rate).dump_json(Decimal("1E-7")) == b'"0.0000001"'
    with pytest.raises(ValidationError, match="more than 2 decimals"):
        adapter.validate_python(Decimal("1.001"))
    with pytest.raises(ValidationError, match="not a float"):
        adapter.validate_python(1.5)


def test_zero_decimal_currency_is_refused_with_the_field_named():
    with pytest.raises(ValidationError, match=r"amount: 1\.50 has more decimal places than JPY"):
        Money(amount=Decimal("1.50"), currency="JPY")
    with pytest.raises(ValidationError) as raised:
        parse_inbound("loan.payment.v1", json.dumps({**PAYMENT, "currency": "JPY"}))
    assert "amount: 100.00 has more decimal places than JPY allows" in str(raised.value)


def test_disposable_income_may_be_negative_but_never_a_float_or_negative_zero():
    fields = {
        "currency": "CNY",
        "share": "0.5",
        "affordable_instalment": "0.00",
        "hardship": "none",
    }
    assert Affordability.model_validate_json(
        json.dumps({**fields, "disposable_income": "-12.50"})
    ).disposable_income == Decimal("-12.50")
    for bad in (-12.5, "-0.00", "0.5e1"):
        with pytest.raises(ValidationError, match="disposable_income"):
            Affordability.model_validate_json(json.dumps({**fields, "disposable_income": bad}))
    with pytest.raises(ValidationError, match="share"):
        Affordability.model_validate_json(
            json.dumps({**fields, "disposable_income": "1.00", "share": 0.5})
        )
