"""The benchmark's results file and its rendering: round trip, means, ratios, tables (no servers)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.bill import VOLUMES, beyond_eventbridge, monthly_table
from benchmarks.cost import bill_per_million_events
from benchmarks.render import bar, growth_chart, human_bytes, markdown_table, rows, terminal_report
from benchmarks.report import (
    COST_END,
    COST_PAGE,
    COST_START,
    DOCS_PAGE,
    SECTION_END,
    SECTION_START,
    cost_markdown,
    render_markdown,
    replace_section,
    section,
    targets_text,
)
from benchmarks.results import (
    LATEST,
    BenchResults,
    BootstrapCheck,
    FloorFigures,
    ImportFigures,
    LayerFigures,
    RunFigures,
    WindowResult,
    full_scan_requests,
    load,
    mean_figures,
    total_figures,
)
from benchmarks.targets import Verdict, verdicts


def window(
    name: str, operations: int, steady_requests: float, *, shape: str = "scheduled", warmup_runs: int = 0
) -> WindowResult:
    runs = [
        RunFigures(
            comms_requests=steady_requests - 1, events=8, peak_memory_bytes=2_000_000, max_rss_bytes=9e7
        ),
        RunFigures(
            comms_requests=steady_requests + 1, events=12, peak_memory_bytes=3_000_000, max_rss_bytes=8e7
        ),
    ]
    return WindowResult(
        name=name,
        operations=operations,
        active=operations // 100,
        changes_per_run=100,
        bootstrap=RunFigures(comms_requests=operations / 1000 + 5, dynamodb_items_written=2 * operations),
        steady=mean_figures(runs),
        steady_runs=runs,
        full_scan_requests=full_scan_requests(operations),
        shape=shape,
        warmup_runs=warmup_runs,
        floor=FloorFigures(every_run=3.0, banded=1.5, every_run_operations=600) if warmup_runs else None,
    )


def results() -> BenchResults:
    return BenchResults(
        generated_at="2026-01-05 09:00 UTC",
        quick=False,
        environment={"python": "Python 3.13.0", "platform": "Linux aarch64", "cpus": 2},
        settings={"steady_runs": 2, "schedule_period_seconds": 60, "changes_per_minute": 100},
        windows=[
            window("1k", 1_000, 3),
            window("100k", 100_000, 12, warmup_runs=60),
            window("100k-on-arrival", 100_000, 5, shape="on-arrival", warmup_runs=60),
        ],
        imports=ImportFigures(
            handler_ms={"poller": 110.0},
            dependencies_ms={"poller": 100.0},
            repetitions=5,
            dependencies={"poller": ["boto3"]},
        ),
        layer=LayerFigures(source="sam build", bytes=30 * 1024 * 1024, files=100),
    )


def test_full_scan_costs_one_request_per_page_and_at_least_one() -> None:
    assert full_scan_requests(100_000) == 100
    assert full_scan_requests(100_001) == 101
    assert full_scan_requests(0) == 1


def test_mean_averages_counts_but_keeps_the_worst_memory() -> None:
    mean = window("x", 10_000, 4).steady
    assert mean.comms_requests == 4
    assert mean.events == 10
    assert mean.peak_memory_bytes == 3_000_000
    assert mean.max_rss_bytes == 9e7


def test_ratio_is_steady_requests_over_a_full_scan() -> None:
    assert window("100k", 100_000, 5).ratio == pytest.approx(0.05)


def test_requests_per_run_carry_mean_max_and_floor() -> None:
    """Issue 15's request targets read these: the mean within 1.05x of the floor, the max within 2x the
    mean. The floor is the cadence's: every-run + banded + the active pages of the statuses in use."""
    warmed = window("100k", 100_000, 10, warmup_runs=60)
    assert warmed.floor is not None
    warmed.floor = replace(warmed.floor, active=2.0)
    assert warmed.max_requests == 11
    assert warmed.floor_requests == pytest.approx(3.0 + 1.5 + 2.0)
    assert warmed.requests() == {
        "mean": 10,
        "max": 11,
        "floor": 6.5,
        "mean_over_floor": round(10 / 6.5, 3),
        "max_over_mean": 1.1,
    }
    assert warmed.to_dict()["requests"]["max"] == 11
    assert window("1k", 1_000, 3).requests()["floor"] is None
    steady_row = rows(BenchResults("x", False, {}, {}, windows=[warmed]), peaks=True)[1]
    assert steady_row[2] == "10 (max 11)"


