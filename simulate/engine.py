"""Drive a simulated portfolio through a running stack, changing nothing about the stack.

Core banking's part: publish each loan's overdue event (``loan.overdue.v1``), the borrowers'
payments (``loan.payment.v1``), declared hardship (``customer.hardship.v1``) and cures
(``loan.status.v1``); the stack's core-banking service learns them from those topics, as a
bank's ledger would. The borrowers' and operations' part: signing on the e-signature service's
page (whose callback tells the case), and the case's updates for the rest, as the bank's
channels would send them. The simulation listens to ``case.events.v1`` like those channels do:
every event about a case makes its borrower look at the case (the ``view`` query) and act.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError

from clients import connect_temporal, kafka_client_options
from desk.calls import sign_for
from engine import actions
from engine.actions import CaseAction, CaseAudit
from schemas.case import CaseStage, CaseView
from schemas.events import (
    CustomerHardship,
    LoanPayment,
    LoanStatus,
    LoanStatusKind,
    PaymentChannel,
)
from schemas.outbound import parse_case_event
from schemas.staff import Actor, StaffRole
from settings import Settings
from simulate import borrowers as b
from simulate.portfolio import SimulatedLoan
from simulate.signing import NoEnvelopeYet, act_on_signing_page
from simulate.timescale import policy_now, server_time
from staff.keys import signing_key
from workflows.handle import CaseHandle

log = logging.getLogger("accord.simulate")

OPERATIONS_STAFF_ID = "ops-sim-1"
RESPONSE_DELAY_POLICY_HOURS = (1, 36)
"""How long a borrower takes to act after hearing from the bank (policy time)."""
DISPUTE_REVIEW_POLICY_DAYS = 2
MAX_SERVER_DELAY_SECONDS = 2.0
"""A reaction delay never exceeds this much real time (time scale 1 must still move)."""
RETRY_LOOK_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
PREMATURE = (
    "no offer is open yet",
    "still opening",
    "only in stage",
    # The agreement shows in the view before its envelope is sent (the borrower is quicker
    # than the provider's callback would ever be): sign again once the envelope exists.
    "not the envelope this case is waiting for",
)


@dataclass
class CaseRecord:
    """Everything the report needs about one case."""

    loan: SimulatedLoan
    opened_at: datetime | None = None
    """When the case published ``opened`` (on the case's clock)."""
    anchor: datetime | None = None
    """Where the case's clock meets the server's (``CaseView.opened_at``); known once looked at."""
    time_scale: int | None = None
    """The case's own time scale (``CaseView.time_scale``); known once looked at."""
    tier: str | None = None
    outcome: str | None = None
    outcome_reasons: tuple[str, ...] = ()
    signed_at: datetime | None = None
    stage: str | None = None
    contacts_made: int = 0
    contacts_blocked: int | None = None
    recovered: Decimal = Decimal(0)

    @property
    def case_id(self) -> str:
        return self.loan.case_id


@dataclass
class SimulationConfig:
    time_scale: int = 1
    grace_days: int = 5
    duration_seconds: float = 300.0
    publish_rate: float | None = None
    """Overdue events per second; None: as fast as the producer goes."""
    max_in_flight: int = 64
    """Concurrent queries and updates against Temporal."""
    audit: bool = True
    """Query each case's audit at the end for the contacts blocked by the rules."""
    until_signed: bool = False
    """Stop once every case has signed an agreement or closed (benchmarks of sleeping cases)."""
    borrowers_pay: bool = True
    """False: instalments are not paid (cases only need to be asleep on their timers)."""
    final_views: bool = True
    """Query every open case at the end for its stage (benchmarks count by search attribute)."""
    idle_seconds: float | None = None
    """Stop early when no case signed or closed for this long (the rest wait on real days)."""


class Simulation:
    def __init__(
        self,
        settings: Settings,
        loans: list[SimulatedLoan],
        config: SimulationConfig,
        on_progress: Callable[[str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.records = {loan.case_id: CaseRecord(loan) for loan in loans}
        self.memory = {loan.case_id: b.BorrowerMemory() for loan in loans}
        self._rngs: dict[str, random.Random] = {}
        self._looking: dict[str, asyncio.Lock] = {}
        """One look at a time per case: Temporal buffers one query per busy workflow."""
        self.on_progress = on_progress or (lambda counter, value: None)
        self.published = 0
        self.opened = 0
        self.closed = 0
        self.signed_or_closed: set[str] = set()
        self._finished = asyncio.Event()
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self._signing_key: Ed25519PrivateKey | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: Client | None = None
        self._producer: AIOKafkaProducer | None = None

    # ------------------------------------------------------------------ run

    async def run(self) -> list[CaseRecord]:
        self._client = await connect_temporal(self.settings)
        options = kafka_client_options(self.settings.kafka)
        self._producer = AIOKafkaProducer(**options, acks="all", linger_ms=5)
        consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **options)
        await self._producer.start()
        await consumer.start()
        try:
            await read_from_now(consumer, self.settings.kafka.topics.case_events)
            listener = asyncio.create_task(self._listen(consumer))
            deadline = time.monotonic() + self.config.duration_seconds
            await self._publish_overdue()
            await self._wait_until_done(deadline)
            listener.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(listener, *self._tasks, return_exceptions=True)
            await self._final_views()
        finally:
            await consumer.stop()
            await self._producer.stop()
        return list(self.records.values())

    async def _wait_until_done(self, deadline: float) -> None:
        idle_limit = self.config.idle_seconds
        progress, last_change = -1, time.monotonic()
        while not self._finished.is_set():
            now = time.monotonic()
            if now >= deadline:
                return
            current = len(self.signed_or_closed) + self.opened
            if current != progress:
                progress, last_change = current, now
            elif idle_limit is not None and now - last_change > idle_limit:
                log.info("no case moved for %.0fs: stopping", idle_limit)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), min(1.0, deadline - now))

    async def _publish_overdue(self) -> None:
        assert self._producer is not None
        interval = 1 / self.config.publish_rate if self.config.publish_rate else 0.0
        started = time.monotonic()
        for index, record in enumerate(self.records.values()):
            if interval:
                await asyncio.sleep(max(0.0, started + index * interval - time.monotonic()))
            await self._send(self.settings.kafka.topics.overdue, record.loan.overdue)
            self.published += 1
            self.on_progress("published", self.published)
        await self._producer.flush()

    async def _send(self, topic: str, event: BaseModel) -> None:
        assert self._producer is not None
        loan_id: str = getattr(event, "loan_id")  # noqa: B009 - every inbound event has one
        await self._producer.send(topic, event.model_dump_json().encode(), key=loan_id.encode())

    # ------------------------------------------------------------------ case events

    async def _listen(self, consumer: AIOKafkaConsumer) -> None:
        async for message in consumer:
            record = self.records.get(case_id_of(message.value))
            if record is None:
                continue  # another case on the same topic
            event = parse_case_event(message.value or b"")
            record = self.records.get(event.case_id)
            if record is not None:
                self._on_case_event(record, event)

    def _on_case_event(self, record: CaseRecord, event: object) -> None:
        kind = getattr(event, "kind", "")
        if kind == "opened":
            record.opened_at = getattr(event, "occurred_at")  # noqa: B009
            self.opened += 1
            self.on_progress("opened", self.opened)
        elif kind == "contacted":
            record.contacts_made += 1
            self._look(record, react=True)
        elif kind in ("assessed", "reassessed"):
            record.tier = getattr(event, "tier").value  # noqa: B009
            self._look(record, react=False, retry_while_idle=True)
        elif kind in ("proposed", "paused", "resumed", "signed"):
            if kind == "signed":
                record.signed_at = getattr(event, "signed_at")  # noqa: B009
                self._settled(record)
            self._look(record, react=kind != "paused", review=kind == "paused")
        elif kind == "instalment_paid":
            record.recovered += getattr(event, "amount").amount  # noqa: B009
        elif kind == "closed":
            if record.outcome is None:
                self.closed += 1
                self.on_progress("closed", self.closed)
            record.outcome = getattr(event, "outcome").value  # noqa: B009
            record.outcome_reasons = tuple(getattr(event, "reasons"))  # noqa: B009
            self._settled(record)
            if self.closed >= len(self.records):
                self._finished.set()

    def _settled(self, record: CaseRecord) -> None:
        self.signed_or_closed.add(record.case_id)
        self.on_progress("signed", len(self.signed_or_closed))
        if self.config.until_signed and len(self.signed_or_closed) >= len(self.records):
            self._finished.set()

    def rng(self, record: CaseRecord) -> random.Random:
        """Each borrower's own seeded randomness (created on first use: big portfolios)."""
        rng = self._rngs.get(record.case_id)
        if rng is None:
            rng = self._rngs[record.case_id] = random.Random(record.loan.behaviour_seed)
        return rng

    # ------------------------------------------------------------------ looking and acting

    def _look(
        self,
        record: CaseRecord,
        *,
        react: bool = True,
        review: bool = False,
        retry_while_idle: bool = False,
    ) -> None:
        task = asyncio.create_task(self._look_and_act(record, react, review, retry_while_idle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _server_delay(self, record: CaseRecord, policy_delay: timedelta) -> float:
        scale = record.time_scale or self.config.time_scale
        return min(policy_delay.total_seconds() / scale, MAX_SERVER_DELAY_SECONDS)

    async def _look_and_act(
        self, record: CaseRecord, react: bool, review: bool, retry_while_idle: bool
    ) -> None:
        rng = self.rng(record)
        if review:
            review_days = timedelta(days=DISPUTE_REVIEW_POLICY_DAYS)
            await asyncio.sleep(self._server_delay(record, review_days))
        elif react:
            hours = rng.uniform(*RESPONSE_DELAY_POLICY_HOURS)
            await asyncio.sleep(self._server_delay(record, timedelta(hours=hours)))
        lock = self._looking.setdefault(record.case_id, asyncio.Lock())
        async with lock:
            await self._look_until_settled(record, rng, retry_while_idle)

    async def _look_until_settled(
        self, record: CaseRecord, rng: random.Random, retry_while_idle: bool
    ) -> None:
        for attempt, pause in enumerate((0.0, *RETRY_LOOK_SECONDS)):
            await asyncio.sleep(pause)
            view = await self._view(record)
            if view is None:
                continue
            record.stage = view.stage.value
            record.anchor, record.time_scale = view.opened_at, view.time_scale
            actions = b.decide(record.loan, view, self.memory[record.case_id], rng,
                               self.config.grace_days)  # fmt: skip
            premature = False
            for action in actions:
                if not await self._act(record, view, action):
                    b.forget(self.memory[record.case_id], action, view)
                    premature = True
                elif isinstance(action, b.ChooseOption):
                    retry_while_idle = True  # the agreement to sign comes without an event
            # The next step may need no event (an approval, an agreement being issued): look again.
            idle = not actions and view.stage in (
                CaseStage.ASSESS,
                CaseStage.PROPOSE,
                CaseStage.SIGN,
            )
            if not premature and not (retry_while_idle and idle):
                return
            if attempt == len(RETRY_LOOK_SECONDS):
                return

    async def _view(self, record: CaseRecord) -> CaseView | None:
        try:
            async with self._slots:
                return await self._handle(record).view()
        except (RPCError, Exception) as error:  # a case still opening or busy: look again later
            log.debug("view failed for %s: %s", record.case_id, error)
            return None

    async def _audit(self, record: CaseRecord) -> CaseAudit | None:
        try:
            async with self._slots:
                return await self._handle(record).audit()
        except (RPCError, Exception) as error:  # a case still opening or busy: look again later
            log.debug("audit failed for %s: %s", record.case_id, error)
            return None

    def _handle(self, record: CaseRecord) -> CaseHandle:
        assert self._client is not None
        return CaseHandle(self._client, record.case_id)

    def _staff_key(self) -> Ed25519PrivateKey:
        if self._signing_key is None:
            self._signing_key = signing_key(self.settings)
        return self._signing_key

    async def _update(self, record: CaseRecord, action: CaseAction) -> bool:
        """True if accepted; False if refused as premature (try again later)."""
        name = action.action
        if name in actions.STAFF_ACTIONS:
            # Operations' part is played by an administrator named in the audit, signing with
            # the stack's staff key (as `accord case --admin` does).
            action = sign_for(
                action,
                Actor(staff_id=OPERATIONS_STAFF_ID, role=StaffRole.ADMINISTRATOR),
                record.case_id,
                self._staff_key(),
                timedelta(seconds=self.settings.staff.credential_seconds),
            )
        try:
            async with self._slots:
                await self._handle(record).act(action)
        except WorkflowUpdateFailedError as error:
            message = str(error.cause) if error.cause else str(error)
            log.debug("%s refused for %s: %s", name, record.case_id, message)
            return not is_premature(message)
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as error:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from error  # the SDK wraps our cancellation
            # Not known to be applied: the next look tries again (a repeat is refused, harmless).
            log.debug("%s failed for %s: %s", name, record.case_id, error)
            return False
        return True

    async def _act(self, record: CaseRecord, view: CaseView, action: b.Action) -> bool:
        loan = record.loan.overdue
        match action:
            case b.SendFinances(profile=profile, via_kafka=True) if profile.hardship_reason:
                await self._send(
                    self.settings.kafka.topics.hardship,
                    CustomerHardship(
                        event_id=f"{loan.loan_id}-hardship-{len(view.contact_log)}",
                        occurred_at=self._policy_now(view),
                        schema_version=1,
                        loan_id=loan.loan_id,
                        borrower_id=loan.borrower_id,
                        currency=profile.currency,
                        monthly_income=profile.monthly_income,
                        essential_expenses=profile.essential_expenses,
                        other_debt_payments=profile.other_debt_payments,
                        household_size=profile.household_size,
                        reason=profile.hardship_reason,
                        temporary=profile.temporary,
                        expected_recovery_months=profile.expected_recovery_months,
                        lump_sum_available=profile.lump_sum_available,
                    ),
                )
                return True
            case b.SendFinances(profile=profile):
                return await self._update(record, actions.SubmitFinancials(profile=profile))
            case b.ChooseOption(option_id=option_id):
                return await self._update(record, actions.ChooseOption(option_id=option_id))
            case b.CounterPropose(profile=profile):
                return await self._update(
                    record,
                    actions.CounterPropose(profile=profile, note="cannot afford the offers"),
                )
            case b.DeclineOffer():
                return await self._update(record, actions.Decline())
            case b.SignAgreement(agreement_id=agreement_id):
                return await self._sign(agreement_id)
            case b.RaiseDispute():
                return await self._update(record, actions.Dispute(raised_by=loan.borrower_id))
            case b.ResolveDispute(upheld=upheld):
                return await self._update(
                    record,
                    actions.ResolveDispute(
                        staff_id=OPERATIONS_STAFF_ID, upheld=upheld, note="simulated review"
                    ),
                )
            case b.ApproveOptions(option_ids=option_ids, authority=authority):
                return await self._update(
                    record,
                    actions.Approve(
                        option_ids=option_ids, approver_id=OPERATIONS_STAFF_ID, authority=authority
                    ),
                )
            case b.PayInstalment() | b.CureLoan():
                if self.config.borrowers_pay:
                    self._schedule_payment(record, view, action)
                return True
        return True

    async def _sign(self, agreement_id: str) -> bool:
        """On the e-signature service's page; False until the case has opened the envelope."""
        try:
            async with self._slots:
                await act_on_signing_page(self.settings, agreement_id)
        except NoEnvelopeYet:
            return False
        except httpx.HTTPError as error:
            # Signed meanwhile (409 on a second submit) or the service briefly away: look again.
            log.debug("signing %s failed: %s", agreement_id, error)
            return False
        return True

    # ------------------------------------------------------------------ money

    def _policy_now(self, view: CaseView) -> datetime:
        """Now on the case's own clock (its anchor and scale, not the run's setting)."""
        return policy_now(view.opened_at, datetime.now(UTC), view.time_scale)

    def _schedule_payment(
        self, record: CaseRecord, view: CaseView, action: b.PayInstalment | b.CureLoan
    ) -> None:
        async def pay_when_due() -> None:
            if action.on is not None:
                wait = (server_time_of(view, action.on) - datetime.now(UTC)).total_seconds()
                await asyncio.sleep(max(0.0, wait))
            await self._pay(record, view, action)

        task = asyncio.create_task(pay_when_due())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pay(
        self, record: CaseRecord, view: CaseView, action: b.PayInstalment | b.CureLoan
    ) -> None:
        loan = record.loan.overdue
        now = self._policy_now(view)
        if isinstance(action, b.PayInstalment):
            suffix = f"{action.agreement_id.rsplit('-', 1)[-1]}-{action.number}"
        else:
            suffix = "cure"
        await self._send(
            self.settings.kafka.topics.payment,
            LoanPayment(
                event_id=f"{loan.loan_id}-pay-{suffix}",
                occurred_at=now,
                schema_version=1,
                loan_id=loan.loan_id,
                currency=action.currency,  # type: ignore[arg-type]
                amount=action.amount,
                paid_at=now,
                channel=PaymentChannel.MOBILE_APP,
            ),
        )
        if isinstance(action, b.CureLoan):
            record.recovered += action.amount
            await self._send(
                self.settings.kafka.topics.status,
                LoanStatus(
                    event_id=f"{loan.loan_id}-status-cured",
                    occurred_at=now,
                    schema_version=1,
                    loan_id=loan.loan_id,
                    status=LoanStatusKind.CURED,
                ),
            )

    # ------------------------------------------------------------------ the end

    async def _final_views(self) -> None:
        """Stage of every case still open, and (optionally) the contacts the rules blocked."""

        async def finish(record: CaseRecord) -> None:
            if self.config.final_views and record.outcome is None and record.opened_at:
                view = await self._view(record)
                if isinstance(view, CaseView):
                    record.stage = view.stage.value
                    record.tier = view.tier.value if view.tier else record.tier
            if self.config.audit and record.opened_at is not None:
                audit = await self._audit(record)
                if isinstance(audit, CaseAudit):
                    record.contacts_blocked = sum(
                        1 for d in audit.decisions if d.kind == "contact_blocked"
                    )

        await asyncio.gather(*(finish(r) for r in self.records.values()))


async def read_from_now(consumer: AIOKafkaConsumer, topic: str) -> None:
    """Assign every partition of ``topic`` at its end, the positions fixed before returning, so
    nothing published afterwards is missed."""
    partitions = await topic_partitions(consumer, topic)
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:
        await consumer.position(partition)


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(50):
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        await consumer._client.force_metadata_update()  # no public metadata refresh
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} not found: is the stack up?")


def is_premature(refusal: str) -> bool:
    """A refusal that means "not yet" (look again later), not "no"."""
    return any(text in refusal for text in PREMATURE)


def server_time_of(view: CaseView, on: date) -> datetime:
    """Mid-morning UTC of the policy date ``on``, mapped back onto the server's clock through
    the case's own clock (``view.opened_at`` is where the two meet)."""
    policy_moment = datetime.combine(on, time_of_day(10), UTC)
    return server_time(view.opened_at, policy_moment, view.time_scale)


def case_id_of(value: bytes | None) -> str:
    """Cheap pre-filter on the raw message: the case id is in the value; skip parsing others."""
    if value is None:
        return ""
    marker = b'"case_id":"'
    start = value.find(marker)
    if start < 0:
        return ""
    start += len(marker)
    return value[start : value.find(b'"', start)].decode(errors="replace")
