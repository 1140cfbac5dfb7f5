"""The stream's delivery decisions, with the open-case tables as dicts and Temporal as a fake:
which events cost a Temporal call, held hardship, new episodes, and per-loan order across
topics. The real broker and server are in tests/integration/test_streams_*.py."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import pytest

from schemas.events import CustomerHardship, Event, LoanOverdue, LoanPayment
from settings import Settings
from streams import dead_letters
from streams.cases import Cases, Signalled, Started
from streams.dead_letters import ErrorKind, Rejection
from streams.ingest import InboundMessage, Ingestor
from streams.metrics import Outcome, StreamMetrics
from streams.ordering import Abandoned, OverdueProgress, Rebalance
from streams.state import LoanBook, partition_of
from tests.factories import loan

pytestmark = pytest.mark.unit

TOPICS = Settings().kafka.topics
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOLD = timedelta(days=30)


@dataclass
class FakeCases:
    """Temporal as the stream sees it: running case ids; every call recorded."""

    running: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (operation, case, event)

    async def start_case(self, event: LoanOverdue) -> Started:
        self.calls.append(("start", event.case_id, event.event_id))
        if event.case_id in self.closed:
            return Started.CLOSED
        self.running.add(event.case_id)
        return Started.STARTED

    async def signal_case(self, case_id: str, event: Event) -> Signalled:
        self.calls.append(("signal", case_id, event.event_id))
        return Signalled.DELIVERED if case_id in self.running else Signalled.GONE


@dataclass
class Offsets:
    """The overdue topic's end offsets, as the brokers would answer."""

    ends: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)  # the consumer group's commits
    queries: int = 0
    floor_queries: int = 0

    async def end_offsets(self) -> dict[int, int]:
        self.queries += 1
        return dict(self.ends)

    async def floor(self, partitions: Any) -> dict[int, int]:
        self.floor_queries += 1
        return {partition: self.committed.get(partition, 0) for partition in partitions}


@dataclass
class Stream:
    cases: FakeCases
    book: LoanBook
    ingestor: Ingestor
    progress: OverdueProgress
    offsets: Offsets
    rebalance: Rebalance
    open_cases: dict[bytes, Any]
    held: dict[bytes, Any]
    dead: list[tuple[InboundMessage, Rejection]]
    clock: list[datetime]


@pytest.fixture
def stream() -> Stream:
    cases = FakeCases()
    open_cases: dict[bytes, Any] = {}
    held: dict[bytes, Any] = {}
    book = LoanBook(open_cases, held)
    offsets = Offsets()
    rebalance = Rebalance()
    progress = OverdueProgress(offsets.end_offsets, offsets.floor, rebalance)
    dead: list[tuple[InboundMessage, Rejection]] = []
    clock = [NOW]

    async def sink(message: InboundMessage, rejection: Rejection) -> None:
        dead.append((message, rejection))

    ingestor = Ingestor(
        Settings(),
        cast(Cases, cases),
        book,
        progress,
        rebalance,
        sink,
        StreamMetrics(),
        HOLD,
        now=lambda: clock[0],
    )
    return Stream(
        cases, book, ingestor, progress, offsets, rebalance, open_cases, held, dead, clock
    )


def overdue(loan_id: str, event_id: str, since: date = date(2026, 1, 15)) -> LoanOverdue:
    return loan(loan_id=loan_id, event_id=event_id, delinquent_since=since)


def payment(loan_id: str, event_id: str) -> LoanPayment:
    return LoanPayment(
        event_id=event_id,
        occurred_at=NOW,
        schema_version=1,
        loan_id=loan_id,
        currency="CNY",
        amount=Decimal("100.00"),
        paid_at=NOW,
        channel="bank_transfer",
    )


def hardship(loan_id: str, event_id: str) -> CustomerHardship:
    return CustomerHardship(
        event_id=event_id,
        occurred_at=NOW,
        schema_version=1,
        loan_id=loan_id,
        borrower_id="B-1",
        currency="CNY",
        monthly_income=Decimal("5000.00"),
        essential_expenses=Decimal("3000.00"),
        other_debt_payments=Decimal("0.00"),
        household_size=2,
        reason="job_loss",
        temporary=True,
    )


TOPIC_OF = {
    LoanOverdue: TOPICS.overdue,
    LoanPayment: TOPICS.payment,
    CustomerHardship: TOPICS.hardship,
}


