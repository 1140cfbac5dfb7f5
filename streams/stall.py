"""Three ways faust (0.15) can stop reading or committing for good, and what gets it going
again.

**A rebalance that never ends.** faust does not revoke partitions until every event it handed to
an agent is acknowledged or gone (``stream_wait_empty``): it keeps them in a weak set and waits.
The ingest agents leave a batch unacknowledged when a rebalance interrupts it, so that it is read
again, and drop it, relying on the weak set to forget it. But the last event faust handed over
is still referenced by its own fetch loop and by the stream's iterator until the next event comes
-- and none comes while the partitions are revoked. Seen on the cluster topology: a processor
waited for one payment for minutes ("wait_empty: Waiting for tasks"), was dropped from the group
for missing its heartbeats, and stayed "rebalancing" with no partitions read.
``release_stranded`` lets such events go once the flow has stopped: each is marked acknowledged
without its offset being recorded as done, so the commit stays below it and the event is read
again after the rebalance (a duplicate at worst, which the cases drop).

**A partition fetched past what reached the agents.** faust takes a batch from aiokafka and
hands it to the agents one event at a time; it drops the rest of the batch when, meanwhile, the
flow was stopped, the group generation changed or the partition was paused, although aiokafka
has already moved its position past all of it. ``recovery.py`` seeks every partition before it
resumes after a rebalance, but on the cluster topology a partition kept by a processor through
two quick rebalances was still found in this state: aiokafka's position at the end of the
partition, faust's read offset and the committed offset where the last batch began, nothing of
it in flight. Nothing would read it again until the next rebalance, and the next event on it
would be committed past the lost ones (faust alone treats the jump as a gap: ``streams.commits``).

``StallWatch.check`` compares, for every inbound partition, the consumer's position with the
offset faust will read next. A partition is stalled when its position is ahead, none of its
events is in flight (so no agent is still working through a batch of it), and neither figure
moved since the last check; it is then sought back to its read offset. The event at that offset may
be read twice: the open-case table and the cases drop what they have already applied.

**A hole below acknowledged events.** With strict commits (``streams.commits``) events faust
never handed over (or let go above) hold the partition's commit where they start. When a check
finds the same hole twice with none of its events in flight, its acknowledgements are dropped
and it is read again from the commit: what had reached the agents comes again (and is dropped by the
cases as already applied). If the same hole is found after that, the broker has no events there
(a transactional producer's markers) and the commit moves past it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP
from faust.types.tuples import ack_lock

from streams.commits import accept_hole, forget_acknowledged, hole

log = logging.getLogger("accord.streams")


@dataclass
class StallWatch:
    consumer: Callable[[], Any]
    """faust's consumer (``app.consumer``, made when the app starts); its read and committed
    offsets are not on ``ConsumerT``."""
    partitions: Callable[[], Iterable[TP]]
    """The partitions to watch: the inbound ones assigned to this process."""
    generation: Callable[[], int]
    """The consumer group's generation now (``app.consumer_generation_id``)."""
    last_seen: dict[TP, tuple[int, int]] = field(default_factory=dict)
    last_holes: dict[TP, tuple[int, int]] = field(default_factory=dict)
    read_again: dict[TP, tuple[int, int]] = field(default_factory=dict)
    """The hole each partition was last read again for: if it comes back, the broker has it."""

    def forget(self) -> None:
        """Judge afresh (a rebalance moves partitions and offsets)."""
        self.last_seen.clear()
        self.last_holes.clear()

    async def check(self) -> list[TP]:
        """Seek the stalled partitions back to their read offsets; returns them."""
        consumer = self.consumer()
        generation = self.generation()
        # Events of an earlier generation are never acknowledged (they are read again): they
        # are not work in flight, only not yet forgotten.
        stale = [m for m in consumer.unacked if m.generation_id != generation]
        release(consumer, stale)
        if not consumer.flow_active:
            self.forget()  # paused: nothing to judge
            return []
        # A partition with events in an agent is not judged; the others are (a payment batch
        # waits for the overdue topic to be delivered: it must not hold off that topic's watch).
        busy = {(m.topic, m.partition) for m in consumer.unacked}
        seen: dict[TP, tuple[int, int]] = {}
        stalled: dict[TP, int] = {}
        holes: dict[TP, tuple[int, int]] = {}
        for tp in self.partitions():
            if (tp.topic, tp.partition) in busy:
                continue  # judged afresh once the agent is done with it
            gap = hole(consumer, tp)
            if gap is not None:
                if self.last_holes.get(tp) != gap:
                    holes[tp] = gap  # once could be acknowledgements on their way
                elif self.read_again.get(tp) == gap:
                    log.warning(
                        "partition %s:%d has no events at offsets %d to %d (read again): "
                        "committed past them",
                        tp.topic,
                        tp.partition,
                        gap[0],
                        gap[1] - 1,
                    )
                    accept_hole(consumer, tp, *gap)
                    del self.read_again[tp]
                else:
                    stalled[tp] = gap[0]
                    self.read_again[tp] = gap
                    log.warning(
                        "partition %s:%d offsets %d to %d never acknowledged, later ones were: "
                        "reading them again",
                        tp.topic,
                        tp.partition,
                        gap[0],
                        gap[1] - 1,
                    )
                    forget_acknowledged(consumer, tp)
                continue
            point = _read_point(consumer, tp)
            position = await consumer.position(tp)
            if point is None or position is None:
                continue
            seek_to, caught_up = point
            if position <= caught_up:
                continue
            seen[tp] = (seek_to, position)
            if self.last_seen.get(tp) == seen[tp]:
                stalled[tp] = seek_to
        self.last_seen = {tp: value for tp, value in seen.items() if tp not in stalled}
        self.last_holes = holes
        if stalled:
            for tp, restart in stalled.items():
                if tp not in seen:
                    continue  # a hole, told above
                log.warning(
                    "partition %s:%d stalled (fetched to %d, handed to the agents to %d): "
                    "seeking back",
                    tp.topic,
                    tp.partition,
                    seen[tp][1],
                    restart,
                )
            await consumer.seek_wait(stalled)
        return list(stalled)


