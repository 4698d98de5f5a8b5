"""The detail-type schemas are plain JSON Schema draft-04: the EventBridge schema registry takes only
``JSONSchemaDraft4`` (or OpenAPI 3), and template.yaml registers these very files, so a keyword of a later
draft would be ignored or rejected there while the tests still enforced it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from comms_bridge.events.detail_types import DetailType
from comms_bridge.events.schemas import load_schema
from tests.support.schemas import validator

DRAFT_04 = "http://json-schema.org/draft-04/schema#"

# The keywords of the draft-04 core and validation specifications. Anything else (const, $defs,
# if/then/else, contains, propertyNames, prefixItems, dependentRequired, unevaluated*, $id, $comment,
# examples, ...) came later.
DRAFT_04_KEYWORDS = frozenset(
    {
        "$schema", "id", "$ref", "title", "description", "default", "definitions", "type", "enum",
        "allOf", "anyOf", "oneOf", "not",
        "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
        "maxLength", "minLength", "pattern", "format",
        "items", "additionalItems", "maxItems", "minItems", "uniqueItems",
        "maxProperties", "minProperties", "required", "properties", "patternProperties",
        "additionalProperties", "dependencies",
    }
)  # fmt: skip
EXTENSIONS = frozenset({"x-detail-type"})


def _subschemas(schema: dict[str, Any], path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object in ``schema`` with its JSON pointer, following only keyword positions (so a
    property *named* like a keyword is not mistaken for one)."""
    yield path, schema
    for keyword in ("properties", "patternProperties", "definitions", "dependencies"):
        for name, sub in schema.get(keyword, {}).items():
            if isinstance(sub, dict):
                yield from _subschemas(sub, f"{path}/{keyword}/{name}")
    for keyword in ("allOf", "anyOf", "oneOf"):
        for index, sub in enumerate(schema.get(keyword, [])):
            yield from _subschemas(sub, f"{path}/{keyword}/{index}")
    for keyword in ("not", "additionalProperties", "additionalItems", "items"):
        sub = schema.get(keyword)
        if isinstance(sub, dict):
            yield from _subschemas(sub, f"{path}/{keyword}")
        elif isinstance(sub, list):
            for index, item in enumerate(sub):
                yield from _subschemas(item, f"{path}/{keyword}/{index}")


@pytest.mark.parametrize("detail_type", list(DetailType))
def test_schema_declares_and_passes_draft_04(detail_type: DetailType) -> None:
    schema = load_schema(detail_type)
    assert schema["$schema"] == DRAFT_04
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft4Validator
    jsonschema.Draft4Validator.check_schema(schema)


@pytest.mark.parametrize("detail_type", list(DetailType))
def test_schema_uses_no_keyword_newer_than_draft_04(detail_type: DetailType) -> None:
    for pointer, sub in _subschemas(load_schema(detail_type)):
        assert set(sub) <= DRAFT_04_KEYWORDS | EXTENSIONS, (pointer, sorted(set(sub) - DRAFT_04_KEYWORDS))
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(sub.get(bound, False), bool), (pointer, "draft-04 bounds flags are booleans")
        if "$ref" in sub:
            # draft-04 ignores every keyword beside $ref
            assert set(sub) == {"$ref"}, pointer
            assert sub["$ref"].startswith("#/definitions/"), pointer


def test_integer_counters_follow_draft_04() -> None:
    """Under draft-04 an ``integer`` is a number without a fraction part *as written*: ``4.0`` is not one
    (draft 6 and later would accept it). Producers emit Python ints, so this only makes the tests stricter."""
    stats_schema = load_schema(DetailType.STATUS_CHANGED)["definitions"]["stats"]
    stats = dict.fromkeys(stats_schema["required"], 0)
    checker = jsonschema.Draft4Validator(stats_schema)
    assert checker.is_valid(stats)
    assert not checker.is_valid(stats | {"total": 4.0})
    assert not checker.is_valid(stats | {"total": True})


def test_keyword_walk_reaches_nested_schemas() -> None:
    schema = {"definitions": {"a": {"anyOf": [{"properties": {"const": {"const": 1}}}]}}}
    found = {pointer: set(sub) for pointer, sub in _subschemas(schema)}
    assert found["#/definitions/a/anyOf/0/properties/const"] == {"const"}
    assert found["#/definitions/a/anyOf/0"] == {"properties"}


def test_support_validator_is_the_draft_04_one() -> None:
    for detail_type in DetailType:
        assert isinstance(validator(detail_type), jsonschema.Draft4Validator)
