"""Every call this package makes to a case, in one place.

Each function says what became of the call: applied, refused for now (the sender should try
again later), or refused for good / no such case (the sender should stop).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from engine.actions import CaseAction, Decline, Sign
from workflows.handle import CaseHandle

log = logging.getLogger("accord.services.case_calls")

SIGNATURE_DECLINED = "SIGNATURE_DECLINED"
# Refusals that mean "not yet": the case has not recorded the envelope it is about to wait for.
_NOT_YET = ("try again shortly",)


class CallResult(StrEnum):
    APPLIED = "applied"
    RETRY_LATER = "retry_later"
    IGNORED = "ignored"


@dataclass(frozen=True)
class CaseCall:
    result: CallResult
    detail: str = ""


async def signature_completed(client: Client, case_id: str, envelope_id: str) -> CaseCall:
    """The provider says the borrower signed: the case confirms it with the provider."""
    return await _act(client, case_id, Sign(envelope_id=envelope_id))


async def signature_declined(client: Client, case_id: str, envelope_id: str) -> CaseCall:
    """The provider says the borrower declined the agreement in ``envelope_id``."""
    return await _act(client, case_id, Decline(reason=SIGNATURE_DECLINED))


async def _act(client: Client, case_id: str, action: CaseAction) -> CaseCall:
    """Raises ``RPCError`` when Temporal cannot be reached (the caller retries)."""
    try:
        accepted = await CaseHandle(client, case_id).act(action)
    except WorkflowUpdateFailedError as error:
        reason = str(error.cause) if error.cause else str(error)
        if any(text in reason for text in _NOT_YET):
            return CaseCall(CallResult.RETRY_LATER, reason)
        return CaseCall(CallResult.IGNORED, reason)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return CaseCall(CallResult.IGNORED, f"no open case {case_id}")
        raise
    return CaseCall(CallResult.APPLIED, accepted.detail)
