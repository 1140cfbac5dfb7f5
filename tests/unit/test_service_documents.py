"""The published OpenAPI documents (docs/openapi) are the ones the services serve, and the
policy registry picks a case's policy by its loan's portfolio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decisions.policy import DEFAULT_POLICY_FILE, PolicyError, load_policy
from decisions.portfolios import PolicyRegistry, register_policy
from services.registry import SERVICE_NAMES, openapi_documents
from settings import Settings

pytestmark = pytest.mark.unit
DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"


def test_published_openapi_documents_are_current() -> None:
    generated = openapi_documents(Settings(_env_file=None))
    for name in SERVICE_NAMES:
        published = json.loads((DOCS / f"{name}.json").read_text())
        assert published == json.loads(json.dumps(generated[name])), (
            f"docs/openapi/{name}.json is stale: run `accord service openapi`"
        )


def test_every_documented_error_says_whether_to_retry() -> None:
    for name, document in openapi_documents(Settings(_env_file=None)).items():
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                for status, response in operation["responses"].items():
                    if int(status) >= 400:
                        assert "x-retryable" in response, (name, path, method, status)


def _policy_text(version: str) -> str:
    text = DEFAULT_POLICY_FILE.read_text()
    default_version = load_policy().version
    return text.replace(f'"{default_version}"', f'"{version}"', 1)


def test_a_portfolio_picks_its_policy_and_anything_else_the_default(tmp_path: Path) -> None:
    mapped = tmp_path / "cards.toml"
    mapped.write_text(_policy_text("cards-1"))
    registry = PolicyRegistry(
        default=None, portfolios={"cards": mapped}, directory=tmp_path / "registered"
    )
    register_policy(registry.directory, "sim-86400", _policy_text("sim-1"))  # type: ignore[arg-type]

    assert registry.load("cards").version == "cards-1"
    assert registry.load("sim-86400").version == "sim-1"
    assert registry.load(None).version == load_policy().version
    assert registry.load("mortgages").version == load_policy().version  # not registered
    assert registry.file_for("../cards") is None  # never a path outside the directory


def test_a_broken_portfolio_policy_is_a_policy_error(tmp_path: Path) -> None:
    registry = PolicyRegistry(directory=tmp_path)
    register_policy(tmp_path, "broken", "version = 3\n")

    with pytest.raises(PolicyError):
        registry.load("broken")
    with pytest.raises(ValueError, match="not a valid name"):
        register_policy(tmp_path, "../escape", "")
