"""The stream processor's memory of delivered event ids: bounded, most recent kept."""

from __future__ import annotations

import pytest

from streams.ingest import DeliveredEvents

pytestmark = pytest.mark.unit


def test_remembers_up_to_capacity_and_forgets_the_oldest_first() -> None:
    delivered = DeliveredEvents(capacity=3)
    for event_id in ("e1", "e2", "e3"):
        delivered.add(event_id)
    delivered.add("e1")  # seen again: now the most recent
    delivered.add("e4")
    assert "e2" not in delivered
    assert {"e1", "e3", "e4"} == {e for e in ("e1", "e2", "e3", "e4") if e in delivered}
    assert len(delivered) == 3


def test_capacity_zero_remembers_nothing() -> None:
    delivered = DeliveredEvents(capacity=0)
    delivered.add("e1")
    assert "e1" not in delivered and len(delivered) == 0
