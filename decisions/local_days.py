"""The borrower's calendar: which local day an instant falls on, and when a local day starts.

Regulations and borrowers count in calendar days where the borrower lives (a due date, "7
consecutive days", "60 days from the day after"); instants are UTC. Every conversion goes
through here, DST included: a day is 23, 24 or 25 hours long, and a few zones skip midnight.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_ZONE = "UTC"
"""For a case opened before it learned the borrower's zone."""


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raises ``ValueError`` naming it when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time_zone: {name!r} is not an IANA time zone") from None


def is_zone(name: str) -> bool:
    try:
        zone(name)
    except ValueError:
        return False
    return True


def local_date(instant: datetime, time_zone: str) -> date:
    """The borrower's calendar day at ``instant``."""
    return instant.astimezone(zone(time_zone)).date()


def start_of_day(day: date, time_zone: str) -> datetime:
    """The first instant (UTC) of the borrower's calendar day ``day``. Where the clocks skip
    midnight, that is the moment they jump (Python maps a skipped wall time with fold=0 to the
    transition instant)."""
    return datetime.combine(day, time(0), tzinfo=zone(time_zone)).astimezone(UTC)


def end_of_day(day: date, time_zone: str) -> datetime:
    """The instant the borrower's day ``day`` is over: the start of the next one."""
    return start_of_day(day + timedelta(days=1), time_zone)


def days_later(instant: datetime, days: int, time_zone: str) -> datetime:
    """The end of the borrower's calendar day ``days`` after the day of ``instant``: a deadline
    of "N days" given at ``instant`` runs to the end of that local day."""
    return end_of_day(local_date(instant, time_zone) + timedelta(days=days), time_zone)
