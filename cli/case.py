"""`accord case ...`: find, read and act on cases from the command line, as on the desk.

Reads (``list``, ``show``) go to Temporal. Actions are taken as a signed-in staff member —
through the desk's API with the token `accord login` saved — or, with ``accord case --admin
NAME …``, as the named administrator, signed with the deployment's staff key and sent to the
case directly. Either way the case verifies who acts and checks their authority itself; a
refused action prints the case's reason and changes nothing. Every error is one line that says
what to do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
from pydantic import BaseModel, ValidationError

from desk.cases import QUEUES
from engine.actions import (
    Approve,
    Assign,
    CaseAction,
    ChooseOption,
    CounterPropose,
    Decline,
    Dispute,
    Note,
    Pause,
    RecordContact,
    Reject,
    ResolveDispute,
    Resume,
    Retry,
    Sign,
    SituationChanged,
    StartBreathingSpace,
    StartMentalHealthCrisis,
    SubmitFinancials,
    TreatmentEnded,
)
from schemas.assessment import FinancialProfile
from schemas.staff import Actor, StaffRole

ActionT = TypeVar("ActionT", bound=BaseModel)


@dataclass(frozen=True)
class Identity:
    admin: str | None
    """Act as this administrator (signing with the deployment's key)."""


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    from desk.calls import CallError

    try:
        return asyncio.run(coroutine)
    except CallError as error:
        raise click.ClickException(error.message) from None


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


def _identity() -> tuple[Actor, Identity, dict[str, Any] | None]:
    """Who acts: the named administrator, or the staff member `accord login` signed in."""
    from cli.staff import load_token

    context = click.get_current_context().find_object(Identity)
    identity = context or Identity(admin=None)
    if identity.admin is not None:
        try:
            return Actor(staff_id=identity.admin, role=StaffRole.ADMINISTRATOR), identity, None
        except ValidationError:
            raise click.ClickException(
                f"--admin {identity.admin!r}: an opaque staff id (letters, digits, . _ : -)"
            ) from None
    token = load_token()
    if token is None:
        raise click.ClickException(
            "not signed in: `accord login` (or act as an administrator: "
            "`accord case --admin NAME …`)"
        )
    return Actor(staff_id=token["staff_id"], role=StaffRole(token["role"])), identity, token


def _me() -> str:
    return _identity()[0].staff_id


def _act(case_id: str, action: CaseAction) -> None:
    actor, identity, token = _identity()
    if identity.admin is not None:
        accepted = _run(_act_as_admin(case_id, action, actor))
        click.echo(f"{action.action}: {accepted.detail} (stage {accepted.stage.value})")
        return
    assert token is not None
    from cli.staff import api_message

    url = f"{token['desk']}/api/cases/{case_id}/actions"
    try:
        answer = httpx.post(
            url,
            json=action.model_dump(mode="json", exclude={"credential"}),
            headers={"Authorization": f"Bearer {token['token']}"},
            timeout=30,
        )
    except httpx.HTTPError:
        raise click.ClickException(
            f"cannot reach the desk at {token['desk']} — is the stack running? "
            "`accord stack status`"
        ) from None
    if answer.status_code == 401:
        raise click.ClickException(f"{api_message(answer)}: `accord login` again")
    if answer.status_code != 200:
        raise click.ClickException(api_message(answer))
    body = answer.json()
    click.echo(f"{action.action}: {body['detail']} (stage {body['stage']})")


async def _act_as_admin(case_id: str, action: CaseAction, actor: Actor) -> Any:
    from desk import calls
    from settings import get_settings
    from staff.keys import StaffKeyError, signing_key

    settings = get_settings()
    try:
        key = signing_key(settings)
    except StaffKeyError as error:
        raise calls.CallError(403, str(error)) from None
    lifetime = timedelta(seconds=settings.staff.credential_seconds)
    signed = calls.sign_for(action, actor, case_id, key, lifetime)
    client = await calls.connect(settings)
    return await calls.act(client, settings, case_id, signed)


def _profile_document(path: Path) -> str:
    """The financial-profile file as JSON text (its format: `accord case profile-schema`)."""
    try:
        text = path.read_text()
        json.loads(text)
    except UnicodeDecodeError:
        raise click.ClickException(f"{path}: not a text file (a JSON financial profile)") from None
    except json.JSONDecodeError as error:
        raise click.ClickException(
            f"{path}: not JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            "the format: `accord case profile-schema`"
        ) from None
    return text


@click.group()
@click.option(
    "--admin",
    metavar="NAME",
    help="Act as the named administrator: signed with the deployment's staff key "
    "(ACCORD_STAFF__SIGNING_KEY, or the development key in the data dir), sent to Temporal.",
)
@click.pass_context
def case(context: click.Context, admin: str | None) -> None:
    """Find, read and act on cases (ids like case-<loan_id>-<YYYYMMDD>). Actions need
    `accord login` (or --admin NAME)."""
    context.obj = Identity(admin=admin)


# --- reading ---------------------------------------------------------------------------------


@case.command("list")
@click.option("--queue", type=click.Choice(sorted(QUEUES)), help="A saved queue.")
@click.option(
    "--status",
    type=click.Choice(["open", "closed", "failed", "any"]),
    default="open",
    show_default=True,
)
@click.option("--stage")
@click.option("--tier")
@click.option("--dpd-over", type=int, help="Days past due more than this.")
@click.option("--dpd-upto", type=int, help="Days past due at most this.")
@click.option("--outstanding-from", type=int, help="Outstanding at least (to its band).")
@click.option("--product")
@click.option("--portfolio")
@click.option("--checkpoint", help="Next checkpoint kind.")
@click.option("--hold", type=click.Choice(["any", "dispute", "pause", "breathing_space"]))
@click.option("--awaiting", type=click.Choice(["team_lead", "credit_committee"]), multiple=True)
@click.option("--assigned", help="A staff id, `me` or `none`.")
@click.option("--attention", is_flag=True, help="Waiting for a human (stuck).")
@click.option("--plan-broken", is_flag=True)
@click.option("--sort", default="dpd", show_default=True)
@click.option("--asc", is_flag=True, help="Ascending (default: descending).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=None, help="Cases read at most.")
@click.option("--json", "as_json", is_flag=True, help="JSON: the query and every row.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV, as the desk exports it.")
def list_cases_command(**options: Any) -> None:
    """List cases from Temporal visibility (the search attributes), filtered and sorted."""
    from desk.cases import CaseFilter, list_cases, row_record, rows_csv, sort_rows
    from settings import get_settings

    settings = get_settings()
    queue_name = options.pop("queue")
    sort, descending = options.pop("sort"), not options.pop("asc")
    as_json, as_csv = options.pop("as_json"), options.pop("as_csv")
    limit = options.pop("limit") or settings.desk.list_limit
    if queue_name is not None:
        queue = QUEUES[queue_name]
        actor = _identity()[0]
        from decisions.policy import load_policy

        authority = load_policy(settings.policy_file).approval.granted_to(actor.role)
        case_filter = queue.build(actor, authority, datetime.now(UTC))
        if case_filter is None:
            raise click.ClickException(f"{queue.title}: nothing for your role ({actor.role.value})")
    else:
        values = {k: v for k, v in options.items() if v not in (None, False, ())}
        if values.get("assigned") == "me":
            values["assigned"] = _me()
        try:
            case_filter = CaseFilter.model_validate(values)
        except ValidationError as error:
            first = error.errors()[0]
            where = "--" + ".".join(str(p) for p in first["loc"]).replace("_", "-")
            raise click.ClickException(f"{where}: {first['msg']}") from None

    async def fetch() -> Any:
        from desk import calls

        client = await calls.connect(settings)
        try:
            return await list_cases(client, case_filter, limit)
        except Exception as error:
            raise calls.CallError(502, f"visibility query failed: {error}") from None

    found = _run(fetch())
    try:
        rows = sort_rows(found.rows, sort, descending)
    except ValueError as error:
        raise click.ClickException(f"--{error}") from None
    if as_json:
        body = {
            "query": found.query,
            "truncated": found.truncated,
            "cases": [row_record(row) for row in rows],
        }
        click.echo(json.dumps(body, indent=2))
    elif as_csv:
        click.echo(rows_csv(rows), nl=False)
    else:
        _print_rows(rows, found.truncated)


def _print_rows(rows: list[Any], truncated: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from desk.cases import band_text

    table = Table(box=None, pad_edge=False)
    for column in ("case", "stage", "tier", "dpd", "outstanding", "next checkpoint", "holds",
                   "approval", "assigned", "failed/stuck"):  # fmt: skip
        table.add_column(column, justify="right" if column in ("dpd", "outstanding") else "left")
    for row in rows:
        checkpoint = ""
        if row.next_checkpoint_at is not None:
            checkpoint = f"{row.next_checkpoint_at:%Y-%m-%d %H:%M} {row.next_checkpoint_kind or ''}"
        table.add_row(
            row.case_id,
            row.stage or "",
            row.tier or "",
            "" if row.days_past_due is None else str(row.days_past_due),
            band_text(row.outstanding_band),
            checkpoint,
            ",".join(row.holds),
            ",".join(row.awaiting_approval),
            row.assigned_to or "",
            row.trouble or (row.outcome or ""),
        )
    console = Console(width=200)
    console.print(table)
    more = " (more matched: narrow the filter or raise --limit)" if truncated else ""
    console.print(f"{len(rows)} case{'' if len(rows) == 1 else 's'}{more}")


@case.command()
@click.argument("case_id")
@click.option("--audit", is_flag=True, help="The audit timeline instead of the case.")
@click.option("--json", "as_json", is_flag=True, help="Everything, as JSON.")
def show(case_id: str, audit: bool, as_json: bool) -> None:
    """A summary of the case (what an agent needs on the phone); --json for all of it."""
    from desk import calls
    from settings import get_settings

    settings = get_settings()

    async def fetch() -> tuple[Any, Any]:
        client = await calls.connect(settings)
        described = await calls.describe(client, settings, case_id)
        try:
            shown = await (
                calls.audit(client, settings, case_id)
                if audit
                else calls.view(client, settings, case_id)
            )
        except calls.CallError:
            if described.status is None or described.status.name == "RUNNING":
                raise
            raise calls.CallError(409, await calls.closed_reason(client, described)) from None
        return described, shown

    described, shown = _run(fetch())
    if as_json:
        body = shown.model_dump(mode="json")
        body["workflow_status"] = described.status.name if described.status else None
        click.echo(json.dumps(body, indent=2))
        return
    if audit:
        from desk.timeline import timeline

        for entry in timeline(shown):
            by = f" by {entry.by}" if entry.by else ""
            policy = f" [{entry.policy_version}]" if entry.policy_version else ""
            click.echo(
                f"{entry.at:%Y-%m-%d %H:%M} {entry.entry:<8} {entry.kind:<22} {entry.detail}"
                f"{by}{policy}"
            )
        return
    from cli.case_summary import summary

    namespace = settings.temporal.namespace
    link = f"{settings.temporal_ui_url}/namespaces/{namespace}/workflows/{case_id}"
    for line in summary(shown, described, link, f"{settings.desk.url}/cases/{case_id}"):
        click.echo(line)


@case.command("profile-schema")
def profile_schema() -> None:
    """Print the JSON Schema of the financial-profile file (submit-financials, counter-propose)."""
    click.echo(json.dumps(FinancialProfile.model_json_schema(), indent=2))


# --- staff actions ---------------------------------------------------------------------------


@case.command()
@click.argument("case_id")
@click.argument("option_ids", nargs=-1, required=True)
def approve(case_id: str, option_ids: tuple[str, ...]) -> None:
    """Approve options waiting for approval (within your role's authority)."""
    _act(case_id, _request(Approve, option_ids=option_ids, approver_id=_me()))


@case.command()
@click.argument("case_id")
@click.argument("option_ids", nargs=-1, required=True)
@click.option("--reason", default="APPROVAL_REJECTED", show_default=True)
def reject(case_id: str, option_ids: tuple[str, ...], reason: str) -> None:
    """Reject options waiting for approval (they are withdrawn from the offer)."""
    _act(case_id, _request(Reject, option_ids=option_ids, approver_id=_me(), reason=reason))


@case.command()
@click.argument("case_id")
@click.option("--breathing-space", is_flag=True, help="Statutory moratorium (policy length).")
@click.option(
    "--starts-on",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Breathing space: its first day, the day after the register entry (default: "
    "tomorrow in the borrower's time zone).",
)
@click.option("--until", type=click.DateTime(), help="Operator pause end (UTC).")
def pause(case_id: str, breathing_space: bool, starts_on: Any, until: Any) -> None:
    """Pause contact and timers."""
    if breathing_space:
        if until is not None:
            raise click.ClickException("refused: a breathing space lasts as the rules say")
        first = starts_on.date() if starts_on is not None else None
        _act(case_id, _request(StartBreathingSpace, staff_id=_me(), starts_on=first))
        return
    if starts_on is not None:
        raise click.ClickException("refused: --starts-on is for --breathing-space")
    until = until.replace(tzinfo=UTC) if until is not None else None
    _act(case_id, _request(Pause, staff_id=_me(), until=until))


@case.command("mental-health-crisis")
@click.argument("case_id")
@click.option(
    "--starts-on",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Its first day, the day after the register entry (default: tomorrow, borrower's zone).",
)
def mental_health_crisis(case_id: str, starts_on: Any) -> None:
    """Record a mental-health crisis moratorium: contact and timers stop until the end of
    treatment is recorded (treatment-ended) and the pack's days after it have passed."""
    first = starts_on.date() if starts_on is not None else None
    _act(case_id, _request(StartMentalHealthCrisis, staff_id=_me(), starts_on=first))


@case.command("treatment-ended")
@click.argument("case_id")
@click.option("--ended-on", type=click.DateTime(["%Y-%m-%d"]), required=True)
def treatment_ended(case_id: str, ended_on: Any) -> None:
    """Record the day the borrower's mental-health crisis treatment ended."""
    _act(case_id, _request(TreatmentEnded, staff_id=_me(), ended_on=ended_on.date()))


@case.command()
@click.argument("case_id")
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
        staff_id=_me(),
        channel=channel,
        direction="inbound" if inbound else "outbound",
        conversation=conversation,
        at=at.replace(tzinfo=UTC) if at is not None else None,
        note=note,
    )
    _act(case_id, request)


@case.command()
@click.argument("case_id")
@click.option("--note")
def resume(case_id: str, note: str | None) -> None:
    """Lift an operator pause."""
    _act(case_id, _request(Resume, staff_id=_me(), note=note))


@case.command()
@click.argument("case_id")
@click.option("--reason", default="DEBT_DISPUTED", show_default=True)
def dispute(case_id: str, reason: str) -> None:
    """Record the borrower's dispute: the case pauses for review."""
    _act(case_id, _request(Dispute, raised_by=_me(), reason=reason))


@case.command("resolve-dispute")
@click.argument("case_id")
@click.option("--upheld/--rejected", required=True)
@click.option("--note", required=True)
def resolve_dispute(case_id: str, upheld: bool, note: str) -> None:
    """Close the review: upheld closes the case, rejected resumes it."""
    _act(case_id, _request(ResolveDispute, staff_id=_me(), upheld=upheld, note=note))


@case.command()
@click.argument("case_id")
@click.option("--note", help="What was fixed.")
def retry(case_id: str, note: str | None) -> None:
    """Try again the step a case is waiting on a human for (a failed decision, a system that
    refused a request): after fixing its cause."""
    _act(case_id, _request(Retry, staff_id=_me(), note=note))


@case.command()
@click.argument("case_id")
@click.argument("text")
def note(case_id: str, text: str) -> None:
    """Add a note to the case."""
    _act(case_id, _request(Note, author_id=_me(), text=text))


@case.command()
@click.argument("case_id")
@click.argument("assignee", required=False)
@click.option("--nobody", is_flag=True, help="Back to the unassigned queue.")
def assign(case_id: str, assignee: str | None, nobody: bool) -> None:
    """Assign the case to ASSIGNEE (default: yourself)."""
    target = None if nobody else (assignee or _me())
    _act(case_id, _request(Assign, staff_id=_me(), assignee=target))


# --- what the borrower said, taken by an agent -------------------------------------------------


@case.command("submit-financials")
@click.argument("case_id")
@click.argument("profile_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--situation-changed", is_flag=True, help="Mid-plan: re-assess against it.")
def submit_financials(case_id: str, profile_file: Path, situation_changed: bool) -> None:
    """Submit the borrower's financial profile (JSON, money as strings; the format:
    `accord case profile-schema`)."""
    document = json.dumps({"profile": json.loads(_profile_document(profile_file))})
    model = SituationChanged if situation_changed else SubmitFinancials
    _act(case_id, _request(model, document))


@case.command("counter-propose")
@click.argument("case_id")
@click.argument("profile_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--note", help="What the borrower proposed.")
def counter_propose(case_id: str, profile_file: Path, note: str | None) -> None:
    """The borrower cannot take any option offered: plan again against this revised budget."""
    profile = json.loads(_profile_document(profile_file))
    document = json.dumps({"profile": profile, **({"note": note} if note else {})})
    _act(case_id, _request(CounterPropose, document))


@case.command()
@click.argument("case_id")
@click.argument("option_id")
def choose(case_id: str, option_id: str) -> None:
    """Record the borrower's chosen option."""
    _act(case_id, _request(ChooseOption, option_id=option_id))


@case.command()
@click.argument("case_id")
@click.option("--reason", default="BORROWER_DECLINED", show_default=True)
def decline(case_id: str, reason: str) -> None:
    """Record that the borrower declined the offer (or the agreement out for signature)."""
    _act(case_id, _request(Decline, reason=reason))


@case.command()
@click.argument("case_id")
@click.argument("envelope_id")
def sign(case_id: str, envelope_id: str) -> None:
    """Relay the e-signature provider's word that the borrower signed ENVELOPE_ID (the case
    confirms it with the provider before acting on it)."""
    _act(case_id, _request(Sign, envelope_id=envelope_id))
