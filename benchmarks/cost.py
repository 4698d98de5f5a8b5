"""The bill per million published events, from what a benchmark measured (us-east-1 on-demand prices).

What grows with events: EventBridge's own charge, the DynamoDB request units the poller spends (measured
at the proxy by :mod:`benchmarks.capacity`), the poller's Lambda time and requests (one invocation per
run, billed for its wall time at the function's memory size), and the archive (ingest, and storage over
the retention). Fixed monthly items (CloudWatch metrics, alarms, the dashboard, KMS, Secrets Manager) do
not depend on events and are in docs/deploy.md.

    python -m benchmarks.cost [bench-results/latest.json]   # the table of the cost page, per window
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from benchmarks.bill import (
    ARCHIVE_GB_IN,
    ARCHIVE_GB_MONTH,
    EVENTS_PER_MILLION,
    LAMBDA_GB_SECOND,
    LAMBDA_PER_MILLION,
    READ_UNIT_PRICE,
    WRITE_UNIT_PRICE,
)
from benchmarks.results import LATEST, BenchResults, RunFigures, load

PER_MILLION: Final = 1_000_000
# One price list for the benchmarks: the cost page's (benchmarks.bill).
EVENTBRIDGE_PER_MILLION_EVENTS: Final = EVENTS_PER_MILLION
DYNAMODB_PER_MILLION_WRITE_UNITS: Final = WRITE_UNIT_PRICE
DYNAMODB_PER_MILLION_READ_UNITS: Final = READ_UNIT_PRICE
LAMBDA_ARM64_PER_GB_SECOND: Final = LAMBDA_GB_SECOND
LAMBDA_PER_MILLION_REQUESTS: Final = LAMBDA_PER_MILLION
ARCHIVE_PER_GB_INGESTED: Final = ARCHIVE_GB_IN
ARCHIVE_PER_GB_MONTH: Final = ARCHIVE_GB_MONTH
POLLER_MEMORY_MB: Final = 256  # template.yaml, Globals.Function.MemorySize
ARCHIVE_RETENTION_DAYS: Final = 90  # template.yaml, ArchiveRetentionDays default
ENVELOPE_BYTES: Final = 250
"""What an archived event holds besides its PutEvents entry: id, version, account, region, time."""


@dataclass(frozen=True)
class EventBill:
    """Dollars per million published events, item by item."""

    eventbridge: float
    dynamodb_reads: float
    dynamodb_writes: float
    lambda_compute: float
    lambda_requests: float
    archive: float
    read_units_per_event: float
    write_units_per_event: float

    @property
    def dynamodb(self) -> float:
        return self.dynamodb_reads + self.dynamodb_writes

    @property
    def beyond_eventbridge(self) -> float:
        """Everything the events cost besides EventBridge's own charge (issue 15's goal: under $0.75)."""
        return self.dynamodb + self.lambda_compute + self.lambda_requests + self.archive

    @property
    def total(self) -> float:
        return self.eventbridge + self.beyond_eventbridge

    def to_dict(self) -> dict[str, float]:
        return {
            **asdict(self),
            "dynamodb": self.dynamodb,
            "beyond_eventbridge": self.beyond_eventbridge,
            "total": self.total,
        }


def units_per_event(figures: RunFigures) -> tuple[float, float]:
    """DynamoDB read and write units per published event (0 when no event was published)."""
    if figures.events <= 0:
        return 0.0, 0.0
    return _total(figures.dynamodb_read_units) / figures.events, _total(
        figures.dynamodb_write_units
    ) / figures.events


def _total(units: float | dict[str, float]) -> float:
    """Units as the results keep them: a number, or a map per DynamoDB operation."""
    return float(sum(units.values())) if isinstance(units, dict) else float(units)


def bill_per_million_events(
    figures: RunFigures,
    *,
    memory_mb: int = POLLER_MEMORY_MB,
    archive_retention_days: int = ARCHIVE_RETENTION_DAYS,
) -> EventBill:
    """The bill of a million events published by runs like ``figures`` (a steady mean: per-run figures
    over the events of a run)."""
    if figures.events <= 0:
        raise ValueError("the runs published no event: no cost per event")
    runs_per_million = PER_MILLION / figures.events
    read_units, write_units = units_per_event(figures)
    gb_seconds = figures.wall_seconds * memory_mb / 1024 * runs_per_million
    event_bytes = figures.event_bytes / figures.events + ENVELOPE_BYTES
    gigabytes = event_bytes * PER_MILLION / 1e9
    # Kept for the retention, then deleted: a million events occupy their size for that many months.
    stored_months = archive_retention_days / 30 if archive_retention_days else 12
    return EventBill(
        eventbridge=EVENTBRIDGE_PER_MILLION_EVENTS,
        dynamodb_reads=read_units * DYNAMODB_PER_MILLION_READ_UNITS,
        dynamodb_writes=write_units * DYNAMODB_PER_MILLION_WRITE_UNITS,
        lambda_compute=gb_seconds * LAMBDA_ARM64_PER_GB_SECOND,
        lambda_requests=runs_per_million * LAMBDA_PER_MILLION_REQUESTS / PER_MILLION,
        archive=gigabytes * (ARCHIVE_PER_GB_INGESTED + ARCHIVE_PER_GB_MONTH * stored_months),
        read_units_per_event=read_units,
        write_units_per_event=write_units,
    )


def cost_rows(results: BenchResults) -> list[list[str]]:
    """One row per window whose measured runs published events: units per event and dollars per million
    events by item (the cost page's table)."""
    found = []
    for window in results.windows:
        if window.steady.events <= 0:
            continue
        bill = bill_per_million_events(window.steady)
        found.append(
            [
                window.name,
                f"{bill.read_units_per_event:.2f}",
                f"{bill.write_units_per_event:.2f}",
                f"${bill.dynamodb:.2f}",
                f"${bill.lambda_compute + bill.lambda_requests:.2f}",
                f"${bill.archive:.2f}",
                f"${bill.beyond_eventbridge:.2f}",
                f"${bill.total:.2f}",
            ]
        )
    return found


COST_HEADER: Final = (
    "window",
    "read units / event",
    "write units / event",
    "DynamoDB",
    "Lambda",
    "archive",
    "beyond EventBridge",
    "total per 1M events",
)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.cost [results.json]``: the bill per million events of each measured window."""
    args = sys.argv[1:] if argv is None else argv
    results = load(Path(args[0]) if args else LATEST)
    lines = ["| " + " | ".join(COST_HEADER) + " |", "|" + " --- |" * len(COST_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in cost_rows(results)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
