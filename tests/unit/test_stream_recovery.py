"""The end of faust's table recovery (``streams.recovery``): the stream partitions are positioned
before anything of them can be fetched. A consumer that records what it is asked stands in for
faust's; the real broker is in tests/integration/test_streams_regressions.py, where the window
this closes is a matter of timing."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import faust
import pytest
from faust.types import TP

from streams.recovery import PositionedTableManager

pytestmark = pytest.mark.unit

COMMITTED = TP("loan.payment.v1", 0)
NEVER_COMMITTED = TP("loan.payment.v1", 1)
GENERATION = 7


class RecordingConsumer:
    """What faust's ``Consumer`` is asked at the end of a recovery, in order. Each seek yields to
    the loop, as the real one does (a broker round trip), so anything resumed earlier could be
    fetched meanwhile."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.resumed: set[TP] = set()
        self.fetchable_while_seeking: set[TP] = set()
        self._committed_offset: dict[TP, int | None] = {COMMITTED: 120}

    def _new_offset(self, tp: TP) -> int | None:
        return None

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        return None

    def assignment(self) -> set[TP]:
        return {COMMITTED, NEVER_COMMITTED}

    async def _round_trip(self) -> None:
        self.fetchable_while_seeking |= self.resumed
        await asyncio.sleep(0)

    async def perform_seek(self) -> None:
        await self._round_trip()
        self.calls.append(("seek to committed", None))

    async def seek_to_committed(self) -> Mapping[TP, int | None]:
        await self._round_trip()
        return {COMMITTED: 120, NEVER_COMMITTED: None}

    async def earliest_offsets(self, *partitions: TP) -> Mapping[TP, int]:
        await self._round_trip()
        return {tp: 0 for tp in partitions}

    async def seek_wait(self, offsets: Mapping[TP, int]) -> None:
        await self._round_trip()
        self.calls.append(("seek", dict(offsets)))

    def resume_partitions(self, partitions: set[TP]) -> None:
        self.resumed |= set(partitions)
        self.calls.append(("resume partitions", set(partitions)))

    def resume_flow(self) -> None:
        self.calls.append(("resume flow", None))


class IdleFetcher:
    async def maybe_start(self) -> None:
        return None


async def recovery_completed(consumer: RecordingConsumer) -> faust.App:
    app = faust.App("accord-recovery-test", TableManager=PositionedTableManager, autodiscover=False)
    app.consumer = consumer  # type: ignore[assignment]
    app.__dict__["_fetcher"] = IdleFetcher()  # a cached property: the instance's own value
    app.consumer_generation_id = GENERATION
    await app.tables.recovery.on_recovery_completed(GENERATION)
    return app


async def test_stream_partitions_are_sought_before_they_resume() -> None:
    consumer = RecordingConsumer()
    app = await recovery_completed(consumer)
    assert consumer.fetchable_while_seeking == set()
    assert consumer.calls == [
        ("seek to committed", None),
        ("seek", {NEVER_COMMITTED: 0}),  # the consumer's auto_offset_reset: earliest
        ("resume partitions", {COMMITTED, NEVER_COMMITTED}),
        ("resume flow", None),
    ]
    assert app.tables.recovery.completed.is_set()
    assert app.flow_control.is_active()
    # Where the never-committed partition's commits start (streams.commits), and they are strict.
    assert consumer._committed_offset == {COMMITTED: 120, NEVER_COMMITTED: 0}
    assert getattr(consumer, "_accord_strict_commits", False)


async def test_a_recovery_overtaken_by_another_rebalance_resumes_nothing() -> None:
    consumer = RecordingConsumer()
    app = faust.App("accord-recovery-test", TableManager=PositionedTableManager, autodiscover=False)
    app.consumer = consumer  # type: ignore[assignment]
    app.consumer_generation_id = GENERATION + 1
    await app.tables.recovery.on_recovery_completed(GENERATION)
    assert consumer.calls == []
    assert not app.tables.recovery.completed.is_set()
