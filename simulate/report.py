"""The end-of-run report: outcomes by tier and profile, recovery, time to agreement, contacts;
as rich tables, a JSON-able summary, and an HTML page with inline SVG charts. Pure."""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from statistics import median
from typing import Any

from rich.console import Console
from rich.table import Table

from simulate.engine import CaseRecord
from simulate.profiles import Profile

OPEN = "open"
OUTCOME_COLOURS = {
    "cured": "#2e7d32",
    "settled": "#66bb6a",
    "declined": "#ffb300",
    "escalated_collections": "#ef6c00",
    "escalated_legal": "#c62828",
    "written_off": "#6d4c41",
    OPEN: "#90a4ae",
}


@dataclass
class Summary:
    cases: int
    opened: int
    closed: int
    outcomes_by_profile: dict[str, Counter[str]]
    outcomes_by_tier: dict[str, Counter[str]]
    open_by_stage: Counter[str]
    recovered: Decimal
    outstanding: Decimal
    currency_note: str
    days_to_agreement: list[float]
    contacts_made: int
    contacts_blocked: int
    contacts_blocked_known: int
    """Cases whose audit could be read (blocked contacts are counted from it)."""
    recovery_by_profile: dict[str, Decimal] = field(default_factory=dict)
    closing_reasons: Counter[str] = field(default_factory=Counter)
    closing_reasons_by_profile: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def days_to_agreement_median(self) -> float | None:
        """Policy days from the case's opening to the signature, median over the agreements."""
        return _median(self.days_to_agreement)

    @property
    def recovery_rate(self) -> Decimal:
        return self.recovered / self.outstanding if self.outstanding else Decimal(0)

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "opened": self.opened,
            "closed": self.closed,
            "outcomes_by_profile": {k: dict(v) for k, v in self.outcomes_by_profile.items()},
            "outcomes_by_tier": {k: dict(v) for k, v in self.outcomes_by_tier.items()},
            "open_by_stage": dict(self.open_by_stage),
            "recovered": str(self.recovered),
            "outstanding": str(self.outstanding),
            "recovery_rate": str(self.recovery_rate.quantize(Decimal("0.0001"))),
            "recovery_by_profile": {k: str(v) for k, v in self.recovery_by_profile.items()},
            "days_to_agreement_median": self.days_to_agreement_median,
            "agreements": len(self.days_to_agreement),
            "contacts_made": self.contacts_made,
            "contacts_blocked": self.contacts_blocked,
            "contacts_blocked_known_for_cases": self.contacts_blocked_known,
            "closing_reasons": dict(self.closing_reasons.most_common()),
            "closing_reasons_by_profile": {
                k: dict(v.most_common()) for k, v in self.closing_reasons_by_profile.items()
            },
        }


def _median(values: list[float]) -> float | None:
    return round(median(values), 2) if values else None


def summarise(records: list[CaseRecord]) -> Summary:
    by_profile: dict[str, Counter[str]] = {p.value: Counter() for p in Profile}
    by_tier: dict[str, Counter[str]] = {}
    open_by_stage: Counter[str] = Counter()
    recovered_by_profile: dict[str, Decimal] = {}
    outstanding_by_profile: dict[str, Decimal] = {}
    currencies = {r.loan.overdue.currency for r in records}
    days: list[float] = []
    reasons: Counter[str] = Counter()
    reasons_by_profile: dict[str, Counter[str]] = {}
    for record in records:
        outcome = record.outcome or OPEN
        profile = record.loan.profile.value
        by_profile[profile][outcome] += 1
        by_tier.setdefault(record.tier or "not assessed", Counter())[outcome] += 1
        if record.outcome is None:
            open_by_stage[record.stage or "not opened"] += 1
        else:
            last = record.outcome_reasons[-1] if record.outcome_reasons else "-"
            reason = f"{record.outcome}: {last}"
            reasons[reason] += 1
            reasons_by_profile.setdefault(profile, Counter())[reason] += 1
        recovered_by_profile[profile] = recovered_by_profile.get(profile, Decimal(0)) + (
            record.recovered
        )
        outstanding_by_profile[profile] = outstanding_by_profile.get(profile, Decimal(0)) + (
            record.loan.overdue.total_outstanding
        )
        if record.signed_at is not None and record.opened_at is not None:
            # Both on the case's own clock (the ``opened`` and ``signed`` events): policy days.
            days.append((record.signed_at - record.opened_at).total_seconds() / 86_400)
    known = [r for r in records if r.contacts_blocked is not None]
    return Summary(
        cases=len(records),
        opened=sum(1 for r in records if r.opened_at is not None),
        closed=sum(1 for r in records if r.outcome is not None),
        outcomes_by_profile={k: v for k, v in by_profile.items() if v},
        outcomes_by_tier=by_tier,
        open_by_stage=open_by_stage,
        recovered=sum(recovered_by_profile.values(), Decimal(0)),
        outstanding=sum(outstanding_by_profile.values(), Decimal(0)),
        currency_note="/".join(sorted(currencies)),
        days_to_agreement=days,
        contacts_made=sum(r.contacts_made for r in records),
        contacts_blocked=sum(r.contacts_blocked or 0 for r in known),
        contacts_blocked_known=len(known),
        recovery_by_profile={
            p: recovered_by_profile[p] / outstanding_by_profile[p]
            for p in recovered_by_profile
            if outstanding_by_profile[p]
        },
        closing_reasons=reasons,
        closing_reasons_by_profile=reasons_by_profile,
    )


