"""MkDocs hook: the events reference, generated from the detail-type JSON Schemas and ``events/*.json``.

``docs/events.md`` holds the prose and the line ``<!-- events-reference -->``; at build time that line is
replaced by one section per JSON Schema (fields, types, constraints, rules across fields) followed by the
sample events that carry that detail-type. The schemas are the files the tests validate every event
against and the stack registers in its schema registry, so the reference cannot drift from them.

The schemas are found with ``importlib.resources``: in the package ``comms_bridge.events`` (folder
``schemas/``), or, in a tree from before the package split, in ``comms_bridge`` itself. A sample event
whose top-level detail fields differ from its schema is a warning, so ``mkdocs build --strict`` fails.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any, Final

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.events_reference")

MARKER: Final = "<!-- events-reference -->"
PAGE: Final = "events.md"
LAYER: Final = Path("layers/shared/python")
SAMPLES: Final = Path("events")
# Where a schema package may hold the schemas: the current layout first, then the flat one before it.
PACKAGES: Final = ("comms_bridge.events", "comms_bridge")
_JSON_TYPES: Final = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}
# The order of the page; a schema not listed here follows, by file name.
ORDER: Final = (
    "Email Operation Status Changed",
    "Email Operation Stats Changed",
    "Email Operation Stalled",
    "Email Operation Errors Summarized",
)

_build: dict[str, Path] = {"root": Path.cwd()}


def on_config(config: MkDocsConfig, **_: object) -> MkDocsConfig:
    """Remember the repository root and make the layer importable without an installed package."""
    root = _build["root"] = Path(config.config_file_path).resolve().parent
    layer = str(root / LAYER)
    if layer not in sys.path:
        sys.path.append(layer)
    return config


def on_page_markdown(markdown: str, *, page: Page, **_: object) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"{PAGE} has no {MARKER} line for the generated events reference")
    return markdown.replace(MARKER, render_reference(_build["root"]))


def on_serve(server: Any, **_: object) -> Any:
    """``mkdocs serve`` rebuilds the page when a schema or a sample event changes."""
    folder = schema_folder()
    if isinstance(folder, Path):
        server.watch(str(folder))
    server.watch(str(_build["root"] / SAMPLES))
    return server


# -- finding the files ------------------------------------------------------------------------------------


def schema_folder() -> Traversable:
    for package in PACKAGES:
        try:
            folder = resources.files(package) / "schemas"
        except ImportError:
            continue
        if folder.is_dir() and any(entry.name.endswith(".json") for entry in folder.iterdir()):
            return folder
    raise PluginError(f"no JSON Schemas found in the schemas/ folder of {' or '.join(PACKAGES)}")


def load_schemas(folder: Traversable) -> list[tuple[str, dict[str, Any]]]:
    """(file name, schema), in page order."""
    found = [
        (entry.name, json.loads(entry.read_text(encoding="utf-8")))
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    ]

    def rank(item: tuple[str, dict[str, Any]]) -> tuple[int, str]:
        detail_type = item[1].get("x-detail-type", "")
        return (ORDER.index(detail_type) if detail_type in ORDER else len(ORDER), item[0])

    return sorted(found, key=rank)


def load_samples(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """(path relative to the repository, event) for every ``events/*.json``."""
    return [
        (path.relative_to(root).as_posix(), json.loads(path.read_text(encoding="utf-8")))
        for path in sorted((root / SAMPLES).glob("*.json"))
    ]


def shown_path(folder: Traversable, root: Path) -> str:
    """The schemas' folder as a reader finds it in the repository."""
    try:
        return Path(str(folder)).resolve().relative_to(root).as_posix()
    except ValueError:
        return "schemas"


# -- rendering --------------------------------------------------------------------------------------------


def render_reference(root: Path) -> str:
    folder = schema_folder()
    where = shown_path(folder, root)
    samples = load_samples(root)
    used: set[str] = set()
    parts: list[str] = []
    for file_name, schema in load_schemas(folder):
        detail_type = schema.get("x-detail-type") or schema.get("title", file_name)
        stem = file_name.removesuffix(".json")
        matching = sorted(
            ((path, event) for path, event in samples if event.get("detail-type") == detail_type),
            key=lambda sample: (not stem.endswith(Path(sample[0]).stem), sample[0]),
        )
        used.update(path for path, _ in matching)
        parts.append(render_schema(detail_type, f"{where}/{file_name}", schema, matching))
    others = [(path, event) for path, event in samples if path not in used]
    if others:
        parts.append(render_other_samples(others))
    return "\n".join(parts)


def render_schema(
    detail_type: str, path: str, schema: dict[str, Any], samples: list[tuple[str, dict[str, Any]]]
) -> str:
    lines = [
        f"## {detail_type}",
        "",
        schema.get("description", ""),
        "",
        f"Schema `{path}` (`{schema.get('id', '')}`, JSON Schema draft-04). Every field below is required "
        "unless the table says otherwise, and no other field is allowed (`additionalProperties: false`, "
        "nested objects included).",
        "",
        "| field of `detail` | type | required | values and meaning |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| `{name}` | {kind} | {'yes' if required else 'no'} | {notes} |"
        for name, kind, required, notes in field_rows(schema)
    ]
    rules = [branch["description"] for branch in schema.get("anyOf", []) if "description" in branch]
    if rules:
        lines += ["", "Rules across fields (one of them holds):", "", *(f"- {rule}" for rule in rules)]
    for sample_path, event in samples:
        check_sample(sample_path, event, schema)
        lines += [
            "",
            f"Sample: `{sample_path}`, the whole EventBridge event as a rule target receives it.",
            "",
            "```json",
            compact_json(event),
            "```",
        ]
    if not samples:
        lines += ["", f"No sample event in `{SAMPLES.as_posix()}/` carries this detail-type."]
    lines.append("")
    return "\n".join(lines)


def render_other_samples(samples: list[tuple[str, dict[str, Any]]]) -> str:
    lines = [
        "## Other sample events",
        "",
        "Invocation events in `events/` that are not one of the detail-types above.",
    ]
    for path, event in samples:
        what = event.get("detail-type", "an event")
        lines += ["", f"`{path}` ({what}):", "", "```json", compact_json(event), "```"]
    lines.append("")
    return "\n".join(lines)


def field_rows(schema: dict[str, Any]) -> Iterator[tuple[str, str, bool, str]]:
    """(dotted name, type, required, notes) for every field, nested objects and array items included.

    A definition already spelled out in this schema is named again instead of repeated."""
    definitions: Mapping[str, Any] = schema.get("definitions", {})
    expanded: dict[str, str] = {}

    def walk(node: dict[str, Any], prefix: str) -> Iterator[tuple[str, str, bool, str]]:
        required = set(node.get("required", []))
        for name, prop in node.get("properties", {}).items():
            full = f"{prefix}{name}"
            resolved, ref, nullable = resolve(prop, definitions)
            kind = type_text(resolved, nullable, definitions)
            notes = constraints(resolved)
            description = prop.get("description") or resolved.get("description", "")
            if ref is not None and ref in expanded and resolved.get("type") in ("object", "array"):
                yield full, kind, name in required, join(notes, f"same fields as `{expanded[ref]}`")
                continue
            yield full, kind, name in required, join(notes, description)
            if ref is not None:
                expanded.setdefault(ref, full)
            if resolved.get("type") == "object":
                yield from walk(resolved, f"{full}.")
            elif resolved.get("type") == "array":
                items, item_ref, _ = resolve(resolved.get("items", {}), definitions)
                if items.get("type") == "object":
                    if item_ref is not None:
                        expanded.setdefault(item_ref, f"{full}[]")
                    yield from walk(items, f"{full}[].")

    yield from walk(schema, "")


def resolve(node: dict[str, Any], definitions: Mapping[str, Any]) -> tuple[dict[str, Any], str | None, bool]:
    """The node behind ``$ref``/``allOf``/``oneOf [null, X]``: (node, definition name, null allowed)."""
    nullable = False
    for key in ("oneOf", "anyOf"):
        choices = node.get(key)
        if choices and len(choices) == 2 and {"type": "null"} in choices:
            nullable = True
            node = next(choice for choice in choices if choice != {"type": "null"})
    if len(node.get("allOf", [])) == 1:
        node = node["allOf"][0]
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        name = ref.removeprefix("#/definitions/")
        return definitions[name], name, nullable
    return node, None, nullable


def type_text(node: dict[str, Any], nullable: bool, definitions: Mapping[str, Any]) -> str:
    kinds = node.get("type") or sorted({_JSON_TYPES[type(value)] for value in node.get("enum", [])}) or "any"
    names = list(kinds) if isinstance(kinds, list) else [kinds]
    if node.get("type") == "array":
        item = resolve(node.get("items", {}), definitions)[0].get("type")
        names = [f"array of {item}" if item else "array"]
    if nullable:
        names.append("null")
    return " or ".join(names)


def constraints(node: dict[str, Any]) -> str:
    parts: list[str] = []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{json.dumps(value)}`" for value in node["enum"]))
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    if "minimum" in node:
        parts.append(f"≥ {node['minimum']}")
    if "maximum" in node:
        parts.append(f"≤ {node['maximum']}")
    if "minLength" in node:
        parts.append(f"at least {node['minLength']} character(s)")
    if "maxLength" in node:
        parts.append(f"at most {node['maxLength']:,} characters")
    if "maxItems" in node:
        parts.append(f"at most {node['maxItems']} items")
    if node.get("uniqueItems"):
        parts.append("no duplicates")
    return "; ".join(parts)


def join(*texts: str) -> str:
    """One table cell: the parts in sentence case after the first word, without a closing full stop."""
    parts = [part.rstrip(".") for part in texts if part]
    parts = [part[0].lower() + part[1:] if part[1:2].islower() else part for part in parts]
    text = "; ".join(parts)
    return text.replace("|", "\\|")


def compact_json(value: Any, indent: int = 0) -> str:
    """Indented JSON, with objects and lists of plain values on one line (a counters object is one line)."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict) and value and any(isinstance(v, dict | list) for v in value.values()):
        items = [f"{inner}{json.dumps(k)}: {compact_json(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        items = [f"{inner}{compact_json(v, indent + 2)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False)


# -- keeping the samples honest ---------------------------------------------------------------------------


def check_sample(path: str, event: dict[str, Any], schema: dict[str, Any]) -> None:
    detail = event.get("detail")
    if not isinstance(detail, dict):
        log.warning("%s has no detail object", path)
        return
    missing = set(schema.get("required", [])) - set(detail)
    unknown = set(detail) - set(schema.get("properties", {}))
    if missing or unknown:
        log.warning(
            "%s does not match its schema: missing %s, not in the schema %s",
            path,
            sorted(missing) or "nothing",
            sorted(unknown) or "nothing",
        )
