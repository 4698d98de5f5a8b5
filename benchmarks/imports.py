"""Cold-start cost: a handler's import time against its third-party dependencies' import time, and the
size of the layer those dependencies ship in.

Every measurement is a fresh interpreter (a cold start has no warm ``sys.modules``); the median of
several repetitions, the two kinds interleaved so a noisy neighbour hits both alike.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

from benchmarks.results import ImportFigures, LayerFigures

REPO: Final = Path(__file__).resolve().parents[1]
LAYER_PYTHON: Final = REPO / "layers" / "shared" / "python"
# Entries of sys.modules that are no importable module.
_PSEUDO_MODULES: Final = frozenset({"cython_runtime"})

# Runs in the child: import the handler with Lambda's sys.path and report the time and the third-party
# modules it pulled in (in load order), so the dependency run imports exactly those.
_HANDLER_PROBE: Final = r"""
import json, sys, time
before = set(sys.modules)
t0 = time.perf_counter()
import app
elapsed = time.perf_counter() - t0
ours = {"app", "comms_bridge"}
third = [
    name for name in sys.modules
    if name not in before
    and name.partition(".")[0] not in sys.stdlib_module_names
    and name.partition(".")[0] not in ours
    and not name.startswith("_")
]
print(json.dumps({"seconds": elapsed, "modules": third}))
"""

_DEPENDENCY_PROBE: Final = r"""
import importlib, json, sys, time
names = json.loads(sys.argv[1])
t0 = time.perf_counter()
for name in names:
    try:
        importlib.import_module(name)
    except Exception:
        pass
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    env.update(extra)
    return env


def _run(code: str, *, cwd: Path, env: dict[str, str], args: list[str] | None = None) -> dict[str, object]:
    command = [sys.executable, "-c", code, *(args or [])]
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"import probe failed in {cwd}: {completed.stderr.strip()[-2000:]}")
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def measure_imports(
    functions: list[str], *, repetitions: int, environment: dict[str, str] | None = None
) -> ImportFigures:
    """Per function: median ``import app`` time, and median import time of exactly the third-party
    modules that handler loads, each in a fresh interpreter."""
    env = _child_env({"PYTHONPATH": str(LAYER_PYTHON), **(environment or {})})
    handler_times: dict[str, list[float]] = {name: [] for name in functions}
    dependency_times: dict[str, list[float]] = {name: [] for name in functions}
    modules: dict[str, list[str]] = {}
    for repetition in range(repetitions + 1):
        for name in functions:
            probe = _run(_HANDLER_PROBE, cwd=REPO / "functions" / name, env=env)
            loaded = [str(m) for m in probe["modules"]]  # type: ignore[attr-defined]
            modules.setdefault(name, [m for m in loaded if m not in _PSEUDO_MODULES])
            dependency = _run(_DEPENDENCY_PROBE, cwd=REPO, env=env, args=[json.dumps(modules[name])])
            if repetition:  # the first round warms the file cache and writes .pyc files: not counted
                handler_times[name].append(float(probe["seconds"]))  # type: ignore[arg-type]
                dependency_times[name].append(float(dependency["seconds"]))  # type: ignore[arg-type]
    return ImportFigures(
        handler_ms={name: statistics.median(times) * 1000 for name, times in handler_times.items()},
        dependencies_ms={name: statistics.median(times) * 1000 for name, times in dependency_times.items()},
        repetitions=repetitions,
        dependencies={name: sorted({m.partition(".")[0] for m in found}) for name, found in modules.items()},
    )


def _tree_size(root: Path) -> tuple[int, int]:
    total = files = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
            files += 1
    return total, files


BUILT_LAYER: Final = REPO / ".aws-sam" / "build" / "SharedLayer"


def measure_layer(*, allow_download: bool) -> LayerFigures:
    """The built layer's size: the `sam build` output if it exists, else the same dependency set installed
    for python3.13/arm64 by pip (wheels only, as `sam build` does without Docker), plus our package."""
    if BUILT_LAYER.is_dir():
        size, files = _tree_size(BUILT_LAYER)
        return LayerFigures(source="sam build (.aws-sam/build/SharedLayer)", bytes=size, files=files)
    if not allow_download:
        return LayerFigures(source="not built", detail="run `make build`, or `make bench` without --quick")
    with tempfile.TemporaryDirectory(prefix="comms-bridge-layer-") as tmp:
        target = Path(tmp) / "python"
        command = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--platform", "manylinux2014_aarch64", "--python-version", "3.13", "--implementation", "cp",
            "--only-binary=:all:", "--target", str(target),
            "-r", str(REPO / "layers" / "shared" / "requirements.txt"),
        ]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
        if completed.returncode != 0:
            return LayerFigures(source="not built", detail=f"pip failed: {completed.stderr.strip()[-300:]}")
        shutil.copytree(LAYER_PYTHON / "comms_bridge", target / "comms_bridge",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        size, files = _tree_size(target)
    return LayerFigures(
        source="pip install --platform manylinux2014_aarch64 --python-version 3.13 (what sam build packs)",
        bytes=size,
        files=files,
        detail="unzipped; Lambda's limit is 250 MB unzipped for function + layers",
    )
