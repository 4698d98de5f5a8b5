"""The benchmark's results file and its rendering: round trip, means, ratios, tables (no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.render import bar, growth_chart, human_bytes, markdown_table, rows, terminal_report
from benchmarks.report import (
    DOCS_PAGE,
    SECTION_END,
    SECTION_START,
    render_markdown,
    replace_section,
    section,
)
from benchmarks.results import (
    LATEST,
    BenchResults,
    FloorFigures,
    ImportFigures,
    LayerFigures,
    RunFigures,
    WindowResult,
    full_scan_requests,
    load,
    mean_figures,
)


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
    mean. The floor adds the active listings the runs made to the cadence's own floor."""
    warmed = window("100k", 100_000, 10, warmup_runs=60)
    for run in warmed.steady_runs:
        run.comms_by_listing = {"active": 2.0}
    warmed.steady = mean_figures(warmed.steady_runs)
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
