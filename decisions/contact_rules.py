"""Contact rules as hard blocks (DESIGN §5): may we contact the borrower on this channel now?

Judged on everything the contact ledger knows about the borrower — every attempt, inbound
call and conversation, across all of their loans and delinquency episodes — each cap counting
what its regulation counts (``decisions.policy.ChannelCap``): per debt or per contact detail,
all attempts, the unanswered ones or the connected ones, in the borrower's calendar days.

Instants are UTC; the borrower's wall time and calendar (``decisions.local_days``, DST-correct)
decide quiet hours and which day an attempt belongs to. An attempt counts from the moment it is
made: one whose outcome is still unknown counts under every rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from decisions.local_days import local_date, start_of_day, zone
from decisions.policy import CapCounts, CapScope, ChannelCap, ContactRules
from schemas.contact import (
    ContactAttempt,
    ContactChannel,
    ContactDecision,
    ContactHolds,
    ContactOutcome,
    Direction,
    Recipient,
)

_Block = tuple[str, datetime | None]
"""(reason code, UTC instant the block lifts or None if only a human can lift it)."""


def may_contact(
    *,
    channel: ContactChannel,
    now: datetime,
    time_zone: str,
    contact_log: Sequence[ContactAttempt],
    holds: ContactHolds,
    rules: ContactRules,
    debt: str | None = None,
    recipient: Recipient = Recipient.BORROWER,
) -> ContactDecision:
    """Allowed, or the first reason it is not and the earliest instant it will be (if known).

    ``time_zone`` is the borrower's IANA zone, e.g. ``"Asia/Shanghai"``. ``contact_log`` is what
    the borrower's ledger holds (a case's own log judges only that case); ``debt`` is the loan
    the contact is about: per-debt caps count only contacts about it.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now: must be timezone-aware")
    zone(time_zone)  # an unknown zone is refused before anything is judged
    channel, recipient = ContactChannel(channel), Recipient(recipient)
    if recipient is not Recipient.BORROWER:
        return ContactDecision(allowed=False, reason="THIRD_PARTY_DISCLOSURE")
    if holds.disputed:
        return ContactDecision(allowed=False, reason="CASE_DISPUTED")

    caps = [(cap, _in_scope(contact_log, cap, debt)) for cap in rules.caps_for(channel)]
    start = now.astimezone(UTC)
    candidate = start
    first_reason: str | None = None
    # Each step jumps to the earliest instant the current block lifts, so the first instant
    # with no block is the earliest allowed one; blocks only lift forward, so this terminates.
    for _ in range(1000):
        block = _first_block(candidate, time_zone, caps, holds, rules)
        if block is None:
            break
        reason, until = block
        first_reason = first_reason or reason
        if until is None:
            return ContactDecision(allowed=False, reason=first_reason)
        candidate = until
    else:  # pragma: no cover - the rules above cannot cycle
        raise RuntimeError("contact rules did not converge")
    if first_reason is None:
        return ContactDecision(allowed=True)
    return ContactDecision(allowed=False, reason=first_reason, next_allowed_at=candidate)


def in_quiet_hours(instant: datetime, zone: ZoneInfo, rules: ContactRules) -> bool:
    local = instant.astimezone(zone).time()
    start, end = rules.quiet_hours_start, rules.quiet_hours_end
    if start > end:  # spans midnight, e.g. 22:00-08:00
        return local >= start or local < end
    return start <= local < end


def counts_toward(attempt: ContactAttempt, cap: ChannelCap) -> bool:
    """Whether ``attempt`` is one the cap counts (an outbound attempt with a counted outcome)."""
    if attempt.direction is not Direction.OUTBOUND or attempt.channel != cap.channel:
        return False
    if cap.counts is CapCounts.UNANSWERED:
        return attempt.outcome is not ContactOutcome.ANSWERED
    if cap.counts is CapCounts.CONNECTED:
        return attempt.outcome is not ContactOutcome.FAILED
    return True


def _in_scope(
    log: Sequence[ContactAttempt], cap: ChannelCap, debt: str | None
) -> list[ContactAttempt]:
    """The contacts on the cap's channel it counts together: all of the borrower's, or those
    about this debt (a contact with no debt named is the asking case's own)."""
    return [
        attempt
        for attempt in log
        if attempt.channel == cap.channel
        and attempt.recipient is Recipient.BORROWER
        and (
            cap.per is CapScope.CONTACT_DETAIL
            or debt is None
            or attempt.debt is None
            or attempt.debt == debt
        )
    ]


def _first_block(
    at: datetime,
    time_zone: str,
    caps: list[tuple[ChannelCap, list[ContactAttempt]]],
    holds: ContactHolds,
    rules: ContactRules,
) -> _Block | None:
    if holds.paused:
        until = holds.paused_until.astimezone(UTC) if holds.paused_until else None
        if until is None or until > at:
            return "CASE_PAUSED", until
    if holds.breathing_space_until is not None:
        until = holds.breathing_space_until.astimezone(UTC)
        if until > at:
            return "BREATHING_SPACE", until
    if holds.mental_health_crisis:
        ends = holds.mental_health_crisis_until
        if ends is None or ends.astimezone(UTC) > at:
            return "MENTAL_HEALTH_CRISIS", ends.astimezone(UTC) if ends else None
    if in_quiet_hours(at, zone(time_zone), rules):
        return "QUIET_HOURS", _next_local(at, zone(time_zone), rules.quiet_hours_end)
    for cap, log in caps:
        block = _cap_block(at, time_zone, log, cap)
        if block is not None:
            return block
    return None


def _cap_block(
    at: datetime, time_zone: str, log: list[ContactAttempt], cap: ChannelCap
) -> _Block | None:
    today = local_date(at, time_zone)
    counted = sorted(
        day
        for day in (local_date(a.at, time_zone) for a in log if counts_toward(a, cap))
        if day <= today
    )
    if cap.per_day is not None and counted.count(today) >= cap.per_day:
        return "DAILY_CAP_REACHED", start_of_day(today + timedelta(days=1), time_zone)
    if cap.per_7_days is not None:
        window = [day for day in counted if day > today - timedelta(days=7)]
        if len(window) >= cap.per_7_days:
            # Allowed again on the first day whose 7-day window holds fewer than the cap: the
            # day after the cap-th most recent counted day leaves it.
            reopens = window[len(window) - cap.per_7_days] + timedelta(days=7)
            return "WEEKLY_CAP_REACHED", start_of_day(reopens, time_zone)
    if cap.cooldown_after_conversation_days is not None:
        talks = [
            day
            for day in (local_date(a.at, time_zone) for a in log if a.conversation)
            if day <= today
        ]
        if talks:
            # The day of the conversation is the first of the quiet days.
            reopens = max(talks) + timedelta(days=cap.cooldown_after_conversation_days)
            if today < reopens:
                return "COOLDOWN_AFTER_CONVERSATION", start_of_day(reopens, time_zone)
    return None


def _next_local(after: datetime, zone: ZoneInfo, wall: time) -> datetime:
    """The first UTC instant strictly after ``after`` whose local wall time is ``wall`` (or, in a
    DST gap, just past it)."""
    first = after.astimezone(zone).date()
    for day in range(3):
        for fold in (0, 1):
            candidate = datetime.combine(first + timedelta(days=day), wall, tzinfo=zone)
            instant = candidate.replace(fold=fold).astimezone(UTC)
            if instant > after:
                return instant
    raise AssertionError("unreachable: a later local day always exists")  # pragma: no cover
