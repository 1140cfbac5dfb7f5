"""The embedded stack (no Docker), used by `accord stack` and the test fixtures.

- ``stack.orchestrator.Stack``: up / status / down / supervise a selection of components of one
  topology: ``dev`` (``kafka``, ``temporal``, ``worker``, ``stream``, ``core-banking``,
  ``esign``, ``contact``, ``webhooks``) or ``cluster``.
- ``stack.supervision``: supervisord per data dir (restarts with back-off, process groups);
  ``stack.launch`` runs a component from its launch file; ``stack.supervision_events`` records
  restarts and exits for `status`.
- ``stack.kafka``: the KRaft broker from Maven-resolved jars, the project's topics.
- ``stack.temporal``: the Temporal dev server on SQLite; ``SEARCH_ATTRIBUTES`` name -> type.
- ``stack.apps``: the worker and stream processor, each probed on its own endpoint.
- ``stack.services``: the embedded external systems and the webhook receiver.
- ``stack.cluster``: the production shape — Temporal built from source on PostgreSQL, three
  brokers, two workers, two stream processors, the UI (``stack.builds``, ``stack.postgres``).
- ``stack.processes``: log files and process helpers.
"""
