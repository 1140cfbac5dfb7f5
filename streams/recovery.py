"""faust's table recovery, ending with the stream partitions positioned before they resume.

After a rebalance faust rebuilds the tables from their changelogs with the stream partitions
paused, then (``Recovery.on_recovery_completed``) resumes them, seeks them to the committed
offsets and clears the agents' buffers, in that order, while its fetcher runs. Events fetched
between the resume and the seek were put in a buffer and cleared from it, yet counted as read:
the fetch in flight went on past the seek, so faust's read offset was ahead of the refetch and
the refetched events were dropped as already seen; a partition without a committed offset was
not sought at all (aiokafka's ``seek_to_committed`` leaves those where they are). Either way
those events never reached the agent, nothing acknowledged them, and the partition's commit
stayed below them for good (1,000,000 payments stopped ~2,000 short, every partition read to
its end).

``PositionedRecovery`` seeks every stream partition while it is still paused (to its committed
offset, or to its earliest one when nothing is committed: the consumer's ``auto_offset_reset``),
and only then resumes the partitions and the flow. (faust's fetcher cannot be stopped instead:
cancelled during a rebalance, it crashes the app.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Set
from typing import Any, cast

from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP
from faust.types.transports import ConsumerT

from streams.commits import make_strict


async def seek_to_committed_or_earliest(consumer: ConsumerT, partitions: Set[TP]) -> None:
    """Every partition in ``partitions`` at its committed offset, or its earliest one, which is
    then also where its commits start (``streams.commits``: nothing passes an offset never
    acknowledged, so the commit needs a start)."""
    await consumer.perform_seek()  # faust's own bookkeeping: committed and read offsets
    committed = await consumer.seek_to_committed()
    uncommitted = [tp for tp in partitions if not committed.get(tp)]  # None, or 0: not sought
    if uncommitted:
        earliest = await consumer.earliest_offsets(*uncommitted)
        # On the consumer's thread, like the seeks above (``Consumer.seek`` is not).
        await consumer.seek_wait(earliest)
        cast(Any, consumer)._committed_offset.update(earliest)


class PositionedRecovery(Recovery):
    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """faust's, with the stream partitions sought before they resume (the module's
        docstring)."""
        app = cast(Any, self.app)  # the concrete App: its fetcher is not on AppT
        consumer = app.consumer
        self.log.info("Restore complete!")
        await app.on_rebalance_complete.send()
        self._set_recovery_ended()
        finishing = [
            asyncio.ensure_future(
                table.on_recovery_completed(
                    self.actives_for_table[table], self.standbys_for_table[table]
                )
            )
            for table in self.tables.values()
        ]
        if finishing:
            await asyncio.wait(finishing)
        if app.consumer_generation_id != generation_id:
            self.log.warning(
                "Recovery rebalancing again app id %s param %s",
                app.consumer_generation_id,
                generation_id,
            )
            return
        # Still paused (since the assignment), so nothing of them is fetched until resumed.
        streams = {tp for tp in consumer.assignment() if not self._is_changelog_tp(tp)}
        make_strict(consumer, lambda tp: not self._is_changelog_tp(tp))
        if streams:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(
                seek_to_committed_or_earliest(consumer, streams),
                timeout=app.conf.broker_request_timeout,
            )
        consumer.resume_partitions(streams)
        self.completed.set()
        app.flow_control.resume()  # and clears the agents' buffers
        consumer.resume_flow()
        await app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")


class PositionedTableManager(TableManager):
    """faust's table manager with ``PositionedRecovery`` (``faust.App(TableManager=...)``)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = PositionedRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
