"""Inbound events into cases: validate, decide from the loan's state, call Temporal only for a loan
that has (or gets) a case, dead-letter what cannot be delivered.

Independent of faust so the delivery rules read in one place (``streams.state`` keeps the
per-loan state, ``streams.cases`` makes the Temporal calls, ``streams.ordering`` keeps per-loan
order across topics):

* ``loan.overdue.v1`` → signal-with-start of ``case-<loan>-<delinquent_since>``: a running case
  gets the signal (the workflow drops an ``event_id`` it has seen), a closed case is not
  reopened (counted ``skipped/case_closed``). The case is recorded ``opening`` in the open-case
  table at once, so the loan's next events find it before its ``opened`` event is published.
  A hardship declaration held for the loan is signalled to the new case right after.
* A new episode (a later ``delinquent_since`` than the loan's open case): the overdue event is
  first signalled to the open case too — the case engine closes a case that hears of a later
  episode (reason ``NEW_EPISODE``) — then the new case is started. An overdue event of an
  episode older than the open case's is skipped (``skipped/older_episode``): it must not start
  a second case.
* payment, status and hardship → signal the loan's open case, found in the open-case table.
  No open case: payments and status changes are skipped (``skipped/no_open_case``: those topics
  carry every loan's events, most of them never delinquent, and the case reconciles against
  core banking's ledger at each checkpoint); a hardship declaration is held (``held``) until the
  loan's case opens or the policy's ``hardship_hold_days`` pass. A case Temporal no longer has
  (closed, terminated) is forgotten and the event treated as for a loan without a case.
* ``contact.interaction.v1`` (the contact centre: the borrower called, a conversation was held)
  → the borrower's contact ledger (signal-with-start, recorded once per ``event_id``), where the
  contact rules count it whether or not a case is open (a new episode may open within the quiet
  days), then the loan's open case, if any, for its view and engagement figures.
* Transient failures (Temporal or Kafka unreachable, overloaded, timing out) are retried in
  place with capped exponential backoff, for as long as it takes: the caller acknowledges a
  message only after this returns, so a partition waits rather than skips. A rebalance ends the
  wait (``Abandoned``): the batch is left unacknowledged and read again after it.
* Invalid events and permanent rejections (a non-retriable error is never retried) go to
  ``<topic>.dlq``, truncated to fit if need be; the caller continues.
* An event id this process already delivered (a producer retry, a replayed topic) is counted
  ``skipped/duplicate`` without a Temporal call. Only a shortcut: the case's own event-id check
  is what makes delivery exactly-once.

``handle_batch`` never raises except ``Abandoned`` (and cancellation): faust would acknowledge
a message whose agent raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NodeNotReadyError
from faust.exceptions import ProducerSendError
from pydantic import ValidationError
from temporalio.service import RPCError, RPCStatusCode

from schemas.events import (
    ContactInteraction,
    CustomerHardship,
    Event,
    LoanOverdue,
    LoanPayment,
    LoanStatus,
    parse_inbound,
)
from settings import Settings
from streams.cases import Cases, Signalled, Started
from streams.dead_letters import ErrorKind, Rejection, describe_validation_error, event_id_of
from streams.metrics import Outcome, StreamMetrics
from streams.ordering import Abandoned, OverdueProgress, Rebalance
from streams.state import LoanBook

log = logging.getLogger("accord.streams")

# Temporal refuses these the same way however often it is asked: dead-letter, do not retry.
PERMANENT_RPC_STATUSES = frozenset(
    {
        RPCStatusCode.INVALID_ARGUMENT,
        RPCStatusCode.OUT_OF_RANGE,
        RPCStatusCode.FAILED_PRECONDITION,
        RPCStatusCode.PERMISSION_DENIED,
        RPCStatusCode.UNAUTHENTICATED,
        RPCStatusCode.UNIMPLEMENTED,
    }
)

T = TypeVar("T")


@dataclass(frozen=True)
class InboundMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)


class DeliveredEvents:
    """The most recent event ids Temporal accepted (or refused for good), oldest forgotten first.

    Accepted stays accepted, so an id may be remembered across rebalances; it is per process and
    empty after a restart, when the case's own check catches the redelivered tail."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        if self._capacity == 0:
            return
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class PermanentFailure(Exception):
    """Delivery failed in a way a retry cannot fix."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


# Write the dead letter of a message (truncated to fit if need be); raise on failure.
DeadLetterSink = Callable[[InboundMessage, Rejection], Awaitable[None]]


def is_transient(error: BaseException) -> bool:
    if isinstance(error, ProducerSendError) and error.__cause__ is not None:
        return is_transient(error.__cause__)  # faust wraps the producer's KafkaError
    if isinstance(error, RPCError):
        return error.status not in PERMANENT_RPC_STATUSES
    if isinstance(error, KafkaError):
        # aiokafka does not mark every connection-level error retriable.
        return error.retriable or isinstance(
            error, KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError
        )
    return isinstance(error, OSError | asyncio.TimeoutError)


class Ingestor:
    def __init__(
        self,
        settings: Settings,
        cases: Cases,
        book: LoanBook,
        overdue_progress: OverdueProgress,
        rebalance: Rebalance,
        dead_letter: DeadLetterSink,
        metrics: StreamMetrics,
        hardship_hold: timedelta,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._cases = cases
        self._book = book
        self._overdue_progress = overdue_progress
        self._rebalance = rebalance
        self._dead_letter_sink = dead_letter
        self._metrics = metrics
        self._hardship_hold = hardship_hold
        self._now = now
        self._delivered = DeliveredEvents(settings.streams.remembered_event_ids)
        topics = settings.kafka.topics
        self._overdue_topic = topics.overdue
        # Configured topic name → the contract's own name (a bank may rename the topics).
        self._contract_topic = {
            topics.overdue: LoanOverdue.TOPIC,
            topics.payment: LoanPayment.TOPIC,
            topics.status: LoanStatus.TOPIC,
            topics.hardship: CustomerHardship.TOPIC,
            topics.contact_interaction: ContactInteraction.TOPIC,
        }

    async def handle_batch(
        self, messages: Sequence[InboundMessage], read_at: float | None = None
    ) -> list[Outcome]:
        """Deliver a batch of one topic, read at ``read_at`` (``time.monotonic()``): loans
        concurrently, each loan's messages in offset order; events of other topics than the
        overdue one only once the overdue topic is delivered up to where it ended then.

        An event that needs no call (a duplicate, a payment or status change of a loan without
        a case: most of them) is decided on the spot, unless an earlier event of its loan in the
        batch is still being delivered."""
        if not messages:
            return []
        read_at = time.monotonic() if read_at is None else read_at
        topic = messages[0].topic
        unordered: Rejection | None = None
        if topic != self._overdue_topic:
            unordered = await self._wait_for_overdue(topic, messages, read_at)
        outcomes: list[Outcome] = [Outcome.SKIPPED] * len(messages)
        by_loan: dict[bytes | None, list[tuple[int, Event | Rejection]]] = {}
        for index, message in enumerate(messages):
            parsed = self._parse(message, unordered)
            if message.key not in by_loan and isinstance(parsed, Event):
                decided = self._decided_without_temporal(parsed)
                if decided is not None:
                    outcomes[index] = self._counted(message.topic, *decided)
                    continue
            by_loan.setdefault(message.key, []).append((index, parsed))

        async def deliver_in_order(items: list[tuple[int, Event | Rejection]]) -> None:
            for index, parsed in items:
                message = messages[index]
                outcomes[index] = self._counted(message.topic, *await self._handle(message, parsed))

        await asyncio.gather(*(deliver_in_order(items) for items in by_loan.values()))
        return outcomes

    async def _wait_for_overdue(
        self, topic: str, messages: Sequence[InboundMessage], read_at: float
    ) -> Rejection | None:
        """None once the overdue topic has caught up; a rejection for every message of the batch
        if that cannot be known (a non-retriable Kafka error: dead-letter rather than guess)."""
        partitions = {message.partition for message in messages}
        try:
            await self._retrying(
                topic, lambda: self._overdue_progress.wait_caught_up(partitions, read_at)
            )
        except Abandoned:
            raise
        except Exception as error:
            log_unexpected(error, f"order across topics unknown, batch dead-lettered topic={topic}")
            return Rejection(
                ErrorKind.UNEXPECTED, f"overdue topic position unknown: {type(error).__name__}"
            )
        return None

    def _counted(self, topic: str, outcome: Outcome, reason: str) -> Outcome:
        self._metrics.count(topic, outcome, reason)
        return outcome

    def _parse(self, message: InboundMessage, unordered: Rejection | None) -> Event | Rejection:
        try:
            event = self._validate(message)
        except PermanentFailure as failure:
            return failure.rejection
        except Exception as error:  # a bug must not stop the partition: dead-letter, re-drive later
            return _unexpected(error, event_id_of(message.value))
        if unordered is not None:
            return Rejection(unordered.kind, unordered.reason, event.event_id)
        return event

    def _decided_without_temporal(self, event: Event) -> tuple[Outcome, str] | None:
        if event.event_id in self._delivered:
            return Outcome.SKIPPED, "duplicate"
        if isinstance(event, LoanPayment | LoanStatus) and not self._book.has_case(event.loan_id):
            return Outcome.SKIPPED, "no_open_case"
        return None

    async def _handle(
        self, message: InboundMessage, parsed: Event | Rejection
    ) -> tuple[Outcome, str]:
        if isinstance(parsed, Rejection):
            rejection = parsed
        else:
            event = parsed
            try:
                if event.event_id in self._delivered:
                    return Outcome.SKIPPED, "duplicate"
                outcome, reason = await self._retrying(message.topic, lambda: self._deliver(event))
                if outcome in (Outcome.PROCESSED, Outcome.HELD) or reason == "case_closed":
                    self._delivered.add(event.event_id)
                return outcome, reason
            except Abandoned:
                raise
            except PermanentFailure as failure:
                rejection = failure.rejection
            except RPCError as error:  # not transient (``_retrying`` retries those)
                rejection = Rejection(
                    ErrorKind.TEMPORAL_REJECTED,
                    f"{error.status.name if error.status else 'UNKNOWN'}: {error.message}",
                    event.event_id,
                )
            except Exception as error:  # a bug must not stop the partition: dead-letter it
                rejection = _unexpected(error, event.event_id)
        # The dead letter is written before the message is acknowledged; only a non-retriable
        # error (the sink already cut the record to fit) gives up on it.
        try:
            await self._retrying(message.topic, lambda: self._dead_letter(message, rejection))
        except Abandoned:
            raise
        except Exception as error:
            log.error(
                "dead letter not written, message left in its topic topic=%s partition=%d "
                "offset=%d event_id=%s kind=%s error=%s",
                message.topic,
                message.partition,
                message.offset,
                rejection.event_id or "-",
                rejection.kind.value,
                type(getattr(error, "__cause__", None) or error).__name__,
            )
            return Outcome.DROPPED, rejection.kind.value
        return Outcome.DEAD_LETTERED, rejection.kind.value

    def _validate(self, message: InboundMessage) -> Event:
        try:
            event = parse_inbound(self._contract_topic[message.topic], message.value or b"")
        except ValidationError as error:
            rejection = describe_validation_error(error)
            raise PermanentFailure(
                Rejection(rejection.kind, rejection.reason, event_id_of(message.value))
            ) from None
        if message.key is None or message.key.decode(errors="replace") != event.loan_id:
            # Per-loan order rests on the key being the loan id: one loan, one partition.
            raise PermanentFailure(
                Rejection(ErrorKind.KEY_MISMATCH, "key: must equal loan_id", event.event_id)
            )
        return event

    async def _retrying(self, topic: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt`` until it succeeds or fails for good; transient failures are retried with
        backoff, for as long as it takes, unless a rebalance starts (``Abandoned``)."""
        delay = self._settings.streams.retry_initial_seconds
        while True:
            try:
                return await attempt()
            except Abandoned:
                raise
            except Exception as error:
                if not is_transient(error):
                    raise
                self._metrics.retried(topic)
                log.warning(
                    "transient failure, retrying topic=%s error=%s status=%s delay_s=%.2f",
                    topic,
                    type(error).__name__,
                    getattr(getattr(error, "status", None), "name", "-"),
                    delay,
                )
                await self._rebalance.sleep(delay)
                delay = min(delay * 2, self._settings.streams.retry_max_seconds)

    # --- delivery

    async def _deliver(self, event: Event) -> tuple[Outcome, str]:
        if isinstance(event, LoanOverdue):
            return await self._deliver_overdue(event)
        if isinstance(event, ContactInteraction):
            return await self._deliver_interaction(event)
        return await self._deliver_to_open_case(event)

    async def _deliver_interaction(self, event: ContactInteraction) -> tuple[Outcome, str]:
        await self._cases.record_interaction(event)
        # The ledger is what the contact rules count; the open case, if any, shows it too.
        await self._deliver_to_open_case(event)
        return Outcome.PROCESSED, ""

    async def _deliver_overdue(self, event: LoanOverdue) -> tuple[Outcome, str]:
        current = self._book.open_case(event.loan_id)
        if current is not None and current.case_id > event.case_id:
            log.info(
                "older episode than the open case, event skipped case_id=%s open=%s event_id=%s",
                event.case_id,
                current.case_id,
                event.event_id,
            )
            return Outcome.SKIPPED, "older_episode"
        if current is not None and current.case_id < event.case_id:
            # A new episode: the previous episode's case hears of it and closes itself.
            if await self._cases.signal_case(current.case_id, event) is Signalled.GONE:
                self._book.case_closed(event.loan_id, current.case_id)
            log.info(
                "new episode, previous case told case_id=%s previous=%s event_id=%s",
                event.case_id,
                current.case_id,
                event.event_id,
            )
        if await self._cases.start_case(event) is Started.CLOSED:
            self._book.case_closed(event.loan_id, event.case_id)
            log.info(
                "case closed, event skipped case_id=%s event_id=%s", event.case_id, event.event_id
            )
            return Outcome.SKIPPED, "case_closed"
        self._book.case_starting(event.loan_id, event.case_id)
        await self._apply_held_hardship(event)
        return Outcome.PROCESSED, ""

    async def _apply_held_hardship(self, opened: LoanOverdue) -> None:
        held, expired = self._book.held_for(opened.loan_id, self._now())
        if held is not None:
            result = await self._cases.signal_case(opened.case_id, held)
            self._metrics.held_hardship("applied" if result is Signalled.DELIVERED else "case_gone")
            self._delivered.add(held.event_id)
            log.info("held hardship applied case_id=%s event_id=%s", opened.case_id, held.event_id)
        elif expired:
            self._metrics.held_hardship("expired")
        if held is not None or expired:
            self._book.release_held(opened.loan_id)

    async def _deliver_to_open_case(self, event: Event) -> tuple[Outcome, str]:
        current = self._book.open_case(event.loan_id)
        if current is not None:
            if await self._cases.signal_case(current.case_id, event) is Signalled.DELIVERED:
                return Outcome.PROCESSED, ""
            # Closed without our seeing its ``closed`` event yet (or terminated): forget it.
            self._book.case_closed(event.loan_id, current.case_id)
        if isinstance(event, CustomerHardship):
            replaced = self._book.hold(event, self._now() + self._hardship_hold)
            self._metrics.held_hardship("replaced" if replaced else "held")
            log.info("hardship held for the loan's next case event_id=%s", event.event_id)
            return Outcome.HELD, ""
        # Most loans never have a case: debug only, the counter tells the volume.
        log.debug("no open case, event skipped event_id=%s", event.event_id)
        return Outcome.SKIPPED, "no_open_case"

    async def _dead_letter(self, message: InboundMessage, rejection: Rejection) -> None:
        await self._dead_letter_sink(message, rejection)
        log.warning(
            "event dead-lettered topic=%s partition=%d offset=%d event_id=%s kind=%s reason=%s",
            message.topic,
            message.partition,
            message.offset,
            rejection.event_id or "-",
            rejection.kind.value,
            rejection.reason,
        )


def _unexpected(error: Exception, event_id: str | None) -> Rejection:
    log_unexpected(error, f"unexpected error, event dead-lettered event_id={event_id or '-'}")
    return Rejection(ErrorKind.UNEXPECTED, type(error).__name__, event_id)


def log_unexpected(error: BaseException, what: str) -> None:
    """The error's type and where it came from; not its message, which may quote a payload."""
    log.error(
        "%s error=%s\n%s",
        what,
        type(error).__name__,
        "".join(traceback.format_tb(error.__traceback__)),
    )
