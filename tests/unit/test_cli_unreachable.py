"""With the stack down, the CLI says so in one line and names what to run, never a traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from settings import get_settings

pytestmark = pytest.mark.unit


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def stack_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    where = {
        "ACCORD_DATA_DIR": str(tmp_path),
        "ACCORD_TEMPORAL__ADDRESS": f"127.0.0.1:{_closed_port()}",
        "ACCORD_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}",
    }
    for name, value in where.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield where
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("command", "system", "setting"),
    [
        (["dlq", "inspect"], "Kafka", "ACCORD_KAFKA__BOOTSTRAP_SERVERS"),
        (["dlq", "redrive", "loan.overdue.v1"], "Kafka", "ACCORD_KAFKA__BOOTSTRAP_SERVERS"),
        (["case", "list"], "Temporal", "ACCORD_TEMPORAL__ADDRESS"),
        (["case", "show", "case-L-1-20260101"], "Temporal", "ACCORD_TEMPORAL__ADDRESS"),
    ],
)
def test_a_stack_that_is_down_is_named_in_one_line(
    stack_down: dict[str, str], command: list[str], system: str, setting: str
) -> None:
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    error = result.output.strip().splitlines()[-1]
    assert error == (
        f"Error: cannot reach {system} at {stack_down[setting]} — is the stack running? "
        "`accord stack status`"
    )
