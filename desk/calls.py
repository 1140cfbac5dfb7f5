"""Staff calls into a case — for the desk and the CLI alike — with every failure turned into one
line that says what happened and what to do (``CallError``), and staff actions signed for the
authenticated staff member (``sign_for``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import TypeAdapter, ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from clients import connect_temporal
from engine.actions import Accepted, CaseAction, CaseAudit
from schemas.case import CaseView
from schemas.staff import Actor
from settings import Settings
from staff.credentials import sign_action
from workflows.case import FORBIDDEN
from workflows.handle import CaseHandle

CONNECT_SECONDS = 5.0
ACTIONS: TypeAdapter[CaseAction] = TypeAdapter(CaseAction)

STAFF_FIELD = {
    "approve": "approver_id",
    "reject": "approver_id",
    "pause": "staff_id",
    "resume": "staff_id",
    "breathing_space": "staff_id",
    "mental_health_crisis": "staff_id",
    "treatment_ended": "staff_id",
    "record_contact": "staff_id",
    "resolve_dispute": "staff_id",
    "assign": "staff_id",
    "retry": "staff_id",
    "note": "author_id",
    "dispute": "raised_by",
}
"""The field of each action that names who takes it: filled from the signed-in staff member."""


class CallError(Exception):
    """A call that did not happen; ``status`` is the HTTP status the desk answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def unreachable(settings: Settings) -> CallError:
    return CallError(
        503,
        f"cannot reach Temporal at {settings.temporal.address} — is the stack running? "
        "`accord stack status`",
    )


async def connect(settings: Settings) -> Client:
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            return await connect_temporal(settings)
    except (RuntimeError, RPCError, TimeoutError, OSError):
        raise unreachable(settings) from None


def action_for(document: dict[str, Any], actor: Actor) -> CaseAction:
    """A staff member's action from its JSON document, taken as ``actor``: the field naming who
    acts is filled in (naming anyone else is refused); a credential in it is refused."""
    if not isinstance(document, dict):
        raise CallError(422, "the action must be a JSON object with an `action` field")
    if document.get("credential") is not None:
        raise CallError(422, "credential: set by the desk, not by the caller")
    name = document.get("action")
    field = STAFF_FIELD.get(str(name))
    if field is not None:
        named = document.get(field)
        if named not in (None, actor.staff_id):
            raise CallError(
                403, f"{name}: {field} is {named}, but you are signed in as {actor.staff_id}"
            )
        document = {**document, field: actor.staff_id}
    try:
        return ACTIONS.validate_python(document, extra="forbid")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "action"
        raise CallError(422, f"{where}: {first['msg']}") from None


def sign_for(
    action: CaseAction,
    actor: Actor,
    case_id: str,
    key: Ed25519PrivateKey,
    lifetime: timedelta,
) -> CaseAction:
    credential = sign_action(key, actor, case_id, action, datetime.now(UTC), lifetime)
    return action.model_copy(update={"credential": credential})


async def act(client: Client, settings: Settings, case_id: str, action: CaseAction) -> Accepted:
    try:
        return await CaseHandle(client, case_id).act(action)
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError):
            reason = cause.message
        else:
            reason = str(cause) if cause is not None else str(error)
        forbidden = isinstance(cause, ApplicationError) and cause.type == FORBIDDEN
        raise CallError(403 if forbidden else 409, f"refused: {reason}") from None
    except RPCError as error:
        raise await _explain(client, settings, case_id, error) from None


async def view(client: Client, settings: Settings, case_id: str) -> CaseView:
    try:
        return await CaseHandle(client, case_id).view()
    except WorkflowQueryFailedError as error:
        raise CallError(502, f"case {case_id}: the case could not answer ({error})") from None
    except RPCError as error:
        raise await _explain(client, settings, case_id, error) from None


async def audit(client: Client, settings: Settings, case_id: str) -> CaseAudit:
    try:
        return await CaseHandle(client, case_id).audit()
    except WorkflowQueryFailedError as error:
        raise CallError(502, f"case {case_id}: the case could not answer ({error})") from None
    except RPCError as error:
        raise await _explain(client, settings, case_id, error) from None


async def describe(
    client: Client, settings: Settings, case_id: str
) -> WorkflowExecutionDescription:
    try:
        return await client.get_workflow_handle(case_id).describe()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise CallError(404, f"no case {case_id}") from None
        raise _transport(settings, error) from None


async def _explain(client: Client, settings: Settings, case_id: str, error: RPCError) -> CallError:
    """What a failed call means: no such case, a closed case (and how it closed), Temporal
    down, or Temporal's own words."""
    if error.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
        return _transport(settings, error)
    try:
        described = await client.get_workflow_handle(case_id).describe()
    except RPCError as second:
        if second.status is RPCStatusCode.NOT_FOUND:
            return CallError(404, f"no case {case_id}")
        return _transport(settings, second)
    if described.status is WorkflowExecutionStatus.RUNNING:
        return CallError(409, f"case {case_id}: {error.message}")
    return CallError(409, await closed_reason(client, described))


async def closed_reason(client: Client, described: WorkflowExecutionDescription) -> str:
    """``case … is closed (cured on 2026-…)``; for a workflow that ended without closing the case
    (failed, terminated), how and when it ended."""
    case_id = described.id
    ended = f"{described.close_time:%Y-%m-%d}" if described.close_time else "an unknown day"
    status = described.status
    if status is WorkflowExecutionStatus.COMPLETED:
        try:
            shown = await CaseHandle(client, case_id).view(rpc_timeout=timedelta(seconds=5))
        except (RPCError, WorkflowQueryFailedError):
            return f"case {case_id} is closed (on {ended})"
        if shown.outcome is not None and shown.closed_at is not None:
            return f"case {case_id} is closed ({shown.outcome.value} on {shown.closed_at:%Y-%m-%d})"
        return f"case {case_id} is closed (on {ended})"
    name = status.name.lower().replace("_", " ") if status is not None else "ended"
    return (
        f"case {case_id} is not running: its workflow {name} on {ended} — see it in the Temporal UI"
    )


def _transport(settings: Settings, error: RPCError) -> CallError:
    if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return unreachable(settings)
    return CallError(502, f"Temporal refused the call: {error.message}")
