"""Streams: 1,000 cases once, and poison messages. Real Kafka, Temporal, `accord stream`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from schemas.contact import ContactChannel, Direction
from schemas.events import ContactInteraction
from settings import Settings
from streams import dead_letters
from tests.integration.streams_support import (
    EventProducer,
    accord,
    case_of,
    case_worker,
    case_workflow_worker,
    count_cases,
    create_topics,
    loan_ids,
    new_tag,
    overdue_event,
    payment_event,
    read_all,
    stream_processes,
    streams_test_settings,
    wait_for_applied,
    wait_for_case_count,
    wait_processed,
    wait_until,
)
from workflows import search_attributes as sa
from workflows.ledger_handle import ContactLedgerHandle

pytestmark = pytest.mark.integration

CASES = 1000
SIGNALED = "workflow_execution_signaled_event_attributes"


async def test_thousand_overdue_events_open_thousand_cases_once(
    stack_settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    tag = new_tag()
    settings = streams_test_settings(stack_settings, tag)
    await create_topics(settings)
    topic = settings.kafka.topics.overdue
    loans = loan_ids(tag, CASES)
    events = [
        overdue_event(loan, f"od-{loan}", days_past_due=1 + i % 90) for i, loan in enumerate(loans)
    ]
    expected = {case_of(loan): {f"od-{loan}"} for loan in loans}

    async with (
        case_workflow_worker(temporal_client, settings),
        stream_processes(settings, tmp_path) as (stream,),
        EventProducer(settings) as producer,
    ):
        stream.start()
        await producer.send_events(topic, events)
        await wait_processed(stream, topic, CASES)
        await wait_for_applied(temporal_client, expected, within=60)

        await wait_for_case_count(temporal_client, f"L{tag}-", CASES)
        # Each case is filterable by the attributes set at start (kept current by the case:
        # days past due counted to today, the outstanding amount as its band).
        today = datetime.now(UTC).date()
        by_id = {event.case_id: event for event in events}
        async for execution in temporal_client.list_workflows(
            f"WorkflowId STARTS_WITH 'case-L{tag}-' AND CaseStage = 'collect_info'"
        ):
            attributes = execution.typed_search_attributes
            event = by_id.pop(execution.id)
            overdue_since = event.occurred_at.date() - timedelta(days=event.days_past_due)
            assert attributes.get(sa.DAYS_PAST_DUE) == (today - overdue_since).days
            assert attributes.get(sa.PRODUCT_TYPE) == event.product.value
            assert attributes.get(sa.OUTSTANDING_AMOUNT) == 10000  # 10,130.50: band 10,000+
        assert not by_id, f"{len(by_id)} cases without their search attributes"

        # The same 1,000 again (a producer retry, a replay): no new case, nothing applied twice,
        # and the processor recognises them itself: not one more signal in any case's history.
        await producer.send_events(topic, events)

        async def all_recognised() -> bool:
            return await stream.count(topic, "skipped") == CASES

        await wait_until(all_recognised, within=60, what="1,000 redelivered events skipped")
        assert await stream.count(topic, "processed") == CASES
        await wait_for_applied(temporal_client, expected, within=60)
        assert await count_cases(temporal_client, f"L{tag}-") == CASES
        assert await stream.count(topic, "dead_lettered") == 0
        for loan in loans[:: CASES // 20]:
            history = await temporal_client.get_workflow_handle(case_of(loan)).fetch_history()
            signals = [e for e in history.events if e.HasField(SIGNALED)]
            assert len(signals) == 1, f"{case_of(loan)}: {len(signals)} signals"


async def test_poison_messages_are_dead_lettered_and_the_rest_flows(
    stack_settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    """With the full `accord worker`: the valid cases also publish to the case events topic."""
    tag = new_tag()
    settings = streams_test_settings(stack_settings, tag)
    await create_topics(settings)
    topic = settings.kafka.topics.overdue
    before, after = loan_ids(f"{tag}a", 5), loan_ids(f"{tag}b", 5)
    schema_invalid = overdue_event("Lbad-1", f"bad-{tag}").model_dump(mode="json")
    schema_invalid["days_past_due"] = 0
    schema_invalid["overdue_amount"] = 123.45  # money as a float: refused

    async with (
        case_worker(settings, tmp_path),
        stream_processes(settings, tmp_path) as (stream,),
        EventProducer(settings) as producer,
    ):
        await producer.send_events(topic, [overdue_event(loan, f"od-{loan}") for loan in before])
        await producer.send(topic, "Lbad-0", b"{not json")
        await producer.send(topic, "Lbad-1", json.dumps(schema_invalid).encode())
        await producer.send_events(topic, [overdue_event(loan, f"od-{loan}") for loan in after])
        stream.start()

        await wait_for_applied(
            temporal_client,
            {case_of(loan): {f"od-{loan}"} for loan in before + after},
            within=60,
        )

        def dead_lettered(count: int) -> Callable[[], Awaitable[bool]]:
            async def reached() -> bool:
                return await stream.count(topic, "dead_lettered") == count

            return reached

        await wait_until(dead_lettered(2), within=30, what="two dead letters")

        # Outbound: each case announces itself on the case events topic, keyed by its loan.
        async def every_case_opened() -> bool:
            records = await read_all(settings, settings.kafka.topics.case_events)
            opened = {
                (r.key, json.loads(r.value)["case_id"])
                for r in records
                if json.loads(r.value)["kind"] == "opened"
            }
            return opened == {(loan.encode(), case_of(loan)) for loan in before + after}

        await wait_until(every_case_opened, within=60, what="an opened case event per case")

        # `accord dlq inspect` shows reasons and ids, not values; `redrive` re-publishes each once.
        shown = run_dlq_command(settings, "inspect", topic)
        assert shown.count("kind=malformed") == 1 and shown.count("kind=schema_invalid") == 1
        assert "not json" not in shown and "10000.00" not in shown
        assert "re-drove 2 record(s)" in run_dlq_command(settings, "redrive", topic)
        # Still poison: dead-lettered again, and only those two are re-driven next time.
        await wait_until(dead_lettered(4), within=30, what="the re-driven poison dead again")
        assert "re-drove 2 record(s)" in run_dlq_command(settings, "redrive", topic)
        await wait_until(dead_lettered(6), within=30, what="the second re-drive dead again")

    dead = await read_all(settings, settings.kafka.topics.dlq(topic))
    assert len(dead) == 6
    by_key: dict = {}
    for record in sorted(dead, key=lambda r: r.offset):  # a loan's dead letters share a partition
        by_key.setdefault(record.key, record)
    assert set(by_key) == {b"Lbad-0", b"Lbad-1"}
    malformed = dict(by_key[b"Lbad-0"].headers)
    assert by_key[b"Lbad-0"].value == b"{not json"  # the original bytes
    assert malformed[dead_letters.ERROR_KIND] == b"malformed"
    assert malformed[dead_letters.ORIGINAL_TOPIC] == topic.encode()
    assert {dead_letters.ORIGINAL_PARTITION, dead_letters.ORIGINAL_OFFSET} <= set(malformed)
    invalid = dict(by_key[b"Lbad-1"].headers)
    assert invalid[dead_letters.ERROR_KIND] == b"schema_invalid"
    assert invalid[dead_letters.EVENT_ID] == f"bad-{tag}".encode()
    reason = invalid[dead_letters.ERROR].decode()
    assert "days_past_due" in reason and "overdue_amount" in reason
    assert "123.45" not in reason  # fields are named, values never quoted


def run_dlq_command(settings: Settings, *args: str) -> str:
    done = accord(settings, "dlq", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_closed_case_is_not_reopened_and_orphan_events_are_skipped(
    stack_settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    tag = new_tag()
    settings = streams_test_settings(stack_settings, tag)
    await create_topics(settings)
    topics = settings.kafka.topics
    (loan,) = loan_ids(tag, 1)

    async with (
        case_workflow_worker(temporal_client, settings),
        stream_processes(settings, tmp_path) as (stream,),
        EventProducer(settings) as producer,
    ):
        stream.start()
        await producer.send_events(topics.overdue, [overdue_event(loan, f"od1-{loan}")])
        await wait_for_applied(temporal_client, {case_of(loan): {f"od1-{loan}"}}, within=30)
        await temporal_client.get_workflow_handle(case_of(loan)).terminate("test: case closed")

        # A late overdue event of the closed episode, and payments with no open case.
        await producer.send_events(topics.overdue, [overdue_event(loan, f"od2-{loan}")])
        await producer.send_events(
            topics.payment,
            [payment_event(loan, f"pay-{loan}"), payment_event(f"N{tag}", f"pay-N{tag}")],
        )

        async def both_skipped() -> bool:
            return (
                await stream.count(topics.overdue, "skipped") == 1
                and await stream.count(topics.payment, "skipped") == 2
            )

        await wait_until(both_skipped, within=30, what="the late events skipped")
        assert await count_cases(temporal_client, f"L{tag}-") == 1
        description = await temporal_client.get_workflow_handle(case_of(loan)).describe()
        assert description.status is not None and description.status.name == "TERMINATED"


async def test_contact_interactions_reach_the_borrowers_ledger_once(
    stack_settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    """``contact.interaction.v1`` from the contact centre: each event lands once in the
    borrower's contact ledger, with its direction, whether or not the loan has an open case."""
    tag = new_tag()
    settings = streams_test_settings(stack_settings, tag)
    await create_topics(settings)
    topics = settings.kafka.topics
    with_case, without_case = loan_ids(tag, 2)
    called = ContactInteraction(
        event_id=f"ci1-{with_case}",
        occurred_at=datetime(2026, 11, 2, 3, 0, tzinfo=UTC),
        schema_version=1,
        loan_id=with_case,
        borrower_id=f"b-{with_case}",
        channel=ContactChannel.PHONE,
        direction=Direction.INBOUND,
        conversation=True,
    )
    dialled = called.model_copy(
        update={
            "event_id": f"ci2-{without_case}",
            "loan_id": without_case,
            "borrower_id": f"b-{without_case}",
            "direction": Direction.OUTBOUND,
            "conversation": False,
        }
    )

    async with (
        case_workflow_worker(temporal_client, settings),
        stream_processes(settings, tmp_path) as (stream,),
        EventProducer(settings) as producer,
    ):
        stream.start()
        await producer.send_events(topics.overdue, [overdue_event(with_case, f"od-{with_case}")])
        await wait_for_applied(
            temporal_client, {case_of(with_case): {f"od-{with_case}"}}, within=30
        )
        # The first event twice (a producer retry), and one for a loan with no case.
        await producer.send_events(topics.contact_interaction, [called, called, dialled])

        async def all_three_handled() -> bool:
            done = 0
            for outcome in ("processed", "skipped"):
                done += await stream.count(topics.contact_interaction, outcome)
            return done >= 3

        await wait_until(all_three_handled, within=30, what="the interactions handled")

        async def entries(borrower_id: str) -> list[tuple[str | None, str, str]]:
            ledger = ContactLedgerHandle(
                temporal_client, borrower_id, task_queue=settings.temporal.task_queue
            )
            view = await ledger.view()
            return [(e.attempt_id, e.direction.value, e.outcome.value) for e in view.entries]

        assert await entries(called.borrower_id) == [(called.event_id, "inbound", "answered")]
        assert await entries(dialled.borrower_id) == [(dialled.event_id, "outbound", "unanswered")]
        assert await stream.count(topics.contact_interaction, "dead_lettered") == 0
