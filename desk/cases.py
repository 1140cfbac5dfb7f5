"""Case lists from Temporal visibility: filters, saved queues, sorting, CSV.

One list for the desk's pages, its JSON API and `accord case list`. It reads the search
attributes each case keeps current (``workflows.search_attributes``) and the execution's own
status — never each case's query — so a list of thousands costs one visibility call. The
visibility store does not sort on custom attributes: up to ``desk.list_limit`` matching cases
are read and sorted here (the page says when there were more).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from engine.balance import amount_band
from schemas.assessment import Tier
from schemas.case import CaseStage, CheckpointKind
from schemas.events import OpaqueId, ProductType
from schemas.plan import ApprovalAuthority
from schemas.staff import Actor
from workflows import search_attributes as sa

WORKFLOW_TYPE = "CaseWorkflow"
HOLDS = ("dispute", "pause", "breathing_space", "mental_health_crisis")
FAILED_STATUSES = ("Failed", "Terminated", "TimedOut")


class Status(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"
    ANY = "any"


class CaseFilter(BaseModel):
    """What a list shows. Every value is checked against its type, so a query is built from
    known words and opaque ids only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status = Status.OPEN
    stage: CaseStage | None = None
    tier: Tier | None = None
    dpd_over: int | None = Field(default=None, ge=0, le=100_000)
    """Days past due more than this."""
    dpd_upto: int | None = Field(default=None, ge=0, le=100_000)
    outstanding_from: int | None = Field(default=None, ge=0)
    """Outstanding at least this (to its band: amounts are banded in visibility)."""
    product: ProductType | None = None
    portfolio: OpaqueId | None = None
    checkpoint: CheckpointKind | None = None
    checkpoint_before: datetime | None = None
    hold: str | None = Field(
        default=None, pattern="^(dispute|pause|breathing_space|mental_health_crisis|any)$"
    )
    breathing_space_ends_before: datetime | None = None
    awaiting: tuple[ApprovalAuthority, ...] = ()
    assigned: str | None = Field(default=None, pattern=r"^(none|[A-Za-z0-9][A-Za-z0-9_.:-]*)$")
    """A staff id, or ``none`` for the unassigned."""
    attention: bool = False
    plan_broken: bool = False

    def query(self) -> str:
        parts = [f'WorkflowType = "{WORKFLOW_TYPE}"']
        if self.status is Status.OPEN:
            parts.append('ExecutionStatus = "Running"')
        elif self.status is Status.CLOSED:
            parts.append('ExecutionStatus != "Running"')
        elif self.status is Status.FAILED:
            parts.append(f"ExecutionStatus IN ({_list(FAILED_STATUSES)})")
        if self.stage is not None:
            parts.append(f'{sa.CASE_STAGE.name} = "{self.stage.value}"')
        if self.tier is not None:
            parts.append(f'{sa.RISK_TIER.name} = "{self.tier.value}"')
        if self.dpd_over is not None:
            parts.append(f"{sa.DAYS_PAST_DUE.name} > {self.dpd_over}")
        if self.dpd_upto is not None:
            parts.append(f"{sa.DAYS_PAST_DUE.name} <= {self.dpd_upto}")
        if self.outstanding_from is not None:
            band = amount_band(Decimal(self.outstanding_from))
            parts.append(f"{sa.OUTSTANDING_AMOUNT.name} >= {band}")
        if self.product is not None:
            parts.append(f'{sa.PRODUCT_TYPE.name} = "{self.product.value}"')
        if self.portfolio is not None:
            parts.append(f'{sa.PORTFOLIO.name} = "{self.portfolio}"')
        if self.checkpoint is not None:
            parts.append(f'{sa.NEXT_CHECKPOINT_KIND.name} = "{self.checkpoint.value}"')
        if self.checkpoint_before is not None:
            parts.append(f'{sa.NEXT_CHECKPOINT_AT.name} < "{_instant(self.checkpoint_before)}"')
        if self.hold == "any":
            parts.append(f"{sa.CASE_HOLDS.name} IN ({_list(HOLDS)})")
        elif self.hold is not None:
            parts.append(f'{sa.CASE_HOLDS.name} = "{self.hold}"')
        if self.breathing_space_ends_before is not None:
            moment = _instant(self.breathing_space_ends_before)
            parts.append(f'{sa.BREATHING_SPACE_ENDS_AT.name} < "{moment}"')
        if self.awaiting:
            parts.append(
                f"{sa.AWAITING_APPROVAL.name} IN ({_list(a.value for a in self.awaiting)})"
            )
        if self.assigned == "none":
            parts.append(f"{sa.ASSIGNED_TO.name} IS NULL")
        elif self.assigned is not None:
            parts.append(f'{sa.ASSIGNED_TO.name} = "{self.assigned}"')
        if self.attention:
            parts.append(f"{sa.CASE_ATTENTION.name} IS NOT NULL")
        if self.plan_broken:
            parts.append(f"{sa.PLAN_BROKEN.name} = true")
        return " AND ".join(parts)


