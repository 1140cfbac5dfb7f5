"""Contracts: strict validation naming the field, JSON round trips, JSON Schema export."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from decisions.plans import propose
from decisions.policy import load_policy
from decisions.schedules import schedule_of
from decisions.tiering import assess
from schemas.assessment import CreditRecord, Engagement
from schemas.case import CaseStage, CaseView, TrackedInstalment
from schemas.contact import ContactAttempt
from schemas.events import ContactInteraction, LoanOverdue, parse_inbound
from schemas.export import write_json_schemas
from schemas.money import Money
from schemas.outbound import (
    CASE_EVENT,
    AgreementSigned,
    CaseClosed,
    OptionSummary,
    PlanProposed,
    parse_case_event,
)
from schemas.plan import Instalment, RepaymentSchedule
from tests import factories

pytestmark = pytest.mark.unit

OVERDUE = {
    "event_id": "evt-1",
    "occurred_at": "2026-03-01T09:00:00+08:00",
    "schema_version": 1,
    "loan_id": "L-1001",
    "borrower_id": "B-77",
    "product": "personal_loan",
    "currency": "CNY",
    "principal_outstanding": "30000.00",
    "interest_outstanding": "300.00",
    "penalty_interest_outstanding": "400.00",
    "fees_outstanding": "100.00",
    "overdue_amount": "2959.24",
    "days_past_due": 45,
    "delinquent_since": "2026-01-15",
    "contractual_instalment": "1329.62",
    "remaining_term_months": 24,
    "annual_interest_rate": "0.06",
}


def test_valid_overdue_event_parses():
    event = parse_inbound("loan.overdue.v1", json.dumps(OVERDUE))
    assert event.case_id == "case-L-1001-20260115"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("days_past_due", "45", "Input should be a valid integer"),
        ("principal_outstanding", 30000.5, "not a float"),
        ("fees_outstanding", "-1.00", "must be a decimal string"),
        ("fees_outstanding", "1E+2", "no exponent"),
        ("fees_outstanding", "-0.00", "no negative zero"),
        ("fees_outstanding", 100, "not a JSON number"),
        ("annual_interest_rate", 0.06, "not a float"),
        ("annual_interest_rate", "1.5", "must be a decimal string"),
        ("currency", "XYZ", "Input should be 'CNY'"),
        ("delinquent_since", "2026-02-30", "day value is outside expected range"),
        ("schema_version", 2, "Input should be 1"),
        ("interest_outstanding", "300.001", "at most 2 decimals"),
        ("occurred_at", "2026-03-01T09:00:00", "timezone"),
    ],
)
def test_bad_inbound_event_gives_one_error_naming_the_field(field, value, message):
    with pytest.raises(ValidationError) as raised:
        parse_inbound("loan.overdue.v1", json.dumps({**OVERDUE, field: value}))
    errors = raised.value.errors()
    assert len(errors) == 1
    # A field error carries its location; a cross-field check names the field in its message.
    where = ".".join(str(part) for part in errors[0]["loc"]) or errors[0]["msg"]
    assert field in where
    assert message in errors[0]["msg"]


def test_unknown_field_refused_at_the_edge_but_ignored_in_history():
    raw = json.dumps({**OVERDUE, "legacy_field": "x"})
    with pytest.raises(ValidationError) as raised:
        parse_inbound("loan.overdue.v1", raw)
    assert raised.value.errors()[0]["loc"] == ("legacy_field",)
    # A workflow history written before a field was removed still loads.
    assert LoanOverdue.model_validate_json(raw).loan_id == "L-1001"


def test_hardship_temporary_must_be_a_real_boolean():
    hardship = {
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
        "temporary": "yes",
    }
    with pytest.raises(ValidationError) as raised:
        parse_inbound("customer.hardship.v1", json.dumps(hardship))
    assert [e["loc"] for e in raised.value.errors()] == [("temporary",)]


def test_schedule_that_does_not_add_up_is_refused():
    instalment = Instalment(
        number=1,
        due_date=date(2026, 4, 1),
        principal=Decimal("10.00"),
        interest=Decimal("0"),
        amount=Decimal("10.00"),
    )
    with pytest.raises(ValidationError, match=r"principal sums to 10\.00, not balance 11\.00"):
        RepaymentSchedule(
            currency="CNY",
            balance=Decimal("11.00"),
            annual_interest_rate=0,
            instalments=(instalment,),
        )
    with pytest.raises(ValidationError, match=r"amount: 11\.00 is not principal 10\.00"):
        Instalment(
            number=1,
            due_date=date(2026, 4, 1),
            principal=Decimal("10.00"),
            interest=Decimal("0"),
            amount=Decimal("11.00"),
        )


def _proposal():
    policy = load_policy()
    loan = factories.loan()
    assessment = assess(loan, factories.profile(), CreditRecord(), Engagement(), policy)
    return loan, assessment, propose(loan, assessment, policy, date(2026, 4, 1))


def test_case_view_round_trips_through_json():
    loan, assessment, proposal = _proposal()
    schedule = schedule_of(proposal.offered[0].terms)
    view = CaseView(
        case_id=loan.case_id,
        loan_id=loan.loan_id,
        stage=CaseStage.TRACK,
        policy_version=assessment.policy_version,
        opened_at=datetime(2026, 3, 1, 1, tzinfo=UTC),
        tier=assessment.tier,
        reasons=assessment.reasons,
        assessment=assessment,
        proposal=proposal,
        schedule=tuple(TrackedInstalment(instalment=i) for i in schedule.instalments),
        contact_log=(
            ContactAttempt(
                channel="sms", at=datetime(2026, 3, 1, 2, tzinfo=UTC), outcome="delivered"
            ),
        ),
    )
    assert CaseView.model_validate_json(view.model_dump_json()) == view


def test_outbound_events_round_trip_and_dispatch_on_kind():
    loan, _, proposal = _proposal()
    option = proposal.offered[0]
    envelope = {
        "event_id": f"{loan.case_id}:7",
        "occurred_at": datetime(2026, 3, 10, tzinfo=UTC),
        "schema_version": 1,
        "case_id": loan.case_id,
        "loan_id": loan.loan_id,
    }
    events = [
        PlanProposed(**envelope, policy_version="p1", options=(OptionSummary.of(option),)),
        AgreementSigned(
            **envelope,
            agreement_id="agr-1",
            option_id=option.option_id,
            terms=option.terms,
            schedule=schedule_of(option.terms),
            signed_at=datetime(2026, 3, 11, tzinfo=UTC),
        ),
        CaseClosed(**envelope, outcome="cured", reasons=("PLAN_COMPLETED",)),
    ]
    for event in events:
        assert parse_case_event(event.model_dump_json()) == event
    summary = events[0].options[0]
    assert summary.first_instalment == Money(amount=option.first_instalment, currency="CNY")


def test_outbound_event_with_unknown_kind_or_version_is_refused():
    raw = {
        "event_id": "e1",
        "occurred_at": "2026-03-10T00:00:00Z",
        "schema_version": 1,
        "case_id": "case-L-1001-20260115",
        "loan_id": "L-1001",
        "kind": "resumed",
    }
    assert parse_case_event(json.dumps(raw)).kind == "resumed"
    with pytest.raises(ValidationError, match="kind"):
        parse_case_event(json.dumps({**raw, "kind": "teleported"}))
    with pytest.raises(ValidationError) as raised:
        parse_case_event(json.dumps({**raw, "schema_version": 2}))
    assert [e["loc"] for e in raised.value.errors()] == [("resumed", "schema_version")]


def test_json_schemas_are_written_for_every_topic(tmp_path: Path):
    written = write_json_schemas(tmp_path / "schemas")
    assert [p.name for p in written] == [
        "case.events.v1.schema.json",
        "contact.interaction.v1.schema.json",
        "customer.hardship.v1.schema.json",
        "loan.overdue.v1.schema.json",
        "loan.payment.v1.schema.json",
        "loan.status.v1.schema.json",
    ]
    outbound = json.loads(written[0].read_text())
    kinds = set(outbound["discriminator"]["mapping"])
    assert kinds == {
        "opened", "contacted", "info_received", "assessed", "proposed", "approved", "signed",
        "instalment_paid", "instalment_missed", "reassessed", "paused", "resumed", "closed",
    }  # fmt: skip
    assert CASE_EVENT.json_schema() == {k: v for k, v in outbound.items() if k != "$schema"}


CONTACT_INTERACTION = {
    "event_id": "cc-20260302-0001",
    "occurred_at": "2026-03-02T09:15:00+08:00",
    "schema_version": 1,
    "loan_id": "L-1001",
    "borrower_id": "B-77",
    "channel": "phone",
    "direction": "inbound",
    "conversation": True,
}


def test_contact_interaction_event_and_its_json_schema_agree(tmp_path: Path):
    import jsonschema

    written = write_json_schemas(tmp_path / "schemas")
    (schema_file,) = [p for p in written if p.name == "contact.interaction.v1.schema.json"]
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(CONTACT_INTERACTION, schema)
    event = parse_inbound("contact.interaction.v1", json.dumps(CONTACT_INTERACTION))
    assert isinstance(event, ContactInteraction)
    assert (event.direction, event.conversation) == ("inbound", True)
    for bad in ({"conversation": "yes"}, {"direction": "sideways"}, {"channel": "pigeon"}):
        document = {**CONTACT_INTERACTION, **bad}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(document, schema)
        with pytest.raises(ValidationError):
            parse_inbound("contact.interaction.v1", json.dumps(document))
