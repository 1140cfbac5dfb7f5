"""Failures of the production shape under load: a broker dies and comes back, a worker and a
stream processor die, while 500 cases open — and every event still lands once, in one case; and
while borrowers sign, every agreement is still applied to the loan book exactly once."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client

from schemas.case import CaseStage, CaseView
from settings import Settings
from stack.orchestrator import Stack
from stack.processes import PidState
from tests.cluster.conftest import kill, restart, wait_for_applied_or_explain
from tests.integration.services_support import CaseDriver, overdue, restructures
from tests.integration.streams_support import (
    EventProducer,
    case_of,
    loan_ids,
    new_tag,
    overdue_event,
    payment_event,
    wait_for_case_count,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

CASES = 500
BATCH = 100
SIGNING = 10
KILLED = ("kafka-2", "worker-1", "stream-1")


async def test_500_cases_open_while_a_broker_a_worker_and_a_processor_die(
    cluster: Stack, cluster_settings: Settings, cluster_client: Client
) -> None:
    topics = cluster_settings.kafka.topics
    tag = f"C{new_tag()}"
    loans = loan_ids(tag, CASES)
    overdue = [overdue_event(loan, f"od-{loan}") for loan in loans]
    batches = [overdue[start : start + BATCH] for start in range(0, CASES, BATCH)]
    try:
        async with EventProducer(cluster_settings) as producer:
            await producer.send_events(topics.overdue, batches[0])
            # A broker dies without a shutdown: its partitions elect new leaders, writes go on
            # with the two copies left (min.insync.replicas 2).
            await kill(cluster, "kafka-2")
            await producer.send_events(topics.overdue, batches[1])
            # A worker (its cached cases, running activities) and a stream processor (its batch
            # in flight, uncommitted offsets) die while the events are being handled.
            await kill(cluster, "worker-1")
            await kill(cluster, "stream-1")
            await producer.send_events(topics.overdue, batches[2])
            await restart(cluster, "kafka-2")  # catches up and rejoins the in-sync replicas
            for batch in batches[3:]:
                await producer.send_events(topics.overdue, batch)
            await wait_for_case_count(cluster_client, f"L{tag}", CASES, within=240)
            # Events for the open cases, still with one worker and one processor.
            await producer.send_events(
                topics.payment, [payment_event(loan, f"pay-{loan}") for loan in loans]
            )

        # No event lost: each case applied its overdue event and its payment, nothing else.
        expected = {case_of(loan): {f"od-{loan}", f"pay-{loan}"} for loan in loans}
        await wait_for_applied_or_explain(cluster, cluster_client, expected, within=240)

        # No duplicate case: one workflow run per loan, not a second one after a redelivery.
        runs = [
            (execution.id, execution.run_id)
            async for execution in cluster_client.list_workflows(
                f"WorkflowId STARTS_WITH 'case-L{tag}-'"
            )
        ]
        assert len(runs) == CASES, f"{len(runs)} runs for {CASES} loans"
        assert {workflow_id for workflow_id, _ in runs} == set(expected)
    finally:
        await restart_the_dead(cluster)


async def test_agreements_signed_while_a_broker_a_worker_and_a_processor_die_apply_once(
    cluster: Stack, cluster_settings: Settings, cluster_client: Client
) -> None:
    tag = new_tag()[:6]
    loans = [overdue(f"L-sg{tag}-{i:02d}") for i in range(SIGNING)]
    drivers = [CaseDriver(cluster_client, cluster_settings, loan) for loan in loans]
    try:
        async with EventProducer(cluster_settings) as producer:
            await producer.send_events(cluster_settings.kafka.topics.overdue, loans)

        async def out_for_signature(driver: CaseDriver) -> None:
            await driver.answer_contact()
            await driver.choose_plan()

        await asyncio.gather(*(out_for_signature(driver) for driver in drivers))

        async def failures() -> None:
            for name in KILLED:
                await kill(cluster, name)

        # The borrowers sign while the components die: each agreement is applied by whichever
        # worker has the case then, an activity retried on the other worker if its own died.
        _, *views = await asyncio.gather(failures(), *(driver.sign() for driver in drivers))
        tracked: list[CaseView] = views
        assert all(view.stage is CaseStage.TRACK for view in tracked)

        agreements = sorted(view.agreement.agreement_id for view in tracked if view.agreement)
        assert len(agreements) == SIGNING
        book = [
            r for r in await restructures(cluster_settings) if r.loan_id.startswith(f"L-sg{tag}")
        ]
        assert sorted(r.agreement_id for r in book) == agreements  # each exactly once
        assert len({r.restructure_ref for r in book}) == len(book)
    finally:
        await restart_the_dead(cluster)


async def restart_the_dead(cluster: Stack) -> None:
    """Later tests get the whole cluster back."""
    dead = [name for name in KILLED if cluster.supervisor.state(name)[0] is not PidState.RUNNING]
    if dead:
        await restart(cluster, *dead)
