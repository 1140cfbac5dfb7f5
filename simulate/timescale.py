"""Compressed time: a derived policy whose days pass in seconds, and the clock that matches it.

The derived policy carries ``durations.time_scale`` (policy seconds per server second); every
case opened under it runs on a ``decisions.clock.PolicyClock`` anchored at its opening, so the
simulated borrowers must read the same clock to pay on their due dates.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from decisions.clock import PolicyClock
from decisions.policy import DEFAULT_POLICY_FILE, is_pack_path, load_policy, resolve_contact_pack

SECONDS_PER_DAY = 86_400
TIME_SCALE_FIELD = "time_scale"


def time_scale_for(seconds_per_policy_day: Decimal) -> int:
    """Policy seconds per server second; 1 second per day → 86,400."""
    if seconds_per_policy_day <= 0:
        raise ValueError("seconds_per_policy_day: must be > 0")
    return max(1, int(Decimal(SECONDS_PER_DAY) / seconds_per_policy_day))


@dataclass(frozen=True)
class CompressedPolicy:
    path: Path
    version: str
    time_scale: int
    grace_days: int


def write_compressed_policy(
    source: Path | None,
    target: Path,
    seconds_per_policy_day: Decimal,
    durations: dict[str, int] | None = None,
    tag: str | None = None,
) -> CompressedPolicy:
    """Write ``source`` (None: the bundled default) to ``target`` with a version marking the
    scale, so every case records that it ran on compressed time; validated before returning.

    ``durations`` overrides policy durations (e.g. a benchmark that keeps signed cases asleep
    pushes the first instalment out); ``tag`` then marks the version too (``+sim86400+tag``)."""
    source_path = source if source is not None else DEFAULT_POLICY_FILE
    load_policy(source_path)  # a broken source is named as itself, not as the derived file
    with source_path.open("rb") as file:
        data = tomllib.load(file, parse_float=Decimal)
    scale = time_scale_for(seconds_per_policy_day)
    data["version"] = f"{data['version']}+sim{scale}" + (f"+{tag}" if tag else "")
    if durations:
        data.setdefault("durations", {}).update(durations)
    # The derived file lives elsewhere: a pack given by path must stay the same file.
    pack = data["contact_pack"]
    if is_pack_path(pack):
        data["contact_pack"] = str(resolve_contact_pack(pack, source_path.resolve()))
    data.setdefault("durations", {})[TIME_SCALE_FIELD] = scale
    target.parent.mkdir(parents=True, exist_ok=True)
    # Atomically: a case opening meanwhile reads the old policy or the new one, never half.
    scratch = target.with_suffix(target.suffix + ".tmp")
    scratch.write_text(to_toml(data))
    scratch.replace(target)
    policy = load_policy(target)
    return CompressedPolicy(
        path=target,
        version=policy.version,
        time_scale=scale,
        grace_days=policy.durations.grace_days,
    )


def policy_now(opened_at: datetime, server_now: datetime, time_scale: int) -> datetime:
    """What a case opened at ``opened_at`` under ``time_scale`` reads on its clock now."""
    if time_scale == 1:
        return server_now
    return PolicyClock(anchor=opened_at, time_scale=time_scale).policy_time(server_now)


def server_time(opened_at: datetime, policy_moment: datetime, time_scale: int) -> datetime:
    """When the server's clock reaches ``policy_moment`` on that case's clock."""
    if time_scale == 1:
        return policy_moment
    return PolicyClock(anchor=opened_at, time_scale=time_scale).server_time(policy_moment)


def to_toml(data: dict[str, Any]) -> str:
    """Enough TOML for a policy: scalars, arrays of scalars, nested tables."""
    lines: list[str] = []
    _table(data, [], lines)
    return "\n".join(lines) + "\n"


def _table(data: dict[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if path and scalars:
        lines.append(f"\n[{'.'.join(path)}]")
    for key, value in scalars.items():
        lines.append(f"{key} = {_value(value)}")
    for key, value in tables.items():
        _table(value, [*path, key], lines)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if hasattr(value, "isoformat"):  # TOML local times, e.g. quiet hours
        return value.isoformat()
    raise TypeError(f"to_toml: cannot write {type(value).__name__}")
