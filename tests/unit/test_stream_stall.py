"""The stalled-partition watch (streams/stall.py) against a consumer whose offsets the test sets:
a partition fetched past what reached the agents is sought back after two checks, and only then."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import TP

from streams.ordering import Rebalance
from streams.stall import StallWatch, release_stranded, settle

pytestmark = pytest.mark.unit

PAYMENTS_5 = TP("loan.payment.v1", 5)
PAYMENTS_4 = TP("loan.payment.v1", 4)
GENERATION = 4


@dataclass(eq=False)
class Message:
    topic: str
    partition: int
    offset: int
    acked: bool = False
    generation_id: int = GENERATION


@dataclass
class Consumer:
    """The parts of faust's consumer the watch reads, and the seek it makes."""

    positions: dict[TP, int]
    _read_offset: dict[TP, int | None] = field(default_factory=dict)
    _committed_offset: dict[TP, int | None] = field(default_factory=dict)
    _acked: defaultdict[TP, list[int]] = field(default_factory=lambda: defaultdict(list))
    _acked_index: defaultdict[TP, set[int]] = field(default_factory=lambda: defaultdict(set))
    _unacked_messages: set[Any] = field(default_factory=set)
    flow_active: bool = True
    sought: list[dict[TP, int]] = field(default_factory=list)

    @property
    def unacked(self) -> set[Any]:
        return self._unacked_messages

    async def position(self, tp: TP) -> int | None:
        return self.positions.get(tp)

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.sought.append(dict(partitions))
        for tp, offset in partitions.items():
            self.positions[tp] = offset
            self._read_offset[tp] = offset


def watch(consumer: Consumer) -> StallWatch:
    return StallWatch(
        consumer=lambda: consumer,
        partitions=lambda: list(consumer.positions),
        generation=lambda: GENERATION,
    )


async def test_a_partition_fetched_past_what_was_read_is_sought_back_on_the_second_check() -> None:
    # What the cluster showed: fetched to the end (72), read offset and commit still at 11.
    consumer = Consumer(
        positions={PAYMENTS_5: 72, PAYMENTS_4: 63},
        _read_offset={PAYMENTS_5: 11, PAYMENTS_4: 62},
        _committed_offset={PAYMENTS_5: 11, PAYMENTS_4: 63},
    )
    stalls = watch(consumer)

    assert await stalls.check() == []  # once could be a batch on its way
    assert await stalls.check() == [PAYMENTS_5]
    assert consumer.sought == [{PAYMENTS_5: 11}]  # back to the read offset: 11 is read again
    assert await stalls.check() == []  # now caught up to where it was sought


async def test_a_partition_read_to_its_end_or_still_moving_is_left_alone() -> None:
    consumer = Consumer(positions={PAYMENTS_5: 30}, _read_offset={PAYMENTS_5: 29})
    stalls = watch(consumer)
    for _ in range(3):
        assert await stalls.check() == []  # read to its end: position is one past the last read

    consumer.positions[PAYMENTS_5] = 50  # a batch taken, being handed over
    assert await stalls.check() == []
    consumer._read_offset[PAYMENTS_5] = 40  # it moved since the last check
    assert await stalls.check() == []
    assert consumer.sought == []


async def test_nothing_is_judged_while_events_are_in_flight_or_the_flow_is_stopped() -> None:
    consumer = Consumer(positions={PAYMENTS_5: 72}, _read_offset={PAYMENTS_5: 11})
    stalls = watch(consumer)
    assert await stalls.check() == []

    in_the_agent = Message("loan.payment.v1", 5, 11)
    consumer._unacked_messages = {in_the_agent}
    assert await stalls.check() == []
    assert await stalls.check() == []
    assert not in_the_agent.acked
    consumer.unacked.clear()
    consumer.flow_active = False  # a rebalance or recovery in progress
    assert await stalls.check() == []
    consumer.flow_active = True
    assert await stalls.check() == []  # judged afresh: a first sighting again
    assert await stalls.check() == [PAYMENTS_5]


async def test_events_in_flight_on_another_partition_do_not_hold_off_the_watch() -> None:
    # Seen in the integration tier: a payment batch waiting for the overdue topic to be
    # delivered held off the whole watch for minutes while the overdue agent read nothing.
    overdue = TP("loan.overdue.v1", 2)
    consumer = Consumer(positions={overdue: 40}, _read_offset={overdue: 20})
    consumer._unacked_messages = {Message("loan.payment.v1", 5, 11)}
    stalls = watch(consumer)
    assert await stalls.check() == []
    assert await stalls.check() == [overdue]
    assert consumer.sought == [{overdue: 20}]


async def test_before_anything_is_read_the_committed_offset_is_where_reading_starts() -> None:
    consumer = Consumer(positions={PAYMENTS_5: 72}, _committed_offset={PAYMENTS_5: 11})
    stalls = watch(consumer)
    assert await stalls.check() == []
    assert await stalls.check() == [PAYMENTS_5]
    assert consumer.sought == [{PAYMENTS_5: 11}]

    idle = Consumer(positions={PAYMENTS_4: 11}, _committed_offset={PAYMENTS_4: 11})
    stalls = watch(idle)
    assert await stalls.check() == []
    assert await stalls.check() == []


