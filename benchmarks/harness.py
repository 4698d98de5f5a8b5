"""Measure poller runs: a handler process (benchmarks.worker) invoked against a :class:`Rig`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from benchmarks.floor import follow_up_floor
from benchmarks.results import (
    BootstrapCheck,
    FloorFigures,
    RunFigures,
    WindowResult,
    full_scan_requests,
    mean_figures,
    total_figures,
)
from benchmarks.rig import (
    CallCounts,
    Rig,
    running_rig,
    scheduled_event,
    with_moto_condition_lexing_cached,
    with_moto_partition_queries,
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
# A resumable bootstrap that has not finished after this many invocations is reported as it stands.
MAX_BOOTSTRAP_INVOCATIONS: Final = 200
MAX_FAILED: Final = 3  # bootstrap invocations failing in a row


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
    # None: the bootstrap may take up to 900 s per invocation (the figures of one run that does it all).
    # A number: each bootstrap invocation gets the function's own timeout, as the schedule would invoke it,
    # and the bootstrap resumes from its checkpoint over as many invocations as it needs, one schedule
    # period apart (the simulator's operations keep changing in between).
    resumable_bootstrap: bool = False
    # Of the resumable bootstrap's invocations, every n-th runs under tracemalloc (0: none): its peak shows
    # whether memory per invocation grows with the window; the others give wall and CPU time.
    trace_bootstrap_every: int = 0


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


@dataclass
class _Bootstrap:
    total: RunFigures
    runs: list[RunFigures]
    started: datetime  # simulator clock at its first invocation
    ended: datetime  # and at its last


def _bootstrap(
    measured: _Measured,
    workload: Workload,
    *,
    timeout: float,
    schedule_period: int,
    progress: Callable[[str], None],
) -> _Bootstrap:
    """Invoke until the checkpoint says bootstrapped (at most MAX_BOOTSTRAP_INVOCATIONS times)."""
    clock = measured.rig.clock
    started = clock.now()
    progress(f"{workload.name}: bootstrap of {workload.operations:,} operations ...")
    measured.timeout_seconds = timeout if workload.resumable_bootstrap else max(timeout, 900.0)
    every = workload.trace_bootstrap_every
    runs: list[RunFigures] = []
    failed = 0
    while True:
        if workload.resumable_bootstrap:
            trace = bool(every) and (len(runs) + 1) % every == 0
        else:
            # tracemalloc doubles the CPU time of a big bootstrap: past TRACE_BOOTSTRAP_LIMIT its memory is
            # read from the process's resident high-water mark only.
            trace = workload.operations + workload.burst <= TRACE_BOOTSTRAP_LIMIT
        figures, reply = measured.run(trace=trace, count_changes=bool(runs))
        runs.append(figures)
        result = reply.get("result") or {}
        if workload.resumable_bootstrap:
            progress(
                f"{workload.name}: bootstrap invocation {len(runs)}: {figures.comms_requests:.0f} Comms "
                f"requests, {figures.wall_seconds:.1f} s wall, {figures.cpu_seconds:.1f} s CPU"
                + (f", peak {figures.peak_memory_bytes / 2**20:.1f} MiB" if trace else "")
            )
        # A failed invocation is invoked again a period later, as the schedule would; a bootstrap that fails
        # again and again (moto out of its depth) is reported as it stands.
        failed = failed + 1 if not reply.get("ok") else 0
        if result.get("bootstrapped") or len(runs) >= MAX_BOOTSTRAP_INVOCATIONS or failed >= MAX_FAILED:
            break
        clock.advance(schedule_period)
    measured.timeout_seconds = timeout
    total = total_figures(runs)
    progress(
        f"{workload.name}: bootstrap {total.comms_requests:.0f} Comms requests, "
        f"{total.wall_seconds:.1f} s in {len(runs)} invocation(s)"
    )
    return _Bootstrap(total, runs, started, clock.now())


def bootstrap_check(
    rig: Rig, started: datetime, ended: datetime, published: Counter[tuple[str, str]]
) -> BootstrapCheck:
    """Whether the operations that changed between the bootstrap's invocations each got their event
    (``published``: (operationId, eventKey) counted at the proxy from the bootstrap on), and whether any
    event was published twice."""
    changed = {e.operation_id for e in rig.simulator.history_between(started, ended)}
    with_events = {op_id for op_id, _ in published}
    return BootstrapCheck(
        changed_operations=len(changed),
        changed_without_event=len(changed - with_events),
        keys_published_twice=sum(1 for count in published.values() if count > 1),
    )


def measure_workload(
    workload: Workload,
    *,
    seed: int,
    results_dir: Path,
    progress: Callable[[str], None],
    schedule_period: int = 60,
    parameters: Mapping[str, str] | None = None,
) -> tuple[WindowResult, list[str]]:
    started = time.perf_counter()
    scenario = build_scenario(workload, seed, schedule_period)
    generate_seconds = time.perf_counter() - started
    clock = ManualClock(CLOCK_START)
    with (
        without_moto_transaction_snapshots(),
        with_moto_partition_queries(),
        with_moto_condition_lexing_cached(),
        running_rig(
            scenario,
            clock,
            prefix=f"bench-{workload.name}-{os.getpid()}",
            capture_all_events=False,
            parameters=parameters,
            meter_capacity=True,
        ) as rig,
    ):
        environment = rig.function_environment("PollerFunction")
        timeout = float(rig.stack.parameters.get("PollerTimeoutSeconds", "60"))
        log = results_dir / f"handler-{workload.name}.log.tmp"
        with HandlerProcess("poller", environment, log) as handler:
            handler.load()
            measured = _Measured(rig, handler, timeout_seconds=timeout)
            boot = _bootstrap(
                measured, workload, timeout=timeout, schedule_period=schedule_period, progress=progress
            )
            runs, run_times = _steady(measured, workload, schedule_period, progress)
            check = bootstrap_check(rig, boot.started, boot.ended, rig.proxy.event_keys)
    steady = _steady_mean(runs)
    window = WindowResult(
        name=workload.name,
        operations=workload.operations + workload.burst,
        active=workload.active,
        changes_per_run=steady.true_changes,
        bootstrap=boot.total,
        steady=steady,
        steady_runs=runs,
        full_scan_requests=full_scan_requests(workload.operations + workload.burst),
        generate_seconds=generate_seconds,
        label=workload.label,
        shape=workload.shape,
        warmup_runs=workload.warmup_runs,
        floor=_floor(workload, scenario, run_times, environment, schedule_period, progress),
        bootstrap_runs=boot.runs if len(boot.runs) > 1 else [],
        bootstrap_check=check,
    )
    progress(
        f"{workload.name}: steady {window.steady.comms_requests:.1f} Comms requests/run "
        f"({window.ratio:.0%} of a full scan), {window.steady.events:.1f} events/run"
    )
    return window, [f"{workload.name}: {p}" for p in measured.problems]


def _steady(
    measured: _Measured, workload: Workload, schedule_period: int, progress: Callable[[str], None]
) -> tuple[list[RunFigures], list[int]]:
    """The unmeasured warm-up runs, then the measured ones (with the simulator time of each)."""
    clock, rig = measured.rig.clock, measured.rig
    for index in range(workload.warmup_runs):
        clock.advance(schedule_period)
        measured.run(trace=False, count_changes=False)
        if (index + 1) % 15 == 0 or index + 1 == workload.warmup_runs:
            progress(f"{workload.name}: warm-up run {index + 1}/{workload.warmup_runs}")
    run_times: list[int] = []
    runs: list[RunFigures] = []
    for index in range(workload.steady_runs):
        clock.advance(schedule_period)
        run_times.append(round((clock.now() - rig.simulator.anchor).total_seconds()))
        # tracemalloc slows Python down: a few runs are traced (peak memory), the others give the wall and
        # CPU time, so neither figure is distorted by the other.
        trace = workload.steady_runs == 1 or 1 <= index <= workload.traced_runs
        figures, _ = measured.run(trace=trace, count_changes=True)
        figures.traced = trace
        runs.append(figures)
    return runs, run_times


def _steady_mean(runs: list[RunFigures]) -> RunFigures:
    mean = mean_figures(runs)
    timed = [r for r in runs if not r.traced]
    if timed and len(timed) < len(runs):
        mean.wall_seconds = sum(r.wall_seconds for r in timed) / len(timed)
        mean.cpu_seconds = sum(r.cpu_seconds for r in timed) / len(timed)
    return mean


def _floor(
    workload: Workload,
    scenario: Scenario,
    run_times: list[int],
    environment: Mapping[str, str],
    schedule_period: int,
    progress: Callable[[str], None],
) -> FloorFigures | None:
    if workload.steady_runs <= 1 or workload.burst:
        return None
    progress(f"{workload.name}: the cadence's floor from the simulator's truth ...")
    return follow_up_floor(
        scenario.operations,
        run_times,
        Cadence.parse(environment.get("FOLLOW_UP_CADENCE", DEFAULT_CADENCE)),
        page_size=int(environment.get("PAGE_SIZE", "1000")),
        period=schedule_period,
    )
