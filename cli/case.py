"""`accord case ...`: operations staff act on one case through Temporal updates.

Each command is validated by the workflow itself: a refused action prints the case's reason
and changes nothing. The lead's cli/main.py mounts it with ``main.add_command(case)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Coroutine, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import BaseModel, ValidationError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from clients import connect_temporal
from engine.actions import (
    Approve,
    CaseAction,
    ChooseOption,
    Dispute,
    Note,
    Pause,
    RecordContact,
    Reject,
    ResolveDispute,
    Resume,
    Retry,
    SituationChanged,
    StartBreathingSpace,
    StartMentalHealthCrisis,
    SubmitFinancials,
    TreatmentEnded,
)
from settings import get_settings
from workflows.handle import CaseHandle

ActionT = TypeVar("ActionT", bound=BaseModel)


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


def _request(model: type[ActionT], document: str | None = None, **fields: Any) -> ActionT:
    """Validate here, so a malformed action is refused with the field named before it is sent.
    ``document``: JSON text of the request, validated as JSON (money only as decimal strings)."""
    try:
        if document is not None:
            return model.model_validate_json(document, extra="forbid")
        return model.model_validate(fields, extra="forbid")
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in error.errors()
        )
        raise click.ClickException(f"refused: {problems}") from None


@contextlib.contextmanager
def _case_errors(case_id: str) -> Iterator[None]:
    try:
        yield
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise click.ClickException(f"no case {case_id}") from None
        raise click.ClickException(f"Temporal refused the call: {error.message}") from None


async def _act(case_id: str, action: CaseAction) -> None:
    client = await connect_temporal(get_settings())
    with _case_errors(case_id):
        try:
            accepted = await CaseHandle(client, case_id).act(action)
        except WorkflowUpdateFailedError as error:
            raise click.ClickException(f"refused: {error.cause}") from None
    click.echo(f"{action.action}: {accepted.detail} (stage {accepted.stage.value})")


async def _query(case_id: str, audit: bool) -> Any:
    client = await connect_temporal(get_settings())
    handle = CaseHandle(client, case_id)
    with _case_errors(case_id):
        result = await (handle.audit() if audit else handle.view())
    return result.model_dump(mode="json")


@click.group()
def case() -> None:
    """Show and steer one case (ids like case-<loan_id>-<YYYYMMDD>)."""


@case.command()
@click.argument("case_id")
@click.option("--audit", is_flag=True, help="Stages, decisions with policy versions, notes.")
def show(case_id: str, audit: bool) -> None:
    """Print the case view (or its audit trail) as JSON."""
    result = _run(_query(case_id, audit))
    click.echo(json.dumps(result, indent=2, default=str))


@case.command()
@click.argument("case_id")
@click.argument("option_ids", nargs=-1, required=True)
@click.option("--staff", "staff_id", required=True)
@click.option("--authority", type=click.Choice(["team_lead", "credit_committee"]), required=True)
def approve(case_id: str, option_ids: tuple[str, ...], staff_id: str, authority: str) -> None:
    """Approve options waiting for your authority."""
    request = _request(Approve, option_ids=option_ids, approver_id=staff_id, authority=authority)
    _run(_act(case_id, request))


@case.command()
@click.argument("case_id")
@click.argument("option_ids", nargs=-1, required=True)
@click.option("--staff", "staff_id", required=True)
@click.option("--authority", type=click.Choice(["team_lead", "credit_committee"]), required=True)
@click.option("--reason", default="APPROVAL_REJECTED", show_default=True)
def reject(
    case_id: str, option_ids: tuple[str, ...], staff_id: str, authority: str, reason: str
) -> None:
    """Reject options waiting for approval (they are withdrawn from the offer)."""
    request = _request(
        Reject, option_ids=option_ids, approver_id=staff_id, authority=authority, reason=reason
    )
    _run(_act(case_id, request))


@case.command()
@click.argument("case_id")
@click.option("--staff", "staff_id", required=True)
@click.option("--breathing-space", is_flag=True, help="Statutory moratorium (policy length).")
@click.option(
    "--starts-on",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Breathing space: its first day, the day after the register entry (default: "
    "tomorrow in the borrower's time zone).",
)
@click.option("--until", type=click.DateTime(), help="Operator pause end (UTC).")
def pause(case_id: str, staff_id: str, breathing_space: bool, starts_on: Any, until: Any) -> None:
    """Pause contact and timers."""
    if breathing_space:
        if until is not None:
            raise click.ClickException("refused: a breathing space lasts as the rules say")
        first = starts_on.date() if starts_on is not None else None
        request = _request(StartBreathingSpace, staff_id=staff_id, starts_on=first)
    elif starts_on is not None:
        raise click.ClickException("refused: --starts-on is for --breathing-space")
    else:
        request = _request(
            Pause, staff_id=staff_id, until=until.replace(tzinfo=UTC) if until is not None else None
        )
    _run(_act(case_id, request))


@case.command("mental-health-crisis")
@click.argument("case_id")
@click.option("--staff", "staff_id", required=True)
@click.option(
    "--starts-on",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Its first day, the day after the register entry (default: tomorrow, borrower's zone).",
)
def mental_health_crisis(case_id: str, staff_id: str, starts_on: Any) -> None:
    """Record a mental-health crisis moratorium: contact and timers stop until the end of
    treatment is recorded (treatment-ended) and the pack's days after it have passed."""
    first = starts_on.date() if starts_on is not None else None
    _run(_act(case_id, _request(StartMentalHealthCrisis, staff_id=staff_id, starts_on=first)))


