"""The targets of issue 15 in one table: what each one reads from the results, its limit, the figure before.

Each :class:`Target` turns a :class:`~benchmarks.results.BenchResults` into a :class:`Verdict`: the
measured figure, PASS or FAIL against the limit, or "not measured" when the results hold nothing to read
it from (never a figure made up in its place). `make bench` prints the table, the results file keeps it
(``targets``) and the performance page shows it.

The "before" figures are those of ``bench-results/latest.json`` of 2026-11-28 (the numbers of issue 15).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from benchmarks.bill import CUSTOM_METRIC_PRICE
from benchmarks.cost import bill_per_million_events
from benchmarks.results import BenchResults, RunFigures, WindowResult
from comms_bridge.observability import custom_metric_count


@dataclass(frozen=True)
class Reading:
    value: float
    detail: str  # how the figure was read: the figures it came from


@dataclass(frozen=True)
class Target:
    key: str
    text: str  # what is measured, as the table shows it
    limit: float
    before: str  # the figure before issue 15, as text
    read: Callable[[BenchResults], Reading | None]
    unit: str = ""
    strict: bool = False  # PASS only below the limit (otherwise at or below it)
    at_least: bool = False  # PASS at or above the limit instead

    def judge(self, results: BenchResults) -> Verdict:
        reading = self.read(results)
        if reading is None:
            return Verdict(self.key, self.text, self.limit_text(), self.before, None, "not measured", None)
        if self.at_least:
            passed = reading.value >= self.limit
        else:
            passed = reading.value < self.limit if self.strict else reading.value <= self.limit
        return Verdict(
            self.key,
            self.text,
            self.limit_text(),
            self.before,
            reading.value,
            f"{_format(reading.value, self.unit)} ({reading.detail})"
            if reading.detail
            else _format(reading.value, self.unit),
            passed,
        )

    def limit_text(self) -> str:
        return (">= " if self.at_least else "< " if self.strict else "<= ") + _format(self.limit, self.unit)


@dataclass(frozen=True)
class Verdict:
    key: str
    text: str
    limit: str
    before: str
    value: float | None
    figure: str  # the value with how it was read, or "not measured"
    passed: bool | None  # None: not measured

    @property
    def mark(self) -> str:
        return "not measured" if self.passed is None else "PASS" if self.passed else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mark": self.mark}


def _format(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "ms":
        return f"{value:.0f} ms"
    if unit == "s":
        return f"{value:.1f} s"
    if unit == "$":
        return f"${value:.2f}"
    if unit == "$/month":
        return f"${value:.2f}/month"
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:,.0f}"


# -- what the targets read ---------------------------------------------------------------------------------


def window_named(results: BenchResults, name: str) -> WindowResult | None:
    return next((w for w in results.windows if w.name == name and w.steady_runs), None)


def requests_vs_floor(name: str) -> Callable[[BenchResults], Reading | None]:
    def read(results: BenchResults) -> Reading | None:
        window = window_named(results, name)
        if window is None or window.floor is None or window.floor.total is None:
            return None
        floor = window.floor
        assert floor.total is not None and floor.active is not None
        return Reading(
            window.steady.comms_requests / floor.total,
            f"{window.steady.comms_requests:.1f} requests per run / floor {floor.total:.1f} = every-run "
            f"{floor.every_run:.1f} + banded {floor.banded:.1f} + active {floor.active:.1f}",
        )

    return read


def band_spread(name: str) -> Callable[[BenchResults], Reading | None]:
    def read(results: BenchResults) -> Reading | None:
        window = window_named(results, name)
        if window is None or len(window.steady_runs) < 2 or not window.steady.comms_requests:
            return None
        worst = max(r.comms_requests for r in window.steady_runs)
        return Reading(
            worst / window.steady.comms_requests,
            f"largest run {worst:.0f} requests, mean {window.steady.comms_requests:.1f}",
        )

    return read


def steady_cpu_ms(name: str) -> Callable[[BenchResults], Reading | None]:
    def read(results: BenchResults) -> Reading | None:
        window = window_named(results, name)
        if window is None or not window.steady.cpu_seconds:
            return None
        return Reading(window.steady.cpu_seconds * 1000, f"mean of the untraced steady runs, {name}")

    return read


def bootstrap_cpu(name: str) -> Callable[[BenchResults], Reading | None]:
    def read(results: BenchResults) -> Reading | None:
        window = next((w for w in results.windows if w.name == name), None)
        if window is None or not window.bootstrap.cpu_seconds:
            return None
        invocations = max(1, len(window.bootstrap_runs))
        return Reading(
            window.bootstrap.cpu_seconds,
            f"{window.operations:,} operations, {invocations} invocation{'s' if invocations > 1 else ''}",
        )

    return read


def units(figures: RunFigures, kind: str) -> float | None:
    """Read or write capacity units of a run (``dynamodb_read_units`` / ``dynamodb_write_units``: a number,
    or a map per DynamoDB operation), None when the results do not carry them (absent or 0)."""
    value = getattr(figures, f"dynamodb_{kind}_units", None)
    if isinstance(value, dict):
        value = sum(value.values())
    # 0 is results from before the units were metered: a run that publishes costs units.
    return float(value) if value else None


def _steady_windows(results: BenchResults) -> list[WindowResult]:
    return [w for w in results.windows if w.steady_runs and w.label == "steady" and w.steady.events]


def units_per_event(kind: str) -> Callable[[BenchResults], Reading | None]:
    def read(results: BenchResults) -> Reading | None:
        windows = [w for w in _steady_windows(results) if units(w.steady, kind) is not None]
        largest = [w for w in windows if w.operations == max((x.operations for x in windows), default=0)]
        if not largest:
            return None
        total = sum(units(w.steady, kind) or 0.0 for w in largest)
        events = sum(w.steady.events for w in largest)
        return Reading(
            total / events,
            f"{', '.join(w.name for w in largest)}: {total:.1f} units for {events:.1f} events per run",
        )

    return read


def measured_units(results: BenchResults) -> tuple[float, float] | None:
    """DynamoDB read and write units per published event, when the results carry them."""
    reads, writes = units_per_event("read")(results), units_per_event("write")(results)
    return None if reads is None or writes is None else (reads.value, writes.value)


def bill(results: BenchResults) -> Reading | None:
    """Dollars per million events beyond EventBridge, as the cost page computes them
    (:func:`benchmarks.cost.bill_per_million_events`: DynamoDB units, the poller's Lambda time and the
    archive) over the largest steady windows, weighted by their events."""
    windows = [w for w in _steady_windows(results) if units(w.steady, "write") is not None]
    largest = [w for w in windows if w.operations == max((x.operations for x in windows), default=0)]
    if not largest:
        return None
    bills = [(bill_per_million_events(w.steady), w.steady.events) for w in largest]
    events = sum(weight for _, weight in bills)
    beyond = sum(b.beyond_eventbridge * weight for b, weight in bills) / events
    reads = sum(b.read_units_per_event * weight for b, weight in bills) / events
    writes = sum(b.write_units_per_event * weight for b, weight in bills) / events
    lambda_time = sum((b.lambda_compute + b.lambda_requests) * weight for b, weight in bills) / events
    return Reading(
        beyond,
        f"{', '.join(w.name for w in largest)}: DynamoDB {reads:.2f} RRU and {writes:.2f} WRU per event, "
        f"Lambda ${lambda_time:.2f} and the archive (benchmarks.cost)",
    )


def scale_bootstrap(results: BenchResults) -> Reading | None:
    """1 when the 1M window's bootstrap finished over several invocations, each within the function's
    timeout, with no event published twice and no change made during it lost; 0 otherwise."""
    window = next((w for w in results.windows if w.name == "1m"), None)
    if window is None or window.bootstrap_check is None:
        return None
    check = window.bootstrap_check
    runs = window.bootstrap_runs or [window.bootstrap]
    timeout = float(results.settings.get("poller_timeout_seconds", 60))
    slowest = max(r.wall_seconds for r in runs)
    ok = (
        not window.bootstrap.incomplete
        and slowest <= timeout
        and check.keys_published_twice == 0
        and check.changed_without_event == 0
    )
    return Reading(
        1.0 if ok else 0.0,
        f"{len(runs)} invocations, slowest {slowest:.1f} s of {timeout:.0f} s; "
        f"{check.changed_operations:,} operations changed during it, {check.changed_without_event} without "
        f"an event; {check.keys_published_twice} eventKeys published twice",
    )


METRICS_BEFORE: Final = 33  # poller 17 + ColdStart, errors 11 + 2 per alert target, before issue 15


def custom_metrics(results: BenchResults) -> tuple[int, str]:
    """How many custom metrics the stack emits (SNS and Slack alerts, Event Streams off): as the bench
    recorded it, else as the code counts it now (a count of what the code emits, not a measurement)."""
    count = results.settings.get("custom_metrics")
    if isinstance(count, int):
        return count, "recorded by the bench"
    return custom_metric_count(slack=True), "counted from the code"


def metrics_cost(results: BenchResults) -> Reading | None:
    count, source = custom_metrics(results)
    return Reading(
        count * CUSTOM_METRIC_PRICE, f"{count} custom metrics x ${CUSTOM_METRIC_PRICE:.2f}, {source}"
    )


TARGETS: Final[Sequence[Target]] = (
    Target(
        "requests-vs-floor-100k",
        "Comms requests per steady run / cadence floor, 100k scheduled",
        1.05,
        "12.8 / 11.3 = 1.13x",
        requests_vs_floor("100k"),
        unit="x",
    ),
    Target(
        "requests-vs-floor-100k-on-arrival",
        "Comms requests per steady run / cadence floor, 100k on-arrival",
        1.05,
        "9.0 / 6.3 = 1.43x",
        requests_vs_floor("100k-on-arrival"),
        unit="x",
    ),
    Target(
        "band-spread-100k",
        "largest steady run / mean requests per run, 100k scheduled",
        2.0,
        "40 / 12.8 = 3.13x",
        band_spread("100k"),
        unit="x",
    ),
    Target(
        "band-spread-100k-on-arrival",
        "largest steady run / mean requests per run, 100k on-arrival",
        2.0,
        "36 / 9.0 = 4.01x",
        band_spread("100k-on-arrival"),
        unit="x",
    ),
    Target(
        "handler-cpu-100k",
        "handler CPU per steady run, 100k scheduled",
        150,
        "589 ms",
        steady_cpu_ms("100k"),
        unit="ms",
    ),
    Target(
        "handler-cpu-100k-on-arrival",
        "handler CPU per steady run, 100k on-arrival",
        150,
        "502 ms",
        steady_cpu_ms("100k-on-arrival"),
        unit="ms",
    ),
    Target(
        "bootstrap-cpu-100k",
        "bootstrap CPU, 100k scheduled (half of 25.7 s)",
        25.7 / 2,
        "25.7 s",
        bootstrap_cpu("100k"),
        unit="s",
    ),
    Target(
        "read-units-per-event",
        "DynamoDB read units per published event (largest window)",
        1.0,
        "3.5",
        units_per_event("read"),
    ),
    Target(
        "write-units-per-event",
        "DynamoDB write units per published event (largest window)",
        1.0,
        "2",
        units_per_event("write"),
    ),
    Target(
        "bill-beyond-eventbridge",
        "bill per million events beyond EventBridge's $1.00",
        0.75,
        "$1.94",
        bill,
        unit="$",
        strict=True,
    ),
    Target(
        "bootstrap-1m",
        "1M window: bootstrap resumes within the timeout, nothing twice, nothing lost (1 = yes)",
        1.0,
        "not measured (largest window 100k, one 900 s invocation)",
        scale_bootstrap,
        at_least=True,
    ),
    Target(
        "custom-metrics",
        "CloudWatch custom metrics, fixed monthly cost (SNS and Slack alerts, Event Streams off)",
        METRICS_BEFORE * CUSTOM_METRIC_PRICE,
        f"{METRICS_BEFORE} x $0.30 = $9.90/month (the README said ~20)",
        metrics_cost,
        unit="$/month",
        strict=True,
    ),
)


def verdicts(results: BenchResults, targets: Sequence[Target] = TARGETS) -> list[Verdict]:
    return [target.judge(results) for target in targets]
