"""The case's policy clock: the server's clock, or a faster one for simulations.

A simulation compresses time (``Durations.time_scale``: one policy day per server second) so a
year-long plan plays out in minutes. The clock starts at the case's opening and runs
``time_scale`` times faster from there; every due date, deadline and contact-rule check of a
compressed case is on this clock, and every server timer is the policy delay divided by it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from decisions.policy import MAX_TIME_SCALE

SHORTEST_SERVER_DELAY = timedelta(milliseconds=1)
"""A compressed wait never becomes a zero-length timer, which the server would not fire."""


class PolicyClock(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    anchor: datetime
    """Where policy time and server time agree: the case's opening."""
    time_scale: int = Field(ge=2, le=MAX_TIME_SCALE, strict=True)

    def policy_time(self, server_now: datetime) -> datetime:
        return self.anchor + (server_now - self.anchor) * self.time_scale

    def server_time(self, policy_moment: datetime) -> datetime:
        """The inverse of ``policy_time``: when the server's clock reaches ``policy_moment``."""
        return self.anchor + (policy_moment - self.anchor) / self.time_scale

    def server_delay(self, policy_delay: timedelta) -> timedelta:
        return max(policy_delay / self.time_scale, SHORTEST_SERVER_DELAY)