def message(event: Event, offset: int = 0) -> InboundMessage:
    key = event.loan_id.encode()
    return InboundMessage(
        topic=TOPIC_OF[type(event)],
        partition=partition_of(key, TOPICS.partitions),
        offset=offset,
        key=key,
        value=event.model_dump_json().encode(),
    )


async def deliver(stream: Stream, *events: Event) -> list[Outcome]:
    """Each event as its own batch, in order, the way one loan's events arrive."""
    outcomes = []
    for event in events:
        outcomes += await stream.ingestor.handle_batch([message(event)])
    return outcomes


async def test_an_event_for_a_loan_without_a_case_costs_no_temporal_call(stream: Stream) -> None:
    outcomes = await deliver(stream, payment("L-1", "p1"), payment("L-2", "p2"))
    assert outcomes == [Outcome.SKIPPED, Outcome.SKIPPED]
    assert stream.cases.calls == []


async def test_the_case_a_stream_starts_is_known_at_once(stream: Stream) -> None:
    first = overdue("L-1", "o1")
    await deliver(stream, first, payment("L-1", "p1"))
    assert stream.cases.calls == [("start", first.case_id, "o1"), ("signal", first.case_id, "p1")]
    assert stream.book.open_case("L-1").case_id == first.case_id  # type: ignore[union-attr]


async def test_case_events_open_and_close_the_loans_case(stream: Stream) -> None:
    case_id = overdue("L-1", "o1").case_id
    stream.cases.running.add(case_id)
    stream.book.case_opened("L-1", case_id)
    assert await deliver(stream, payment("L-1", "p1")) == [Outcome.PROCESSED]
    assert stream.book.case_closed("L-1", "case-L-1-20250101") is False  # another case: stale
    assert stream.book.case_closed("L-1", case_id) is True
    assert await deliver(stream, payment("L-1", "p2")) == [Outcome.SKIPPED]
    assert [c[0] for c in stream.cases.calls] == ["signal"]


async def test_an_opened_event_never_goes_back_to_an_older_case(stream: Stream) -> None:
    stream.book.case_starting("L-1", "case-L-1-20260301")
    stream.book.case_opened("L-1", "case-L-1-20260101")  # a late event of the previous case
    stream.book.case_starting("L-1", "case-L-1-20260301")
    stream.book.case_opened("L-1", "case-L-1-20260301")
    stream.book.case_starting("L-1", "case-L-1-20260301")  # redelivered: stays open
    case = stream.book.open_case("L-1")
    assert case is not None and (case.case_id, case.state) == ("case-L-1-20260301", "open")


async def test_hardship_before_the_case_is_held_and_applied_when_it_opens(stream: Stream) -> None:
    assert await deliver(stream, hardship("L-1", "h1")) == [Outcome.HELD]
    assert stream.cases.calls == []
    opened = overdue("L-1", "o1")
    assert await deliver(stream, opened) == [Outcome.PROCESSED]
    assert stream.cases.calls == [
        ("start", opened.case_id, "o1"),
        ("signal", opened.case_id, "h1"),
    ]
    assert stream.held == {}


async def test_a_held_hardship_expires_after_the_policy_hold(stream: Stream) -> None:
    await deliver(stream, hardship("L-1", "h1"))
    stream.clock[0] = NOW + HOLD
    opened = overdue("L-1", "o1")
    await deliver(stream, opened)
    assert stream.cases.calls == [("start", opened.case_id, "o1")]
    assert stream.held == {}


async def test_a_later_declaration_replaces_the_held_one(stream: Stream) -> None:
    await deliver(stream, hardship("L-1", "h1"), hardship("L-1", "h2"))
    opened = overdue("L-1", "o1")
    await deliver(stream, opened)
    assert ("signal", opened.case_id, "h2") in stream.cases.calls
    assert ("signal", opened.case_id, "h1") not in stream.cases.calls


async def test_a_new_episode_tells_the_open_case_then_starts_its_own(stream: Stream) -> None:
    old = overdue("L-1", "o1", since=date(2026, 1, 15))
    new = overdue("L-1", "o2", since=date(2026, 2, 20))
    await deliver(stream, old, new, payment("L-1", "p1"))
    assert stream.cases.calls == [
        ("start", old.case_id, "o1"),
        ("signal", old.case_id, "o2"),  # the old case closes itself on a later episode
        ("start", new.case_id, "o2"),
        ("signal", new.case_id, "p1"),
    ]
    assert stream.book.open_case("L-1").case_id == new.case_id  # type: ignore[union-attr]


