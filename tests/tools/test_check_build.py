"""check_build tells a layer built for CPython 3.13 on aarch64 from one that fails to import in Lambda."""

from __future__ import annotations

from pathlib import Path

from comms_bridge_tools.check_build import (
    Report,
    check_distributions,
    check_extensions,
    check_handlers,
    check_package_imports,
    check_pins,
    read_distributions,
    resolvable,
    wheel_tag_ok,
)

AARCH64_ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + (183).to_bytes(2, "little") + b"\x00" * 40
X86_64_ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + (62).to_bytes(2, "little") + b"\x00" * 40


def _dist(site: Path, name: str, version: str, tag: str, files: dict[str, bytes]) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    purelib = "true" if tag.endswith("-any") else "false"
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n")
    (info / "RECORD").write_text("".join(f"{path},," + "\n" for path in files))
    for path, content in files.items():
        target = site / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def test_wheel_tags() -> None:
    assert wheel_tag_ok("cp313-cp313-manylinux2014_aarch64")
    assert wheel_tag_ok("cp39-abi3-manylinux_2_17_aarch64")
    assert wheel_tag_ok("py3-none-any")
    assert not wheel_tag_ok("cp313-cp313-manylinux2014_x86_64")
    assert not wheel_tag_ok("cp311-cp311-manylinux2014_aarch64")
    assert not wheel_tag_ok("cp313-cp313-musllinux_1_1_aarch64")


def test_a_layer_for_the_target_passes(tmp_path: Path) -> None:
    _dist(
        tmp_path,
        "fastlib",
        "1.0",
        "cp313-cp313-manylinux2014_aarch64",
        {"fastlib/__init__.py": b"", "fastlib/_core.cpython-313-aarch64-linux-gnu.so": AARCH64_ELF},
    )
    _dist(tmp_path, "purelib", "2.0", "py3-none-any", {"purelib.py": b""})
    report = Report()
    dists = read_distributions(tmp_path)
    check_distributions(dists, report)
    check_extensions(tmp_path, report)
    assert report.problems == []
    assert resolvable(tmp_path, "fastlib._core")
    assert resolvable(tmp_path, "purelib")
    assert {d.name: d.top_level for d in dists} == {"fastlib": ("fastlib",), "purelib": ("purelib",)}


def test_a_layer_built_for_the_local_machine_fails(tmp_path: Path) -> None:
    _dist(
        tmp_path,
        "fastlib",
        "1.0",
        "cp311-cp311-manylinux2014_x86_64",
        {"fastlib/__init__.py": b"", "fastlib/_core.cpython-311-x86_64-linux-gnu.so": X86_64_ELF},
    )
    report = Report()
    check_distributions(read_distributions(tmp_path), report)
    check_extensions(tmp_path, report)
    assert len(report.problems) == 3  # wheel tags, file name, ELF machine
    assert not resolvable(tmp_path, "fastlib._core"), "CPython 3.13 on aarch64 would not find the module"


def test_pins_must_match(tmp_path: Path) -> None:
    _dist(tmp_path, "purelib", "2.0", "py3-none-any", {"purelib.py": b""})
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("purelib==2.1\nmissing[extra]==1.0\n# comment\n")
    report = Report()
    check_pins(read_distributions(tmp_path), report, requirements)
    assert report.problems == [
        "requirement purelib==2.1: layer has 2.0",
        "requirement missing==1.0 is not in the layer",
    ]


def test_imports_of_the_handlers_and_the_package_must_be_in_the_layer(tmp_path: Path) -> None:
    site = tmp_path / "SharedLayer" / "python"
    (site / "comms_bridge").mkdir(parents=True)
    (site / "comms_bridge" / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\nimport json\nif TYPE_CHECKING:\n    import mypy_boto3_sqs\n"
        "from comms_bridge import other\nimport jsonschema\n"
    )
    for function in ("PollerFunction", "ErrorsFunction"):
        (tmp_path / function).mkdir()
        (tmp_path / function / "helpers.py").write_text("")
        (tmp_path / function / "app.py").write_text("import helpers\nimport comms_bridge\nimport yaml\n")
    report = Report()
    check_package_imports(site, "comms_bridge", report)
    check_handlers(tmp_path, site, report)
    assert report.problems == [
        "comms_bridge imports jsonschema, which the layer does not provide for the target",
        "PollerFunction imports yaml, which the layer does not provide for the target",
        "ErrorsFunction imports yaml, which the layer does not provide for the target",
    ]
