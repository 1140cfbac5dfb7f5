"""The contact rules count per borrower on the real stack: four overdue loans of one borrower
open four cases at once, each wanting to text the borrower first; the contact service records
every message and call, and what it recorded for that borrower stays within the CN pack's caps
in the borrower's calendar days. Three texts a day is the cap, so at least one case is told to
wait (the shared ledger refused it), not allowed a fourth."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import Client

from activities.http_adapters import ContactDirectoryHttp
from decisions.policy import load_contact_rules
from schemas.contact import ContactChannel
from services.contact import MessageLog, database_path
from settings import Settings
from stack.orchestrator import Stack
from tests.integration.services_support import eventually, overdue
from tests.integration.streams_support import EventProducer
from workflows.handle import CaseHandle

pytestmark = pytest.mark.integration

LOANS = 4


async def test_four_loans_of_one_borrower_keep_within_the_packs_daily_caps(
    stack_apps: Stack, stack_settings: Settings, temporal_client: Client
) -> None:
    borrower_id = f"b-ledger-{uuid.uuid4().hex[:8]}"
    loans = [
        overdue(f"L-ledger-{borrower_id[-8:]}-{n}").model_copy(update={"borrower_id": borrower_id})
        for n in range(LOANS)
    ]
    async with EventProducer(stack_settings) as producer:
        await producer.send_events(stack_settings.kafka.topics.overdue, loans)
    handles = [CaseHandle(temporal_client, loan.case_id) for loan in loans]

    async def blocked(handle: CaseHandle) -> list[str]:
        return [
            d.summary[1] for d in (await handle.audit()).decisions if d.kind == "contact_blocked"
        ]

    async def settled() -> bool | None:
        """Every case made its first contact or was told to wait."""
        for handle in handles:
            if not ((await handle.view()).contact_log or await blocked(handle)):
                return None
        return True

    await eventually(settled, within=90, what="every case's first contact decided")

    # What the contact service recorded for the borrower, by channel and local calendar day, at
    # the addresses (and in the zone) core banking gives the worker for this borrower.
    directory = ContactDirectoryHttp(stack_settings.core_banking)
    try:
        details = await directory.lookup(borrower_id)
    finally:
        await directory.aclose()
    zone = ZoneInfo(details.time_zone)
    now = datetime.now(UTC)
    with contextlib.closing(sqlite3.connect(database_path(stack_settings))) as connection:
        connection.row_factory = sqlite3.Row
        log = MessageLog(connection, stack_settings)
        recorded = [
            message
            for address in (details.phone, details.email)
            if address is not None
            for message in log.to(address, now)
        ]
    per_day = Counter((m.channel, m.created_at.astimezone(zone).date()) for m in recorded)
    pack = load_contact_rules("cn-2026")
    caps = {cap.channel: cap.per_day for cap in pack.caps if cap.per_day is not None}
    for (channel, day), count in per_day.items():
        assert count <= caps[channel], (channel, day, count, caps[channel])

    texts = sum(count for (channel, _), count in per_day.items() if channel is ContactChannel.SMS)
    assert 1 <= texts <= caps[ContactChannel.SMS]
    # Each case opens with a text: the cases beyond the day's cap were refused by the ledger.
    refused = [handle for handle in handles if "DAILY_CAP_REACHED" in await blocked(handle)]
    assert len(refused) >= LOANS - caps[ContactChannel.SMS], [await blocked(h) for h in handles]
    for handle in handles:
        await temporal_client.get_workflow_handle(handle.case_id).terminate("test over")
