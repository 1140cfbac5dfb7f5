"""decisions/, schemas/ and engine/ are pure: the workflow runs them inside deterministic code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_MODULES = {"temporalio", "faust", "aiokafka", "random", "secrets", "time", "uuid"}
FORBIDDEN_CALLS = {"now", "utcnow", "today"}
PURE = ("decisions", "schemas", "engine")
"""Run inside the workflow sandbox (passed through): deterministic, no I/O."""


def _sources() -> list[Path]:
    return sorted(path for package in PURE for path in ROOT.glob(f"{package}/*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_io_clock_or_randomness(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names = {(node.module or "").split(".")[0]}
        else:
            names = set()
        assert not names & FORBIDDEN_MODULES, f"{path.name}:{node.lineno} imports {names}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} reads a clock"
        assert not (isinstance(node, ast.Constant) and isinstance(node.value, float)), (
            f"{path.name}:{getattr(node, 'lineno', '?')} has a float literal"
        )
