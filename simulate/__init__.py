"""The portfolio simulator: plays core banking and the borrowers against a running stack.

Pure parts (portfolio, profiles, borrower decisions, the report) need no servers; ``engine``
drives a portfolio through Kafka and Temporal; ``bank`` is the simulated bank's case worker.
Randomness is seeded and lives here only, never in workflow code.
"""