def _list(values: Any) -> str:
    return ", ".join(f'"{value}"' for value in values)


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- saved queues ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Queue:
    name: str
    title: str
    build: Callable[[Actor, ApprovalAuthority, datetime], CaseFilter | None]
    """The queue's filter for this staff member (None: nothing for their role)."""


def _awaiting(authority: ApprovalAuthority) -> CaseFilter | None:
    """Options this authority may approve (an agent's approves nothing)."""
    mine = tuple(
        a
        for a in ApprovalAuthority
        if a is not ApprovalAuthority.AUTOMATIC and a.level <= authority.level
    )
    return CaseFilter(awaiting=mine) if mine else None


QUEUES: dict[str, Queue] = {
    queue.name: queue
    for queue in (
        Queue(
            "awaiting-my-approval",
            "Awaiting my approval",
            lambda actor, authority, now: _awaiting(authority),
        ),
        Queue(
            "disputes",
            "Disputes to review",
            lambda actor, authority, now: CaseFilter(hold="dispute"),
        ),
        Queue(
            "breathing-spaces-ending",
            "Breathing spaces ending this week",
            lambda actor, authority, now: CaseFilter(
                hold="breathing_space", breathing_space_ends_before=now + timedelta(days=7)
            ),
        ),
        Queue(
            "broken-plans",
            "Broken plans",
            lambda actor, authority, now: CaseFilter(plan_broken=True),
        ),
        Queue(
            "needs-attention",
            "Waiting for a human (stuck)",
            lambda actor, authority, now: CaseFilter(attention=True),
        ),
        Queue(
            "failed",
            "Failed workflows",
            lambda actor, authority, now: CaseFilter(status=Status.FAILED),
        ),
        Queue(
            "mine",
            "Assigned to me",
            lambda actor, authority, now: CaseFilter(assigned=actor.staff_id),
        ),
    )
}


# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseRow:
    case_id: str
    status: str
    """The workflow's: Running, Completed, Failed, Terminated, TimedOut, ContinuedAsNew."""
    stage: str | None = None
    tier: str | None = None
    days_past_due: int | None = None
    overdue_since: datetime | None = None
    outstanding_band: int | None = None
    arrears_band: int | None = None
    next_checkpoint_at: datetime | None = None
    next_checkpoint_kind: str | None = None
    holds: tuple[str, ...] = ()
    breathing_space_ends_at: datetime | None = None
    awaiting_approval: tuple[str, ...] = ()
    assigned_to: str | None = None
    attention: str | None = None
    plan_broken: bool = False
    outcome: str | None = None
    product: str | None = None
    portfolio: str | None = None
    policy_version: str | None = None
    started_at: datetime | None = None
    closed_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def trouble(self) -> str:
        """The failed/stuck column: a workflow that failed, or a case waiting for a human."""
        if self.failed:
            return f"failed ({self.status.lower()})"
        if self.attention:
            return f"stuck: {self.attention}"
        return ""


def row_of(execution: WorkflowExecution) -> CaseRow:
    attributes = execution.typed_search_attributes
    status = execution.status
    return CaseRow(
        case_id=execution.id,
        status=_status_name(status),
        stage=attributes.get(sa.CASE_STAGE),
        tier=attributes.get(sa.RISK_TIER),
        days_past_due=attributes.get(sa.DAYS_PAST_DUE),
        overdue_since=attributes.get(sa.OVERDUE_SINCE),
        outstanding_band=attributes.get(sa.OUTSTANDING_AMOUNT),
        arrears_band=attributes.get(sa.ARREARS_AMOUNT),
        next_checkpoint_at=attributes.get(sa.NEXT_CHECKPOINT_AT),
        next_checkpoint_kind=attributes.get(sa.NEXT_CHECKPOINT_KIND),
        holds=tuple(attributes.get(sa.CASE_HOLDS) or ()),
        breathing_space_ends_at=attributes.get(sa.BREATHING_SPACE_ENDS_AT),
        awaiting_approval=tuple(attributes.get(sa.AWAITING_APPROVAL) or ()),
        assigned_to=attributes.get(sa.ASSIGNED_TO),
        attention=attributes.get(sa.CASE_ATTENTION),
        plan_broken=bool(attributes.get(sa.PLAN_BROKEN)),
        outcome=attributes.get(sa.CASE_OUTCOME),
        product=attributes.get(sa.PRODUCT_TYPE),
        portfolio=attributes.get(sa.PORTFOLIO),
        policy_version=attributes.get(sa.POLICY_VERSION),
        started_at=execution.start_time,
        closed_at=execution.close_time,
    )


