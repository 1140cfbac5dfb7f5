"""Inbound events into Temporal: validate, start or signal the case, dead-letter what cannot be.

Independent of faust so the delivery rules read in one place:

* ``loan.overdue.v1`` → signal-with-start of ``case-<loan>-<delinquent_since>`` with
  REJECT_DUPLICATE: a running case gets the signal (the workflow drops an ``event_id`` it has
  seen), a closed case is not reopened (the start is refused: counted ``skipped/case_closed``).
* payment, status and hardship → signal the loan's open case. Those events carry no
  ``delinquent_since``, so the open case is found in a per-process cache of the cases this
  process started or found, else by a Temporal visibility query. No open case → the event is
  counted ``skipped/no_open_case`` and logged by id: ``loan.payment.v1`` and ``loan.status.v1``
  carry every loan's events, most of them never delinquent, and the case reconciles against
  core banking's ledger at each checkpoint, so nothing is lost. A hardship declaration without an
  overdue loan does not open a case either: a case needs the overdue facts (amounts, delinquent
  since) only ``loan.overdue.v1`` carries; pre-delinquency help is a different process.
* ``contact.interaction.v1`` (the contact centre: the borrower called, a conversation was held)
  → the borrower's contact ledger (signal-with-start, recorded once per ``event_id``), where the
  contact rules count it whether or not a case is open (a new episode may open within the quiet
  days), then the loan's open case, if any, for its view and engagement figures.
* Transient failures (Temporal or Kafka unreachable, overloaded, timing out) are retried in
  place with capped exponential backoff, for as long as it takes: the caller acknowledges a
  message only after this returns, so a partition waits rather than skips.
* Invalid events and permanent rejections go to ``<topic>.dlq``; the caller continues.
* An event id this process already delivered (a producer retry, a replayed topic) is counted
  ``skipped/duplicate`` without a Temporal call: a redelivery costs microseconds, not a history
  write. Only a shortcut: the case's own event-id check is what makes delivery exactly-once.

``handle`` never raises (except cancellation): faust would acknowledge a message whose agent raised.
"""

from __future__ import annotations

import asyncio
import logging
import re
import traceback
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NodeNotReadyError
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from decisions.contact_ledger import Interaction
from engine.view import whole_units
from schemas.case import CaseStage
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
from streams.dead_letters import ErrorKind, Rejection, describe_validation_error, event_id_of
from streams.metrics import Outcome, StreamMetrics
from workflows import search_attributes as sa
from workflows.handle import CaseHandle, open_case
from workflows.ledger_handle import ContactLedgerHandle

log = logging.getLogger("accord.streams")

CASE_WORKFLOW = "CaseWorkflow"
# Temporal refuses these the same way however often it is asked: dead-letter, do not retry.
PERMANENT_RPC_STATUSES = frozenset({RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.OUT_OF_RANGE})
OPEN_CASE_CACHE_SIZE = 100_000
_EPISODE_SUFFIX = re.compile(r"^\d{8}$")

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


# Send the original key, value and headers to the topic's dead-letter topic; raise on failure.
DeadLetterSink = Callable[[InboundMessage, Rejection], Awaitable[None]]


def is_transient(error: BaseException) -> bool:
    if isinstance(error, RPCError):
        return error.status not in PERMANENT_RPC_STATUSES
    if isinstance(error, KafkaError):
        # aiokafka does not mark every connection-level error retriable.
        return error.retriable or isinstance(
            error, KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError
        )
    return isinstance(error, OSError | asyncio.TimeoutError)


