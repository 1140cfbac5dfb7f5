"""faust's commit bookkeeping, made strict for the stream topics (every topic but the changelogs).

faust (0.15) commits a partition to the end of the first run of acknowledged offsets, and counts
offsets it never handed to an agent as done in two ways:

* **A jump in the offsets it reads** (``Consumer._add_gap``): the offsets in between are recorded
  as acknowledged. faust expects jumps from compaction and from transaction markers. Our topics
  are neither, and a jump there means events were fetched and never handed over: faust drops the
  rest of a fetch when the group's generation changed while it waited (``getmany``), though
  aiokafka's position has moved past it.
* **The head of the acknowledged offsets** (``_new_offset``): a run of them is committed if it
  starts at most one past the committed offset (``min(acked) - committed > 1`` refuses only a
  larger hole), and from anywhere when nothing is committed (no offset, or offset 0).

Either way events were committed without reaching a case: under load, a stream processor that
took over a dead one's partitions committed past runs of overdue events whose cases were never
opened (tests/integration/test_streams_faults.py).

Here a stream partition is committed only through a run of acknowledged offsets that starts
exactly at its committed offset, and a jump is not recorded. A hole left that way holds the
commit below it until ``streams.stall.StallWatch`` reads it again; a hole the broker really has
(a transactional producer's markers, a compacted topic) comes back when read again and is then
accepted (``accept_hole``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faust.types import TP
from faust.utils.functional import consecutive_numbers


def make_strict(consumer: Any, is_stream: Callable[[TP], bool]) -> None:
    """Replace the consumer's commit bookkeeping for the partitions ``is_stream`` selects (on the
    instance: faust calls both through ``self``). Idempotent."""
    if getattr(consumer, "_accord_strict_commits", False):
        return
    faust_new_offset = consumer._new_offset
    faust_add_gap = consumer._add_gap

    def new_offset(tp: TP) -> int | None:
        return committable(consumer, tp) if is_stream(tp) else faust_new_offset(tp)

    async def add_gap(tp: TP, offset_from: int, offset_to: int) -> None:
        if not is_stream(tp):
            await faust_add_gap(tp, offset_from, offset_to)

    consumer._new_offset = new_offset
    consumer._add_gap = add_gap
    consumer._accord_strict_commits = True


def committable(consumer: Any, tp: TP) -> int | None:
    """The offset to commit: one past the run of acknowledged offsets that starts at the
    committed offset; None while the offset there is not acknowledged (or nothing is known)."""
    acked: list[int] = consumer._acked[tp]
    committed: int | None = consumer._committed_offset[tp]
    if not acked or committed is None:
        return None
    acked.sort()
    below = 0
    while below < len(acked) and acked[below] < committed:
        below += 1  # acknowledged before a seek moved the commit past them: done already
    if below:
        consumer._acked_index[tp].difference_update(acked[:below])
        del acked[:below]
    if not acked or acked[0] != committed:
        return None
    run = next(consecutive_numbers(acked))
    del acked[: len(run)]
    consumer._acked_index[tp].difference_update(run)
    return int(run[-1]) + 1


def hole(consumer: Any, tp: TP) -> tuple[int, int] | None:
    """``(committed, first acknowledged)`` when acknowledged offsets wait above offsets that
    were never acknowledged: the range ``[committed, first)`` holds the commit."""
    acked = consumer._acked.get(tp)
    committed = consumer._committed_offset.get(tp)
    if not acked or committed is None:
        return None
    first = min(acked)
    return (int(committed), int(first)) if first > committed else None


def forget_acknowledged(consumer: Any, tp: TP) -> None:
    """Drop the partition's acknowledged offsets, before it is read again from its commit (the
    events read again are acknowledged anew: faust keeps an event it has seen acknowledged
    among the unacknowledged ones)."""
    consumer._acked.pop(tp, None)
    consumer._acked_index.pop(tp, None)


def accept_hole(consumer: Any, tp: TP, start: int, end: int) -> None:
    """Count ``[start, end)`` as done: the broker has no events there (read again, the same
    hole came back)."""
    offsets = range(start, end)
    consumer._acked[tp].extend(offsets)
    consumer._acked_index[tp].update(offsets)