def _outcome_columns(summary: Summary) -> list[str]:
    seen: set[str] = set()
    for counter in (*summary.outcomes_by_profile.values(), *summary.outcomes_by_tier.values()):
        seen.update(counter)
    return [o for o in OUTCOME_COLOURS if o in seen] + sorted(seen - set(OUTCOME_COLOURS))


def print_summary(summary: Summary, console: Console) -> None:
    columns = _outcome_columns(summary)
    for title, rows in (
        ("Outcomes by profile", summary.outcomes_by_profile),
        ("Outcomes by tier", summary.outcomes_by_tier),
    ):
        table = Table(title=title)
        table.add_column(title.rsplit(" ", 1)[-1])
        for column in columns:
            table.add_column(column, justify="right")
        table.add_column("total", justify="right")
        for name, counter in rows.items():
            table.add_row(name, *(str(counter.get(c, 0)) for c in columns), str(counter.total()))
        console.print(table)
    facts = Table(title="Portfolio", show_header=False)
    facts.add_column()
    facts.add_column(justify="right")
    counts = f"{summary.cases} / {summary.opened} / {summary.closed}"
    facts.add_row("cases / opened / closed", counts)
    facts.add_row(
        f"recovered / outstanding ({summary.currency_note})",
        f"{summary.recovered:,.2f} / {summary.outstanding:,.2f}",
    )
    facts.add_row("recovery rate", f"{summary.recovery_rate:.2%}")
    agreed = summary.days_to_agreement
    facts.add_row(
        "agreements / median policy days to agreement",
        f"{len(agreed)} / {summary.days_to_agreement_median if agreed else '-'}",
    )
    facts.add_row("contacts made", str(summary.contacts_made))
    facts.add_row(
        "contacts blocked by the rules",
        f"{summary.contacts_blocked} (audit read for {summary.contacts_blocked_known} cases)",
    )
    for reason, count in summary.closing_reasons.most_common(8):
        facts.add_row(f"closed — {reason}", str(count))
    if summary.open_by_stage:
        facts.add_row(
            "still open, by stage",
            ", ".join(f"{k}: {v}" for k, v in summary.open_by_stage.most_common()),
        )
    console.print(facts)


@dataclass(frozen=True)
class CaseLinks:
    """Where a case of the report opens: the desk's case page and the Temporal UI's."""

    desk_url: str
    temporal_ui_url: str
    namespace: str


