"""The Avro contracts of our topics (schemas/*.avsc), for tests and tooling.

Records travel as JSON (orjson) on the hot path; the .avsc files are the documented contract a
consumer in another language can rely on. `validate` proves a JSON record matches it, so the two
cannot drift apart unnoticed. Pure: no Faust, no Kafka.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson
from fastavro import parse_schema
from fastavro.validation import validate as _fastavro_validate

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_names() -> list[str]:
    """Every schema in schemas/, e.g. "risk.events"."""
    return sorted(p.name.removesuffix(".avsc") for p in SCHEMA_DIR.glob("*.avsc"))


def load_schema(name: str) -> dict[str, Any]:
    """The schema named like its file without .avsc ("risk.events"), as JSON (a fresh copy)."""
    path = SCHEMA_DIR / f"{name}.avsc"
    if not path.is_file():
        raise FileNotFoundError(f"no schema {name!r} in {SCHEMA_DIR} (have: {', '.join(schema_names())})")
    return orjson.loads(path.read_bytes())


@cache
def parsed_schema(name: str) -> dict[str, Any]:
    """The fastavro-parsed schema (parsing is the slow part: done once per name)."""
    return parse_schema(load_schema(name))


def validate(record: dict[str, Any], schema_name: str) -> None:
    """Raise fastavro's ValidationError (listing every bad field) unless record matches the schema."""
    _fastavro_validate(record, parsed_schema(schema_name), raise_errors=True)
