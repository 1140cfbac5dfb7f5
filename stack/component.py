"""What the stack knows about one supervised component: how to prepare, start and probe it."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from settings import Settings
from stack.ports import PortClaim


class Component(ABC):
    # A class attribute for single components; an instance's own for numbered replicas
    # (``kafka-2``, ``worker-1`` in the cluster topology). Pid file and log are named after it.
    name: str
    # Components of a lower phase are started (and healthy) before those of a higher one.
    phase: ClassVar[int] = 0
    startup_timeout: ClassVar[float] = 60.0
    stop_timeout: ClassVar[float] = 20.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir.resolve()

    @property
    @abstractmethod
    def address(self) -> str:
        """Where clients reach it, for status output."""

    def port_claims(self) -> list[PortClaim]:
        """Ports it binds; checked before starting so a clash gets a clear error."""
        return []

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Blocking one-off work before the process starts (downloads, config, formatting)."""

    @abstractmethod
    def command(self) -> list[str]:
        """The child process's argv."""

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def cwd(self) -> Path | None:
        return None

    @abstractmethod
    async def probe(self) -> None:
        """One real health check; raises (with a reason) unless the component is serving."""

    async def bootstrap(self) -> None:  # noqa: B027 - optional hook
        """Idempotent setup once healthy (topics, search attributes, ...)."""
