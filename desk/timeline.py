"""A case's audit trail as one timeline — stages, decisions with their reasons and policy
versions, notes — and as CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime

from engine.actions import CaseAudit

COLUMNS = ("at", "entry", "kind", "detail", "by", "policy_version", "contact_rules_version")


@dataclass(frozen=True)
class Entry:
    at: datetime
    entry: str
    """``stage``, ``decision`` or ``note``."""
    kind: str
    detail: str
    by: str = ""
    policy_version: str = ""
    contact_rules_version: str = ""


def timeline(audit: CaseAudit) -> list[Entry]:
    entries = [
        Entry(at=stage.at, entry="stage", kind=stage.stage.value, detail=stage.reason)
        for stage in audit.stages
    ]
    entries += [
        Entry(
            at=decision.at,
            entry="decision",
            kind=decision.kind,
            detail=" ".join(decision.summary),
            by=decision.by or "",
            policy_version=decision.policy_version,
            contact_rules_version=decision.contact_rules_version or "",
        )
        for decision in audit.decisions
    ]
    entries += [
        Entry(at=note.at, entry="note", kind="note", detail=note.text, by=note.author_id)
        for note in audit.notes
    ]
    # Stable: entries recorded at the same instant keep the order they were recorded in.
    return sorted(entries, key=lambda entry: entry.at)


def audit_csv(audit: CaseAudit) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for entry in timeline(audit):
        writer.writerow(
            [
                entry.at.astimezone(UTC).isoformat(),
                entry.entry,
                entry.kind,
                entry.detail,
                entry.by,
                entry.policy_version,
                entry.contact_rules_version,
            ]
        )
    return buffer.getvalue()