def _read_point(consumer: Any, tp: TP) -> tuple[int, int] | None:
    """Where to seek back to, and the position of a partition read to its end.

    faust's read offset is the last offset handed to an agent (after a seek: the offset sought
    to, not yet handed over); it admits that offset again, so seeking back to it loses nothing.
    Before anything was read the committed offset is the next to read."""
    read = consumer._read_offset.get(tp)
    if read is not None:
        return int(read), int(read) + 1
    committed = consumer._committed_offset.get(tp)
    return None if committed is None else (int(committed), int(committed))


async def release_stranded(
    consumer: Any, rebalancing: Callable[[], bool], settle_seconds: float
) -> int:
    """While the rebalance lasts: once the flow has stopped and the agents have had
    ``settle_seconds`` to acknowledge or abandon what they hold, let go of every event still
    unacknowledged (see the module's docstring). Returns how many were let go."""
    released = 0
    while rebalancing():
        await asyncio.sleep(settle_seconds)  # a bounded poll within the rebalance, not a wait
        if consumer.flow_active or not rebalancing():
            continue
        stranded = release(consumer, list(consumer._unacked_messages))
        for message in stranded:
            log.info(
                "event at %s:%d offset %d let go for the rebalance: read again after it",
                message.topic,
                message.partition,
                message.offset,
            )
        released += len(stranded)
    return released


def release(consumer: Any, messages: Iterable[Any]) -> list[Any]:
    """Let faust forget events that will not be acknowledged: each is marked acknowledged
    without its offset being recorded as done, so no commit passes it and it is read again from
    the committed offset. Returns those it let go (not those already acknowledged)."""
    released = []
    with ack_lock:  # faust's lock around acknowledgement bookkeeping
        for message in messages:
            if not message.acked:
                message.acked = True  # not through ``Consumer.ack``: never in ``_acked``
                consumer._unacked_messages.discard(message)
                released.append(message)
    return released


def settle(consumer: Any, messages: Iterable[Any]) -> None:
    """Forget acknowledged events faust still counts as in flight. Its ``ack`` leaves an event
    among the unacknowledged when the offset was acknowledged already (an event read again) or
    is below the commit; there it would hold off the checks of its partition and a rebalance's
    wait for the events in flight."""
    with ack_lock:
        for message in messages:
            if message.acked:
                consumer._unacked_messages.discard(message)