@case.command("treatment-ended")
@click.argument("case_id")
@click.option("--staff", "staff_id", required=True)
@click.option("--ended-on", type=click.DateTime(["%Y-%m-%d"]), required=True)
def treatment_ended(case_id: str, staff_id: str, ended_on: Any) -> None:
    """Record the day the borrower's mental-health crisis treatment ended."""
    _run(_act(case_id, _request(TreatmentEnded, staff_id=staff_id, ended_on=ended_on.date())))


@case.command()
@click.argument("case_id")
@click.option("--staff", "staff_id", required=True)
@click.option(
    "--inbound/--outbound", required=True, help="The borrower called us, or we called them."
)
@click.option("--channel", type=click.Choice(["phone", "sms", "email"]), default="phone")
@click.option(
    "--conversation/--no-conversation",
    required=True,
    help="A conversation about the debt took place (it starts Reg F's quiet days).",
)
@click.option("--at", type=click.DateTime(), help="When it happened (UTC; default: now).")
@click.option("--note", help="What was said.")
def contact(
    case_id: str,
    staff_id: str,
    inbound: bool,
    channel: str,
    conversation: bool,
    at: Any,
    note: str | None,
) -> None:
    """Record a contact with the borrower outside Accord's own attempts (an inbound call, a
    conversation, a call placed by hand): it goes into the borrower's contact ledger."""
    request = _request(
        RecordContact,
        staff_id=staff_id,
        channel=channel,
        direction="inbound" if inbound else "outbound",
        conversation=conversation,
        at=at.replace(tzinfo=UTC) if at is not None else None,
        note=note,
    )
    _run(_act(case_id, request))


@case.command()
@click.argument("case_id")
@click.option("--staff", "staff_id", required=True)
@click.option("--note")
def resume(case_id: str, staff_id: str, note: str | None) -> None:
    """Lift an operator pause."""
    _run(_act(case_id, _request(Resume, staff_id=staff_id, note=note)))


@case.command()
@click.argument("case_id")
@click.option("--raised-by", required=True, help="Staff id recording the dispute.")
@click.option("--reason", default="DEBT_DISPUTED", show_default=True)
def dispute(case_id: str, raised_by: str, reason: str) -> None:
    """Record a dispute: the case pauses for human review."""
    _run(_act(case_id, _request(Dispute, raised_by=raised_by, reason=reason)))


@case.command("resolve-dispute")
@click.argument("case_id")
@click.option("--staff", "staff_id", required=True)
@click.option("--upheld/--rejected", required=True)
@click.option("--note", required=True)
def resolve_dispute(case_id: str, staff_id: str, upheld: bool, note: str) -> None:
    """Close the review: upheld closes the case, rejected resumes it."""
    request = _request(ResolveDispute, staff_id=staff_id, upheld=upheld, note=note)
    _run(_act(case_id, request))


@case.command()
@click.argument("case_id")
@click.option("--staff", "staff_id", required=True)
@click.option("--note", help="What was fixed.")
def retry(case_id: str, staff_id: str, note: str | None) -> None:
    """Try again the step a case is waiting on a human for (a failed decision, a system that
    refused a request): after fixing its cause."""
    _run(_act(case_id, _request(Retry, staff_id=staff_id, note=note)))


@case.command()
@click.argument("case_id")
@click.option("--author", "author_id", required=True)
@click.argument("text")
def note(case_id: str, author_id: str, text: str) -> None:
    """Add a note to the case."""
    _run(_act(case_id, _request(Note, author_id=author_id, text=text)))


@case.command("submit-financials")
@click.argument("case_id")
@click.argument("profile_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--situation-changed", is_flag=True, help="Mid-plan: re-assess against it.")
def submit_financials(case_id: str, profile_file: Path, situation_changed: bool) -> None:
    """Submit the borrower's financial profile (JSON, money as strings) taken by an agent."""
    document = json.dumps({"profile": json.loads(profile_file.read_text())})
    if situation_changed:
        _run(_act(case_id, _request(SituationChanged, document)))
    else:
        _run(_act(case_id, _request(SubmitFinancials, document)))


@case.command()
@click.argument("case_id")
@click.argument("option_id")
def choose(case_id: str, option_id: str) -> None:
    """Record the borrower's chosen option (taken by an agent)."""
    _run(_act(case_id, _request(ChooseOption, option_id=option_id)))
