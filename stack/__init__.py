"""The embedded development stack (no Docker), used by `accord stack` and the test fixtures.

- ``stack.orchestrator.Stack``: up / status / down / supervise a selection of components
  (``kafka``, ``temporal``, ``worker``, ``stream``).
- ``stack.kafka``: the KRaft broker from Maven-resolved jars, the project's topics.
- ``stack.temporal``: the Temporal dev server on SQLite; ``SEARCH_ATTRIBUTES`` name -> type.
- ``stack.apps``: the worker and stream processor as supervised children.
- ``stack.processes``: pid files, logs, process-group termination.
"""
