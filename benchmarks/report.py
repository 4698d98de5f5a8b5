"""Render the README performance section from bench-results/latest.json, without measuring anything.

python -m benchmarks.report            # writes docs/readme/performance.md and bench-results/performance.md
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

from benchmarks.render import (
    COLUMNS,
    growth_chart,
    human_bytes,
    imports_lines,
    layer_line,
    markdown_table,
    rows,
)
from benchmarks.results import LATEST, RESULTS_DIR, BenchResults, load

README_SECTION: Final = Path("docs/readme/performance.md")
RESULTS_PAGE: Final = RESULTS_DIR / "performance.md"


def _targets(results: BenchResults) -> list[str]:
    lines: list[str] = []
    biggest = max((w for w in results.windows if w.steady_runs), key=lambda w: w.operations, default=None)
    if biggest is not None:
        verdict = "met" if biggest.ratio <= 0.10 else "NOT met"
        lines.append(
            f"- Comms API requests per steady run with {biggest.operations:,} operations in the window: "
            f"{biggest.steady.comms_requests:.1f} = {biggest.ratio:.1%} of a full-window scan "
            f"({biggest.full_scan_requests:,} requests at pageSize=1000); target at most 10%: **{verdict}**."
        )
        events = biggest.steady.events
        lines.append(
            f"- `PutEvents` calls per steady run: {biggest.steady.put_events_calls:.1f} "
            f"for {events:.1f} events "
            f"(ceil(events / 10) = {-(-events // 10):.0f} when every run publishes the mean)."
        )
    if biggest is not None:
        lines.append(
            f"- DynamoDB items read / written per steady run with {biggest.operations:,} operations: "
            f"{biggest.steady.dynamodb_items_read:,.1f} / {biggest.steady.dynamodb_items_written:,.1f}, for "
            f"{biggest.steady.true_changes:,.1f} operations that changed and {biggest.active:,} active ones "
            f"(target: no read or write of an unchanged operation's item); "
            f"{biggest.steady.dynamodb_calls:.1f} calls: "
            + ", ".join(f"{k} {v:.1f}" for k, v in biggest.steady.dynamodb_by_operation.items())
            + "."
        )
    windows = [w for w in results.windows if w.steady_runs]
    if windows:
        lines.append(
            "- Peak traced memory of a run after the bootstrap: "
            + ", ".join(
                f"{human_bytes(w.steady.peak_memory_bytes)} ({w.name}: {w.steady.true_changes:,.0f} changes, "
                f"{w.active:,} active)"
                for w in windows
            )
            + "; of the bootstraps: "
            + ", ".join(
                f"{human_bytes(w.bootstrap.peak_memory_bytes)} ({w.name})"
                for w in results.windows
                if w.bootstrap.peak_memory_bytes
            )
            + "."
        )
    if results.imports is not None and results.imports.handler_ms:
        for function in sorted(results.imports.handler_ms):
            ratio = results.imports.ratio(function)
            verdict = "met" if ratio <= 1.2 else "NOT met"
            lines.append(
                f"- `{function}` handler import time: {ratio:.2f}x its third-party dependencies' "
                f"(target at most 1.2x): **{verdict}**."
            )
    return lines


def render_markdown(results: BenchResults, source: Path = LATEST) -> str:
    env = results.environment
    settings = results.settings
    parts = [
        "## Performance",
        "",
        f"Measured by `make bench` (`python -m benchmarks.run{' --quick' if results.quick else ''}`) on "
        f"{results.generated_at} ({env.get('python', '?')}, {env.get('platform', '?')}, "
        f"{env.get('cpus', '?')} CPUs), against the Comms API simulator and moto in server mode on loopback. "
        f"Generated from `{source.as_posix()}` by `python -m benchmarks.report`; do not edit by hand.",
        "",
        "Each workload is a generated 7-day window (1% of the operations active, about "
        f"{settings.get('changes_per_minute', '?')} changing per minute). The poller runs once to bootstrap "
        "(a silent baseline of the window), then the steady runs (their number is in the table), the "
        f"simulator clock advanced one schedule period ({settings.get('schedule_period_seconds', '?')} s) "
        "before each: 61 runs cover an hour, so every follow-up cadence of the poller (every run, 15 min, "
        "1 h) is in their mean, which is then the amortized cost. The handler runs in its own process, "
        "invoked as Lambda would invoke it; Comms requests are counted by the simulator, DynamoDB and "
        "EventBridge calls and entries by a counting proxy in front of moto, DynamoDB items as the "
        "handler reports them. Peak memory is `tracemalloc` around the invocation (two traced steady "
        "runs per window; the bootstrap of the largest window is not traced), max RSS the handler "
        "process's resident high-water mark; wall and handler CPU time are the means of the untraced "
        f"runs. The burst workload has {settings.get('burst_operations', '?')} operations completing in "
        "the same period. Wall time includes moto's own processing, which grows with the table (its Query "
        "and BatchGetItem are not constant-time); the handler's CPU time is its own work. Two moto costs "
        "that real AWS does not have are kept out: its TransactWriteItems deep-copies every table it "
        "touches (to roll back a failed transaction; none fails in a benchmark, so the bench turns the "
        "copy off), and its SendMessage slows down with the length of the queue (the rule targets' SQS "
        "stand-ins are emptied after every run, and events are counted as `PutEvents` entries at the "
        "proxy instead of through a catch-all queue).",
        "",
        markdown_table(COLUMNS, rows(results)),
        "",
        "Where the Comms requests of a steady run go (mean per run, as the handler reports them):",
        "",
        markdown_table(
            ["workload", "active", "recent", "hour buckets", "fetch", "true changes", "events"],
            [
                [
                    w.name,
                    *(
                        f"{w.steady.comms_by_listing.get(k, 0):.1f}"
                        for k in ("active", "recent", "buckets", "fetch")
                    ),
                    f"{w.steady.true_changes:.1f}",
                    f"{w.steady.events:.1f}",
                ]
                for w in results.windows
                if w.steady_runs
            ],
        ),
        "",
        "How the steady-state cost grows with the window (Comms API requests per run, poller vs one "
        "full-window scan at pageSize=1000):",
        "",
        "```text",
        growth_chart(results),
        "```",
        "",
        "Against the targets of the poller:",
        "",
        *_targets(results),
        "",
        "Cold start and package size:",
        "",
        *[f"- {line}" for line in imports_lines(results)],
        f"- {layer_line(results)}",
    ]
    if results.notes:
        parts += [
            "",
            "Runs that did not complete (the handler raised, or reported a status other than `complete`):",
            "",
            *[f"- {note}" for note in results.notes],
        ]
    took = settings.get("bench_seconds")
    parts += [
        "",
        "Reproduce with `make bench`"
        + (f" (this one took {took / 60:.0f} minutes)" if isinstance(took, int | float) else "")
        + " or `python -m benchmarks.run --quick`; the figures land in `bench-results/latest.json`.",
        "",
    ]
    return "\n".join(parts)


def write_reports(results: BenchResults, source: Path = LATEST) -> list[Path]:
    text = render_markdown(results, source)
    written = []
    for target in (README_SECTION, RESULTS_PAGE):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=LATEST)
    args = parser.parse_args(argv)
    for path in write_reports(load(args.results), args.results):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
