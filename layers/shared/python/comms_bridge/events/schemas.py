"""Access to the JSON Schemas (draft-04) of the detail-types, shipped inside the layer package.

Only loading lives here: the layer does not depend on ``jsonschema`` at runtime. Validation for tests and
tools is in ``tests/support/schemas.py``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from comms_bridge.events.detail_types import DetailType


def schema_text(detail_type: str) -> str:
    """The schema file's text, e.g. for a schema registry."""
    name = DetailType(detail_type).schema_file
    return resources.files("comms_bridge.events").joinpath("schemas", name).read_text(encoding="utf-8")


@cache
def _cached_text(detail_type: DetailType) -> str:
    return schema_text(detail_type)


def load_schema(detail_type: str) -> dict[str, Any]:
    """A fresh parsed copy of the schema of ``detail_type`` (raises ValueError for an unknown one)."""
    schema: dict[str, Any] = json.loads(_cached_text(DetailType(detail_type)))
    return schema
