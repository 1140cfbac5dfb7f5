"""The contact rules written a second time, independently of ``decisions.contact_rules``, to
judge what the ledger granted: the regulations as their texts state them, and each pack's
bank-set numbers, all in calendar days of the borrower's zone.

Deliberately plain: count, per local date, what each rule counts; no instants to jump to, no
shared code with the implementation beyond the pack's numbers and the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time
from zoneinfo import ZoneInfo

from decisions.policy import ContactRules
from schemas.contact import ContactAttempt, ContactHolds

# What each regulation says, hard-coded here: a pack that weakens one fails these tests.
REGULATIONS = {
    # CBA 2026: no contact 22:00-08:00; at most 6 unanswered dialling attempts a day to the same
    # debtor's same number, whatever loan or episode they were about.
    "cn-2026": {"quiet": (time(22), time(8)), "unanswered_calls_a_day_per_debtor": 6},
    # Reg F: no contact before 8 a.m. or after 9 p.m.; per particular debt at most 7 connected
    # calls in 7 consecutive days and none in the 7 days from a telephone conversation.
    "us-reg-f": {
        "quiet": (time(21), time(8)),
        "connected_calls_in_7_days_per_debt": 7,
        "quiet_days_after_conversation_per_debt": 7,
    },
    # UK: CONC 7.9.4R unreasonable hours (the pack's 21:00-08:00); moratoria are holds.
    "uk-breathing-space": {"quiet": (time(21), time(8))},
}


def _day(instant: datetime, zone: ZoneInfo) -> int:
    return instant.astimezone(zone).date().toordinal()


def _quiet(instant: datetime, zone: ZoneInfo, start: time, end: time) -> bool:
    wall = instant.astimezone(zone).time()
    return wall >= start or wall < end  # every pack's quiet hours span midnight


def broken_rules(
    rules: ContactRules,
    zone_name: str,
    history: Sequence[ContactAttempt],
    *,
    channel: str,
    at: datetime,
    debt: str | None,
    holds: ContactHolds | None = None,
) -> list[str]:
    """Every rule an attempt on ``channel`` at ``at`` about ``debt`` would break, given
    ``history`` (everything recorded before it). Empty: the attempt is within the rules."""
    zone = ZoneInfo(zone_name)
    today = _day(at, zone)
    holds = holds or ContactHolds()
    broken: list[str] = []
    if holds.disputed:
        broken.append("disputed")
    if holds.paused and (holds.paused_until is None or holds.paused_until > at):
        broken.append("paused")
    if holds.breathing_space_until is not None and holds.breathing_space_until > at:
        broken.append("breathing space")
    if holds.mental_health_crisis and (
        holds.mental_health_crisis_until is None or holds.mental_health_crisis_until > at
    ):
        broken.append("mental-health crisis")

    ours = [h for h in history if h.direction == "outbound" and h.recipient == "borrower"]
    calls = [h for h in ours if h.channel == "phone"]

    regulation = REGULATIONS.get(rules.name, {})
    if "quiet" in regulation and _quiet(at, zone, *regulation["quiet"]):
        broken.append("regulation: quiet hours")
    if channel == "phone" and "unanswered_calls_a_day_per_debtor" in regulation:
        unanswered_today = [
            h for h in calls if h.outcome != "answered" and _day(h.at, zone) == today
        ]
        if len(unanswered_today) >= regulation["unanswered_calls_a_day_per_debtor"]:
            broken.append("regulation: unanswered calls a day")
    if channel == "phone" and "connected_calls_in_7_days_per_debt" in regulation:
        about = [h for h in calls if h.debt == debt and h.outcome != "failed"]
        in_week = [h for h in about if 0 <= today - _day(h.at, zone) <= 6]
        if len(in_week) >= regulation["connected_calls_in_7_days_per_debt"]:
            broken.append("regulation: 7 calls in 7 days")
        talks = [
            h
            for h in history
            if h.channel == "phone" and h.outcome == "answered" and h.debt == debt
        ]
        quiet_days = regulation["quiet_days_after_conversation_per_debt"]
        if any(0 <= today - _day(h.at, zone) < quiet_days for h in talks):
            broken.append("regulation: within 7 days of a conversation")

    # The pack's own numbers (the bank's caps and the regulation's, as encoded).
    if _quiet(at, zone, rules.quiet_hours_start, rules.quiet_hours_end):
        broken.append("pack: quiet hours")
    for cap in rules.caps:
        if cap.channel != channel:
            continue
        scope = [h for h in ours if h.channel == channel]
        if cap.per == "debt":
            scope = [h for h in scope if h.debt == debt]
        counted_days = [
            _day(h.at, zone)
            for h in scope
            if cap.counts == "all"
            or (cap.counts == "unanswered" and h.outcome != "answered")
            or (cap.counts == "connected" and h.outcome != "failed")
        ]
        if cap.per_day is not None and counted_days.count(today) >= cap.per_day:
            broken.append(f"pack: {channel} per day")
        if cap.per_7_days is not None:
            if sum(1 for d in counted_days if 0 <= today - d <= 6) >= cap.per_7_days:
                broken.append(f"pack: {channel} per 7 days")
        if cap.cooldown_after_conversation_days is not None:
            talks = [
                h
                for h in history
                if h.channel == channel
                and h.outcome == "answered"
                and (cap.per == "contact_detail" or h.debt == debt)
            ]
            if any(
                0 <= today - _day(h.at, zone) < cap.cooldown_after_conversation_days for h in talks
            ):
                broken.append(f"pack: {channel} after a conversation")
    return broken
