"""`accord case show`: the case in a few lines — what an agent needs on the phone."""

from __future__ import annotations

from collections import Counter
from typing import Any

from schemas.case import CaseView


def summary(view: CaseView, described: Any, temporal_link: str, desk_link: str) -> list[str]:
    status = described.status.name.lower().replace("_", " ") if described.status else "unknown"
    lines = [f"{view.case_id}  stage {view.stage.value}  (workflow {status})"]
    if view.outcome is not None:
        closed = f"{view.closed_at:%Y-%m-%d}" if view.closed_at else "?"
        lines.append(
            f"  closed: {view.outcome.value} on {closed} ({', '.join(view.outcome_reasons)})"
        )
    if view.tier is not None:
        lines.append(f"  tier: {view.tier.value} ({', '.join(view.reasons)})")
    lines.append(f"  policy: {view.policy_version}  portfolio: {view.portfolio or 'default'}")
    balance = view.balance
    if balance is not None:
        since = f" since {balance.overdue_since}" if balance.overdue_since else ""
        lines.append(
            f"  now: outstanding {balance.outstanding} {balance.currency}, arrears "
            f"{balance.arrears} {balance.currency}, {balance.days_past_due} days past due{since}"
            f" (basis: {balance.basis})"
        )
        if balance.last_payment_at is not None:
            lines.append(f"  last payment reported: {balance.last_payment_at:%Y-%m-%d %H:%M}")
    holds = [
        name
        for name, on in (
            ("disputed", view.holds.disputed),
            ("paused", view.holds.paused),
            ("breathing space", view.holds.breathing_space_until is not None),
        )
        if on
    ]
    lines.append(f"  holds: {', '.join(holds) or 'none'}  assigned to: {view.assigned_to or '-'}")
    if view.attention is not None:
        lines.append(
            f"  WAITING FOR A HUMAN: {view.attention.reason} ({view.attention.detail}) — "
            "fix the cause, then `accord case retry`"
        )
    if view.approval is not None:
        lines.append(
            f"  awaiting approval ({view.approval.required.value}): "
            f"{', '.join(view.approval.option_ids)}"
        )
    if view.proposal is not None and view.proposal.offered:
        lines.append("  options:")
        for option in view.proposal.offered:
            state = ""
            if option.option_id in view.approved_by:
                state = f" approved by {view.approved_by[option.option_id]}"
            elif view.approval is not None and option.option_id in view.approval.option_ids:
                state = " awaiting approval"
            levers = "+".join(lever.value for lever in option.terms.levers)
            lines.append(
                f"    {option.option_id}: {option.instalment_count} x from "
                f"{option.first_instalment} (total {option.total_payable}), {levers}, "
                f"needs {option.required_authority.value}{state}"
            )
    if view.agreement is not None:
        agreement = view.agreement
        lines.append(
            f"  agreement: {agreement.agreement_id} (option {agreement.option_id}, "
            f"{len(agreement.schedule.instalments)} instalments)"
        )
    if view.schedule:
        counts = Counter(tracked.status.value for tracked in view.schedule)
        upcoming = next(
            (t.instalment for t in view.schedule if t.status.value == "scheduled"), None
        )
        nxt = f"; next {upcoming.amount} due {upcoming.due_date}" if upcoming else ""
        lines.append(
            f"  schedule: {counts.get('paid', 0)} paid, {counts.get('missed', 0)} missed, "
            f"{counts.get('scheduled', 0)} to come{nxt}"
        )
    if view.next_checkpoint is not None:
        checkpoint = view.next_checkpoint
        lines.append(
            f"  next checkpoint: {checkpoint.kind.value} at {checkpoint.at:%Y-%m-%d %H:%M}"
        )
    if view.contact_log:
        last = view.contact_log[-1]
        lines.append(
            f"  contact: {len(view.contact_log)} attempts, last {last.channel.value} "
            f"{last.outcome.value} at {last.at:%Y-%m-%d %H:%M}"
        )
    lines.append(f"  desk: {desk_link}")
    lines.append(f"  Temporal UI: {temporal_link}")
    return lines
