"""The two stream processors of the cluster topology, judged by what reaches the cases: every
event for an open case reaches it across a rebalance, events for loans without a case open none,
and a hardship declared before its loan's overdue event still reaches the case."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from temporalio.client import Client

from schemas.events import CustomerHardship, Event, HardshipReason
from settings import Settings
from stack.orchestrator import Stack, Topology
from tests.cluster.conftest import assigned_partitions, restart, wait_for_applied_or_explain
from tests.integration.streams_support import (
    EventProducer,
    case_of,
    count_cases,
    loan_ids,
    new_tag,
    overdue_event,
    payment_event,
    wait_for_case_count,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

PAYMENT_ROUNDS = 3
# Payments go out at this pace so that they are still flowing while the group rebalances.
PAYMENTS_PER_SECOND = 40


def hardship_event(loan_id: str, event_id: str) -> CustomerHardship:
    return CustomerHardship(
        event_id=event_id,
        occurred_at=datetime(2026, 11, 1, 8, 0, tzinfo=UTC),
        schema_version=1,
        loan_id=loan_id,
        borrower_id=f"b-{loan_id}",
        currency="CNY",
        monthly_income=Decimal("4000.00"),
        essential_expenses=Decimal("2500.00"),
        other_debt_payments=Decimal("0.00"),
        household_size=2,
        reason=HardshipReason.INCOME_REDUCTION,
        temporary=True,
        expected_recovery_months=6,
    )


async def paced(producer: EventProducer, topic: str, events: Iterable[Event], rate: float) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    for index, event in enumerate(events):
        await asyncio.sleep(max(0.0, started + index / rate - loop.time()))  # pacing, not waiting
        await producer.send(topic, event.loan_id, event.model_dump_json().encode())


async def stream_processors_share(cluster: Stack) -> bool:
    return all((await assigned_partitions(cluster.settings)).values())


async def test_rebalance_while_payments_flow_loses_no_event(
    cluster: Stack, cluster_settings: Settings, cluster_client: Client
) -> None:
    topics = cluster_settings.kafka.topics
    tag = f"R{new_tag()}"
    open_loans = loan_ids(tag, 60)
    no_case_loans = loan_ids(f"N{tag}", 60)
    overdue = [overdue_event(loan, f"od-{loan}") for loan in open_loans]
    async with EventProducer(cluster_settings) as producer:
        await producer.send_events(topics.overdue, overdue)
        await wait_for_case_count(cluster_client, f"L{tag}", len(open_loans), within=60)

        def payments(round_: int) -> list[Event]:
            return [
                payment_event(loan, f"pay-{loan}-{round_}")
                for loan in [*open_loans, *no_case_loans]
            ]

        await paced(producer, topics.payment, payments(0), PAYMENTS_PER_SECOND)
        # stream-2 leaves the group (its partitions go to stream-1), then joins again (they are
        # split anew), each while a round of payments is being produced.
        leave = Stack(cluster_settings, only=["stream-2"], topology=Topology.CLUSTER).down()
        await asyncio.gather(
            paced(producer, topics.payment, payments(1), PAYMENTS_PER_SECOND), leave
        )
        await asyncio.gather(
            paced(producer, topics.payment, payments(2), PAYMENTS_PER_SECOND),
            restart(cluster, "stream-2"),
        )
        await producer.send_events(topics.payment, [])  # flush

    expected = {
        case_of(loan): {f"od-{loan}", *(f"pay-{loan}-{r}" for r in range(PAYMENT_ROUNDS))}
        for loan in open_loans
    }
    await wait_for_applied_or_explain(cluster, cluster_client, expected, within=120)
    assert await count_cases(cluster_client, f"LN{tag}") == 0
    await wait_until(
        lambda: stream_processors_share(cluster), within=60, what="both processors assigned"
    )


async def test_hardship_declared_before_the_overdue_event_reaches_the_case(
    cluster: Stack, cluster_settings: Settings, cluster_client: Client
) -> None:
    topics = cluster_settings.kafka.topics
    tag = f"H{new_tag()}"
    loans = loan_ids(tag, 10)
    async with EventProducer(cluster_settings) as producer:
        hardships = [hardship_event(loan, f"hs-{loan}") for loan in loans]
        await producer.send_events(topics.hardship, hardships)
        await producer.send_events(topics.overdue, [overdue_event(x, f"od-{x}") for x in loans])
    await wait_for_case_count(cluster_client, f"L{tag}", len(loans), within=60)
    expected = {case_of(loan): {f"hs-{loan}", f"od-{loan}"} for loan in loans}
    await wait_for_applied_or_explain(cluster, cluster_client, expected, within=20)
