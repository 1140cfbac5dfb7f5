"""The stream processor's metrics, kept by ``prometheus_client`` in one registry per app and
served at ``/accord/metrics`` together with faust's own (its Prometheus sensor, ``faust_*``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# No ``*_created`` series: the process start time says the same, at half the scrape size.
disable_created_metrics()


class Outcome(StrEnum):
    PROCESSED = "processed"  # Temporal accepted the start or signal
    SKIPPED = "skipped"  # no open case, closed or older case, or already delivered (duplicate)
    HELD = "held"  # a hardship declaration kept until its loan's case opens
    DEAD_LETTERED = "dead_lettered"
    # Invalid, and not even a truncated dead letter could be written (a non-retriable Kafka
    # error): logged with its topic, partition and offset, where the original still is.
    DROPPED = "dropped"


Highwaters = Callable[[], Mapping[tuple[str, int], int]]


class StreamMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._events = Counter(
            "accord_streams_events",
            "Inbound events by topic and outcome.",
            ["topic", "outcome", "reason"],
            registry=self.registry,
        )
        self._retries = Counter(
            "accord_streams_retries",
            "Transient failures retried in place.",
            ["topic"],
            registry=self.registry,
        )
        self._batches = Counter(
            "accord_streams_batches",
            "Batches fully delivered and acknowledged.",
            registry=self.registry,
        )
        self._abandoned = Counter(
            "accord_streams_batches_abandoned",
            "Batches left unacknowledged because a rebalance started (read again after it).",
            registry=self.registry,
        )
        self._batch_seconds = Histogram(
            "accord_streams_batch_seconds",
            "Time to deliver a batch, from taking it to acknowledging it.",
            ["topic"],
            registry=self.registry,
        )
        self._temporal_calls = Counter(
            "accord_streams_temporal_calls",
            "Calls made to Temporal: start (signal-with-start) or signal.",
            ["operation"],
            registry=self.registry,
        )
        self._ordering_probes = Counter(
            "accord_streams_ordering_probes",
            "End-offset queries of the overdue topic made to keep per-loan order across topics.",
            registry=self.registry,
        )
        self._held = Counter(
            "accord_streams_held_hardship",
            "Hardship declarations kept for a case not yet open, by what became of them.",
            ["result"],
            registry=self.registry,
        )
        self._case_events = Counter(
            "accord_streams_case_events",
            "case.events.v1 records read to keep the open-case table, by what they did.",
            ["effect"],
            registry=self.registry,
        )
        self._dead_letters_truncated = Counter(
            "accord_streams_dead_letters_truncated",
            "Dead letters whose value was cut to fit the producer's request size.",
            ["topic"],
            registry=self.registry,
        )
        self._sought_back = Counter(
            "accord_streams_partitions_sought_back",
            "Stalled partitions (fetched past what reached the agents) sought back.",
            ["topic"],
            registry=self.registry,
        )
        self._event_children: dict[tuple[str, Outcome, str], Any] = {}
        # Next offset to process per (topic, partition): everything below it is delivered.
        self.processed_position: dict[tuple[str, int], int] = {}

    def count(self, topic: str, outcome: Outcome, reason: str = "") -> None:
        # ``labels()`` validates on every call: the few children are kept (the hot path).
        child = self._event_children.get((topic, outcome, reason))
        if child is None:
            child = self._events.labels(topic, outcome.value, reason)
            self._event_children[(topic, outcome, reason)] = child
        child.inc()

    def retried(self, topic: str) -> None:
        self._retries.labels(topic).inc()

    def batch_done(self, topic: str, seconds: float) -> None:
        self._batches.inc()
        self._batch_seconds.labels(topic).observe(seconds)

    def batch_abandoned(self) -> None:
        self._abandoned.inc()

    def temporal_call(self, operation: str) -> None:
        self._temporal_calls.labels(operation).inc()

    def ordering_probe(self) -> None:
        self._ordering_probes.inc()

    def held_hardship(self, result: str) -> None:
        self._held.labels(result).inc()

    def case_event(self, effect: str) -> None:
        self._case_events.labels(effect).inc()

    def dead_letter_truncated(self, topic: str) -> None:
        self._dead_letters_truncated.labels(topic).inc()

    def sought_back(self, topic: str) -> None:
        self._sought_back.labels(topic).inc()

    def watch(
        self, highwaters: Highwaters, open_cases: Callable[[], int], held: Callable[[], int]
    ) -> None:
        """Values read when scraped: consumer lag and the two tables' sizes in this process."""
        Gauge(
            "accord_streams_open_cases",
            "Loans with an open case in this process's partitions of the open-case table.",
            registry=self.registry,
        ).set_function(open_cases)
        Gauge(
            "accord_streams_held_hardship_waiting",
            "Hardship declarations waiting for their loan's case in this process's partitions.",
            registry=self.registry,
        ).set_function(held)
        self.registry.register(_LagCollector(highwaters, self.processed_position))


class _LagCollector(Collector):
    def __init__(self, highwaters: Highwaters, positions: Mapping[tuple[str, int], int]) -> None:
        self._highwaters = highwaters
        self._positions = positions

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for (topic, partition), highwater in sorted(self._highwaters().items()):
            position = self._positions.get((topic, partition))
            if position is not None:
                family.add_metric([topic, str(partition)], max(highwater - position, 0))
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "accord_streams_consumer_lag",
            "Messages in the partition not yet delivered.",
            labels=["topic", "partition"],
        )