async def test_an_overdue_event_of_an_older_episode_starts_nothing(stream: Stream) -> None:
    new = overdue("L-1", "o2", since=date(2026, 2, 20))
    await deliver(stream, new)
    outcomes = await deliver(stream, overdue("L-1", "o1", since=date(2026, 1, 15)))
    assert outcomes == [Outcome.SKIPPED]
    assert stream.cases.calls == [("start", new.case_id, "o2")]


async def test_a_case_temporal_no_longer_has_is_forgotten(stream: Stream) -> None:
    opened = overdue("L-1", "o1")
    await deliver(stream, opened)
    stream.cases.running.clear()  # terminated: no closed event was published
    outcomes = await deliver(stream, payment("L-1", "p1"), hardship("L-1", "h1"))
    assert outcomes == [Outcome.SKIPPED, Outcome.HELD]
    assert stream.book.open_case("L-1") is None
    assert len(stream.held) == 1


async def test_a_closed_case_is_not_reopened_and_is_forgotten(stream: Stream) -> None:
    opened = overdue("L-1", "o1")
    stream.book.case_opened("L-1", opened.case_id)
    stream.cases.closed.add(opened.case_id)
    assert await deliver(stream, opened) == [Outcome.SKIPPED]
    assert stream.book.open_case("L-1") is None


async def test_payment_waits_for_the_overdue_event_read_before_it(stream: Stream) -> None:
    """The overdue topic has an undelivered event in the payment's partition: the payment is
    decided only after the overdue agent has delivered it, so it finds the new case."""
    first = overdue("L-1", "o1")
    pay = message(payment("L-1", "p1"))
    stream.offsets.ends = {pay.partition: 1}
    paying = asyncio.create_task(stream.ingestor.handle_batch([pay], time.monotonic()))
    await asyncio.sleep(0)  # the payment batch reads the end offsets and waits
    for _ in range(5):
        await asyncio.sleep(0)
    assert not paying.done() and stream.cases.calls == []
    await stream.ingestor.handle_batch([message(first)])
    await stream.progress.delivered(pay.partition, 1)
    assert await paying == [Outcome.PROCESSED]
    assert stream.cases.calls == [("start", first.case_id, "o1"), ("signal", first.case_id, "p1")]


async def test_a_partition_delivered_elsewhere_meanwhile_is_not_waited_for(stream: Stream) -> None:
    """This processor delivered a partition's overdue events up to 3 and lost the partition;
    another processor delivered and committed them up to 8; the partition came back. A payment
    there is decided now, not after the partition's next overdue event."""
    opened = overdue("L-1", "o1")
    stream.book.case_opened("L-1", opened.case_id)
    stream.cases.running.add(opened.case_id)
    pay = message(payment("L-1", "p1"))
    await stream.progress.delivered(pay.partition, 3)
    stream.offsets.ends = {pay.partition: 8}
    stream.offsets.committed = {pay.partition: 8}

    deciding = stream.ingestor.handle_batch([pay], time.monotonic())

    assert await asyncio.wait_for(deciding, timeout=5) == [Outcome.PROCESSED]  # not a hang
    assert stream.cases.calls == [("signal", opened.case_id, "p1")]


async def test_the_groups_commit_is_asked_once_per_partition_between_rebalances(
    stream: Stream,
) -> None:
    """Behind on a partition it has checked, a batch waits for the overdue agent (which alone
    delivers that partition until the next rebalance) without asking the brokers again."""
    loop = asyncio.get_running_loop()
    stream.rebalance.bind(loop)
    pay = message(payment("L-1", "p1"))
    stream.offsets.ends = {pay.partition: 2}
    stream.offsets.committed = {pay.partition: 2}
    await stream.ingestor.handle_batch([pay], time.monotonic())
    assert stream.offsets.floor_queries == 1

    stream.offsets.ends = {pay.partition: 3}  # an overdue event the agent has not delivered yet
    waiting = asyncio.create_task(
        stream.ingestor.handle_batch([message(payment("L-1", "p2"))], time.monotonic())
    )
    for _ in range(20):
        await asyncio.sleep(0)  # the batch reads the end offsets and waits
    assert not waiting.done() and stream.offsets.queries == 2
    await stream.progress.delivered(pay.partition, 3)
    assert await waiting == [Outcome.SKIPPED]  # no case: decided, after the overdue agent
    assert stream.offsets.floor_queries == 1

    stream.rebalance.started()
    stream.rebalance.ended()
    await asyncio.sleep(0)  # both run on the loop
    assert not stream.rebalance.active
    stream.offsets.ends = {pay.partition: 4}
    stream.offsets.committed = {pay.partition: 4}  # delivered by the other processor meanwhile
    third = stream.ingestor.handle_batch([message(payment("L-1", "p3"))], time.monotonic())
    await asyncio.wait_for(third, timeout=5)  # not a hang
    assert stream.offsets.floor_queries == 2


