"""Per-loan order across topics: a payment, status or hardship event is decided only after every
overdue event that was in Kafka when it was read has been delivered.

Each topic has its own agent, so without this a ``cured`` status produced right after a loan's
first overdue event is often read first, finds no case and is skipped for good. Before a batch of
those topics is decided, ``OverdueProgress.wait_caught_up`` asks the brokers for the overdue
topic's end offsets (one ListOffsets request, shared by every batch read before it was sent) and
waits until the overdue agent has delivered its partitions up to them. One loan is one partition
number on every topic (same key, same partition count, same partitioner), so only the batch's
own partition numbers are waited for. Normally the overdue agent is caught up and nothing waits.

A rebalance pauses the overdue agent, so a wait could never end while faust waits for the batch:
``Rebalance`` wakes every waiter with ``Abandoned``; the batch is dropped unacknowledged and read
again from the committed offsets once the rebalance is over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")

# Offsets of the overdue topic's partitions, by partition number.
OffsetsQuery = Callable[[], Awaitable[Mapping[int, int]]]
# The committed (else earliest) offset of each partition: delivered below it, by someone.
FloorQuery = Callable[[Iterable[int]], Awaitable[Mapping[int, int]]]


class Abandoned(Exception):
    """A rebalance started: leave the batch unacknowledged; it is read again afterwards."""


class Rebalance:
    """Set while the consumer group rebalances. ``started`` may be called from faust's consumer
    thread; everything else runs on the event loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []

    def when_started(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on the event loop at the start of every rebalance."""
        self._listeners.append(listener)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def started(self) -> None:
        if self._loop is None:
            return  # before the app ran: nothing can be waiting
        self._loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        self._active.set()
        for listener in self._listeners:
            listener()

    def ended(self) -> None:
        # Through the loop too, so it can never overtake the ``set`` scheduled by ``started``.
        if self._loop is None:
            self._active.clear()
        else:
            self._loop.call_soon_threadsafe(self._active.clear)

    @property
    def active(self) -> bool:
        return self._active.is_set()

    async def race(self, waiting: Awaitable[T]) -> T:
        """``waiting``'s result, or ``Abandoned`` as soon as a rebalance starts."""
        if self.active:
            if asyncio.iscoroutine(waiting):
                waiting.close()
            raise Abandoned
        task = asyncio.ensure_future(waiting)
        interrupt = asyncio.ensure_future(self._active.wait())
        try:
            await asyncio.wait({task, interrupt}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            interrupt.cancel()
            if not task.done():
                task.cancel()
        if not task.done() or task.cancelled():
            raise Abandoned
        return task.result()

    async def sleep(self, seconds: float) -> None:
        await self.race(asyncio.sleep(seconds))


class OverdueProgress:
    def __init__(self, end_offsets: OffsetsQuery, floor: FloorQuery, rebalance: Rebalance) -> None:
        self._end_offsets = end_offsets
        self._floor = floor
        self._rebalance = rebalance
        # Next offset to deliver, per partition: everything below it is delivered. A fact about
        # Temporal and the tables, so it stays true across rebalances (a lower bound).
        self._delivered: dict[int, int] = {}
        # Partitions whose lower bound was raised to the group's commit since the last rebalance
        # began. A partition lost and regained may have been delivered further by another
        # processor meanwhile; until it is checked, a batch there could wait for the partition's
        # next overdue event instead of for nothing.
        self._checked: set[int] = set()
        rebalance.when_started(self._checked.clear)
        self._progress = asyncio.Condition()
        self._probe: tuple[float, asyncio.Task[Mapping[int, int]]] | None = None
        self.probes = 0

    async def delivered(self, partition: int, next_offset: int) -> None:
        """The overdue agent acknowledged everything of ``partition`` below ``next_offset``."""
        if next_offset > self._delivered.get(partition, -1):
            self._delivered[partition] = next_offset
            async with self._progress:
                self._progress.notify_all()

    async def wait_caught_up(self, partitions: Iterable[int], read_at: float) -> None:
        """Until the overdue topic is delivered up to where its log ended after ``read_at``
        (``time.monotonic()`` when the batch was read). Raises ``Abandoned`` on a rebalance and
        whatever the Kafka queries raise."""
        wanted = set(partitions)
        ends = await self._rebalance.race(self._ends_after(read_at))
        unchecked = [p for p in wanted - self._checked if not self._caught_up({p}, ends)]
        if unchecked:
            for partition, offset in (await self._rebalance.race(self._floor(unchecked))).items():
                self._delivered[partition] = max(self._delivered.get(partition, -1), offset)
                self._checked.add(partition)
        await self._rebalance.race(self._until(lambda: self._caught_up(wanted, ends)))

    def _caught_up(self, partitions: set[int], ends: Mapping[int, int]) -> bool:
        return all(self._delivered.get(p, 0) >= ends.get(p, 0) for p in partitions)

    async def _until(self, condition: Callable[[], bool]) -> None:
        async with self._progress:
            await self._progress.wait_for(condition)

    async def _ends_after(self, read_at: float) -> Mapping[int, int]:
        """End offsets from a query sent after ``read_at``: the latest one if it qualifies, else a
        new one that every batch read until then shares."""
        if self._probe is not None:
            sent_at, task = self._probe
            failed = task.done() and (task.cancelled() or task.exception() is not None)
            if sent_at >= read_at and not failed:
                return await asyncio.shield(task)
        task = asyncio.ensure_future(self._end_offsets())
        self._probe = (time.monotonic(), task)
        self.probes += 1
        return await asyncio.shield(task)
