"""The figures `make bench` measures and the JSON file they live in (bench-results/latest.json).

The file is the single source of the docs' performance page (docs/performance.md):
`python -m benchmarks.report` renders it again without measuring anything.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final

RESULTS_DIR: Final = Path("bench-results")
LATEST: Final = RESULTS_DIR / "latest.json"
FORMAT_VERSION: Final = 1
FULL_SCAN_PAGE_SIZE: Final = 1000


@dataclass
class RunFigures:
    """What one poller invocation cost (or the mean of several, see :func:`mean_figures`)."""

    comms_requests: float = 0
    dynamodb_calls: float = 0
    dynamodb_items_read: float = 0
    dynamodb_items_written: float = 0
    put_events_calls: float = 0
    events: float = 0
    wall_seconds: float = 0
    cpu_seconds: float = 0  # CPU time of the handler's process: the handler's own work, not moto's
    peak_memory_bytes: float = 0  # tracemalloc peak during the invocation (0: not traced)
    max_rss_bytes: float = 0  # the handler process's resident high-water mark after the run
    true_changes: float = 0  # operations whose version moved since the previous run (simulator truth)
    incomplete: float = 0  # invocations that raised or did not report status "complete" (a sum, not a mean)
    comms_by_endpoint: dict[str, float] = field(default_factory=dict)
    comms_by_listing: dict[str, float] = field(default_factory=dict)  # as the handler's summary reports it
    dynamodb_by_operation: dict[str, float] = field(default_factory=dict)
    events_by_type: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunFigures:
        return cls(**_known_fields(cls, data))


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of the dataclass ``cls`` (missing ones keep its defaults)."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


@dataclass(frozen=True)
class FloorFigures:
    """What the follow-up cadence costs at least, from the simulator's truth (see benchmarks.floor);
    means over the measured runs."""

    every_run: float  # requests at least: a lower bound for any planner
    banded: float  # requests per run for the slower bands, estimated
    every_run_operations: float  # operations in the every-run band


def _mean_map(maps: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({key for m in maps for key in m})
    return {key: sum(m.get(key, 0) for m in maps) / len(maps) for key in keys}


def mean_figures(runs: list[RunFigures]) -> RunFigures:
    if not runs:
        return RunFigures()
    n = len(runs)
    scalar = {
        f.name: sum(getattr(r, f.name) for r in runs) / n
        for f in fields(RunFigures)
        if not isinstance(getattr(runs[0], f.name), dict)
    }
    scalar["incomplete"] = sum(r.incomplete for r in runs)
    # Peak memory is a maximum, not a sum: the mean would hide the worst run.
    scalar["peak_memory_bytes"] = max(r.peak_memory_bytes for r in runs)
    scalar["max_rss_bytes"] = max(r.max_rss_bytes for r in runs)
    return RunFigures(
        **scalar,
        comms_by_endpoint=_mean_map([r.comms_by_endpoint for r in runs]),
        comms_by_listing=_mean_map([r.comms_by_listing for r in runs]),
        dynamodb_by_operation=_mean_map([r.dynamodb_by_operation for r in runs]),
        events_by_type=_mean_map([r.events_by_type for r in runs]),
    )


def full_scan_requests(operations: int, page_size: int = FULL_SCAN_PAGE_SIZE) -> int:
    """Requests one scan of the whole window costs: every page, at least one."""
    return max(1, math.ceil(operations / page_size))


@dataclass
class WindowResult:
    """One workload: a window of ``operations`` with ``active`` of them in flight."""

    name: str
    operations: int
    active: int
    changes_per_run: float
    bootstrap: RunFigures
    steady: RunFigures  # mean over steady_runs
    steady_runs: list[RunFigures] = field(default_factory=list)
    full_scan_requests: int = 0
    generate_seconds: float = 0
    label: str = "steady"  # what the runs after the bootstrap are: "steady" or "burst"
    shape: str = "scheduled"  # how the operations spend their active time (comms_sim.generate.SHAPES)
    warmup_runs: int = 0  # unmeasured runs between the bootstrap and the measured ones
    floor: FloorFigures | None = None  # what the follow-up cadence costs at least (benchmarks.floor)

    @property
    def ratio(self) -> float:
        """Steady-state Comms requests per run against one full-window scan."""
        return self.steady.comms_requests / self.full_scan_requests if self.full_scan_requests else 0.0

    @property
    def max_requests(self) -> float:
        """Comms requests of the dearest measured run (issue 15: at most 2x the mean)."""
        return max((r.comms_requests for r in self.steady_runs), default=0.0)

    @property
    def floor_requests(self) -> float | None:
        """The cadence floor of a steady run: the every-run floor, the banded estimate and the active
        listings the runs made (PROCESSING pages, and SCHEDULED only where the poller could not prove it
        needless). None without a floor (a burst, a single run)."""
        if self.floor is None:
            return None
        return self.floor.every_run + self.floor.banded + self.steady.comms_by_listing.get("active", 0.0)

    def requests(self) -> dict[str, float | None]:
        """Requests per steady run: mean, max and floor, and the ratios the targets are about."""
        mean, floor = self.steady.comms_requests, self.floor_requests
        return {
            "mean": round(mean, 3),
            "max": self.max_requests,
            "floor": None if floor is None else round(floor, 3),
            "mean_over_floor": round(mean / floor, 3) if floor else None,
            "max_over_mean": round(self.max_requests / mean, 3) if mean else None,
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = round(self.ratio, 4)
        data["requests"] = self.requests()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowResult:
        values = _known_fields(cls, data)  # "ratio" is derived, not a field
        values["bootstrap"] = RunFigures.from_dict(data["bootstrap"])
        values["steady"] = RunFigures.from_dict(data["steady"])
        values["steady_runs"] = [RunFigures.from_dict(r) for r in data.get("steady_runs", [])]
        values["floor"] = None if data.get("floor") is None else FloorFigures(**data["floor"])
        return cls(**values)


@dataclass
class ImportFigures:
    """Median cold import times in fresh interpreters, milliseconds."""

    handler_ms: dict[str, float] = field(default_factory=dict)  # function -> `import app`
    dependencies_ms: dict[str, float] = field(default_factory=dict)  # function -> its third-party modules
    repetitions: int = 0
    dependencies: dict[str, list[str]] = field(default_factory=dict)  # function -> top-level packages

    def ratio(self, function: str) -> float:
        value, base = self.handler_ms.get(function), self.dependencies_ms.get(function)
        return value / base if value and base else 0.0


@dataclass
class LayerFigures:
    source: str  # "sam build", "pip install (manylinux2014_aarch64, 3.13)" or "not built"
    bytes: int = 0
    files: int = 0
    detail: str = ""


@dataclass
class BenchResults:
    generated_at: str
    quick: bool
    environment: dict[str, Any]
    settings: dict[str, Any]
    windows: list[WindowResult] = field(default_factory=list)
    imports: ImportFigures | None = None
    layer: LayerFigures | None = None
    notes: list[str] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "generated_at": self.generated_at,
            "quick": self.quick,
            "environment": self.environment,
            "settings": self.settings,
            "windows": [w.to_dict() for w in self.windows],
            "imports": None if self.imports is None else asdict(self.imports),
            "layer": None if self.layer is None else asdict(self.layer),
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResults:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported results format {data.get('format_version')!r}")
        imports = data.get("imports")
        layer = data.get("layer")
        return cls(
            generated_at=data["generated_at"],
            quick=data["quick"],
            environment=data["environment"],
            settings=data["settings"],
            windows=[WindowResult.from_dict(w) for w in data["windows"]],
            imports=None if imports is None else ImportFigures(**imports),
            layer=None if layer is None else LayerFigures(**layer),
            notes=list(data.get("notes", [])),
        )

    def save(self, path: Path = LATEST) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def load(path: Path = LATEST) -> BenchResults:
    return BenchResults.from_dict(json.loads(path.read_text(encoding="utf-8")))
