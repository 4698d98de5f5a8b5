"""Validate events against the detail-type JSON Schemas shipped in the layer.

The schemas are JSON Schema draft-04 because the EventBridge schema registry takes only that (or OpenAPI 3);
validating with the draft-04 validator means the tests read the files exactly as the registry does.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

# No stubs for jsonschema in requirements-dev.txt (types-jsonschema would remove the need for the ignore).
import jsonschema  # type: ignore[import-untyped]

from comms_bridge.events.detail_types import DetailType
from comms_bridge.events.schemas import load_schema

ENVELOPE_KEYS = frozenset(
    {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
)


@cache
def validator(detail_type: str) -> jsonschema.Draft4Validator:
    schema = load_schema(detail_type)
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def detail_errors(detail_type: str, detail: Mapping[str, Any]) -> list[str]:
    """Every violation, as readable strings (empty when valid)."""
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<detail>'}: {error.message}"
        for error in validator(detail_type).iter_errors(dict(detail))
    ]


def validate_detail(detail_type: str, detail: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``detail`` does not match the schema of ``detail_type``."""
    validator(detail_type).validate(dict(detail))


def validate_event(event: Mapping[str, Any]) -> None:
    """Validate a whole EventBridge event as a rule target receives it: envelope keys, then the detail."""
    missing = ENVELOPE_KEYS - event.keys()
    if missing:
        raise jsonschema.ValidationError(f"event envelope lacks {sorted(missing)}")
    detail_type = DetailType(event["detail-type"])
    validate_detail(detail_type, event["detail"])
