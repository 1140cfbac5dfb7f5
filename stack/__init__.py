"""The embedded stack (no Docker), used by `accord stack` and the test fixtures.

- ``stack.orchestrator.Stack``: up / status / down / supervise a selection of components of one
  topology: ``dev`` (``kafka``, ``temporal``, ``worker``, ``stream``) or ``cluster``.
- ``stack.kafka``: the KRaft broker from Maven-resolved jars, the project's topics.
- ``stack.temporal``: the Temporal dev server on SQLite; ``SEARCH_ATTRIBUTES`` name -> type.
- ``stack.apps``: the worker and stream processor as supervised children.
- ``stack.cluster``: the production shape — Temporal built from source on PostgreSQL, three
  brokers, two workers, two stream processors, the UI (``stack.builds``, ``stack.postgres``).
- ``stack.processes``: pid files, logs, process-group termination.
"""
