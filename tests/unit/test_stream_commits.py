"""Strict commits (streams/commits.py) on faust's own consumer, never started: what it would
commit for a stream partition with an event never acknowledged, with and without them."""

from __future__ import annotations

import faust
import pytest
from faust.types import TP

from streams.commits import committable, make_strict

pytestmark = pytest.mark.unit

PAYMENTS = TP("loan.payment.v1", 0)
CHANGELOG = TP("accord-streams-open_cases-changelog", 0)


def faust_consumer(*, strict: bool) -> object:
    app = faust.App("accord-commits-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    consumer = app.consumer  # made, not started: no broker is asked anything here
    if strict:
        make_strict(consumer, lambda tp: tp != CHANGELOG)
    return consumer


def acknowledge(consumer: object, tp: TP, *offsets: int) -> None:
    for offset in offsets:
        consumer._acked[tp].append(offset)  # type: ignore[attr-defined]
        consumer._acked_index[tp].add(offset)  # type: ignore[attr-defined]


def to_commit(consumer: object, tp: TP) -> int | None:
    return consumer._filter_committable_offsets([tp]).get(tp)  # type: ignore[attr-defined]


def test_faust_alone_commits_past_the_one_event_at_its_committed_offset() -> None:
    # Why the module exists (if faust fixes it, this fails and the module may go).
    consumer = faust_consumer(strict=False)
    consumer._committed_offset[PAYMENTS] = 10  # type: ignore[attr-defined]
    acknowledge(consumer, PAYMENTS, 11, 12)
    assert to_commit(consumer, PAYMENTS) == 13  # offset 10 never reached an agent


def test_a_stream_partition_commits_only_from_its_committed_offset_on() -> None:
    consumer = faust_consumer(strict=True)
    consumer._committed_offset[PAYMENTS] = 10  # type: ignore[attr-defined]
    acknowledge(consumer, PAYMENTS, 11, 12)
    assert to_commit(consumer, PAYMENTS) is None
    acknowledge(consumer, PAYMENTS, 10)
    assert to_commit(consumer, PAYMENTS) == 13
    consumer._committed_offset[PAYMENTS] = 13  # type: ignore[attr-defined]  # once Kafka took it
    acknowledge(consumer, PAYMENTS, 15)
    assert to_commit(consumer, PAYMENTS) is None
    acknowledge(consumer, PAYMENTS, 13, 14)
    assert to_commit(consumer, PAYMENTS) == 16


async def test_a_jump_in_a_stream_partition_is_not_counted_as_done() -> None:
    strict = faust_consumer(strict=True)
    loose = faust_consumer(strict=False)
    for consumer in (strict, loose):
        consumer._committed_offset[PAYMENTS] = 10  # type: ignore[attr-defined]
        acknowledge(consumer, PAYMENTS, 10)
        # Read offset 10, then 14: faust's fetch loop records 11..13 as a gap.
        await consumer._add_gap(PAYMENTS, 11, 13)  # type: ignore[attr-defined]
        acknowledge(consumer, PAYMENTS, 14)
    assert to_commit(loose, PAYMENTS) == 15  # 11..13 committed unread
    assert to_commit(strict, PAYMENTS) == 11


async def test_changelogs_keep_fausts_rules() -> None:
    consumer = faust_consumer(strict=True)
    consumer._committed_offset[CHANGELOG] = 10  # type: ignore[attr-defined]
    await consumer._add_gap(CHANGELOG, 10, 11)  # type: ignore[attr-defined]  # compacted away
    acknowledge(consumer, CHANGELOG, 12)
    assert to_commit(consumer, CHANGELOG) == 13


def test_nothing_is_committed_without_a_known_start() -> None:
    consumer = faust_consumer(strict=True)
    acknowledge(consumer, PAYMENTS, 3, 4)
    assert to_commit(consumer, PAYMENTS) is None  # faust alone would commit 5
    consumer._committed_offset[PAYMENTS] = 0  # type: ignore[attr-defined]  # set by the recovery
    acknowledge(consumer, PAYMENTS, 0, 1, 2)
    assert to_commit(consumer, PAYMENTS) == 5


def test_acknowledgements_below_the_commit_are_dropped() -> None:
    consumer = faust_consumer(strict=True)
    consumer._committed_offset[PAYMENTS] = 10  # type: ignore[attr-defined]
    acknowledge(consumer, PAYMENTS, 7, 8, 10)
    assert committable(consumer, PAYMENTS) == 11
    assert consumer._acked[PAYMENTS] == []  # type: ignore[attr-defined]
    assert consumer._acked_index[PAYMENTS] == set()  # type: ignore[attr-defined]
