"""Embed the detail-type JSON Schemas in template.yaml's schema registry section.

CloudFormation needs a schema's content inline, while the tests and the code read the files under
``comms_bridge/events/schemas/``. This writes the files into the block between the two marker lines of the
template, so the registry always holds exactly what the tests validate against (a unit test checks they are
in sync).

    python -m comms_bridge_tools.sync_template_schemas [--check] [template.yaml]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from comms_bridge.events.detail_types import DetailType

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SCHEMA_DIR: Final = REPO_ROOT / "layers" / "shared" / "python" / "comms_bridge" / "events" / "schemas"
BEGIN: Final = "  # BEGIN GENERATED SCHEMAS"
END: Final = "  # END GENERATED SCHEMAS"
CONTENT_INDENT: Final = " " * 8


@dataclass(frozen=True)
class RegisteredSchema:
    logical_id: str
    detail_type: DetailType

    @property
    def file_name(self) -> str:
        return self.detail_type.schema_file

    @property
    def schema_name_suffix(self) -> str:
        return self.detail_type.replace(" ", "")


REGISTERED: Final = (
    RegisteredSchema("StatusChangedSchema", DetailType.STATUS_CHANGED),
    RegisteredSchema("StatsChangedSchema", DetailType.STATS_CHANGED),
    RegisteredSchema("StalledSchema", DetailType.STALLED),
    RegisteredSchema("ErrorsSummarizedSchema", DetailType.ERRORS_SUMMARIZED),
)


def render_section(schema_dir: Path = SCHEMA_DIR) -> str:
    """The generated resources, one AWS::EventSchemas::Schema per existing schema file."""
    blocks: list[str] = []
    for entry in REGISTERED:
        path = schema_dir / entry.file_name
        if not path.is_file():
            continue
        pretty = json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=2, ensure_ascii=False)
        content = "\n".join(CONTENT_INDENT + line for line in pretty.splitlines())
        blocks.append(
            f"  {entry.logical_id}:\n"
            "    Type: AWS::EventSchemas::Schema\n"
            "    Properties:\n"
            "      RegistryName: !GetAtt SchemaRegistry.RegistryName\n"
            f"      SchemaName: !Sub ${{EventSource}}@{entry.schema_name_suffix}\n"
            f"      Description: detail of {entry.detail_type} "
            f"(layers/shared/python/comms_bridge/events/schemas/{entry.file_name})\n"
            "      # EventBridge takes OpenApi3 or JSONSchemaDraft4 documents; content = the file as is.\n"
            "      Type: JSONSchemaDraft4\n"
            "      Content: |\n"
            f"{content}\n"
        )
    return "\n".join(blocks)


def synced(template_text: str, schema_dir: Path = SCHEMA_DIR) -> str:
    lines = template_text.splitlines(keepends=True)
    begin = next(i for i, line in enumerate(lines) if line.startswith(BEGIN))
    end = next(i for i, line in enumerate(lines) if line.startswith(END))
    if end < begin:
        raise ValueError("schema markers out of order in the template")
    section = render_section(schema_dir)
    return "".join([*lines[: begin + 1], section + ("\n" if section else ""), *lines[end:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("template", nargs="?", default=str(REPO_ROOT / "template.yaml"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the template is out of sync")
    args = parser.parse_args(argv)
    path = Path(args.template)
    current = path.read_text(encoding="utf-8")
    wanted = synced(current)
    missing = [e.file_name for e in REGISTERED if not (SCHEMA_DIR / e.file_name).is_file()]
    if missing:
        print(f"warning: schema files missing: {', '.join(missing)}", file=sys.stderr)
    if args.check:
        if wanted != current:
            print(
                f"{path}: schema section out of sync; run python -m comms_bridge_tools.sync_template_schemas"
            )
            return 1
        return 0
    if wanted != current:
        path.write_text(wanted, encoding="utf-8")
        print(f"{path}: schema section updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