def test_results_file_round_trips(tmp_path: Path) -> None:
    path = results().save(tmp_path / "latest.json")
    again = load(path)
    assert again.to_dict() == results().to_dict()
    assert again.imports is not None and again.imports.ratio("poller") == pytest.approx(1.1)


def test_unknown_format_is_refused() -> None:
    data = results().to_dict()
    data["format_version"] = 999
    with pytest.raises(ValueError, match="unsupported"):
        BenchResults.from_dict(data)


def test_tables_have_a_row_per_run_kind_and_consistent_columns() -> None:
    table = rows(results())
    assert [row[1] for row in table] == ["bootstrap", "steady (mean of 2)"] + [
        "bootstrap",
        "steady (mean of 2 after 60 warm-up)",
    ] * 2
    text = markdown_table(["a", "b"], [["1", "2"]])
    assert text.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | 2 |"]


def test_a_single_run_is_labelled_without_a_mean() -> None:
    single, warmed = window("1k", 1_000, 3), window("10k", 10_000, 4, warmup_runs=60)
    single.steady_runs = single.steady_runs[:1]
    warmed.steady_runs = warmed.steady_runs[:1]
    few = results()
    few.windows = [single, warmed]
    assert [row[1] for row in rows(few)] == ["bootstrap", "steady", "bootstrap", "steady (after 60 warm-up)"]


def test_bars_scale_to_the_largest_value() -> None:
    assert bar(10, 10, width=10) == "█" * 10
    assert bar(0, 10, width=10) == "▏"
    assert bar(5, 10, width=10) == "█" * 5
    chart = growth_chart(results())
    assert "100k full scan" in chart and "1k poller" in chart


def test_human_bytes() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(30 * 1024 * 1024) == "30.0 MiB"


def test_reports_carry_the_figures_and_the_verdicts() -> None:
    terminal = terminal_report(results())
    assert "bootstrap" in terminal and "1.10x" in terminal
    markdown = render_markdown(results())
    # The page around it has the title: the generated part starts with the measurement itself.
    assert markdown.startswith("Measured by `make bench`")
    assert "\n#" not in markdown
    # One verdict per shape of the largest window, each with the floor of the cadence beside it.
    assert "every send processed on arrival: 5.0 = 5.0% of a full-window scan" in markdown
    assert "half of the sends scheduled hours ahead: 12.0 = 12.0%" in markdown
    assert "**met**" in markdown and "**NOT met**" in markdown
    assert "at least 3.0 requests per run for the 600 operations completed in the last hour" in markdown
    assert "30.0 MiB" in markdown


def test_replacing_the_section_keeps_the_rest_of_the_page() -> None:
    page = f"# Performance\n\n{SECTION_START}\nold figures\n{SECTION_END}\n\n## Reading it\n"
    new = replace_section(page, "new figures\n")
    assert new == f"# Performance\n\n{SECTION_START}\nnew figures\n{SECTION_END}\n\n## Reading it\n"
    assert section(new) == "new figures"
    with pytest.raises(ValueError, match="performance:start"):
        replace_section("# Performance\n", "new figures")


def test_the_docs_performance_page_is_what_the_report_renders() -> None:
    """docs/performance.md shows bench-results/latest.json as `python -m benchmarks.report` renders it."""
    root = Path(__file__).resolve().parents[2]
    page = (root / DOCS_PAGE).read_text(encoding="utf-8")
    expected = render_markdown(load(root / LATEST), LATEST)
    assert section(page) == expected.rstrip("\n"), "run python -m benchmarks.report to render the page again"


# -- the targets of issue 15 (benchmarks.targets) and the bill (benchmarks.bill) ---------------------------


def verdict_of(results_: BenchResults, key: str) -> Verdict:
    (found,) = [v for v in verdicts(results_) if v.key == key]
    return found


