"""Check what ``sam build`` produced for the Lambda target (python3.13 on arm64), without running it there.

    python -m comms_bridge_tools.check_build .aws-sam/build

The layer is built on a machine with another Python and CPU, so a wrong wheel would only show up as an
ImportError in Lambda. This checks, per installed distribution, the wheel tags (cp313 / abi3 and aarch64 or
pure Python) and the pinned version; per compiled module, its file name suffix and its ELF machine; and it
resolves every top-level package name the way the target interpreter would (its extension suffixes, not
ours). It prints the layer's size against the Lambda limits.

The layer installs ``layers/shared/requirements.lock`` (every transitive dependency, pinned with its
hashes). Every distribution in the layer must be one the lock names, at its version, and the other way
round; and the wheel each was installed from (pip's install report, written beside the layer by
``layers/shared/Makefile``) must have one of the lock's hashes for it.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.machinery import ExtensionFileLoader, FileFinder, SourceFileLoader
from pathlib import Path
from typing import Final

TARGET_PYTHON: Final = "313"
TARGET_MACHINE: Final = "aarch64"
TARGET_EXTENSION_SUFFIXES: Final = (
    f".cpython-{TARGET_PYTHON}-{TARGET_MACHINE}-linux-gnu.so",
    ".abi3.so",
    ".so",
)
ELF_MACHINE_AARCH64: Final = 183
UNZIPPED_LIMIT_BYTES: Final = 250 * 1024 * 1024  # function + all its layers
LAYER_NAME: Final = "SharedLayer"
FUNCTIONS: Final = ("PollerFunction", "ErrorsFunction", "StreamFunction")
# Names the handlers import at cold start; a missing one is an ImportError in Lambda.
REQUIRED_IMPORTS: Final = (
    "comms_bridge",
    "comms_bridge.comms.models",
    "comms_bridge.settings",
    "pydantic",
    "pydantic_core",
    "pydantic_core._pydantic_core",
    "aws_lambda_powertools",
    "requests",
    "boto3",
    "botocore",
)
LAYER_SOURCE: Final = Path(__file__).resolve().parents[2] / "layers" / "shared"
REQUIREMENTS_FILE: Final = LAYER_SOURCE / "requirements.txt"
LOCK_FILE: Final = LAYER_SOURCE / "requirements.lock"
INSTALL_REPORT: Final = f"{LAYER_NAME}.pip-report.json"  # beside the layer's build folder
_PIN: Final = re.compile(r"^\s*([A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#\\]+)")
_HASH: Final = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.problems.append(message)


@dataclass(frozen=True)
class Distribution:
    name: str
    version: str
    tags: tuple[str, ...]
    purelib: bool
    top_level: tuple[str, ...]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_distributions(site: Path) -> list[Distribution]:
    dists: list[Distribution] = []
    for info in sorted(site.glob("*.dist-info")):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        wheel = (info / "WHEEL").read_text(encoding="utf-8") if (info / "WHEEL").is_file() else ""
        tags = tuple(line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:"))
        purelib = "Root-Is-Purelib: true" in wheel
        dists.append(Distribution(name, version, tags, purelib, tuple(sorted(_top_level_names(info)))))
    return dists


def _top_level_names(info: Path) -> set[str]:
    """Top-level importable names of a distribution, from its RECORD (top_level.txt is optional)."""
    names: set[str] = set()
    record = info / "RECORD"
    if not record.is_file():
        return names
    for line in record.read_text(encoding="utf-8").splitlines():
        path = line.split(",", 1)[0]
        first = path.split("/", 1)[0]
        if not first or first.endswith((".dist-info", ".data")) or first in {"..", "bin"}:
            continue
        if "/" in path:
            if first.isidentifier():
                names.add(first)
        elif path.endswith(".py"):
            names.add(path.removesuffix(".py"))
        elif path.endswith(".so"):
            names.add(path.split(".", 1)[0])
    return names


def wheel_tag_ok(tag: str) -> bool:
    python, abi, platform = tag.split("-")
    if platform == "any":
        return True
    machine_ok = platform.endswith(f"_{TARGET_MACHINE}") and "linux" in platform and "musl" not in platform
    python_ok = python == f"cp{TARGET_PYTHON}" or (
        abi == "abi3" and int(python[3:] or 0) <= int(TARGET_PYTHON[1:])
    )
    return machine_ok and python_ok and (abi in {f"cp{TARGET_PYTHON}", "abi3", "none"})


def elf_machine(path: Path) -> int | None:
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def check_distributions(dists: Iterable[Distribution], report: Report) -> None:
    for dist in dists:
        if dist.purelib and all(tag.endswith("-any") for tag in dist.tags):
            continue
        if not dist.tags:
            report.fail(f"{dist.name} {dist.version}: no wheel tags (not installed from a wheel?)")
        elif not any(wheel_tag_ok(tag) for tag in dist.tags):
            report.fail(
                f"{dist.name} {dist.version}: wheel tags {', '.join(dist.tags)} do not fit cp313/aarch64"
            )
        else:
            report.notes.append(f"{dist.name} {dist.version}: {', '.join(dist.tags)}")


def check_pins(dists: Iterable[Distribution], report: Report, requirements: Path = REQUIREMENTS_FILE) -> None:
    installed = {normalize(d.name): d.version for d in dists}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if not match:
            continue
        name, version = normalize(match.group(1)), match.group(2)
        if name not in installed:
            report.fail(f"requirement {match.group(1)}=={version} is not in the layer")
        elif installed[name] != version:
            report.fail(f"requirement {match.group(1)}=={version}: layer has {installed[name]}")


@dataclass(frozen=True)
class Locked:
    name: str
    version: str
    hashes: frozenset[str]


def read_lock(lock: Path = LOCK_FILE) -> dict[str, Locked]:
    """The lock's entries by normalized name: ``name==version \\`` lines, each followed by its hashes."""
    entries: dict[str, Locked] = {}
    current: tuple[str, str] | None = None
    hashes: set[str] = set()
    for line in [*lock.read_text(encoding="utf-8").splitlines(), ""]:
        match = _PIN.match(line) if not line.startswith((" ", "#")) else None
        if match or not line.strip():
            if current is not None:
                entries[normalize(current[0])] = Locked(current[0], current[1], frozenset(hashes))
            current, hashes = (match.group(1), match.group(2)) if match else None, set()
        hashes.update(_HASH.findall(line))
    return entries


