"""One policy object per policy version in a worker process.

Every cached case needs its policy, and a policy is a few kilobytes of models: thousands of cases
under the same version share one instance instead of each keeping its own copy (each run of a
case reads its policy back from history, so without this every cache miss made a new one).
Sharing is safe because a policy is immutable; a version whose content changed without a new
version number is kept apart by its content.
"""

from __future__ import annotations

from decisions.policy import Policy

_SHARED: dict[tuple[str, str], Policy] = {}


def shared(policy: Policy) -> Policy:
    key = (policy.version, policy.model_dump_json())
    return _SHARED.setdefault(key, policy)
