"""Tables and bars from a :class:`BenchResults`: plain text for the terminal, Markdown for the docs'
performance page."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.results import BenchResults, RunFigures, WindowResult

BAR_WIDTH = 40
COLUMNS = (
    "workload",
    "run",
    "Comms requests",
    "vs full scan",
    "DynamoDB calls",
    "DynamoDB items r/w",
    "PutEvents calls",
    "events",
    "wall",
    "handler CPU",
    "peak memory",
    "max RSS",
)


def human_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _number(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _row(window: WindowResult, label: str, figures: RunFigures, *, peak: float | None = None) -> list[str]:
    """``peak``: the dearest run's requests, shown beside a mean."""
    if figures.incomplete:
        label += f" ({figures.incomplete:.0f} FAILED)"
    ratio = figures.comms_requests / window.full_scan_requests if window.full_scan_requests else 0.0
    requests = _number(figures.comms_requests) + ("" if peak is None else f" (max {_number(peak)})")
    return [
        f"{window.name} ({window.operations:,} ops)",
        label,
        requests,
        f"{ratio:.0%} of {window.full_scan_requests:,}",
        _number(figures.dynamodb_calls),
        f"{_number(figures.dynamodb_items_read)} / {_number(figures.dynamodb_items_written)}",
        _number(figures.put_events_calls),
        _number(figures.events),
        _duration(figures.wall_seconds),
        _duration(figures.cpu_seconds),
        human_bytes(figures.peak_memory_bytes) if figures.peak_memory_bytes else "not traced",
        human_bytes(figures.max_rss_bytes),
    ]


def rows(results: BenchResults, *, peaks: bool = False) -> list[list[str]]:
    """``peaks``: show the dearest steady run's requests beside the mean (the terminal does; the docs'
    page is regenerated from the full bench on main, issue 15c)."""
    table: list[list[str]] = []
    for window in results.windows:
        table.append(_row(window, "bootstrap", window.bootstrap))
        if window.steady_runs:
            n = len(window.steady_runs)
            details = ([f"mean of {n}"] if n > 1 else []) + (
                [f"after {window.warmup_runs} warm-up"] if window.warmup_runs else []
            )
            label = f"{window.label} ({' '.join(details)})" if details else window.label
            peak = window.max_requests if peaks and n > 1 else None
            table.append(_row(window, label, window.steady, peak=peak))
    return table


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def text_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *body, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in body]
    return "\n".join(lines)


def bar(value: float, maximum: float, width: int = BAR_WIDTH) -> str:
    if maximum <= 0:
        return ""
    filled = value / maximum * width
    whole = int(filled)
    return "█" * whole + ("▌" if filled - whole >= 0.5 else "") or "▏"


def growth_chart(results: BenchResults) -> str:
    """Steady-state Comms requests per run against a full scan, per window: how cost grows."""
    windows = [w for w in results.windows if w.steady_runs]
    if not windows:
        return "(no steady-state runs)"
    maximum = max(max(w.steady.comms_requests, w.full_scan_requests) for w in windows)
    label_width = max(len(w.name) for w in windows) + 12
    lines = []
    for w in windows:
        lines.append(
            f"{(w.name + ' poller').ljust(label_width)} {bar(w.steady.comms_requests, maximum)} "
            f"{_number(w.steady.comms_requests)}"
        )
        lines.append(
            f"{(w.name + ' full scan').ljust(label_width)} {bar(w.full_scan_requests, maximum)} "
            f"{w.full_scan_requests:,}"
        )
    return "\n".join(lines)


def imports_lines(results: BenchResults) -> list[str]:
    imports = results.imports
    if imports is None:
        return ["import time: not measured"]
    lines = []
    for function, value in sorted(imports.handler_ms.items()):
        packages = ", ".join(imports.dependencies.get(function, []))
        lines.append(
            f"functions/{function}: `import app` {value:.0f} ms vs its third-party modules alone "
            f"{imports.dependencies_ms.get(function, 0):.0f} ms = {imports.ratio(function):.2f}x "
            f"(median of {imports.repetitions} fresh interpreters; {packages})"
        )
    return lines


def layer_line(results: BenchResults) -> str:
    layer = results.layer
    if layer is None or layer.source == "not built":
        return "layer size: not built" + (f" ({layer.detail})" if layer and layer.detail else "")
    return f"layer size ({layer.source}): {human_bytes(layer.bytes)} in {layer.files:,} files" + (
        f"; {layer.detail}" if layer.detail else ""
    )


def terminal_report(results: BenchResults) -> str:
    parts = [
        text_table(COLUMNS, rows(results, peaks=True)),
        "",
        "Comms API requests per steady run:",
        growth_chart(results),
    ]
    parts += ["", *imports_lines(results), layer_line(results)]
    parts += [f"note: {note}" for note in results.notes]
    return "\n".join(parts)
