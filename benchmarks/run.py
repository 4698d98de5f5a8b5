"""`make bench`: what a poller run costs, against the Comms API simulator and moto server on loopback.

    python -m benchmarks.run            # windows of 1k, 10k, 100k (two shapes) operations + a 5k burst
    python -m benchmarks.run --quick    # 1k and 10k windows, a 1k burst, fewer repetitions (about a minute)
    python -m benchmarks.run --only 10k # one workload (names: 1k, 10k, 100k, 100k-on-arrival, burst-5k)
    python -m benchmarks.report         # render docs/performance.md again from latest.json

Prints the table and writes bench-results/latest.json, from which it renders the performance section
of docs/performance.md and bench-results/performance.md. A --quick or --only run writes
bench-results/quick.json and leaves the docs alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from benchmarks.harness import Workload, measure_workload
from benchmarks.imports import measure_imports, measure_layer
from benchmarks.render import terminal_report
from benchmarks.report import SCALE, targets_text, with_scale, write_reports
from benchmarks.results import LATEST, RESULTS_DIR, BenchResults
from benchmarks.targets import verdicts
from comms_bridge.observability import custom_metric_count
from comms_sim.generate import DEFAULT_SHAPE

QUICK: Final = RESULTS_DIR / "quick.json"
DEFAULT_POLLER_TIMEOUT: Final = 60  # template.yaml PollerTimeoutSeconds

SCHEDULE_PERIOD: Final = 60
CHANGES_PER_MINUTE: Final = 100
SEED: Final = 7


# Measured runs per window: an hour of runs covers every follow-up cadence of the poller (every run,
# 15 min, 1 h) exactly once, so their mean is the amortized cost. They follow an hour of unmeasured
# warm-up runs: a baseline bootstrap does not know when the window's operations completed, so the
# every-run follow-up grows to its steady size over the first hour (a mean taken from the bootstrap on
# is too low), and every bucket the bootstrap listed falls due together an hour later.
STEADY_RUNS: Final = 60
WARMUP_RUNS: Final = 60
FULL_WINDOWS: Final = (
    (1_000, "scheduled"),
    (10_000, "scheduled"),
    (100_000, "scheduled"),
    (100_000, "on-arrival"),
)
QUICK_WINDOWS: Final = ((1_000, "scheduled"), (10_000, "scheduled"))
QUICK_STEADY_RUNS: Final = 4
# The scale windows (`make bench-1m`, or --only): the bootstrap gets the function's own timeout per
# invocation and resumes from its checkpoint, so what a deployed poller does at 10x today's largest window
# is measured; 100k the same way for the side-by-side, 200k/300k to extrapolate moto's cost.
SCALE_WINDOWS: Final = (100_000, 200_000, 300_000, 1_000_000)
SCALE_RUN: Final = "1m"
TRACE_BOOTSTRAP_EVERY: Final = 2


def window_name(operations: int, shape: str) -> str:
    return f"{operations // 1000}k" + ("" if shape == DEFAULT_SHAPE else f"-{shape}")


def workloads(quick: bool) -> list[Workload]:
    found = [
        Workload(
            window_name(n, shape),
            n,
            active=n // 100,
            changes_per_minute=CHANGES_PER_MINUTE,
            steady_runs=QUICK_STEADY_RUNS if quick else STEADY_RUNS,
            shape=shape,
            warmup_runs=0 if quick else WARMUP_RUNS,
        )
        for n, shape in (QUICK_WINDOWS if quick else FULL_WINDOWS)
    ]
    burst = 1_000 if quick else 5_000
    found.append(
        Workload(
            f"burst-{burst // 1000}k",
            1_000,
            active=10,
            changes_per_minute=CHANGES_PER_MINUTE,
            steady_runs=1,
            burst=burst,
            label=f"burst ({burst:,} completing)",
        )
    )
    return found


def scale_name(operations: int) -> str:
    return "1m" if operations == 1_000_000 else f"{operations // 1000}k-resumable"


def scale_workloads(names: list[str]) -> list[Workload]:
    """The scale windows, plus any ``<n>k-resumable`` named in ``names`` (a smaller one to try the
    resumable bootstrap on, e.g. with --poller-timeout 30)."""
    sizes = list(SCALE_WINDOWS)
    sizes += [
        int(match.group(1)) * 1000
        for name in names
        if (match := re.fullmatch(r"(\d+)k-resumable", name)) and int(match.group(1)) * 1000 not in sizes
    ]
    return [
        Workload(
            scale_name(n),
            n,
            active=n // 100,
            changes_per_minute=CHANGES_PER_MINUTE,
            steady_runs=STEADY_RUNS,
            warmup_runs=WARMUP_RUNS,
            resumable_bootstrap=True,
            trace_bootstrap_every=TRACE_BOOTSTRAP_EVERY,
        )
        for n in sizes
    ]


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small windows, fewer repetitions")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--import-repetitions", type=int, default=None)
    parser.add_argument(
        "--output", type=Path, default=None, help=f"results file (default {LATEST}; with --quick {QUICK})"
    )
    parser.add_argument("--only", action="append", default=[], help="run only these workloads (e.g. 10k)")
    parser.add_argument(
        "--steady-runs", type=int, default=None, help="measured runs per window (partial runs)"
    )
    parser.add_argument(
        "--warmup-runs", type=int, default=None, help="warm-up runs per window (partial runs)"
    )
    parser.add_argument(
        "--poller-timeout",
        choices=("30", "60", "120", "300", "600", "900"),
        default=None,
        help="the template's PollerTimeoutSeconds (default: the template's default)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help=f"the 1M window and 100k beside it, resumable bootstraps (`make bench-1m`; writes {SCALE})",
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="do not regenerate the docs' performance page (a --quick run or one with --only never does)",
    )
    return parser


def _planned(args: argparse.Namespace, partial: bool) -> list[Workload]:
    """The workloads of this run: the default (or quick) ones, the scale ones asked for, and on a
    partial run the numbers of runs given on the command line."""
    planned = workloads(args.quick)
    if args.scale:
        args.only += ["100k-resumable", SCALE_RUN]
    planned += [w for w in scale_workloads(args.only) if w.name in args.only]
    if not partial:
        return planned
    return [
        dataclasses.replace(
            w,
            steady_runs=w.steady_runs if args.steady_runs is None else args.steady_runs,
            warmup_runs=w.warmup_runs if args.warmup_runs is None else args.warmup_runs,
        )
        for w in planned
    ]


def _new_results(args: argparse.Namespace, planned: list[Workload]) -> BenchResults:
    """The results file's header: where, with what settings, for which workloads."""
    return BenchResults(
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        quick=args.quick,
        environment={
            "python": f"Python {platform.python_version()}",
            "platform": f"{platform.system()} {platform.machine()}",
            "cpus": os.cpu_count(),
        },
        settings={
            "seed": args.seed,
            "schedule_period_seconds": SCHEDULE_PERIOD,
            "changes_per_minute": CHANGES_PER_MINUTE,
            "steady_runs": {w.name: w.steady_runs for w in planned},
            "warmup_runs": {w.name: w.warmup_runs for w in planned},
            "burst_operations": max(w.burst for w in planned),
            "page_size": 1000,
            "poller_timeout_seconds": int(args.poller_timeout or DEFAULT_POLLER_TIMEOUT),
            # SNS and Slack alerts, Event Streams off: comms_bridge.observability.custom_metric_count
            "custom_metrics": custom_metric_count(slack=True),
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The docs show full runs only: a quick or partial run keeps to its own file.
    partial = args.quick or bool(args.only) or args.scale
    if args.output is None:
        args.output = SCALE if args.scale else QUICK if partial else LATEST
    report = not (args.no_report or partial)
    started = time.perf_counter()

    planned = _planned(args, partial)
    results = _new_results(args, planned)
    for workload in planned:
        if args.only and workload.name not in args.only:
            continue
        window, problems = measure_workload(
            workload,
            seed=args.seed,
            results_dir=RESULTS_DIR,
            progress=_progress,
            schedule_period=SCHEDULE_PERIOD,
            parameters={"PollerTimeoutSeconds": args.poller_timeout} if args.poller_timeout else None,
        )
        results.windows.append(window)
        results.notes.extend(problems)

    _progress("import times (fresh interpreters) ...")
    repetitions = args.import_repetitions or (3 if args.quick else 7)
    results.imports = measure_imports(["poller", "errors"], repetitions=repetitions)
    _progress("layer size ...")
    results.layer = measure_layer(allow_download=not args.quick)

    elapsed = time.perf_counter() - started
    results.settings["bench_seconds"] = round(elapsed, 1)
    judged = results if partial else with_scale(results)
    results.targets = [v.to_dict() for v in verdicts(judged)]
    results.save(args.output)
    print(terminal_report(results))
    print("\nTargets of issue 15 (before: bench-results/latest.json of 2026-11-28):")
    print(targets_text(judged))
    print(f"\nwrote {args.output} in {elapsed:.0f} s")
    if report:
        for path in write_reports(results, args.output):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
