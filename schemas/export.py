"""JSON Schema files of every Kafka contract, for producers and consumers to validate against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.events import json_schemas as inbound_json_schemas
from schemas.outbound import CASE_EVENT, CASE_EVENTS_TOPIC


def event_json_schemas() -> dict[str, dict[str, Any]]:
    """Topic name → JSON Schema, inbound and outbound."""
    schemas = inbound_json_schemas()
    schemas[CASE_EVENTS_TOPIC] = CASE_EVENT.json_schema()
    return schemas


def write_json_schemas(directory: Path) -> list[Path]:
    """Write ``<topic>.schema.json`` for every topic into ``directory``; returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for topic, schema in sorted(event_json_schemas().items()):
        path = directory / f"{topic}.schema.json"
        document = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
