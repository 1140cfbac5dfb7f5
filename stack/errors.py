"""The embedded stack's errors. Each message says what went wrong and what to do about it."""

from __future__ import annotations


class StackError(RuntimeError):
    """A stack operation failed; the message is meant for a human at a terminal."""


class ToolMissingError(StackError):
    """A program the stack needs (java, mvn, temporal) is not installed."""


class PortInUseError(StackError):
    """A port a component must bind is already taken by another process."""

    def __init__(self, component: str, host: str, port: int, setting: str, env_var: str) -> None:
        self.component, self.host, self.port = component, host, port
        super().__init__(
            f"{component}: port {port} on {host} is already in use "
            f"(setting {setting}). Stop whatever holds it (`ss -ltnp | grep :{port}`) "
            f"or pick another port, e.g. {env_var}=..."
        )


class ComponentUnhealthyError(StackError):
    """A component did not become healthy before its deadline, or exited while starting."""

    def __init__(self, component: str, reason: str, log_file: str, log_tail: str) -> None:
        self.component, self.reason, self.log_file = component, reason, log_file
        super().__init__(
            f"{component} did not become healthy: {reason}\n"
            f"--- last lines of {log_file} ---\n{log_tail}"
        )
