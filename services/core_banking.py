"""The embedded core-banking service: the loan book Accord reads and restructures.

It learns loans, payments and statuses from the ``loan.*`` topics, as a real bank's ledger and
its events agree: each message is stored with its offset in one SQLite transaction, so a
restart resumes exactly where it stopped. A read waits until the feed has caught up with what
was published before the request (``503 not_synchronised`` if it cannot within
``core_banking.sync_wait_seconds``): an unknown loan is then really unknown. Restructures are
applied once per agreement (``Idempotency-Key``) and get a reference that is never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Header, Query, Response
from fastapi import Path as PathParam
from pydantic import ValidationError

from activities.core_banking import LedgerPosition
from clients import kafka_client_options
from schemas.assessment import CreditRecord
from schemas.events import Event, LoanOverdue, LoanPayment, LoanStatus
from schemas.http.core_banking import (
    IDEMPOTENCY_HEADER,
    CustomerContactDetails,
    Restructure,
    RestructureInstruction,
)
from services.common import (
    Faults,
    ServiceError,
    add_health,
    bearer_auth,
    documented_errors,
    install_error_handlers,
    iso,
    open_database,
    utc_now,
)
from settings import KafkaTopics, Settings

log = logging.getLogger("accord.services.core_banking")
NAME = "core-banking"
CREDIT_HISTORY = timedelta(days=730)
RETRY_FEED_SECONDS = (0.5, 1, 2, 5)
LoanId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
CustomerId = LoanId

SCHEMA = """
CREATE TABLE IF NOT EXISTS loans (
    loan_id TEXT PRIMARY KEY,
    borrower_id TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    document TEXT NOT NULL,
    status TEXT
);
CREATE INDEX IF NOT EXISTS loans_by_borrower ON loans (borrower_id);
CREATE TABLE IF NOT EXISTS episodes (
    loan_id TEXT NOT NULL,
    borrower_id TEXT NOT NULL,
    delinquent_since TEXT NOT NULL,
    PRIMARY KEY (loan_id, delinquent_since)
);
CREATE TABLE IF NOT EXISTS payments (
    event_id TEXT PRIMARY KEY,
    loan_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    paid_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_by_loan ON payments (loan_id, paid_at);
CREATE TABLE IF NOT EXISTS restructures (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    agreement_id TEXT NOT NULL UNIQUE,
    loan_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    instalment_count INTEGER NOT NULL,
    applied_at TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS feed_offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""


def database_path(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "services" / "core-banking.db"


def restructure_ref(seq: int) -> str:
    """From SQLite's AUTOINCREMENT: never reused, even after rows are deleted or a restart."""
    return f"RS{seq:010d}"


class LoanBook:
    """The durable state; every method is one short transaction on the event loop's thread."""

    def __init__(self, connection: sqlite3.Connection, topics: KafkaTopics) -> None:
        self.db = connection
        # The configured topic names (they need not be the contracts' default names).
        self.event_types: dict[str, type[Event]] = {
            topics.overdue: LoanOverdue,
            topics.payment: LoanPayment,
            topics.status: LoanStatus,
        }

    # --- the feed ------------------------------------------------------------------------

    def offsets(self) -> dict[tuple[str, int], int]:
        rows = self.db.execute("SELECT topic, partition, next_offset FROM feed_offsets")
        return {(row["topic"], row["partition"]): row["next_offset"] for row in rows}

    def apply_message(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        """Store what the message says (if valid) and advance the offset, atomically."""
        with self._transaction():
            event_type = self.event_types.get(topic)
            try:
                event = (
                    event_type.model_validate_json(value or b"", extra="forbid")
                    if event_type is not None
                    else None
                )
            except (ValidationError, ValueError):
                event = None  # the stream processor dead-letters it; the ledger skips it
            if isinstance(event, LoanOverdue):
                self._store_loan(event)
            elif isinstance(event, LoanPayment):
                self.db.execute(
                    "INSERT OR IGNORE INTO payments VALUES (?, ?, ?, ?)",
                    (event.event_id, event.loan_id, str(event.amount), iso(event.paid_at)),
                )
            elif isinstance(event, LoanStatus):
                self.db.execute(
                    "UPDATE loans SET status = ? WHERE loan_id = ?",
                    (event.status.value, event.loan_id),
                )
            self.db.execute(
                "INSERT INTO feed_offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                (topic, partition, offset + 1),
            )

    def _store_loan(self, loan: LoanOverdue) -> None:
        current = self.db.execute(
            "SELECT occurred_at FROM loans WHERE loan_id = ?", (loan.loan_id,)
        ).fetchone()
        if current is None or datetime.fromisoformat(current["occurred_at"]) <= loan.occurred_at:
            self.db.execute(
                "INSERT INTO loans (loan_id, borrower_id, occurred_at, document) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (loan_id) DO UPDATE SET "
                "borrower_id = excluded.borrower_id, occurred_at = excluded.occurred_at, "
                "document = excluded.document",
                (loan.loan_id, loan.borrower_id, iso(loan.occurred_at), loan.model_dump_json()),
            )
        self.db.execute(
            "INSERT OR IGNORE INTO episodes VALUES (?, ?, ?)",
            (loan.loan_id, loan.borrower_id, loan.delinquent_since.isoformat()),
        )

    @contextlib.contextmanager
    def _transaction(self) -> AsyncIterator[None]:  # type: ignore[misc]
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- reads ---------------------------------------------------------------------------

    def loan(self, loan_id: str) -> LoanOverdue | None:
        row = self.db.execute("SELECT document FROM loans WHERE loan_id = ?", (loan_id,)).fetchone()
        return LoanOverdue.model_validate_json(row["document"]) if row else None

    def borrower_known(self, borrower_id: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM loans WHERE borrower_id = ? LIMIT 1", (borrower_id,)
        ).fetchone()
        return row is not None

    def ledger(self, loan: LoanOverdue, since: date) -> LedgerPosition:
        rows = self.db.execute(
            "SELECT amount, paid_at FROM payments WHERE loan_id = ?", (loan.loan_id,)
        ).fetchall()
        relevant = [
            (Decimal(row["amount"]), datetime.fromisoformat(row["paid_at"]))
            for row in rows
            if datetime.fromisoformat(row["paid_at"]).date() >= since
        ]
        return LedgerPosition(
            loan_id=loan.loan_id,
            currency=loan.currency,
            since=since,
            paid_total=sum((amount for amount, _ in relevant), Decimal(0)),
            last_paid_at=max((paid_at for _, paid_at in relevant), default=None),
        )

    def credit_record(self, borrower_id: str, today: date) -> CreditRecord:
        """Earlier delinquency episodes in 24 months (each loan's latest is the current one)
        and restructures whose loan fell behind again afterwards."""
        episodes = self.db.execute(
            "SELECT loan_id, delinquent_since FROM episodes WHERE borrower_id = ?", (borrower_id,)
        ).fetchall()
        latest: dict[str, str] = {}
        for row in episodes:
            latest[row["loan_id"]] = max(latest.get(row["loan_id"], ""), row["delinquent_since"])
        horizon = (today - CREDIT_HISTORY).isoformat()
        earlier = [
            row
            for row in episodes
            if row["delinquent_since"] != latest[row["loan_id"]]
            and row["delinquent_since"] >= horizon
        ]
        broken = self.db.execute(
            "SELECT COUNT(*) FROM restructures r WHERE r.loan_id IN "
            "(SELECT loan_id FROM loans WHERE borrower_id = ?) AND EXISTS (SELECT 1 FROM "
            "episodes e WHERE e.loan_id = r.loan_id AND e.delinquent_since > substr(r.applied_at, "
            "1, 10))",
            (borrower_id,),
        ).fetchone()[0]
        return CreditRecord(delinquencies_last_24_months=len(earlier), broken_agreements=broken)

    def restructures(self, loan_id: str | None = None) -> list[Restructure]:
        query = "SELECT * FROM restructures"
        rows = (
            self.db.execute(query + " WHERE loan_id = ? ORDER BY seq", (loan_id,))
            if loan_id is not None
            else self.db.execute(query + " ORDER BY seq")
        ).fetchall()
        return [_restructure(row) for row in rows]

    # --- writes --------------------------------------------------------------------------

    def apply_restructure(
        self, loan_id: str, instruction: RestructureInstruction, now: datetime
    ) -> tuple[Restructure, bool]:
        """The restructure and whether this call applied it (False: a replay)."""
        digest = hashlib.sha256(
            json.dumps([loan_id, instruction.model_dump(mode="json")], sort_keys=True).encode()
        ).hexdigest()
        with self._transaction():
            row = self.db.execute(
                "SELECT * FROM restructures WHERE agreement_id = ?", (instruction.agreement_id,)
            ).fetchone()
            if row is not None:
                if row["request_hash"] != digest:
                    raise ServiceError(
                        409,
                        "idempotency_conflict",
                        f"agreement {instruction.agreement_id} was applied with other terms",
                    )
                self.db.execute(
                    "UPDATE restructures SET requests = requests + 1 WHERE seq = ?", (row["seq"],)
                )
                created = False
            else:
                self.db.execute(
                    "INSERT INTO restructures (agreement_id, loan_id, request_hash, "
                    "instalment_count, applied_at) VALUES (?, ?, ?, ?, ?)",
                    (
                        instruction.agreement_id,
                        loan_id,
                        digest,
                        len(instruction.instalments),
                        iso(now),
                    ),
                )
                created = True
            row = self.db.execute(
                "SELECT * FROM restructures WHERE agreement_id = ?", (instruction.agreement_id,)
            ).fetchone()
        return _restructure(row), created


def _restructure(row: sqlite3.Row) -> Restructure:
    return Restructure(
        agreement_id=row["agreement_id"],
        loan_id=row["loan_id"],
        restructure_ref=restructure_ref(row["seq"]),
        applied_at=datetime.fromisoformat(row["applied_at"]),
        instalment_count=row["instalment_count"],
        requests=row["requests"],
    )


class LoanFeed:
    """The ``loan.*`` topics into the loan book: every partition assigned (no consumer group:
    the offsets live in the book, committed with what they carried)."""

    def __init__(self, settings: Settings, book: LoanBook) -> None:
        self.settings = settings
        self.book = book
        self.topics = [
            settings.kafka.topics.overdue,
            settings.kafka.topics.payment,
            settings.kafka.topics.status,
        ]
        self.positions: dict[tuple[str, int], int] = book.offsets()
        self._consumer: AIOKafkaConsumer | None = None
        self._progress = asyncio.Condition()

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._consume()
            except (KafkaError, OSError) as error:
                pause = RETRY_FEED_SECONDS[min(failures, len(RETRY_FEED_SECONDS) - 1)]
                failures += 1
                log.warning("loan feed: %s; reconnecting in %.1fs", error, pause)
                await asyncio.sleep(pause)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="accord-core-banking",
            **kafka_client_options(self.settings.kafka),
        )
        await consumer.start()
        try:
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            for partition in partitions:
                stored = self.positions.get((partition.topic, partition.partition))
                if stored is None:
                    await consumer.seek_to_beginning(partition)
                else:
                    consumer.seek(partition, stored)
            self._consumer = consumer
            log.info("loan feed: reading %d partitions", len(partitions))
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                for partition, messages in batches.items():
                    for message in messages:
                        self.book.apply_message(
                            partition.topic, partition.partition, message.offset, message.value
                        )
                        self.positions[(partition.topic, partition.partition)] = message.offset + 1
                if batches:
                    async with self._progress:
                        self._progress.notify_all()
        finally:
            self._consumer = None
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        found: list[TopicPartition] = []
        for topic in self.topics:
            for _ in range(100):
                numbers = consumer.partitions_for_topic(topic)
                if numbers:
                    found += [TopicPartition(topic, number) for number in sorted(numbers)]
                    break
                await consumer._client.force_metadata_update()  # no public metadata refresh
                await asyncio.sleep(0.1)
            else:
                raise KafkaError(f"topic {topic} does not exist")
        return found

    async def wait_synchronised(self) -> None:
        """Return once everything published before this call is in the book."""
        consumer = self._consumer
        if consumer is None:
            raise ServiceError(503, "not_synchronised", "the loan feed is not connected")
        deadline = time.monotonic() + self.settings.core_banking.sync_wait_seconds
        try:
            async with asyncio.timeout(self.settings.core_banking.sync_wait_seconds):
                ends = await consumer.end_offsets(list(consumer.assignment()))
                async with self._progress:
                    while not self._caught_up(ends):
                        await self._progress.wait()
        except (TimeoutError, KafkaError):
            waited = self.settings.core_banking.sync_wait_seconds - (deadline - time.monotonic())
            raise ServiceError(
                503,
                "not_synchronised",
                f"the loan book has not caught up with its feed after {waited:.1f}s",
            ) from None

    def _caught_up(self, ends: dict[TopicPartition, int]) -> bool:
        return all(
            self.positions.get((partition.topic, partition.partition), 0) >= end
            for partition, end in ends.items()
        )


def create_app(settings: Settings, *, feed: bool = True) -> FastAPI:
    """``feed=False``: no Kafka (contract tests fill the book directly through ``app.state``)."""
    book = LoanBook(open_database(database_path(settings), SCHEMA), settings.kafka.topics)
    loan_feed = LoanFeed(settings, book)
    faults = Faults()
    auth = bearer_auth(settings.core_banking.token)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(loan_feed.run()) if feed else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    app = FastAPI(
        title="Core banking (Accord's contract)",
        version="1.0.0",
        summary="Loans, ledger, credit record, contact details and restructures.",
        description=(
            "What Accord needs from a bank's core banking system. Every request carries "
            "`Authorization: Bearer <token>` when one is configured. Errors are `ErrorBody`; "
            "each documented error says whether a client may retry it (`x-retryable`)."
        ),
        lifespan=lifespan,
    )
    app.state.book = book
    app.state.feed = loan_feed
    app.state.faults = faults
    install_error_handlers(app)
    add_health(app, NAME, faults)
    app.include_router(faults.router(auth))

    async def synchronised() -> None:
        if feed:
            await loan_feed.wait_synchronised()

    async def known_loan(loan_id: str) -> LoanOverdue:
        loan = book.loan(loan_id)
        if loan is None:
            await synchronised()
            loan = book.loan(loan_id)
        if loan is None:
            raise ServiceError(404, "unknown_loan", f"no loan {loan_id}")
        return loan

    @app.get(
        "/v1/loans/{loan_id}",
        operation_id="read_loan",
        tags=["loans"],
        responses=documented_errors(404),
        dependencies=[Depends(auth), Depends(faults.guard("read_loan"))],
    )
    async def read_loan(loan_id: LoanId) -> LoanOverdue:
        """The loan's current overdue position (the latest `loan.overdue.v1` document)."""
        return await known_loan(loan_id)

    @app.get(
        "/v1/loans/{loan_id}/ledger",
        operation_id="read_ledger",
        tags=["loans"],
        responses=documented_errors(404),
        dependencies=[Depends(auth), Depends(faults.guard("read_ledger"))],
    )
    async def read_ledger(loan_id: LoanId, since: Annotated[date, Query()]) -> LedgerPosition:
        """What was paid into the loan from `since` (inclusive), as of this request."""
        loan = await known_loan(loan_id)
        await synchronised()  # payments published before this request are in
        return book.ledger(loan, since)

    @app.get(
        "/v1/customers/{borrower_id}/credit-record",
        operation_id="read_credit_record",
        tags=["customers"],
        responses=documented_errors(),
        dependencies=[Depends(auth), Depends(faults.guard("read_credit_record"))],
    )
    async def read_credit_record(borrower_id: CustomerId) -> CreditRecord:
        """The borrower's history with the bank (an unknown borrower has none)."""
        await synchronised()
        return book.credit_record(borrower_id, utc_now().date())

    @app.get(
        "/v1/customers/{borrower_id}/contact-details",
        operation_id="read_contact_details",
        tags=["customers"],
        responses=documented_errors(404),
        dependencies=[Depends(auth), Depends(faults.guard("read_contact_details"))],
    )
    async def read_contact_details(borrower_id: CustomerId) -> CustomerContactDetails:
        """Where the borrower can be reached (personal data: never logged by Accord)."""
        if not book.borrower_known(borrower_id):
            await synchronised()
        if not book.borrower_known(borrower_id):
            raise ServiceError(404, "unknown_customer", f"no customer {borrower_id}")
        # The embedded bank has no customer master: reserved-for-examples addresses.
        return CustomerContactDetails(
            phone=f"+86-555-{borrower_id}",
            email=f"{borrower_id.lower()}@borrowers.example",
            time_zone=settings.core_banking.contact_time_zone,
        )

    @app.post(
        "/v1/loans/{loan_id}/restructures",
        operation_id="apply_restructure",
        tags=["restructures"],
        status_code=201,
        responses={
            200: {"model": Restructure, "description": "A replay: the first receipt."},
            **documented_errors(404, 409),
        },
        dependencies=[Depends(auth), Depends(faults.guard("apply_restructure"))],
    )
    async def apply_restructure(
        loan_id: LoanId,
        instruction: RestructureInstruction,
        response: Response,
        idempotency_key: Annotated[str, Header(alias=IDEMPOTENCY_HEADER, min_length=1)],
    ) -> Restructure:
        """Apply a signed agreement's schedule to the loan, once per agreement: the
        `agreement_id` is the idempotency key (send it as `Idempotency-Key` too); a repeat with
        the same terms returns the first receipt, with other terms 409."""
        loan = await known_loan(loan_id)
        if instruction.currency != loan.currency:
            raise ServiceError(
                422,
                "invalid_request",
                f"currency: {instruction.currency}, but the loan is in {loan.currency}",
            )
        restructure, created = book.apply_restructure(loan_id, instruction, utc_now())
        if created:
            log.info("restructure %s applied to %s", restructure.restructure_ref, loan_id)
        faults.after("apply_restructure")
        response.status_code = 201 if created else 200
        return restructure

    @app.get(
        "/v1/restructures",
        operation_id="list_restructures",
        tags=["restructures"],
        responses=documented_errors(),
        dependencies=[Depends(auth), Depends(faults.guard("list_restructures"))],
    )
    async def list_restructures(
        loan_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")] = None,
    ) -> list[Restructure]:
        """Every restructure in the book (optionally of one loan), oldest first."""
        return book.restructures(loan_id)

    return app