def _status_name(status: WorkflowExecutionStatus | None) -> str:
    if status is None:
        return "Unknown"
    return {
        WorkflowExecutionStatus.RUNNING: "Running",
        WorkflowExecutionStatus.COMPLETED: "Completed",
        WorkflowExecutionStatus.FAILED: "Failed",
        WorkflowExecutionStatus.CANCELED: "Canceled",
        WorkflowExecutionStatus.TERMINATED: "Terminated",
        WorkflowExecutionStatus.CONTINUED_AS_NEW: "ContinuedAsNew",
        WorkflowExecutionStatus.TIMED_OUT: "TimedOut",
    }.get(status, status.name)


@dataclass(frozen=True)
class CaseList:
    rows: list[CaseRow]
    query: str
    truncated: bool
    """More cases matched than were read (``limit``)."""


async def list_cases(client: Client, case_filter: CaseFilter, limit: int) -> CaseList:
    query = case_filter.query()
    rows: list[CaseRow] = []
    truncated = False
    async for execution in client.list_workflows(query, page_size=min(limit, 1000)):
        if len(rows) >= limit:
            truncated = True
            break
        rows.append(row_of(execution))
    return CaseList(rows=rows, query=query, truncated=truncated)


# --- sorting and export ----------------------------------------------------------------------

_LATE = datetime.max.replace(tzinfo=UTC)
SORT_KEYS: dict[str, Callable[[CaseRow], Any]] = {
    "case": lambda r: r.case_id,
    "stage": lambda r: _STAGE_ORDER.get(r.stage or "", 99),
    "tier": lambda r: _TIER_ORDER.get(r.tier or "", 99),
    "dpd": lambda r: r.days_past_due if r.days_past_due is not None else -1,
    "outstanding": lambda r: r.outstanding_band if r.outstanding_band is not None else -1,
    "arrears": lambda r: r.arrears_band if r.arrears_band is not None else -1,
    "checkpoint": lambda r: r.next_checkpoint_at or _LATE,
    "holds": lambda r: ",".join(r.holds),
    "assigned": lambda r: r.assigned_to or "",
    "trouble": lambda r: r.trouble,
    "started": lambda r: r.started_at or _LATE,
}
_STAGE_ORDER = {stage.value: index for index, stage in enumerate(CaseStage)}
_TIER_ORDER = {tier.value: index for index, tier in enumerate(Tier)}


def sort_rows(rows: list[CaseRow], key: str, descending: bool) -> list[CaseRow]:
    if key not in SORT_KEYS:
        raise ValueError(f"sort: one of {', '.join(SORT_KEYS)}")
    return sorted(rows, key=lambda row: (SORT_KEYS[key](row), row.case_id), reverse=descending)


CSV_COLUMNS = (
    "case_id",
    "status",
    "stage",
    "tier",
    "days_past_due",
    "overdue_since",
    "outstanding_band",
    "arrears_band",
    "next_checkpoint_at",
    "next_checkpoint_kind",
    "holds",
    "breathing_space_ends_at",
    "awaiting_approval",
    "assigned_to",
    "attention",
    "plan_broken",
    "outcome",
    "product",
    "portfolio",
    "policy_version",
    "started_at",
    "closed_at",
)


def row_record(row: CaseRow) -> dict[str, Any]:
    """One row as plain values (JSON and CSV): dates in ISO 8601, lists joined with ``;``."""
    record: dict[str, Any] = {}
    for name in CSV_COLUMNS:
        value = getattr(row, name)
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        record[name] = value
    return record


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(value)
    return "" if value is None else value


def rows_csv(rows: list[CaseRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record = row_record(row)
        writer.writerow({name: _cell(value) for name, value in record.items()})
    return buffer.getvalue()


def band_text(band: int | None) -> str:
    """``10000`` → ``10,000-19,999``: what a banded amount means (1-2-5 bands)."""
    if band is None:
        return ""
    if band == 0:
        return "0"
    upper = band * 5 // 2 if str(band)[0] == "2" else band * 2
    return f"{band:,}-{upper - 1:,}"
