"""Counters of the stream processor, rendered in the Prometheus text format (no client library:
a handful of counters and gauges does not need one)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from enum import StrEnum


class Outcome(StrEnum):
    PROCESSED = "processed"  # Temporal accepted the start or signal
    SKIPPED = "skipped"  # no open case, the case has closed, or already delivered (duplicate)
    DEAD_LETTERED = "dead_lettered"


class StreamMetrics:
    def __init__(self) -> None:
        self.outcomes: Counter[tuple[str, Outcome, str]] = Counter()
        self.retries: Counter[str] = Counter()
        self.batches = 0
        # Next offset to process per (topic, partition): everything below it is in Temporal.
        self.processed_position: dict[tuple[str, int], int] = {}

    def count(self, topic: str, outcome: Outcome, reason: str = "") -> None:
        self.outcomes[(topic, outcome, reason)] += 1

    def retried(self, topic: str) -> None:
        self.retries[topic] += 1

    def render(self, highwaters: Mapping[tuple[str, int], int]) -> str:
        lines = [
            "# HELP accord_streams_events_total Inbound events by topic and outcome.",
            "# TYPE accord_streams_events_total counter",
        ]
        for (topic, outcome, reason), n in sorted(self.outcomes.items()):
            lines.append(
                f'accord_streams_events_total{{topic="{topic}",outcome="{outcome}",'
                f'reason="{reason}"}} {n}'
            )
        lines += [
            "# HELP accord_streams_retries_total Transient failures retried in place.",
            "# TYPE accord_streams_retries_total counter",
        ]
        lines += [
            f'accord_streams_retries_total{{topic="{topic}"}} {n}'
            for topic, n in sorted(self.retries.items())
        ]
        lines += [
            "# HELP accord_streams_batches_total Batches fully delivered and acknowledged.",
            "# TYPE accord_streams_batches_total counter",
            f"accord_streams_batches_total {self.batches}",
            "# HELP accord_streams_consumer_lag Messages in the partition not yet in Temporal.",
            "# TYPE accord_streams_consumer_lag gauge",
        ]
        for (topic, partition), highwater in sorted(highwaters.items()):
            position = self.processed_position.get((topic, partition))
            if position is not None:
                lag = max(highwater - position, 0)
                lines.append(
                    f'accord_streams_consumer_lag{{topic="{topic}",partition="{partition}"}} {lag}'
                )
        return "\n".join(lines) + "\n"