@dataclass
class Revoking:
    """A consumer in the middle of a revocation: the flow stops after the first look (unless
    ``stops_flow`` is off), and the rebalance lasts ``looks`` looks."""

    unacked: list[Message]
    stops_flow: bool = True
    looks: int = 6
    flow_active: bool = True

    def __post_init__(self) -> None:
        self._unacked_messages = set(self.unacked)

    def rebalancing(self) -> bool:
        self.looks -= 1
        if self.stops_flow:
            self.flow_active = False
        return self.looks > 0


async def test_events_still_held_when_the_flow_stops_are_let_go_without_being_committed() -> None:
    held = Message("loan.payment.v1", 5, 24)
    done = Message("loan.payment.v1", 5, 23, acked=True)
    consumer = Revoking(unacked=[held, done])

    released = await release_stranded(consumer, consumer.rebalancing, settle_seconds=0)

    assert released == 1
    assert held.acked and consumer._unacked_messages == {done}
    # Not through faust's ``ack``: its offset is not among those to commit (the test consumer
    # has none to record it in, and ``release_stranded`` touched nothing else).


async def test_nothing_is_let_go_while_the_flow_still_runs() -> None:
    held = Message("loan.payment.v1", 5, 24)
    consumer = Revoking(unacked=[held], stops_flow=False)  # faust never got to its wait

    assert await release_stranded(consumer, consumer.rebalancing, settle_seconds=0) == 0
    assert not held.acked


async def test_listeners_hear_of_every_rebalance_start_on_the_event_loop() -> None:
    rebalance = Rebalance()
    heard: list[bool] = []
    rebalance.when_started(lambda: heard.append(rebalance.active))
    rebalance.bind(asyncio.get_running_loop())

    rebalance.started()
    await asyncio.sleep(0)  # call_soon_threadsafe runs it on the next loop turn

    assert heard == [True]


async def test_events_of_an_earlier_generation_are_not_work_in_flight_and_are_let_go() -> None:
    left_over = Message("loan.payment.v1", 5, 11, generation_id=GENERATION - 1)
    consumer = Consumer(positions={PAYMENTS_5: 72}, _read_offset={PAYMENTS_5: 11})
    consumer._unacked_messages = {left_over}
    stalls = watch(consumer)

    assert await stalls.check() == []
    assert await stalls.check() == [PAYMENTS_5]
    assert left_over.acked and not consumer.unacked


async def test_a_hole_below_acknowledged_events_is_read_again_from_the_commit() -> None:
    # Offsets 10 and 11 never reached an agent; 12 and 13 did (strict commits hold at 10).
    consumer = Consumer(
        positions={PAYMENTS_5: 14},
        _read_offset={PAYMENTS_5: 13},
        _committed_offset={PAYMENTS_5: 10},
    )
    consumer._acked[PAYMENTS_5] = [12, 13]
    consumer._acked_index[PAYMENTS_5] = {12, 13}
    stalls = watch(consumer)

    assert await stalls.check() == []  # once could be acknowledgements on their way
    assert await stalls.check() == [PAYMENTS_5]
    assert consumer.sought == [{PAYMENTS_5: 10}]
    assert PAYMENTS_5 not in consumer._acked  # acknowledged anew when read again
    consumer._acked[PAYMENTS_5] = [10, 11, 12, 13]  # read again, all of it reached the agents
    assert await stalls.check() == []
    assert await stalls.check() == []
    assert consumer.sought == [{PAYMENTS_5: 10}]


async def test_a_hole_that_comes_back_when_read_again_is_accepted() -> None:
    # The broker has nothing at 10 and 11 (a transactional producer's markers).
    consumer = Consumer(positions={PAYMENTS_5: 14}, _committed_offset={PAYMENTS_5: 10})
    consumer._acked[PAYMENTS_5] = [12, 13]
    stalls = watch(consumer)
    assert await stalls.check() == []
    assert await stalls.check() == [PAYMENTS_5]  # read again
    consumer._acked[PAYMENTS_5] = [12, 13]  # the same jump, read again
    consumer._acked_index[PAYMENTS_5] = {12, 13}
    assert await stalls.check() == []
    assert await stalls.check() == []  # seen twice after reading again: the broker's own
    assert sorted(consumer._acked[PAYMENTS_5]) == [10, 11, 12, 13]
    assert consumer.sought == [{PAYMENTS_5: 10}]  # read again once, not over and over


def test_an_event_faust_left_among_the_unacknowledged_is_settled() -> None:
    # faust's ack keeps an event read again (its offset acknowledged already) in flight.
    read_again = Message("loan.payment.v1", 5, 12, acked=True)
    pending = Message("loan.payment.v1", 5, 13)
    consumer = Consumer(positions={}, _unacked_messages={read_again, pending})
    settle(consumer, [read_again, pending])
    assert consumer.unacked == {pending}