def initial_search_attributes(event: LoanOverdue) -> TypedSearchAttributes:
    """Set at start so the case is filterable before its first workflow task runs; the workflow
    upserts the same projection (and every later value) itself."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.CASE_STAGE, CaseStage.COLLECT_INFO.value),
            SearchAttributePair(sa.DAYS_PAST_DUE, event.days_past_due),
            SearchAttributePair(sa.OUTSTANDING_AMOUNT, whole_units(event.total_outstanding)),
            SearchAttributePair(sa.PRODUCT_TYPE, event.product.value),
        ]
    )


class Ingestor:
    def __init__(
        self,
        settings: Settings,
        temporal: Callable[[], Awaitable[Client]],
        dead_letter: DeadLetterSink,
        metrics: StreamMetrics,
    ) -> None:
        self._settings = settings
        self._temporal = temporal
        self._dead_letter_sink = dead_letter
        self._metrics = metrics
        self._open_cases: OrderedDict[str, str] = OrderedDict()  # loan_id → case id
        self._delivered = DeliveredEvents(settings.streams.remembered_event_ids)
        topics = settings.kafka.topics
        # Configured topic name → the contract's own name (a bank may rename the topics).
        self._contract_topic = {
            topics.overdue: LoanOverdue.TOPIC,
            topics.payment: LoanPayment.TOPIC,
            topics.status: LoanStatus.TOPIC,
            topics.hardship: CustomerHardship.TOPIC,
            topics.contact_interaction: ContactInteraction.TOPIC,
        }

    def forget_open_cases(self) -> None:
        """After a rebalance another process may have opened newer cases for our loans."""
        self._open_cases.clear()

    async def handle_batch(self, messages: Sequence[InboundMessage]) -> list[Outcome]:
        """Deliver a batch: loans concurrently, each loan's messages in offset order."""
        by_loan: dict[bytes | None, list[int]] = {}
        for index, message in enumerate(messages):
            by_loan.setdefault(message.key, []).append(index)
        outcomes: list[Outcome] = [Outcome.SKIPPED] * len(messages)

        async def deliver_in_order(indexes: list[int]) -> None:
            for index in indexes:
                outcomes[index] = await self.handle(messages[index])

        await asyncio.gather(*(deliver_in_order(indexes) for indexes in by_loan.values()))
        return outcomes

    async def handle(self, message: InboundMessage) -> Outcome:
        outcome, reason = await self._handle(message)
        self._metrics.count(message.topic, outcome, reason)
        return outcome

    async def _handle(self, message: InboundMessage) -> tuple[Outcome, str]:
        try:
            event = self._validate(message)
            if event.event_id in self._delivered:
                return Outcome.SKIPPED, "duplicate"
            outcome, reason = await self._retrying(message.topic, lambda: self._deliver(event))
            if outcome is Outcome.PROCESSED or reason == "case_closed":
                self._delivered.add(event.event_id)
            return outcome, reason
        except PermanentFailure as failure:
            rejection = failure.rejection
        except Exception as error:  # a bug must not stop the partition: dead-letter, re-drive later
            rejection = _unexpected(error, event_id_of(message.value))
        # The dead letter must be written before the message is acknowledged, whatever it takes.
        await self._retrying(
            message.topic, lambda: self._dead_letter(message, rejection), retry_everything=True
        )
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

    async def _retrying(
        self, topic: str, attempt: Callable[[], Awaitable[T]], *, retry_everything: bool = False
    ) -> T:
        delay = self._settings.streams.retry_initial_seconds
        while True:
            try:
                return await attempt()
            except Exception as error:
                if not (retry_everything or is_transient(error)):
                    raise
                self._metrics.retried(topic)
                log.warning(
                    "transient failure, retrying topic=%s error=%s status=%s delay_s=%.2f",
                    topic,
                    type(error).__name__,
                    getattr(getattr(error, "status", None), "name", "-"),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.streams.retry_max_seconds)

    async def _deliver(self, event: Event) -> tuple[Outcome, str]:
        if isinstance(event, LoanOverdue):
            return await self._start_or_signal(event)
        if isinstance(event, ContactInteraction):
            return await self._record_interaction(event)
        return await self._signal_open_case(event)

    async def _record_interaction(self, event: ContactInteraction) -> tuple[Outcome, str]:
        client = await self._temporal()
        ledger = ContactLedgerHandle(
            client, event.borrower_id, task_queue=self._settings.temporal.task_queue
        )
        try:
            await ledger.record_interaction(Interaction.of_event(event))
        except RPCError as error:
            raise _permanent_or_transient(error, event.event_id) from error
        await self._signal_open_case(event)  # no open case: the ledger is what counts
        return Outcome.PROCESSED, ""

    async def _start_or_signal(self, event: LoanOverdue) -> tuple[Outcome, str]:
        client = await self._temporal()
        try:
            await open_case(
                client,
                event,
                task_queue=self._settings.temporal.task_queue,
                search_attributes=initial_search_attributes(event),
            )
        except WorkflowAlreadyStartedError:
            # Only a closed case refuses signal-with-start: an old event must not reopen it.
            log.info(
                "case closed, event skipped case_id=%s event_id=%s", event.case_id, event.event_id
            )
            return Outcome.SKIPPED, "case_closed"
        except RPCError as error:
            raise _permanent_or_transient(error, event.event_id) from error
        self._remember_open_case(event.loan_id, event.case_id)
        return Outcome.PROCESSED, ""

    async def _signal_open_case(self, event: Event) -> tuple[Outcome, str]:
        client = await self._temporal()
        closed: set[str] = set()
        while (case_id := await self._open_case_of(client, event.loan_id, closed)) is not None:
            try:
                await CaseHandle(client, case_id).send(event)
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise _permanent_or_transient(error, event.event_id) from error
                # Closed since we looked: forget it and look for a newer case.
                closed.add(case_id)
                self._open_cases.pop(event.loan_id, None)
                continue
            return Outcome.PROCESSED, ""
        log.info(
            "no open case, event skipped contract=%s loan_id=%s event_id=%s",
            event.TOPIC,
            event.loan_id,
            event.event_id,
        )
        return Outcome.SKIPPED, "no_open_case"

    async def _open_case_of(self, client: Client, loan_id: str, closed: set[str]) -> str | None:
        cached = self._open_cases.get(loan_id)
        if cached is not None and cached not in closed:
            return cached
        prefix = f"case-{loan_id}-"
        # loan_id is validated against a pattern without quotes, so it is safe inside the query.
        query = (
            f"WorkflowType = '{CASE_WORKFLOW}' AND ExecutionStatus = 'Running' "
            f"AND WorkflowId STARTS_WITH '{prefix}'"
        )
        candidates = [
            execution.id
            async for execution in client.list_workflows(query)
            if _EPISODE_SUFFIX.match(execution.id[len(prefix) :]) and execution.id not in closed
        ]
        if not candidates:
            return None
        newest = max(candidates)  # ids end in the episode's YYYYMMDD: the latest episode wins
        self._remember_open_case(loan_id, newest)
        return newest

    def _remember_open_case(self, loan_id: str, case_id: str) -> None:
        current = self._open_cases.get(loan_id)
        if current is None or case_id >= current:
            self._open_cases[loan_id] = case_id
        self._open_cases.move_to_end(loan_id)
        while len(self._open_cases) > OPEN_CASE_CACHE_SIZE:
            self._open_cases.popitem(last=False)

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


def _permanent_or_transient(error: RPCError, event_id: str) -> Exception:
    if error.status in PERMANENT_RPC_STATUSES:
        return PermanentFailure(
            Rejection(
                ErrorKind.TEMPORAL_REJECTED, f"{error.status.name}: {error.message}", event_id
            )
        )
    return error


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