def hundred_k(requests: list[float], *, cpu: float = 0.1, active: float | None = 1.0) -> WindowResult:
    runs = [RunFigures(comms_requests=r, cpu_seconds=cpu, events=10) for r in requests]
    return WindowResult(
        name="100k",
        operations=100_000,
        active=1000,
        changes_per_run=100,
        bootstrap=RunFigures(cpu_seconds=12.0),
        steady=mean_figures(runs),
        steady_runs=runs,
        full_scan_requests=100,
        floor=FloorFigures(every_run=6.0, banded=2.0, every_run_operations=600, active=active),
    )


def test_requests_are_judged_against_the_whole_cadence_floor() -> None:
    within = results()
    within.windows = [hundred_k([9.0, 9.4])]  # mean 9.2 against a floor of 6 + 2 + 1 = 9
    verdict = verdict_of(within, "requests-vs-floor-100k")
    assert verdict.passed is True and verdict.value == pytest.approx(9.2 / 9)
    assert "every-run 6.0 + banded 2.0 + active 1.0" in verdict.figure
    above = results()
    above.windows = [hundred_k([10.0, 10.0])]
    assert verdict_of(above, "requests-vs-floor-100k").mark == "FAIL"
    # Results from before the active floor existed cannot be judged: not measured, never a guess.
    old = results()
    old.windows = [hundred_k([9.0, 9.0], active=None)]
    assert verdict_of(old, "requests-vs-floor-100k").mark == "not measured"


def test_the_band_spread_is_the_largest_run_over_the_mean() -> None:
    spread = results()
    spread.windows = [hundred_k([2, 2, 2, 14])]  # mean 5, largest 14
    verdict = verdict_of(spread, "band-spread-100k")
    assert verdict.value == pytest.approx(2.8) and verdict.mark == "FAIL"
    spread.windows = [hundred_k([4, 5, 6, 5])]
    assert verdict_of(spread, "band-spread-100k").mark == "PASS"


def test_cpu_targets_read_the_steady_mean_and_the_bootstrap() -> None:
    fast = results()
    fast.windows = [hundred_k([5, 5], cpu=0.149)]
    assert verdict_of(fast, "handler-cpu-100k").mark == "PASS"
    assert verdict_of(fast, "bootstrap-cpu-100k").mark == "PASS"  # 12.0 s <= 12.85 s
    fast.windows[0].bootstrap.cpu_seconds = 13.0
    assert verdict_of(fast, "bootstrap-cpu-100k").mark == "FAIL"
    assert verdict_of(fast, "handler-cpu-100k-on-arrival").mark == "not measured"


def test_capacity_units_and_the_bill_are_not_measured_until_the_results_carry_units() -> None:
    plain = results()
    plain.windows = [hundred_k([5, 5])]
    for key in ("read-units-per-event", "write-units-per-event", "bill-beyond-eventbridge"):
        verdict = verdict_of(plain, key)
        assert (verdict.value, verdict.figure, verdict.passed) == (None, "not measured", None)
    steady = plain.windows[0].steady
    steady.dynamodb_read_units = 0.0  # type: ignore[attr-defined]  # a field's default in older results
    assert verdict_of(plain, "read-units-per-event").mark == "not measured"
    steady.dynamodb_read_units = {"Query": 2.0, "BatchGetItem": 6.0}  # type: ignore[attr-defined]
    steady.dynamodb_write_units = 9.0  # type: ignore[attr-defined]
    assert verdict_of(plain, "read-units-per-event").value == pytest.approx(0.8)
    assert verdict_of(plain, "write-units-per-event").mark == "PASS"
    bill = verdict_of(plain, "bill-beyond-eventbridge")
    # The target is the cost page's figure: DynamoDB, the poller's Lambda time and the archive.
    assert bill.value == pytest.approx(bill_per_million_events(steady).beyond_eventbridge)
    assert bill.value > 0.8 * 0.125 + 0.9 * 0.625
    steady.dynamodb_write_units = 10.0  # type: ignore[attr-defined]  # a unit each: $0.75 is gone
    assert verdict_of(plain, "bill-beyond-eventbridge").mark == "FAIL"
    steady.dynamodb_write_units = 4.0  # type: ignore[attr-defined]
    assert verdict_of(plain, "bill-beyond-eventbridge").mark == "PASS"


