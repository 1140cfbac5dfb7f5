"""Who acts on a case: operations staff, their roles, and the identity a case checks.

A role is what the bank's identity system says a person is; what a role may approve is policy
(``ApprovalPolicy.role_authority``), so a change of who approves what is a versioned policy
change, recorded with every decision taken under it.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from schemas.events import OpaqueId


class StaffRole(StrEnum):
    AGENT = "agent"
    """Talks to borrowers, records what they say, steers cases; approves nothing."""
    TEAM_LEAD = "team_lead"
    CREDIT_COMMITTEE = "credit_committee"
    ADMINISTRATOR = "administrator"
    """Runs the deployment (holds its signing key): acts by name from the CLI."""


class Actor(BaseModel):
    """The staff member an action was authenticated for (verified before the case sees it)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    staff_id: OpaqueId
    role: StaffRole
