"""Accord's models keep no record of which fields their input named (``schemas.lean``): the
saving a cached case depends on, and the pydantic feature nothing may then rely on."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from engine.state import CaseState
from schemas.lean import LeanModel
from tests.unit.case_driver import Driver

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
_PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGES = (
    *(
        pattern.rstrip("*")
        for pattern in _PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    ),
    "bench",
)
"""The installed packages (pyproject.toml) and the benchmarks."""


def _models(value: Any) -> list[BaseModel]:
    if isinstance(value, BaseModel):
        return [value, *(m for field in vars(value).values() for m in _models(field))]
    if isinstance(value, list | tuple | set | frozenset):
        return [m for item in value for m in _models(item)]
    if isinstance(value, dict):
        return [m for item in value.values() for m in _models(item)]
    return []


def test_a_case_state_read_back_keeps_no_field_sets() -> None:
    driven = _driven()
    state = CaseState.model_validate_json(driven.model_dump_json())  # as a run reads it
    models = _models(state)
    assert len(models) > 10 and state.agreement is not None
    plain = sorted({type(m).__name__ for m in models if not isinstance(m, LeanModel)})
    assert not plain, f"state models that keep a field set per instance: {plain}"
    assert all(not m.model_fields_set for m in models)
    assert state == driven  # nothing else changed


def test_a_lean_model_is_still_assigned_and_copied() -> None:
    state = CaseState.model_validate_json(_driven().model_dump_json())
    state.run_count += 1
    copied = state.model_copy(update={"round": state.round + 1})
    assert (copied.run_count, copied.round) == (state.run_count, state.round + 1)
    assert CaseState.model_validate_json(copied.model_dump_json()) == copied


def _driven() -> CaseState:
    driver = Driver().tracking()
    driver.run()
    return driver.state


def test_nothing_reads_which_fields_were_set() -> None:
    """``exclude_unset`` would drop every field of a lean model; ``model_fields_set`` is empty."""
    readers = []
    for path in sorted(p for package in PACKAGES for p in ROOT.glob(f"{package}/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "exclude_unset":
                readers.append(f"{path.relative_to(ROOT)}:{node.value.lineno} exclude_unset")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("model_fields_set", "__pydantic_fields_set__")
                and path.name != "lean.py"
            ):
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.attr}")
    assert not readers