def check_lock(dists: Iterable[Distribution], report: Report, lock: Path = LOCK_FILE) -> None:
    """The layer holds exactly the lock's distributions at the lock's versions, and the lock pins each with
    its hashes (what ``pip --require-hashes`` installed from)."""
    locked = read_lock(lock)
    installed = {normalize(d.name): d for d in dists}
    for key, dist in sorted(installed.items()):
        if key not in locked:
            report.fail(f"{dist.name} {dist.version} is in the layer but not in {lock.name}")
        elif locked[key].version != dist.version:
            report.fail(
                f"{lock.name} pins {locked[key].name}=={locked[key].version}: layer has {dist.version}"
            )
    for key, entry in sorted(locked.items()):
        if key not in installed:
            report.fail(f"{lock.name} pins {entry.name}=={entry.version}: not in the layer")
        if not entry.hashes:
            report.fail(f"{lock.name} pins {entry.name}=={entry.version} without a hash")
    report.notes.append(f"{len(installed)} distributions, each as {lock.name} pins it")


def check_install_report(path: Path, report: Report, lock: Path = LOCK_FILE) -> None:
    """Each wheel pip installed into the layer has one of the lock's hashes for its name and version."""
    if not path.is_file():
        report.fail(f"{path}: missing (pip's install report; run make build again)")
        return
    locked = read_lock(lock)
    installed = json.loads(path.read_text(encoding="utf-8")).get("install", [])
    for item in installed:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        digest = item.get("download_info", {}).get("archive_info", {}).get("hashes", {}).get("sha256")
        entry = locked.get(normalize(name))
        if entry is None or entry.version != version:
            report.fail(f"installed {name} {version}, which {lock.name} does not pin")
        elif digest not in entry.hashes:
            report.fail(f"installed {name} {version} from a file whose hash {lock.name} does not list")
    report.notes.append(f"{len(installed)} wheels installed, each with a hash {lock.name} lists")


def extension_modules(site: Path) -> Iterator[Path]:
    yield from (path for path in site.rglob("*.so*") if path.is_file())


def check_extensions(site: Path, report: Report) -> None:
    for path in extension_modules(site):
        relative = path.relative_to(site)
        foreign_name = re.search(r"\.cpython-\d+|x86_64|amd64|darwin|win", path.name)
        if foreign_name and not path.name.endswith(TARGET_EXTENSION_SUFFIXES[:2]):
            report.fail(f"{relative}: compiled for another interpreter or platform")
        machine = elf_machine(path)
        if machine is not None and machine != ELF_MACHINE_AARCH64:
            report.fail(f"{relative}: ELF machine {machine}, not aarch64 ({ELF_MACHINE_AARCH64})")


def target_finder(directory: Path) -> FileFinder:
    """A path finder that resolves module names like CPython 3.13 on linux-aarch64 would."""
    return FileFinder(
        str(directory),
        (ExtensionFileLoader, list(TARGET_EXTENSION_SUFFIXES)),
        (SourceFileLoader, [".py"]),
    )


