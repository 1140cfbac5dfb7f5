"""Settings -> ``ACCORD_*`` environment variables, so child processes see the same settings."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from settings import Settings

ENV_PREFIX = "ACCORD_"
NESTED_DELIMITER = "__"


def settings_to_env(settings: Settings) -> dict[str, str]:
    """Every field as the variable pydantic-settings reads it back from (secrets included)."""
    env: dict[str, str] = {}
    _flatten(settings, ENV_PREFIX, env)
    return env


def _flatten(model: BaseModel, prefix: str, env: dict[str, str]) -> None:
    for name in type(model).model_fields:
        value: Any = getattr(model, name)
        key = f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            _flatten(value, key + NESTED_DELIMITER, env)
        elif value is None:
            continue
        elif isinstance(value, SecretStr):
            env[key] = value.get_secret_value()
        elif isinstance(value, Path):
            env[key] = str(value.resolve())  # children may run in another directory
        elif isinstance(value, bool):
            env[key] = "true" if value else "false"
        elif isinstance(value, list | tuple | dict):
            env[key] = json.dumps(_plain(value))  # pydantic-settings reads complex values as JSON
        else:
            env[key] = str(value)


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment with the settings layered on top (they win over `.env`)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return inherited | settings_to_env(settings)


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
