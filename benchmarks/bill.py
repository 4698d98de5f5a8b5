"""The monthly bill of the deploy guide (docs/deploy.md, "What it costs per month"), computed from the
benchmark's results: the DynamoDB units per event and the custom metric count are measured (or said to be
missing), everything else is a stated assumption. `python -m benchmarks.report` renders it into the
page between its cost markers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from benchmarks.render import markdown_table

# us-east-1 prices.
LAMBDA_GB_SECOND: Final = 0.0000133334  # arm64
LAMBDA_PER_MILLION: Final = 0.20
READ_UNIT_PRICE: Final = 0.125  # $ per million read request units (on demand)
WRITE_UNIT_PRICE: Final = 0.625  # $ per million write request units
STORAGE_GB_MONTH: Final = 0.45  # $0.25 stored + $0.20 point-in-time recovery
EVENTS_PER_MILLION: Final = 1.00
ARCHIVE_GB_IN: Final = 0.10
ARCHIVE_GB_MONTH: Final = 0.023
LOGS_GB: Final = 0.50
CUSTOM_METRIC_PRICE: Final = 0.30
ALARM_METRIC_PRICE: Final = 0.10
DASHBOARD_PRICE: Final = 3.00
KMS_KEY: Final = 1.00
SECRET: Final = 0.40
SECRET_PER_10K_CALLS: Final = 0.05

# Assumptions (the deploy guide states them beside the tables).
RUNS_PER_MONTH: Final = 43_200  # every minute, 30 days
EVENTS_PER_OPERATION: Final = 10
ENRICHED_SHARE: Final = 0.05
RUN_READ_UNITS: Final = 10  # checkpoint, lease, listing state: per run whatever happens
RUN_WRITE_UNITS: Final = 6
ENRICHER_READ_UNITS: Final = 5
ENRICHER_WRITE_UNITS: Final = 10
ARCHIVE_KB_PER_EVENT: Final = 1.5
ARCHIVE_DAYS: Final = 90
LOG_KB_PER_INVOCATION: Final = 4
ALARM_METRICS: Final = 12  # 11 alarms of template.yaml (Event Streams off), PublishFailures reads two metrics
# Before issue 15 (DynamoDB units measured before the conditional state writes; ~33 custom metrics).
UNITS_BEFORE: Final = (3.5, 2.0)


@dataclass(frozen=True)
class Volume:
    operations_per_day: int
    run_seconds: float  # mean poller invocation, mostly waiting on the Comms API
    secret_calls: int


VOLUMES: Final = (Volume(1_000, 1.0, 8_800), Volume(100_000, 5.0, 23_600))


def archive_per_million_events() -> float:
    """Dollars the archive adds per million events: the bytes in, and their storage for the retention."""
    gigabytes = 1_000_000 * ARCHIVE_KB_PER_EVENT / 1_000_000
    return gigabytes * ARCHIVE_GB_IN + gigabytes * ARCHIVE_GB_MONTH * ARCHIVE_DAYS / 30


def beyond_eventbridge(read_units: float, write_units: float) -> float:
    """Dollars per million events beyond EventBridge's own $1.00 that grow with events alone: their DynamoDB
    units and the archive. The monthly table bills the poller's Lambda per run; the bench target (per event,
    Lambda included) is benchmarks.cost's."""
    return read_units * READ_UNIT_PRICE + write_units * WRITE_UNIT_PRICE + archive_per_million_events()


def _money(value: float) -> str:
    return f"${value:,.2f}"