def resolvable(site: Path, dotted: str) -> bool:
    directory = site
    parts = dotted.split(".")
    for index, part in enumerate(parts):
        spec = target_finder(directory).find_spec(part)
        if spec is None:
            return False
        if index < len(parts) - 1:
            if not spec.submodule_search_locations:
                return False
            directory = Path(next(iter(spec.submodule_search_locations)))
    return True


def check_imports(site: Path, dists: Iterable[Distribution], report: Report) -> None:
    names = set(REQUIRED_IMPORTS)
    for dist in dists:
        names.update(dist.top_level)
    missing = sorted(name for name in names if not resolvable(site, name))
    for name in missing:
        report.fail(f"import {name}: not resolvable in the layer for CPython 3.13 on aarch64")
    report.notes.append(
        f"{len(names) - len(missing)} module names resolve for the target: {', '.join(sorted(names))}"
    )


class _RuntimeImports(ast.NodeVisitor):
    """Absolute imports executed at run time (not those under ``if TYPE_CHECKING:``)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.level == 0:
            self.names.add(node.module)


def third_party_imports(files: Iterable[Path], local: set[str]) -> set[str]:
    """Modules the files import at run time that are neither standard library nor ``local``."""
    visitor = _RuntimeImports()
    for path in files:
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return {
        name
        for name in visitor.names
        if (top := name.split(".")[0]) not in sys.stdlib_module_names
        and top not in local
        and top != "__future__"
    }


def check_package_imports(site: Path, package: str, report: Report) -> None:
    """What the layer's own package imports at run time must be in the layer too."""
    files = sorted((site / package).rglob("*.py"))
    for name in sorted(third_party_imports(files, {package})):
        if not resolvable(site, name):
            report.fail(f"{package} imports {name}, which the layer does not provide for the target")


def check_handlers(build_dir: Path, site: Path, report: Report) -> int:
    """Every handler file is there and everything it imports resolves in the layer; returns the largest
    function's unzipped size."""
    largest = 0
    for function in FUNCTIONS:
        directory = build_dir / function
        if not (directory / "app.py").is_file():
            report.fail(f"{directory / 'app.py'}: missing")
            continue
        largest = max(largest, tree_size(directory)[0])
        local = {path.stem for path in directory.glob("*.py")}
        for name in sorted(third_party_imports(directory.glob("*.py"), local)):
            if not resolvable(site, name):
                report.fail(f"{function} imports {name}, which the layer does not provide for the target")
        report.notes.append(f"{function}: imports resolve in the layer")
    return largest


def tree_size(root: Path) -> tuple[int, int]:
    """(unzipped bytes, zipped bytes) of a directory, zipped the way sam deploy uploads it."""
    unzipped = 0
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                unzipped += path.stat().st_size
                archive.write(path, path.relative_to(root))
    return unzipped, buffer.getbuffer().nbytes


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def check_build(build_dir: Path) -> Report:
    report = Report()
    layer = build_dir / LAYER_NAME
    site = layer / "python"
    if not site.is_dir():
        report.fail(f"{site}: missing (did sam build run?)")
        return report
    dists = read_distributions(site)
    check_distributions(dists, report)
    check_pins(dists, report)
    check_lock(dists, report)
    check_install_report(build_dir / INSTALL_REPORT, report)
    check_extensions(site, report)
    check_imports(site, dists, report)
    check_package_imports(site, "comms_bridge", report)
    schemas = sorted(p.name for p in (site / "comms_bridge" / "events" / "schemas").glob("*.json"))
    if not schemas:
        report.fail("comms_bridge/events/schemas/*.json missing from the layer")
    unzipped, zipped = tree_size(layer)
    functions_size = check_handlers(build_dir, site, report)
    if unzipped + functions_size > UNZIPPED_LIMIT_BYTES:
        report.fail(f"layer + function {mib(unzipped + functions_size)} exceed the 250 MiB unzipped limit")
    report.notes.append(f"schemas in layer: {', '.join(schemas)}")
    report.notes.append(
        f"layer size: {mib(unzipped)} unzipped ({unzipped} bytes), {mib(zipped)} zipped; "
        f"{len(dists)} distributions; limit 250 MiB unzipped for function + layers"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the sam build output for python3.13 on arm64.")
    parser.add_argument("build_dir", nargs="?", default=os.path.join(".aws-sam", "build"))
    args = parser.parse_args(argv)
    report = check_build(Path(args.build_dir))
    for note in report.notes:
        print(f"ok   {note}")
    for problem in report.problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print("build check:", "FAILED" if report.problems else "passed")
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
