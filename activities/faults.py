"""Failure injection for the simulators: the real systems fail, so the simulators must too.

Three kinds, matching what core banking, gateways and e-signature providers actually do:
transient errors (the next N calls of an operation fail), an outage (every call fails until
it is lifted) and permanent errors (the request itself is wrong and retrying cannot help).
"""

from __future__ import annotations

from dataclasses import dataclass, field


class SystemUnavailable(Exception):
    """The remote system did not answer or answered 5xx: retry later."""


class PermanentRejection(Exception):
    """The remote system refused the request itself (4xx-like): retrying cannot help."""


@dataclass
class Faults:
    transient: dict[str, int] = field(default_factory=dict)
    """Operation name -> how many of its next calls fail with ``SystemUnavailable``."""
    permanent: set[str] = field(default_factory=set)
    """Operations that always fail with ``PermanentRejection``."""
    down: bool = False
    """An outage: every operation fails with ``SystemUnavailable`` until lifted."""
    lose_response_once: set[str] = field(default_factory=set)
    """Operations whose next call takes effect but whose answer is lost (a timeout after
    commit), the case that makes idempotency keys necessary."""
    calls: dict[str, int] = field(default_factory=dict)

    def before(self, operation: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        if self.down:
            raise SystemUnavailable(f"{operation}: system unavailable (outage)")
        if operation in self.permanent:
            raise PermanentRejection(f"{operation}: rejected")
        remaining = self.transient.get(operation, 0)
        if remaining > 0:
            self.transient[operation] = remaining - 1
            raise SystemUnavailable(f"{operation}: transient failure")

    def after(self, operation: str) -> None:
        """Called once the operation took effect: may lose the answer."""
        if operation in self.lose_response_once:
            self.lose_response_once.discard(operation)
            raise SystemUnavailable(f"{operation}: timed out after the request was accepted")