def _case_table(records: list[CaseRecord], links: CaseLinks) -> str:
    """Every case: amounts, outcome and every closing reason, linked to the desk and the UI."""
    head = (
        "<tr><th>Case</th><th>Profile</th><th>Tier</th><th class=num>Outstanding</th>"
        "<th class=num>Recovered</th><th>Outcome</th><th>Closing reasons</th><th></th></tr>"
    )
    rows = []
    for record in sorted(records, key=lambda r: r.case_id):
        case_id = html.escape(record.case_id)
        overdue = record.loan.overdue
        ui = f"{links.temporal_ui_url}/namespaces/{links.namespace}/workflows/{case_id}"
        rows.append(
            f'<tr><td><a href="{links.desk_url}/cases/{case_id}">{case_id}</a></td>'
            f"<td>{html.escape(record.loan.profile.value)}</td>"
            f"<td>{html.escape(record.tier or '')}</td>"
            f"<td class=num>{overdue.total_outstanding} {overdue.currency}</td>"
            f"<td class=num>{record.recovered} {overdue.currency}</td>"
            f"<td>{html.escape(record.outcome or record.stage or OPEN)}</td>"
            f"<td>{html.escape(', '.join(record.outcome_reasons))}</td>"
            f'<td><a href="{ui}">Temporal UI</a></td></tr>'
        )
    return f"<table>{head}{''.join(rows)}</table>"


def html_report(
    summary: Summary,
    title: str,
    notes: list[str],
    records: list[CaseRecord] | None = None,
    links: CaseLinks | None = None,
) -> str:
    """One self-contained page: stacked outcome bars per profile and per tier, recovery rate per
    profile (inline SVG, no script, no dependency), then every case with its links."""
    columns = _outcome_columns(summary)
    legend = "".join(
        f'<span class="key"><i style="background:{OUTCOME_COLOURS.get(c, "#999")}"></i>'
        f"{html.escape(c)}</span>"
        for c in columns
    )
    recovery = {k: float(v) for k, v in summary.recovery_by_profile.items()}
    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
        f"<p>{summary.cases} cases, {summary.closed} closed; recovery rate "
        f"{summary.recovery_rate:.2%}; {summary.contacts_made} contacts made, "
        f"{summary.contacts_blocked} blocked by the contact rules.</p>",
        f"<div>{legend}</div>",
        "<h2>Outcomes by profile</h2>",
        _stacked_bars(summary.outcomes_by_profile, columns),
        "<h2>Outcomes by tier</h2>",
        _stacked_bars(summary.outcomes_by_tier, columns),
        "<h2>Recovery rate by profile</h2>",
        _bars(recovery),
    ]
    if records and links is not None:
        body += [f"<h2>Cases ({len(records)})</h2>", _case_table(records, links)]
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:60em}"
        ".key{margin-right:1em}.key i{display:inline-block;width:.9em;height:.9em;"
        "margin-right:.3em;vertical-align:middle}"
        "table{border-collapse:collapse}td,th{padding:.2em .5em;border-bottom:1px solid #ddd;"
        "text-align:left}.num{text-align:right}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _stacked_bars(rows: dict[str, Counter[str]], columns: list[str]) -> str:
    label_width, bar_width, row_height = 170, 560, 26
    height = row_height * len(rows) + 10
    parts = [f'<svg width="{label_width + bar_width + 60}" height="{height}" role="img">']
    for index, (name, counter) in enumerate(rows.items()):
        y = index * row_height + 5
        total = counter.total() or 1
        parts.append(f'<text x="0" y="{y + 16}" font-size="13">{html.escape(name)}</text>')
        x = float(label_width)
        for column in columns:
            count = counter.get(column, 0)
            if not count:
                continue
            width = bar_width * count / total
            colour = OUTCOME_COLOURS.get(column, "#999")
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="20" fill="{colour}">'
                f"<title>{html.escape(column)}: {count}</title></rect>"
            )
            x += width
        parts.append(
            f'<text x="{label_width + bar_width + 6}" y="{y + 16}" font-size="12">'
            f"{counter.total()}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _bars(values: dict[str, float]) -> str:
    label_width, bar_width, row_height = 170, 560, 26
    top = max(values.values(), default=0) or 1
    parts = [
        f'<svg width="{label_width + bar_width + 80}" height="{row_height * len(values) + 10}"'
        ' role="img">'
    ]
    for index, (name, value) in enumerate(values.items()):
        y = index * row_height + 5
        width = bar_width * value / top
        parts.append(f'<text x="0" y="{y + 16}" font-size="13">{html.escape(name)}</text>')
        parts.append(
            f'<rect x="{label_width}" y="{y}" width="{width:.1f}" height="20" fill="#1565c0"/>'
        )
        parts.append(
            f'<text x="{label_width + width + 6:.1f}" y="{y + 16}" font-size="12">'
            f"{value:.1%}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
