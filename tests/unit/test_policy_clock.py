"""The policy clock of a compressed (simulated) case, and the contact rules judged on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from activities.case_activities import CaseActivities, ContactRequest
from activities.contact_channels import ContactDirectorySimulator, ContactGatewaySimulator
from activities.core_banking import CoreBankingSimulator
from activities.esign import ESignatureSimulator
from activities.publisher import InMemoryCaseEventPublisher
from decisions.clock import SHORTEST_SERVER_DELAY, PolicyClock
from decisions.policy import load_policy
from schemas.contact import ContactChannel, ContactHolds
from tests.unit.ledger_double import InProcessContactLedger

pytestmark = pytest.mark.unit

OPENED = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
DAY_PER_SECOND = PolicyClock(anchor=OPENED, time_scale=86_400)


def test_policy_time_runs_scale_times_faster_from_the_anchor() -> None:
    assert DAY_PER_SECOND.policy_time(OPENED) == OPENED
    assert DAY_PER_SECOND.policy_time(OPENED + timedelta(seconds=30)) == OPENED + timedelta(days=30)
    assert DAY_PER_SECOND.server_delay(timedelta(days=14)) == timedelta(seconds=14)
    assert DAY_PER_SECOND.server_time(OPENED + timedelta(days=30)) == OPENED + timedelta(seconds=30)


def test_a_compressed_wait_is_never_a_zero_timer() -> None:
    assert DAY_PER_SECOND.server_delay(timedelta(seconds=1)) == SHORTEST_SERVER_DELAY


def test_a_clock_must_actually_compress_and_within_bounds() -> None:
    with pytest.raises(ValidationError, match="time_scale"):
        PolicyClock(anchor=OPENED, time_scale=1)
    with pytest.raises(ValidationError, match="time_scale"):
        PolicyClock(anchor=OPENED, time_scale=10 * 86_400 + 1)


async def test_the_contact_activity_judges_quiet_hours_on_the_case_clock() -> None:
    # Half a second of server time after a 10:00 opening is 22:00 on the case's clock.
    server_now = OPENED + timedelta(milliseconds=500)

    async def clock() -> datetime:
        return server_now

    activities = CaseActivities(
        core_banking=CoreBankingSimulator(),
        directory=ContactDirectorySimulator(),
        gateway=ContactGatewaySimulator(),
        esign=ESignatureSimulator(),
        publisher=InMemoryCaseEventPublisher(),
        clock=clock,
        ledger=InProcessContactLedger(),
    )
    request = ContactRequest(
        case_id="case-1",
        borrower_id="B-1",
        loan_id="L-1",
        channel=ContactChannel.SMS,
        template="info_request",
        attempt_id="case-1-a1-sms",
        holds=ContactHolds(),
        rules=load_policy().contact,
    )
    on_server_clock = await activities.contact_borrower(request)
    assert on_server_clock.attempt is not None and on_server_clock.attempt.at == server_now

    compressed = request.model_copy(
        update={"policy_clock": DAY_PER_SECOND, "attempt_id": "case-1-a2-sms"}
    )
    on_case_clock = await activities.contact_borrower(compressed)
    assert on_case_clock.attempt is None
    assert on_case_clock.decision.reason == "QUIET_HOURS"
    # 08:00 in Shanghai the next morning, on the case clock.
    assert on_case_clock.decision.next_allowed_at == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
