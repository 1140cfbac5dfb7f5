"""Contact rules as hard blocks (DESIGN §5): may we contact the borrower on this channel now?

All arithmetic is on UTC instants; borrower-local wall time (zoneinfo, DST-correct) is used only
to decide quiet hours and which calendar day an attempt belongs to. Comparing aware datetimes in
the same zone ignores DST folds in Python, hence the conversions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from decisions.policy import CapCounts, ChannelCap, ContactRules
from schemas.contact import (
    ContactAttempt,
    ContactChannel,
    ContactDecision,
    ContactHolds,
    ContactOutcome,
    Recipient,
)

_WEEK = timedelta(days=7)
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
    recipient: Recipient = Recipient.BORROWER,
) -> ContactDecision:
    """Allowed, or the first reason it is not and the earliest instant it will be (if known).

    ``time_zone`` is the borrower's IANA zone, e.g. ``"Asia/Shanghai"``.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now: must be timezone-aware")
    zone = ZoneInfo(time_zone)
    channel, recipient = ContactChannel(channel), Recipient(recipient)
    if recipient is not Recipient.BORROWER:
        return ContactDecision(allowed=False, reason="THIRD_PARTY_DISCLOSURE")
    if holds.disputed:
        return ContactDecision(allowed=False, reason="CASE_DISPUTED")

    log = [attempt for attempt in contact_log if attempt.channel == channel]
    caps = rules.caps_for(channel)
    start = now.astimezone(UTC)
    candidate = start
    first_reason: str | None = None
    # Each step jumps to the earliest instant the current block lifts, so the first instant
    # with no block is the earliest allowed one; blocks only lift forward, so this terminates.
    for _ in range(1000):
        block = _first_block(candidate, zone, log, caps, holds, rules)
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


def _first_block(
    at: datetime,
    zone: ZoneInfo,
    log: list[ContactAttempt],
    caps: tuple[ChannelCap, ...],
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
    if in_quiet_hours(at, zone, rules):
        return "QUIET_HOURS", _next_local(at, zone, rules.quiet_hours_end)
    for cap in caps:
        block = _cap_block(at, zone, log, cap)
        if block is not None:
            return block
    return None


def _counted(log: list[ContactAttempt], cap: ChannelCap) -> list[datetime]:
    return sorted(
        attempt.at.astimezone(UTC)
        for attempt in log
        if cap.counts is CapCounts.ALL or attempt.outcome is not ContactOutcome.ANSWERED
    )


def _cap_block(
    at: datetime, zone: ZoneInfo, log: list[ContactAttempt], cap: ChannelCap
) -> _Block | None:
    counted = _counted(log, cap)
    if cap.per_day is not None:
        today = at.astimezone(zone).date()
        if sum(1 for moment in counted if moment.astimezone(zone).date() == today) >= cap.per_day:
            return "DAILY_CAP_REACHED", _next_local(at, zone, time(0))
    if cap.per_7_days is not None:
        window = [moment for moment in counted if moment > at - _WEEK]
        if len(window) >= cap.per_7_days:
            # Once enough of the oldest attempts leave the window, it is below the cap again.
            return "WEEKLY_CAP_REACHED", window[len(window) - cap.per_7_days] + _WEEK
    if cap.cooldown_after_conversation_days is not None:
        cooldown = timedelta(days=cap.cooldown_after_conversation_days)
        conversations = [
            attempt.at.astimezone(UTC)
            for attempt in log
            if attempt.outcome is ContactOutcome.ANSWERED
            and attempt.at.astimezone(UTC) > at - cooldown
        ]
        if conversations:
            return "COOLDOWN_AFTER_CONVERSATION", max(conversations) + cooldown
    return None


def _next_local(after: datetime, zone: ZoneInfo, wall: time) -> datetime:
    """The first UTC instant strictly after ``after`` whose local wall time is ``wall`` (or, in a
    DST gap, just past it)."""
    local_date = after.astimezone(zone).date()
    for day in range(3):
        for fold in (0, 1):
            candidate = datetime.combine(local_date + timedelta(days=day), wall, tzinfo=zone)
            instant = candidate.replace(fold=fold).astimezone(UTC)
            if instant > after:
                return instant
    raise AssertionError("unreachable: a later local day always exists")  # pragma: no cover
