"""Who may act, and the balance the desk and the search attributes show: the pure parts.

The rules check the authenticated actor (never a typed authority); credentials are bound to one
staff member, case and action; accounts keep only Argon2 hashes; the balance and arrears follow
payments; amounts are banded before they reach visibility."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.actions import STAFF_ACTIONS, Approve, Note, Pause
from engine.balance import amount_band
from engine.rules import refusal
from engine.view import projection
from schemas.case import CaseStage
from schemas.events import LoanPayment
from schemas.staff import Actor, StaffRole
from staff.accounts import Accounts, AccountsError
from staff.credentials import (
    CredentialError,
    read_actor,
    sign_action,
    sign_session,
    verify_action,
    verify_session,
)
from staff.keys import development_key
from tests.unit.case_driver import Driver
from workflows import search_attributes as sa

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


def payment(driver: Driver, amount: str, suffix: str) -> LoanPayment:
    return LoanPayment(
        event_id=f"pay-{suffix}",
        occurred_at=driver.now,
        schema_version=1,
        loan_id=driver.loan.loan_id,
        currency="CNY",
        amount=Decimal(amount),
        paid_at=driver.now,
        channel="bank_transfer",
    )


def test_a_staff_action_without_an_authenticated_actor_is_refused() -> None:
    driver = Driver()
    driver.run()
    assert {"approve", "reject", "note", "assign", "retry"} <= STAFF_ACTIONS
    assert {"submit_financials", "choose_option", "sign", "dispute"}.isdisjoint(STAFF_ACTIONS)
    note = Note(author_id="S-1", text="x")
    assert driver.refusal(note) is None  # the driver signs in the staff member it names
    unsigned = refusal(driver.state, note, driver.policy, driver.now)
    assert unsigned is not None and "needs a signed-in staff member" in unsigned
    other = Actor(staff_id="S-2", role=StaffRole.CREDIT_COMMITTEE)
    impersonating = driver.refusal(Note(author_id="S-1", text="x"), actor=other)
    assert impersonating == "note: it names S-1, but the signed-in staff member is S-2"


def test_roles_grant_the_authority_the_policy_says() -> None:
    policy = Driver().policy
    assert policy.approval.granted_to(StaffRole.AGENT).value == "automatic"
    assert policy.approval.granted_to(StaffRole.TEAM_LEAD).value == "team_lead"
    assert policy.approval.granted_to(StaffRole.ADMINISTRATOR).value == "credit_committee"


def test_credentials_are_bound_to_staff_case_and_action() -> None:
    actor = Actor(staff_id="tl-1", role=StaffRole.TEAM_LEAD)
    action = Pause(staff_id="tl-1")
    credential = sign_action(KEY, actor, "case-A", action, NOW, timedelta(minutes=5))
    keys = [KEY.public_key()]
    assert verify_action(keys, credential, "case-A", action, NOW) == actor
    assert read_actor(credential) == actor
    with pytest.raises(CredentialError, match="another case"):
        verify_action(keys, credential, "case-B", action, NOW)
    with pytest.raises(CredentialError, match="another action"):
        verify_action(keys, credential, "case-A", Pause(staff_id="tl-1", reason="OTHER"), NOW)
    with pytest.raises(CredentialError, match="expired"):
        verify_action(keys, credential, "case-A", action, NOW + timedelta(minutes=7))
    with pytest.raises(CredentialError, match="signature does not verify"):
        verify_action(
            [Ed25519PrivateKey.generate().public_key()], credential, "case-A", action, NOW
        )
    with pytest.raises(CredentialError, match="not a valid staff credential"):
        verify_action(keys, "not-a-jwt", "case-A", action, NOW)
    # A session token is not an action credential (and the other way round).
    session = sign_session(KEY, actor, NOW, timedelta(hours=1), "password")
    with pytest.raises(CredentialError):
        verify_action(keys, session, "case-A", action, NOW)
    assert verify_session(keys, session, NOW).actor == actor
    with pytest.raises(CredentialError):
        verify_session(keys, credential, NOW)
    # Rotation: the old key still verifies while it is listed.
    new_key = Ed25519PrivateKey.generate()
    assert verify_action([new_key.public_key(), *keys], credential, "case-A", action, NOW)


def test_accounts_keep_hashes_and_refuse_wrong_passwords(tmp_path: Path) -> None:
    accounts = Accounts(tmp_path / "accounts.json")
    accounts.add("tl-1", StaffRole.TEAM_LEAD, "correct horse battery")
    stored = (tmp_path / "accounts.json").read_text()
    assert "correct horse" not in stored and "$argon2id$" in stored
    assert accounts.authenticate("tl-1", "correct horse battery") == Actor(
        staff_id="tl-1", role=StaffRole.TEAM_LEAD
    )
    assert accounts.authenticate("tl-1", "wrong password!") is None
    assert accounts.authenticate("nobody", "correct horse battery") is None
    with pytest.raises(AccountsError, match="at least"):
        accounts.add("ag-1", StaffRole.AGENT, "short")
    with pytest.raises(AccountsError, match="not a valid staff id"):
        accounts.add("Jane Doe", StaffRole.AGENT, "long enough password")
    actor = Actor(staff_id="tl-1", role=StaffRole.TEAM_LEAD)
    assert accounts.current(actor)
    accounts.add("tl-1", StaffRole.AGENT, "correct horse battery")
    assert not accounts.current(actor)  # a role change ends what the old role signed in for


def test_the_development_key_is_created_once(tmp_path: Path) -> None:
    path = tmp_path / "staff" / "signing-key.pem"
    first = development_key(path)
    second = development_key(path)
    assert first.private_bytes_raw() == second.private_bytes_raw()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_payments_move_days_past_due_and_arrears_before_a_plan() -> None:
    driver = Driver()
    driver.run()
    loan = driver.loan
    before = projection(driver.state, driver.policy, driver.now)
    assert before.days_past_due == loan.days_past_due  # reported an hour ago
    assert before.arrears_band == amount_band(loan.overdue_amount)
    driver.send(payment(driver, str(loan.contractual_instalment), "1"))
    after = projection(driver.state, driver.policy, driver.now)
    assert after.days_past_due is not None and before.days_past_due is not None
    assert 28 <= before.days_past_due - after.days_past_due <= 31
    driver.send(payment(driver, str(loan.overdue_amount - loan.contractual_instalment), "2"))
    cleared = projection(driver.state, driver.policy, driver.now)
    assert cleared.days_past_due == 0 and cleared.overdue_since is None
    assert cleared.arrears_band == 0
    # The same payment event twice counts once.
    driver.send(payment(driver, "100.00", "2"))
    assert projection(driver.state, driver.policy, driver.now) == cleared


def test_under_a_plan_the_arrears_are_what_fell_due_and_was_not_paid() -> None:
    driver = Driver().tracking()
    assert driver.state.stage is CaseStage.TRACK
    agreement = driver.state.agreement
    assert agreement is not None
    first_due = datetime.combine(agreement.schedule.due_date(0), datetime.min.time(), UTC)
    driver.advance(first_due - driver.now + timedelta(days=3))
    late = projection(driver.state, driver.policy, driver.now)
    assert late.days_past_due == 3
    assert late.arrears_band == amount_band(agreement.schedule.amount(0))
    driver.send(payment(driver, str(agreement.schedule.amount(0)), "i1"))
    paid = projection(driver.state, driver.policy, driver.now)
    assert paid.days_past_due == 0 and paid.arrears_band == 0


@pytest.mark.parametrize(
    ("amount", "band"),
    [
        ("0.99", 0),
        ("1", 1),
        ("1.99", 1),
        ("2", 2),
        ("4.99", 2),
        ("5", 5),
        ("9.99", 5),
        ("10130.50", 10000),
        ("19999.99", 10000),
        ("20000", 20000),
        ("30800", 20000),
        ("75000", 50000),
        ("1000000", 1000000),
    ],
)
def test_amounts_are_banded_on_a_1_2_5_scale(amount: str, band: int) -> None:
    assert amount_band(Decimal(amount)) == band


def test_the_attributes_fit_the_dev_servers_limits() -> None:
    by_type: dict[str, int] = {}
    for key in sa.ALL:
        by_type[key.indexed_value_type.name] = by_type.get(key.indexed_value_type.name, 0) + 1
    limits = {"KEYWORD": 10, "INT": 3, "DATETIME": 3, "KEYWORD_LIST": 3, "BOOL": 3}
    assert all(by_type[name] <= limits[name] for name in by_type), by_type
    assert set(sa.BY_PROJECTION.values()) == set(sa.ALL)


def test_approve_keeps_reading_old_recorded_actions() -> None:
    recorded = '{"action":"approve","option_ids":["x"],"approver_id":"S-1","authority":"team_lead"}'
    approve = Approve.model_validate_json(recorded)
    assert approve.credential is None and approve.approver_id == "S-1"