def monthly_rows(volume: Volume, units: tuple[float, float], metrics: int) -> list[tuple[str, str, float]]:
    """(item, arithmetic, dollars) for one volume."""
    reads, writes = units
    operations = volume.operations_per_day * 30
    events = operations * EVENTS_PER_OPERATION
    triggers = operations * ENRICHED_SHARE
    poller_gbs = RUNS_PER_MONTH * volume.run_seconds * 0.25
    rru = RUNS_PER_MONTH * RUN_READ_UNITS + events * reads + triggers * ENRICHER_READ_UNITS
    wru = RUNS_PER_MONTH * RUN_WRITE_UNITS + events * writes + triggers * ENRICHER_WRITE_UNITS
    archived_gb = (events + triggers) * ARCHIVE_KB_PER_EVENT / 1_000_000
    log_gb = (RUNS_PER_MONTH + triggers) * LOG_KB_PER_INVOCATION / 1_000_000
    stored_gb = volume.operations_per_day * 8 / 1_000_000
    calls = volume.secret_calls
    return [
        (
            "Lambda, poller",
            f"{RUNS_PER_MONTH:,} x {volume.run_seconds:g} s x 0.25 GB + {RUNS_PER_MONTH:,} requests",
            poller_gbs * LAMBDA_GB_SECOND + RUNS_PER_MONTH * LAMBDA_PER_MILLION / 1e6,
        ),
        (
            "Lambda, errors enricher",
            f"{triggers:,.0f} x 2 s x 0.25 GB + {triggers:,.0f} requests",
            triggers * 0.5 * LAMBDA_GB_SECOND + triggers * LAMBDA_PER_MILLION / 1e6,
        ),
        (
            "DynamoDB reads",
            f"{RUNS_PER_MONTH:,} x {RUN_READ_UNITS} + {events:,.0f} x {reads:.2f} + {triggers:,.0f} x "
            f"{ENRICHER_READ_UNITS} = {rru / 1e6:,.2f} M RRU",
            rru * READ_UNIT_PRICE / 1e6,
        ),
        (
            "DynamoDB writes",
            f"{RUNS_PER_MONTH:,} x {RUN_WRITE_UNITS} + {events:,.0f} x {writes:.2f} + {triggers:,.0f} x "
            f"{ENRICHER_WRITE_UNITS} = {wru / 1e6:,.2f} M WRU",
            wru * WRITE_UNIT_PRICE / 1e6,
        ),
        ("DynamoDB storage + PITR", f"~{stored_gb:g} GB", stored_gb * STORAGE_GB_MONTH),
        (
            "EventBridge events",
            f"{events:,.0f} + {triggers:,.0f} summaries",
            (events + triggers) * EVENTS_PER_MILLION / 1e6,
        ),
        (
            "EventBridge archive",
            f"{archived_gb:,.2f} GB in, ~{archived_gb * ARCHIVE_DAYS / 30:,.1f} GB kept",
            archived_gb * ARCHIVE_GB_IN + archived_gb * ARCHIVE_DAYS / 30 * ARCHIVE_GB_MONTH,
        ),
        ("EventBridge Scheduler", f"{RUNS_PER_MONTH:,} invocations (free tier)", 0.0),
        ("CloudWatch Logs", f"{log_gb:,.2f} GB", log_gb * LOGS_GB),
        (
            "CloudWatch custom metrics",
            f"{metrics} x ${CUSTOM_METRIC_PRICE:.2f}",
            metrics * CUSTOM_METRIC_PRICE,
        ),
        ("CloudWatch alarms", f"{ALARM_METRICS} alarm metrics x $0.10", ALARM_METRICS * ALARM_METRIC_PRICE),
        ("CloudWatch dashboard", "1 x $3.00 (free if the account has at most 3)", DASHBOARD_PRICE),
        ("KMS key of the alert topic", "1 x $1.00", KMS_KEY),
        ("Secrets Manager", f"1 x $0.40 + ~{calls:,} calls", SECRET + calls * SECRET_PER_10K_CALLS / 10_000),
    ]


def monthly_table(volume: Volume, units: tuple[float, float], metrics: int) -> tuple[str, float]:
    rows = monthly_rows(volume, units, metrics)
    total = sum(cost for _, _, cost in rows)
    body = [[item, arithmetic, _money(cost)] for item, arithmetic, cost in rows]
    body.append(["**total**", "", f"**≈ {_money(total)}**"])
    return markdown_table(["item", "arithmetic", "per month"], body), total


def fixed_monthly(metrics: int) -> float:
    """What the stack costs before any event: metrics, alarms, dashboard, key, secret."""
    return (
        metrics * CUSTOM_METRIC_PRICE
        + ALARM_METRICS * ALARM_METRIC_PRICE
        + DASHBOARD_PRICE
        + KMS_KEY
        + SECRET
    )


def render_cost(units: tuple[float, float] | None, count: int, source: str) -> str:
    """The generated part of the deploy guide's cost section."""
    measured = units is not None
    used = units if units is not None else UNITS_BEFORE
    lines: list[str] = [
        f"Generated from `{source}` by `python -m benchmarks.report`; do not edit by hand. DynamoDB units "
        "per event: "
        + (
            f"{used[0]:.2f} read and {used[1]:.2f} write (measured by `make bench`, largest window)"
            if measured
            else f"{used[0]} read and {used[1]} write (not measured by these results: the figures of "
            "before the conditional state writes)"
        )
        + f"; custom metrics: {count} (`comms_bridge.observability.custom_metric_count`, SNS and Slack "
        "alerts, Event Streams off).",
        "",
    ]
    for volume, title in zip(VOLUMES, ("1,000", "100,000"), strict=True):
        table, _ = monthly_table(volume, used, count)
        operations = volume.operations_per_day * 30
        lines += [
            f"**{title} operations a day** ({operations:,} a month, "
            f"{operations * EVENTS_PER_OPERATION:,} events):",
            "",
            table,
            "",
        ]
    per_million = EVENTS_PER_MILLION + beyond_eventbridge(*used)
    lines.append(
        f"Fixed, before any event: {_money(fixed_monthly(count))} a month ({count} custom metrics x $0.30 = "
        f"{_money(count * CUSTOM_METRIC_PRICE)}, alarms, dashboard, KMS key, secret). Each million events "
        f"costs about {_money(per_million)}: EventBridge $1.00, DynamoDB {used[0]:.2f} M RRU "
        f"{_money(used[0] * READ_UNIT_PRICE)} and {used[1]:.2f} M WRU {_money(used[1] * WRITE_UNIT_PRICE)}, "
        f"archive {_money(archive_per_million_events())}."
    )
    return "\n".join(lines)


def totals(units: tuple[float, float], metrics: int) -> Sequence[float]:
    return [monthly_table(volume, units, metrics)[1] for volume in VOLUMES]