def scale_window(*, twice: int = 0, lost: int = 0, slowest: float = 50.0) -> WindowResult:
    runs = [RunFigures(wall_seconds=40.0, cpu_seconds=5.0), RunFigures(wall_seconds=slowest, cpu_seconds=6.0)]
    return WindowResult(
        name="1m",
        operations=1_000_000,
        active=10_000,
        changes_per_run=100,
        bootstrap=total_figures(runs),
        steady=RunFigures(),
        steady_runs=[RunFigures()],
        bootstrap_runs=runs,
        bootstrap_check=BootstrapCheck(
            changed_operations=500, changed_without_event=lost, keys_published_twice=twice
        ),
    )


@pytest.mark.parametrize(
    ("window_", "mark"),
    [
        (scale_window(), "PASS"),
        (scale_window(twice=1), "FAIL"),
        (scale_window(lost=1), "FAIL"),
        (scale_window(slowest=61.0), "FAIL"),
    ],
)
def test_the_1m_bootstrap_passes_only_within_the_timeout_with_nothing_twice_or_lost(
    window_: WindowResult, mark: str
) -> None:
    scaled = results()
    scaled.settings["poller_timeout_seconds"] = 60
    scaled.windows = [window_]
    verdict = verdict_of(scaled, "bootstrap-1m")
    assert verdict.mark == mark
    assert "2 invocations" in verdict.figure and "500 operations changed during it" in verdict.figure
    assert verdict_of(results(), "bootstrap-1m").mark == "not measured"


def test_a_bootstrap_over_invocations_sums_counts_and_keeps_the_worst_memory() -> None:
    runs = [
        RunFigures(comms_requests=3, cpu_seconds=1.0, peak_memory_bytes=5e6, comms_by_listing={"buckets": 2}),
        RunFigures(comms_requests=4, cpu_seconds=2.0, peak_memory_bytes=7e6, comms_by_listing={"buckets": 3}),
    ]
    total = total_figures(runs)
    assert (total.comms_requests, total.cpu_seconds, total.peak_memory_bytes) == (7, 3.0, 7e6)
    assert total.comms_by_listing == {"buckets": 5}


def test_new_fields_round_trip(tmp_path: Path) -> None:
    scaled = results()
    scaled.windows.append(scale_window())
    scaled.windows[1].floor = FloorFigures(every_run=6.0, banded=2.0, every_run_operations=600, active=2.0)
    scaled.targets = [v.to_dict() for v in verdicts(scaled)]
    again = load(scaled.save(tmp_path / "latest.json"))
    assert again.to_dict() == scaled.to_dict()
    assert again.windows[-1].bootstrap_check == scaled.windows[-1].bootstrap_check


def test_the_metric_target_and_the_terminal_table() -> None:
    verdict = verdict_of(results(), "custom-metrics")
    assert verdict.mark == "PASS" and "17 custom metrics" in verdict.figure
    mixed = results()
    mixed.windows = [hundred_k([2, 2, 2, 14], cpu=0.1)]
    text = targets_text(mixed)
    assert "PASS" in text and "FAIL" in text and "not measured" in text


def test_the_bill_reproduces_the_figures_before_issue_15() -> None:
    """With the units and metrics of before, the tables are those the deploy guide showed."""
    assert 1.0 + beyond_eventbridge(3.5, 2.0) == pytest.approx(2.94, abs=0.01)
    table, total = monthly_table(VOLUMES[0], (3.5, 2.0), 33)
    assert "| DynamoDB reads | 43,200 x 10 + 300,000 x 3.50 + 1,500 x 5 = 1.49 M RRU | $0.19 |" in table
    assert "| DynamoDB writes | 43,200 x 6 + 300,000 x 2.00 + 1,500 x 10 = 0.87 M WRU | $0.55 |" in table
    assert total == pytest.approx(16.91, abs=0.01)


def test_the_deploy_guides_cost_section_is_what_the_report_renders() -> None:
    root = Path(__file__).resolve().parents[2]
    page = (root / COST_PAGE).read_text(encoding="utf-8")
    expected = cost_markdown(load(root / LATEST), LATEST)
    assert section(page, COST_START, COST_END) == expected.rstrip("\n"), "run python -m benchmarks.report"
