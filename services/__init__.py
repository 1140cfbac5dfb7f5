"""The embedded stand-ins for the bank's external systems, and Accord's webhook receiver.

Each is a small FastAPI service with its own durable state (SQLite under the data dir), the
same HTTP contract as the adapters in ``activities/`` speak (``schemas/http``), an OpenAPI
document, fault injection (``/admin/faults``) and, where a person takes part, server-rendered
pages. ``accord stack up`` runs them as components; ``accord service run NAME`` runs one.

- ``core_banking``: loans, payments and statuses learned from the ``loan.*`` topics; ledger,
  credit record, contact details; restructures applied once per agreement.
- ``esign``: envelopes with expiry, a signing page, completion callbacks to Accord.
- ``contact``: SMS, e-mail and calls recorded with their status; an inbox page per recipient.
- ``webhooks``: Accord's receiver for the provider callbacks; tells the case through
  ``case_calls`` (the one module that calls a case from outside the workflow package).
"""
