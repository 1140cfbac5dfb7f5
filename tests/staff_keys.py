"""A staff signing key for tests, and actions signed with it as the desk would sign them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.actions import STAFF_ACTIONS, CaseAction, named_staff
from schemas.staff import Actor, StaffRole
from staff.credentials import sign_action

TEST_KEY = Ed25519PrivateKey.generate()
ActionT = TypeVar("ActionT", bound=CaseAction)


def signed(
    action: ActionT,
    case_id: str,
    now: datetime,
    role: StaffRole = StaffRole.CREDIT_COMMITTEE,
    staff_id: str | None = None,
    key: Ed25519PrivateKey = TEST_KEY,
) -> ActionT:
    """``action`` with a credential for the staff member it names (or ``staff_id``)."""
    who = staff_id or named_staff(action)
    assert who is not None, f"{action.action} names no staff member: pass staff_id"
    credential = sign_action(
        key, Actor(staff_id=who, role=role), case_id, action, now, timedelta(minutes=5)
    )
    return action.model_copy(update={"credential": credential})


def signed_if_staff(action: ActionT, case_id: str, now: datetime) -> ActionT:
    """Staff actions signed (credit committee), borrower actions as they are."""
    if action.action in STAFF_ACTIONS and action.credential is None:
        return signed(action, case_id, now)
    return action
