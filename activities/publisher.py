"""Case events to ``case.events.v1``: a real aiokafka producer and an in-memory recorder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from activities.faults import Faults, SystemUnavailable
from clients import kafka_client_options
from schemas.outbound import CASE_EVENT, CaseEvent
from settings import KafkaSettings


class CaseEventPublisher(Protocol):
    async def publish(self, event: CaseEvent) -> None:
        """At least once; consumers de-duplicate by ``event_id`` (deterministic per step)."""
        ...


class KafkaCaseEventPublisher:
    """Keyed by ``loan_id`` so one loan's events stay ordered in one partition; idempotent
    producer with ``acks=all`` so a producer retry never writes a duplicate."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **kafka_client_options(self._settings),
            enable_idempotence=True,
            acks="all",
            client_id="accord-worker",
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, event: CaseEvent) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaCaseEventPublisher.publish before start()")
        try:
            await self._producer.send_and_wait(
                self._settings.topics.case_events,
                key=event.loan_id.encode(),
                value=CASE_EVENT.dump_json(event),
                headers=[("event_id", event.event_id.encode()), ("kind", event.kind.encode())],
            )
        except KafkaError as error:
            raise SystemUnavailable(f"publish: {type(error).__name__}") from error


@dataclass
class InMemoryCaseEventPublisher:
    """Records what would have gone to Kafka, with the same at-least-once behaviour."""

    events: list[CaseEvent] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)

    async def publish(self, event: CaseEvent) -> None:
        self.faults.before("publish")
        # Round-trip through JSON: what a consumer would read.
        self.events.append(CASE_EVENT.validate_json(CASE_EVENT.dump_json(event)))

    def for_case(self, case_id: str) -> list[CaseEvent]:
        """Distinct events of one case in publication order (a re-publish counts once)."""
        seen: set[str] = set()
        distinct = []
        for event in self.events:
            if event.case_id == case_id and event.event_id not in seen:
                seen.add(event.event_id)
                distinct.append(event)
        return distinct
