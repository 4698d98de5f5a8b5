"""Measure poller runs: a handler process (benchmarks.worker) invoked against a :class:`Rig`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from benchmarks.floor import follow_up_floor
from benchmarks.results import RunFigures, WindowResult, full_scan_requests, mean_figures
from benchmarks.rig import (
    CallCounts,
    Rig,
    running_rig,
    scheduled_event,
    without_moto_transaction_snapshots,
)
from comms_bridge.poller.discovery import DEFAULT_CADENCE, Cadence
from comms_sim import ManualClock, Scenario
from comms_sim.generate import DEFAULT_SHAPE, generate_scenario
from comms_sim.ids import operation_id
from comms_sim.timeline import SendPlan

REPO: Final = Path(__file__).resolve().parents[1]
# A fixed Monday: every run of the benchmark sees the same timestamps.
CLOCK_START: Final = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
TRACE_BOOTSTRAP_LIMIT: Final = 20_000


class HandlerProcess:
    """One Lambda execution environment: a child process that imports the handler once and is invoked
    over a pipe, so the figures of the run (memory, CPU) are the handler's alone."""

    def __init__(self, function: str, environment: Mapping[str, str], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._send({"function": function, "environment": dict(environment), "log": str(log_path)})

    def _send(self, message: Mapping[str, Any]) -> None:
        stdin: IO[str] | None = self._process.stdin
        assert stdin is not None
        stdin.write(json.dumps(message) + "\n")
        stdin.flush()

    def _receive(self) -> dict[str, Any]:
        stdout: IO[str] | None = self._process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the handler process died (exit {self._process.poll()}); see its log")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def load(self) -> float:
        """The cold start (import of the handler module) alone, seconds."""
        self._send({"load": True})
        return float(self._receive()["wall_seconds"])

    def invoke(self, event: Mapping[str, Any], *, timeout_seconds: float, trace: bool) -> dict[str, Any]:
        self._send({"invoke": dict(event), "timeout_seconds": timeout_seconds, "trace": trace})
        return self._receive()

    def close(self) -> None:
        if self._process.poll() is None:
            self._send({"exit": True})
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> HandlerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Workload:
    name: str
    operations: int
    active: int
    changes_per_minute: float
    steady_runs: int
    traced_runs: int = 2  # of the steady runs, these many run under tracemalloc (peak memory)
    burst: int = 0  # operations completing together during the first steady period
    label: str = "steady"
    shape: str = DEFAULT_SHAPE  # how operations spend their active time (comms_sim.generate.SHAPES)
    # Runs between the bootstrap and the measured ones, not measured: a baseline bootstrap does not know
    # when the operations of the window completed, so the every-run follow-up only reaches its steady
    # size once the poller has seen a whole first band (1 h) of completions itself.
    warmup_runs: int = 0


def build_scenario(workload: Workload, seed: int, schedule_period: int = 60) -> Scenario:
    scenario = generate_scenario(
        n_operations=workload.operations,
        days=7,
        active=max(1, workload.active),
        changes_per_minute=workload.changes_per_minute,
        seed=seed,
        # The clock runs past the window's end: bootstrap, warm-up and steady runs, plus a margin.
        future_hours=2 + (workload.warmup_runs + workload.steady_runs) * schedule_period / 3600,
        shape=workload.shape,
    )
    if workload.burst:
        now = scenario.now
        burst = [
            # Created over the last hour, all PROCESSING in one step, all COMPLETED 30 s after "now".
            SendPlan(
                id=operation_id(f"burst:{seed}:{index}"),
                name=f"burst-{index}",
                created=now - 3600 + index % 3000,
                total=100,
                start=now - 300,
                duration=330,
                step=330,
            )
            for index in range(workload.burst)
        ]
        scenario = Scenario(
            operations=[*scenario.operations, *burst],
            name=f"{scenario.name}+burst-{workload.burst}",
            description=scenario.description,
            now=now,
            seed=seed,
        )
    return scenario


def _figures(reply: Mapping[str, Any], delta: CallCounts, published: int, true_changes: int) -> RunFigures:
    summary = reply.get("result") or {}
    return RunFigures(
        comms_requests=delta.comms_requests,
        dynamodb_calls=delta.dynamodb_calls,
        dynamodb_items_read=float(summary.get("dynamodb_items_read", 0)),
        dynamodb_items_written=float(summary.get("dynamodb_items_written", 0)),
        put_events_calls=delta.put_events_calls,
        events=published,
        wall_seconds=float(reply["wall_seconds"]),
        cpu_seconds=float(reply.get("cpu_seconds", 0)),
        peak_memory_bytes=float(reply.get("peak_memory_bytes", 0)),
        max_rss_bytes=float(reply.get("max_rss_bytes", 0)),
        true_changes=true_changes,
        comms_by_endpoint={key: float(value) for key, value in delta.comms_by_endpoint.items()},
        comms_by_listing={
            key: float(value) for key, value in (summary.get("requests_by_listing") or {}).items()
        },
        dynamodb_by_operation={key: float(value) for key, value in delta.dynamodb_by_operation.items()},
        dynamodb_read_units=sum(delta.read_units.values()),
        dynamodb_write_units=sum(delta.write_units.values()),
        event_bytes=float(delta.event_bytes),
        dynamodb_units_by_operation={
            key: float(value) for key, value in (delta.read_units + delta.write_units).items()
        },
    )


class _Measured:
    """Invoke once and account for everything that crossed the wire meanwhile."""

    def __init__(self, rig: Rig, handler: HandlerProcess, timeout_seconds: float) -> None:
        self.rig = rig
        self.handler = handler
        self.timeout_seconds = timeout_seconds
        self.last_time = rig.clock.now()
        self.problems: list[str] = []

    def run(self, *, trace: bool, count_changes: bool) -> tuple[RunFigures, dict[str, Any]]:
        before = self.rig.counts()
        now = self.rig.clock.now()
        reply = self.handler.invoke(scheduled_event(now), timeout_seconds=self.timeout_seconds, trace=trace)
        delta = self.rig.counts() - before
        self.rig.empty_rule_queues()
        changes = (
            len({e.operation_id for e in self.rig.simulator.history_between(self.last_time, now)})
            if count_changes
            else 0
        )
        self.last_time = now
        at = f"run at {now.strftime('%H:%M:%S')} (simulator clock)"
        incomplete = True
        if not reply.get("ok"):
            self.problems.append(f"{at} raised {reply.get('error')}")
        elif (reply.get("result") or {}).get("status") != "complete":
            result = reply["result"]
            self.problems.append(f"{at} ended {result.get('status')}: {result.get('errors')}")
        else:
            incomplete = False
        # No fault is injected, so every entry sent is an event the bus accepted.
        figures = _figures(reply, delta, delta.put_events_entries, changes)
        figures.incomplete = float(incomplete)
        return figures, reply


def measure_workload(
    workload: Workload,
    *,
    seed: int,
    results_dir: Path,
    progress: Callable[[str], None],
    schedule_period: int = 60,
) -> tuple[WindowResult, list[str]]:
    started = time.perf_counter()
    scenario = build_scenario(workload, seed, schedule_period)
    generate_seconds = time.perf_counter() - started
    clock = ManualClock(CLOCK_START)
    problems: list[str] = []
    with (
        without_moto_transaction_snapshots(),
        running_rig(
            scenario,
            clock,
            prefix=f"bench-{workload.name}-{os.getpid()}",
            capture_all_events=False,
            meter_capacity=True,
        ) as rig,
    ):
        environment = rig.function_environment("PollerFunction")
        timeout = float(rig.stack.parameters.get("PollerTimeoutSeconds", "60"))
        log = results_dir / f"handler-{workload.name}.log.tmp"
        with HandlerProcess("poller", environment, log) as handler:
            handler.load()
            measured = _Measured(rig, handler, timeout_seconds=max(timeout, 900.0))
            progress(f"{workload.name}: bootstrap of {workload.operations:,} operations ...")
            # tracemalloc doubles the CPU time of a big bootstrap: past TRACE_BOOTSTRAP_LIMIT its memory is
            # read from the process's resident high-water mark only.
            trace_bootstrap = workload.operations + workload.burst <= TRACE_BOOTSTRAP_LIMIT
            bootstrap, _ = measured.run(trace=trace_bootstrap, count_changes=False)
            progress(
                f"{workload.name}: bootstrap {bootstrap.comms_requests:.0f} Comms requests, "
                f"{bootstrap.wall_seconds:.1f} s"
            )
            measured.timeout_seconds = timeout
            for index in range(workload.warmup_runs):
                clock.advance(schedule_period)
                measured.run(trace=False, count_changes=False)
                if (index + 1) % 15 == 0 or index + 1 == workload.warmup_runs:
                    progress(f"{workload.name}: warm-up run {index + 1}/{workload.warmup_runs}")
            run_times: list[int] = []
            timed: list[RunFigures] = []
            traced: list[RunFigures] = []
            runs: list[RunFigures] = []
            for index in range(workload.steady_runs):
                clock.advance(schedule_period)
                run_times.append(round((clock.now() - rig.simulator.anchor).total_seconds()))
                # tracemalloc slows Python down: a few runs are traced (peak memory), the others give the
                # wall and CPU time, so neither figure is distorted by the other.
                trace = workload.steady_runs == 1 or 1 <= index <= workload.traced_runs
                figures, _ = measured.run(trace=trace, count_changes=True)
                (traced if trace else timed).append(figures)
                runs.append(figures)
            problems += measured.problems
    mean = mean_figures(runs)
    if timed and traced:
        mean.wall_seconds = sum(r.wall_seconds for r in timed) / len(timed)
        mean.cpu_seconds = sum(r.cpu_seconds for r in timed) / len(timed)
    floor = None
    if workload.steady_runs > 1 and not workload.burst:
        progress(f"{workload.name}: the cadence's floor from the simulator's truth ...")
        floor = follow_up_floor(
            scenario.operations,
            run_times,
            Cadence.parse(environment.get("FOLLOW_UP_CADENCE", DEFAULT_CADENCE)),
            page_size=int(environment.get("PAGE_SIZE", "1000")),
            period=schedule_period,
        )
    window = WindowResult(
        name=workload.name,
        operations=workload.operations + workload.burst,
        active=workload.active,
        changes_per_run=mean.true_changes,
        bootstrap=bootstrap,
        steady=mean,
        steady_runs=runs,
        full_scan_requests=full_scan_requests(workload.operations + workload.burst),
        generate_seconds=generate_seconds,
        label=workload.label,
        shape=workload.shape,
        warmup_runs=workload.warmup_runs,
        floor=floor,
    )
    progress(
        f"{workload.name}: steady {mean.comms_requests:.1f} Comms requests/run "
        f"({window.ratio:.0%} of a full scan), {mean.events:.1f} events/run"
    )
    return window, [f"{workload.name}: {p}" for p in problems]
