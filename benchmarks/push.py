"""The push path's figures (issue 14), in API-clock time against the simulator and moto on loopback:

* detection latency of status changes: push (Event Streams delayed 2 s, the mapping's 1 s batching
  window, plus each invocation's own wall time on the API clock) with a 5-minute reconciling poll, side by
  side with poll-only every minute;
* the same push path with 20 % of deliveries dropped, 20 % duplicated and the order shuffled: changes
  lost (a status the poll alone would have published, never published) and changes under two keys;
* Comms API requests per hour at the 100k window: push + a 5-minute reconciling poll (measured poller
  runs at that schedule, plus one fetch per delivery) vs poll-only every minute (``make bench``'s 100k).

    python -m benchmarks.push            # writes bench-results/push.json
    python -m benchmarks.push --quick    # latency phases only (no 100k runs)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from aws_lambda_powertools.utilities.parameters import clear_caches

from benchmarks.harness import CLOCK_START, Workload, build_scenario, measure_workload
from benchmarks.results import RESULTS_DIR
from benchmarks.rig import running_rig, scheduled_event
from comms_bridge_tools.kinesis_events import KinesisPump
from comms_bridge_tools.lambda_runtime import LambdaFunction
from comms_sim import ManualClock, Scenario
from comms_sim.event_streams import Delivery, DeliveryFaults, Transition, plan_deliveries, transitions
from comms_sim.ids import operation_id
from comms_sim.timeline import SendPlan

PUSH_JSON: Final = RESULTS_DIR / "push.json"
EXTERNAL_ID: Final = "bench-external-id-0123456789"
BATCH_WINDOW: Final = 1.0  # MaximumBatchingWindowInSeconds of the template's mapping
STATUS: Final = "Email Operation Status Changed"
SEED: Final = 14


@dataclass
class PhaseResult:
    name: str
    poll_period: int
    minutes: int
    transitions: int
    deliveries: int
    latencies: list[float] = field(default_factory=list)
    by_path: dict[str, int] = field(default_factory=dict)  # first seen via "push" or "poll"
    lost: int = 0
    superseded_unseen: int = 0  # entered and left between observations, its delivery dropped: no path sees it
    double_keyed: int = 0
    duplicate_keys: int = 0
    comms_requests: int = 0

    @property
    def p50(self) -> float:
        return _percentile(self.latencies, 50)

    @property
    def p95(self) -> float:
        return _percentile(self.latencies, 95)


def _percentile(values: Sequence[float], p: int) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def latency_scenario(seed: int, minutes: int) -> Scenario:
    """1,000 settled operations (the window's background) plus sends that move through their statuses
    during the measured time: created at random, SCHEDULED for 0 to 5 minutes, PROCESSING for 2 to 15."""
    background = build_scenario(
        Workload("push-1k", 1_000, active=10, changes_per_minute=20, steady_runs=60), seed
    )
    rng = random.Random(seed)
    now = background.now
    sends = []
    for index in range(minutes * 3):
        created = now + rng.randrange(0, minutes * 60)
        sends.append(
            SendPlan(
                id=operation_id(f"push:{seed}:{index}"),
                name=f"push-{index}",
                created=created,
                start=created + rng.randrange(0, 300),
                total=rng.randrange(10, 500),
                duration=rng.randrange(120, 900),
                step=rng.choice((20, 30, 60)),
            )
        )
    return Scenario(
        operations=[*background.operations, *sends],
        name=f"{background.name}+push",
        description=background.description,
        now=now,
        seed=seed,
    )


def run_phase(
    name: str, scenario: Scenario, *, push: DeliveryFaults | None, poll_period: int, minutes: int
) -> PhaseResult:
    # Each phase has its own moto and proxy: Powertools' cached secrets client must not keep the last one's.
    clear_caches()  # type: ignore[no-untyped-call]
    clock = ManualClock(CLOCK_START)
    parameters = {"EnableEventStreams": "true", "EventStreamsExternalId": EXTERNAL_ID}
    prefix = "push-" + "".join(c if c.isalnum() else "-" for c in name)
    with ExitStack() as stack:
        rig = stack.enter_context(running_rig(scenario, clock, prefix=prefix[:40], parameters=parameters))
        quiet = stack.enter_context(open(os.devnull, "w"))  # the handlers' JSON logs
        poller = LambdaFunction(
            "functions/poller", environment=rig.function_environment("PollerFunction"), output=quiet
        )
        stream = LambdaFunction(
            "functions/stream", environment=rig.function_environment("StreamFunction"), output=quiet
        )
        poller.invoke(scheduled_event(clock.now()))  # the baseline bootstrap
        rig.published()
        start = clock.now()
        end = start + timedelta(minutes=minutes)
        found = transitions(rig.simulator, start, end)
        planned = plan_deliveries(found, push) if push is not None else []
        pump = KinesisPump(
            rig.stack.client("kinesis"),
            rig.stack.stream_name(),
            lambda event: stream.invoke(event).result or {},
        )
        before = rig.simulator.counters.get("total", 0)
        bus = _Bus(rig, clock)
        polls = [start]
        next_poll = start + timedelta(seconds=poll_period)
        pending = list(planned)
        result = PhaseResult(name, poll_period, minutes, len(found), len(planned))
        while clock.now() < end:
            next_push = pending[0].due + timedelta(seconds=BATCH_WINDOW) if pending else None
            if next_push is not None and next_push < next_poll:
                clock.set(max(clock.now(), next_push))
                due = [d for d in pending if d.due <= clock.now()]
                pending = pending[len(due) :]
                _put(rig.stack.client("kinesis"), rig.stack.stream_name(), due)
                _timed(clock, pump.pump)
                bus.observe("push")
            else:
                clock.set(max(clock.now(), next_poll))
                polls.append(clock.now())
                _timed(clock, lambda: poller.invoke(scheduled_event(clock.now())))
                bus.observe("poll")
                next_poll += timedelta(seconds=poll_period)
        result.comms_requests = rig.simulator.counters.get("total", 0) - before
        result.double_keyed = bus.double_keyed
        _score(result, found, bus.seen, bus.keys, polls, rig.simulator)
    return result


@dataclass
class _Bus:
    """What reached the bus per (operation, status): first when (API clock), by which path, which key."""

    rig: Any
    clock: ManualClock
    seen: dict[tuple[str, str], tuple[datetime, str, str]] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    double_keyed: int = 0

    def observe(self, path: str) -> None:
        for event in self.rig.published():
            detail = event["detail"]
            self.keys[detail["eventKey"]] = self.keys.get(detail["eventKey"], 0) + 1
            if event["detail-type"] == STATUS:
                pair = (detail["operationId"], detail["status"])
                if pair in self.seen and self.seen[pair][2] != detail["eventKey"]:
                    self.double_keyed += 1
                self.seen.setdefault(pair, (self.clock.now(), path, detail["eventKey"]))


def _put(kinesis: Any, stream_name: str, due: Sequence[Delivery]) -> None:
    for start in range(0, len(due), 500):
        chunk = due[start : start + 500]
        kinesis.put_records(
            StreamName=stream_name, Records=[{"Data": d.data, "PartitionKey": d.partition_key} for d in chunk]
        )


def _timed(clock: ManualClock, action: Any) -> None:
    """Run ``action`` and let the API clock move by the wall time it took (the invocation's own latency)."""
    started = time.perf_counter()
    action()
    clock.advance(time.perf_counter() - started)


def _score(
    result: PhaseResult,
    found: Sequence[Transition],
    seen: dict[tuple[str, str], tuple[datetime, str, str]],
    keys: dict[str, int],
    polls: Sequence[datetime],
    simulator: Any,
) -> None:
    for t in found:
        hit = seen.get((t.operation_id, t.status))
        if hit is not None:
            result.latencies.append((hit[0] - t.at).total_seconds())
            result.by_path[hit[1]] = result.by_path.get(hit[1], 0) + 1
            continue
        next_poll = next((p for p in polls if p >= t.at), None)
        current = None if next_poll is None else simulator.operation(t.operation_id, at=next_poll)
        if current is not None and current["status"] == t.status:
            result.lost += 1  # the poll alone would have published it
        else:
            result.superseded_unseen += 1
    result.duplicate_keys = sum(1 for count in keys.values() if count > 1)


def requests_per_hour(seed: int, progress: Any) -> dict[str, Any]:
    """Push + 5-minute reconciling poll vs poll-only each minute at the 100k window."""
    workload = Workload(
        "100k-5min", 100_000, active=1000, changes_per_minute=100, steady_runs=12, warmup_runs=12
    )
    window, problems = measure_workload(
        workload, seed=7, results_dir=RESULTS_DIR, progress=progress, schedule_period=300
    )
    poll_five = window.steady.comms_requests * 12
    scenario = build_scenario(workload, 7, 300)
    # The measured hour in scenario seconds: the bootstrap at the scenario's "now", 12 warm-up runs 5 min
    # apart, then the 12 measured ones.
    hour_start = scenario.now + workload.warmup_runs * 300
    deliveries = _status_changes(scenario, hour_start, hour_start + 3600)
    latest = json.loads((RESULTS_DIR / "latest.json").read_text())
    per_minute = next(w for w in latest["windows"] if w["name"] == "100k")["steady"]["comms_requests"] * 60
    return {
        "poll_every_minute_requests_per_hour": round(per_minute, 1),
        "poll_every_5_minutes_requests_per_hour": round(poll_five, 1),
        "push_fetches_per_hour": deliveries,
        "push_plus_5_minute_poll_requests_per_hour": round(poll_five + deliveries, 1),
        "problems": problems,
    }


def _status_changes(scenario: Scenario, since: int, until: int) -> int:
    """Status transitions (SCHEDULED, PROCESSING, COMPLETED entered) in ``(since, until]`` (scenario
    seconds): the deliveries Event Streams makes, each one fetch (an upper bound: one fetch per distinct
    id per batch)."""
    count = 0
    for op in scenario.operations:
        previous = None
        for version in op.versions():
            if version.status != previous and since < version.time <= until and version.status != "CANCELED":
                count += 1
            previous = version.status
    return count


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="latency phases only, 20 minutes each")
    parser.add_argument("--minutes", type=int, default=None)
    parser.add_argument("--requests-only", action="store_true", help="only the 100k requests-per-hour figure")
    args = parser.parse_args(argv)
    minutes = args.minutes or (20 if args.quick else 60)
    scenario = latency_scenario(SEED, minutes)
    phases = [
        ("poll-only-1min", None, 60),
        ("push-2s+poll-5min", DeliveryFaults(delay_seconds=2, seed=SEED), 300),
        (
            "push-drop20-dup20-shuffled+poll-5min",
            DeliveryFaults(
                delay_seconds=2, reorder_seconds=120, duplicate_share=0.2, drop_share=0.2, seed=SEED
            ),
            300,
        ),
    ]
    results: dict[str, Any] = {"phases": []}
    for name, faults, period in [] if args.requests_only else phases:
        _progress(f"{name}: {minutes} minutes of API time ...")
        phase = run_phase(name, scenario, push=faults, poll_period=period, minutes=minutes)
        row = {**asdict(phase), "p50": phase.p50, "p95": phase.p95}
        del row["latencies"]
        results["phases"].append(row)
        print(_line(phase), flush=True)
    if not args.quick:
        _progress("Comms requests per hour at the 100k window (push + 5-minute poll) ...")
        results["requests_per_hour_100k"] = requests_per_hour(SEED, _progress)
        print(json.dumps(results["requests_per_hour_100k"], indent=2))
    RESULTS_DIR.mkdir(exist_ok=True)
    # A partial run (--quick, --requests-only) keeps the figures of the other part from the last run.
    previous = json.loads(PUSH_JSON.read_text()) if PUSH_JSON.exists() else {}
    if args.requests_only:
        results["phases"] = previous.get("phases", [])
    elif "requests_per_hour_100k" not in results and "requests_per_hour_100k" in previous:
        results["requests_per_hour_100k"] = previous["requests_per_hour_100k"]
    Path(PUSH_JSON).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {PUSH_JSON}")
    return 0


def _line(phase: PhaseResult) -> str:
    return (
        f"{phase.name:<40} status changes {phase.transitions:>4}, latency p50 {phase.p50:6.1f} s, "
        f"p95 {phase.p95:6.1f} s; first seen by {phase.by_path}; lost {phase.lost}, "
        f"unseen by both {phase.superseded_unseen}, two keys {phase.double_keyed}, "
        f"repeated keys {phase.duplicate_keys}; Comms requests {phase.comms_requests}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
