"""Staff identity: local accounts, signed credentials, and the keys behind them.

* ``keys``        — the Ed25519 key that signs credentials, and the public keys that verify them;
* ``credentials`` — a staff action signed for one staff member, case and action; desk sessions;
* ``accounts``    — the desk's local accounts file (development), hashed passwords and roles.
"""
