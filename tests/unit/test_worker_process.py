"""The worker process: what it puts out of the garbage collector's walks when it starts."""

import gc

from worker import freeze_startup_objects


def test_what_was_built_before_the_worker_started_is_not_walked_again() -> None:
    built_at_start = [[n] for n in range(100)]  # lists: always tracked by the collector
    try:
        freeze_startup_objects()
        built_later = [[n] for n in range(100)]
        walked = {id(tracked) for tracked in gc.get_objects()}
        assert gc.get_freeze_count() >= len(built_at_start)
        assert not any(id(item) in walked for item in built_at_start)
        assert all(id(item) in walked for item in built_later)
    finally:
        gc.unfreeze()