async def test_batches_read_before_one_end_offset_query_share_it(stream: Stream) -> None:
    read_at = time.monotonic()
    await stream.ingestor.handle_batch([message(payment("L-1", "p1"))], read_at)
    await stream.ingestor.handle_batch([message(payment("L-2", "p2"))], read_at)
    assert stream.offsets.queries == 1
    await stream.ingestor.handle_batch([message(payment("L-3", "p3"))], time.monotonic())
    assert stream.offsets.queries == 2
    assert stream.offsets.floor_queries == 0  # an empty overdue partition needs no commit


async def test_a_rebalance_abandons_a_waiting_batch(stream: Stream) -> None:
    stream.rebalance.bind(asyncio.get_running_loop())
    pay = message(payment("L-1", "p1"))
    stream.offsets.ends = {pay.partition: 1}
    waiting = asyncio.create_task(stream.ingestor.handle_batch([pay], time.monotonic()))
    for _ in range(5):
        await asyncio.sleep(0)
    stream.rebalance.started()
    with pytest.raises(Abandoned):
        await asyncio.wait_for(waiting, timeout=5)
    assert stream.cases.calls == []


async def test_an_invalid_event_is_dead_lettered_without_a_call(stream: Stream) -> None:
    bad = InboundMessage(TOPICS.payment, 0, 7, b"L-1", b"{not json")
    assert await stream.ingestor.handle_batch([bad]) == [Outcome.DEAD_LETTERED]
    assert stream.dead[0][1].kind is ErrorKind.MALFORMED
    assert stream.cases.calls == []


def test_an_oversize_dead_letter_is_cut_to_fit_with_its_headers_and_reason() -> None:
    value = b'{"event_id": "big-1", "x": "' + b"a" * 1_040_000 + b'"}'
    letter = dead_letters.dead_letter(
        Rejection(ErrorKind.MALFORMED, "<root>: not an object", "big-1"),
        topic="loan.payment.v1",
        partition=3,
        offset=41,
        key=b"L-1",
        value=value,
        original_headers=[("trace", b"t-1")],
        max_bytes=1_000_000,
    )
    assert letter.truncated
    assert dead_letters.record_size(letter.key, letter.value, letter.headers) <= 1_000_000
    assert letter.value is not None and value.startswith(letter.value)
    assert len(letter.value) > 990_000
    headers = dict(letter.headers)
    assert headers["trace"] == b"t-1"
    assert headers[dead_letters.TRUNCATED_FROM] == str(len(value)).encode()
    assert headers[dead_letters.ORIGINAL_OFFSET] == b"41"
    assert b"truncated" in headers[dead_letters.ERROR]


def test_a_dead_letter_that_fits_is_written_whole() -> None:
    letter = dead_letters.dead_letter(
        Rejection(ErrorKind.MALFORMED, "bad"),
        topic="t",
        partition=0,
        offset=1,
        key=b"k",
        value=b"{not json",
        max_bytes=1_000_000,
    )
    assert not letter.truncated and letter.value == b"{not json"
    assert dead_letters.TRUNCATED_FROM not in dict(letter.headers)


async def test_expired_declarations_are_found_only_among_the_keys_owned(stream: Stream) -> None:
    await deliver(stream, hardship("L-1", "h1"), hardship("L-2", "h2"))
    assert list(stream.book.expired_held(NOW + HOLD - timedelta(seconds=1), lambda k: True)) == []
    expired = set(stream.book.expired_held(NOW + HOLD, lambda key: key == b"L-2"))
    assert expired == {b"L-2"}


# Kafka's own murmur2 of these keys (its Java client's UtilsTest): what every producer keying by
# loan id with the default partitioner uses, and so what the tables' changelogs must use.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"abc": 479470107,
}


@pytest.mark.parametrize("partitions", [6, 12])
def test_a_key_lands_where_kafkas_default_partitioner_puts_it(partitions: int) -> None:
    for key, murmur in JAVA_MURMUR2.items():
        assert partition_of(key, partitions) == (murmur & 0x7FFFFFFF) % partitions
