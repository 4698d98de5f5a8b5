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
    traced: bool = False  # this run ran under tracemalloc (its wall and CPU time are inflated)
    comms_by_endpoint: dict[str, float] = field(default_factory=dict)
    comms_by_listing: dict[str, float] = field(default_factory=dict)  # as the handler's summary reports it
    dynamodb_by_operation: dict[str, float] = field(default_factory=dict)
    events_by_type: dict[str, float] = field(default_factory=dict)
    # DynamoDB capacity units as on-demand billing counts them (benchmarks.capacity)
    dynamodb_read_units: float = 0
    dynamodb_write_units: float = 0
    dynamodb_units_by_operation: dict[str, float] = field(default_factory=dict)
    event_bytes: float = 0  # of the PutEvents entries sent, as EventBridge sizes them

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
    active: float | None = None  # requests at least for the active set (None: results from before it)

    @property
    def total(self) -> float | None:
        """The cadence floor of a steady run: every-run + banded + active listings."""
        return None if self.active is None else self.every_run + self.banded + self.active


def _combine(runs: list[RunFigures], divisor: int) -> RunFigures:
    """Every count summed over ``runs`` and divided by ``divisor``; memory is the worst run's."""
    numbers = [f.name for f in fields(RunFigures) if isinstance(getattr(runs[0], f.name), int | float)]
    scalar: dict[str, Any] = {
        name: sum(getattr(r, name) for r in runs) / divisor for name in numbers if name != "traced"
    }
    scalar["incomplete"] = sum(r.incomplete for r in runs)
    # Peak memory is a maximum, not a sum: the mean would hide the worst run.
    scalar["peak_memory_bytes"] = max(r.peak_memory_bytes for r in runs)
    scalar["max_rss_bytes"] = max(r.max_rss_bytes for r in runs)
    maps: dict[str, Any] = {
        f.name: _sum_map([getattr(r, f.name) for r in runs], divisor)
        for f in fields(RunFigures)
        if isinstance(getattr(runs[0], f.name), dict)
    }
    return RunFigures(**scalar, **maps)


def _sum_map(maps: list[dict[str, float]], divisor: int) -> dict[str, float]:
    keys = sorted({key for m in maps for key in m})
    return {key: sum(m.get(key, 0) for m in maps) / divisor for key in keys}


def mean_figures(runs: list[RunFigures]) -> RunFigures:
    return _combine(runs, len(runs)) if runs else RunFigures()


def total_figures(runs: list[RunFigures]) -> RunFigures:
    """What several invocations cost together (a bootstrap over several): sums, and the worst memory."""
    return _combine(runs, 1) if runs else RunFigures()


@dataclass(frozen=True)
class BootstrapCheck:
    """Whether a bootstrap lost or doubled anything (counted at the proxy, against the simulator's truth)."""

    changed_operations: int  # operations with a new version between the bootstrap's first and last invocation
    changed_without_event: int  # of those, how many got no event at all afterwards (lost changes)
    keys_published_twice: int  # eventKeys sent more than once from the bootstrap to the last measured run


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
    bootstrap_runs: list[RunFigures] = field(default_factory=list)  # per invocation, when it took several
    bootstrap_check: BootstrapCheck | None = None

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
        """The cadence floor of a steady run (:attr:`FloorFigures.total`: every-run floor, banded estimate
        and the active pages of the statuses someone is in). None without one (a burst, older results)."""
        return None if self.floor is None else self.floor.total

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
        values["bootstrap_runs"] = [RunFigures.from_dict(r) for r in data.get("bootstrap_runs", [])]
        check = data.get("bootstrap_check")
        values["bootstrap_check"] = None if check is None else BootstrapCheck(**check)
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
    targets: list[dict[str, Any]] = field(default_factory=list)  # benchmarks.targets verdicts, as written
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
            "targets": self.targets,
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
            targets=list(data.get("targets", [])),
        )

    def save(self, path: Path = LATEST) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def load(path: Path = LATEST) -> BenchResults:
    return BenchResults.from_dict(json.loads(path.read_text(encoding="utf-8")))
