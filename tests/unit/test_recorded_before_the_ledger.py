"""What a case recorded before it kept the borrower's calendar and contact ledger still reads
and still does: a run replayed with the ``borrower-time-zone`` patch off (``borrower_calendar``
False) keeps the commands and deadlines it recorded, and an old-shaped contact request an old
case scheduled is still served."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from activities.case_activities import ContactRequest
from decisions.policy import load_contact_rules
from engine import commands as do
from engine.actions import StartBreathingSpace, StartMentalHealthCrisis
from engine.timers import Timer, timers
from engine.view import projection
from schemas.case import CheckpointKind
from schemas.contact import ContactChannel, ContactHolds
from schemas.events import case_id, loan_id_of_case
from tests.unit.case_driver import POLICY, Driver

pytestmark = pytest.mark.unit

EPISODE = date(2026, 2, 1)


def _recorded_before() -> Driver:
    driver = Driver()
    driver.state.borrower_calendar = False
    return driver


def test_a_run_recorded_before_reads_no_time_zone():
    old, new = _recorded_before().opened(), Driver().opened()
    assert not any(isinstance(c, do.ReadTimeZone) for c in old.issued)
    assert old.state.time_zone is None
    assert any(isinstance(c, do.ReadTimeZone) for c in new.issued)


def test_its_next_run_reads_the_time_zone_it_never_learned():
    driver = _recorded_before().opened()
    driver.state.borrower_calendar = True  # continue-as-new: the next run is patched
    driver.run()
    assert any(isinstance(c, do.ReadTimeZone) for c in driver.issued)
    assert driver.state.time_zone == driver.time_zone


def test_a_run_recorded_before_keeps_deadlines_n_times_24_hours():
    driver = _recorded_before().opened()
    info = driver.state.info
    assert info is not None
    (deadline,) = [
        t for t in timers(driver.state, POLICY) if t.kind is CheckpointKind.INFO_DEADLINE
    ]
    assert deadline.at == info.requested_at + timedelta(days=POLICY.durations.info_deadline_days)
    driver.state.borrower_calendar = True
    (calendar,) = [
        t for t in timers(driver.state, POLICY) if t.kind is CheckpointKind.INFO_DEADLINE
    ]
    assert calendar.at != deadline.at  # the end of the borrower's day, not 14 x 24 h


def _info_deadlines(driver: Driver) -> list[Timer]:
    return [t for t in timers(driver.state, POLICY) if t.kind is CheckpointKind.INFO_DEADLINE]


def test_a_run_recorded_before_holds_a_breathing_space_n_times_24_hours():
    driver = _recorded_before().opened()
    driver.act(StartBreathingSpace(staff_id="agent-1", reason="DEBT_ADVICE"))
    days = POLICY.contact.breathing_space_days
    assert driver.state.holds.breathing_space_until == driver.now + timedelta(days=days)


def test_a_contact_request_scheduled_before_the_ledger_is_still_served():
    loan_case = case_id("L-1-a", EPISODE)
    old_shape = {
        "case_id": loan_case,
        "borrower_id": "B-1",
        "channel": "phone",
        "template": "info_request",
        "idempotency_key": f"{loan_case}-c1-phone",
        "contact_log": [],
        "holds": ContactHolds().model_dump(mode="json"),
        "rules": load_contact_rules("cn-2026").model_dump(mode="json"),
    }
    request = ContactRequest.model_validate(old_shape)
    assert request.attempt_id == f"{loan_case}-c1-phone"
    assert request.loan_id == "L-1-a"
    assert request.channel is ContactChannel.PHONE


def test_the_loan_of_a_case_id_is_the_one_it_was_made_from():
    assert loan_id_of_case(case_id("LN-2024-007", EPISODE)) == "LN-2024-007"
    with pytest.raises(ValueError, match="case_id"):
        loan_id_of_case("wf-LN-1")


def test_a_case_held_only_by_a_crisis_moratorium_is_listed_as_held():
    driver = Driver().opened()
    driver.act(StartMentalHealthCrisis(staff_id="agent-1", reason="MENTAL_HEALTH_CRISIS"))
    assert projection(driver.state, POLICY, driver.now).holds == ["mental_health_crisis"]
