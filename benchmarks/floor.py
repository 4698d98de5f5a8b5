"""What the follow-up cadence itself costs: the fewest Comms requests any poller could make for it.

Computed from the simulator's ground truth (when each operation really completed), not from the poller,
so it tells a planning problem (measured far above the floor) from a cost the cadence imposes (the
floor is already high).

* ``every_run``: a lower bound, for any planner, of the requests that show every operation in its
  every-run band (completed less than the first band ago, 1 h by default) in one run. A listing can
  only select on ``createdAt`` and one ``status``; the listing that returns the fewest operations around
  a completed one is ``status=COMPLETED`` over a ``createdAt`` range, so the cheapest cover is ranges of
  at most ``pageSize`` consecutive COMPLETED operations (in ``createdAt`` order), which the greedy cover
  from the oldest one finds exactly. Fetching by id is a range of one.
* ``active``: the listings of the active set no run can avoid: a status's operations (SCHEDULED,
  PROCESSING) are seen by listing that status, one page per ``pageSize`` of them, and a status nobody is
  in costs nothing (for a poller that knew it).
* ``banded``: the slower bands (e.g. every 15 min up to 24 h, hourly to 7 d) as if each band's COMPLETED
  operations were listed in full pages once per interval and nothing else: an estimate (a real run can
  share pages between bands), not a bound.

The cadence floor of a run (issue 15's target: the mean within 1.05x of it) is every-run + banded +
active (``FloorFigures.total``, read by ``WindowResult.floor_requests``). The poller skips the SCHEDULED
listing only while it can prove it needless (``scheduled_listing_needed``), which is never more than the
active floor counts for a status nobody is in. Slots (``due_buckets``) spread the slower bands over their
interval; they do not change what the bands cost.
"""

from __future__ import annotations

import argparse
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import timedelta

from benchmarks.results import FloorFigures
from comms_bridge.poller.discovery import DEFAULT_CADENCE, RETENTION, Cadence
from comms_sim.generate import DEFAULT_SHAPE, SHAPES
from comms_sim.timeline import COMPLETED, PROCESSING, SCHEDULED, Timeline


def completion_times(operations: Sequence[Timeline]) -> list[tuple[int, int]]:
    """(created, completed) of every operation that completes, sorted by ``created`` (scenario seconds)."""
    pairs: list[tuple[int, int]] = []
    for timeline in operations:
        done = next((v.time for v in timeline.versions() if v.status == COMPLETED), None)
        if done is not None:
            pairs.append((timeline.created, done))
    pairs.sort()
    return pairs


def status_intervals(operations: Sequence[Timeline], status: str) -> tuple[list[int], list[int]]:
    """When each operation entered ``status`` and when it left it (sorted separately): at time t,
    ``bisect_right(entered, t) - bisect_right(left, t)`` operations are in it."""
    entered: list[int] = []
    left: list[int] = []
    for timeline in operations:
        start = end = None
        for version in timeline.versions():
            if version.status == status and start is None:
                start = version.time
            elif start is not None and version.status != status:
                end = version.time
                break
        if start is not None:
            entered.append(start)
            left.append(end if end is not None else 2**62)
    return sorted(entered), sorted(left)


def active_floor(operations: Sequence[Timeline], run_times: Sequence[int], page_size: int) -> float:
    """Mean pages per run of the active listings: per status, ceil(operations in it / page_size)."""
    if not run_times:
        return 0.0
    total = 0
    for status in (SCHEDULED, PROCESSING):
        entered, left = status_intervals(operations, status)
        for t in run_times:
            total += -(-(bisect_right(entered, t) - bisect_right(left, t)) // page_size)
    return total / len(run_times)


def greedy_cover(positions: Sequence[int], page_size: int) -> int:
    """Fewest windows of ``page_size`` consecutive positions that hold every one of ``positions``
    (ascending)."""
    count = 0
    reach = -1
    for position in positions:
        if position > reach:
            count += 1
            reach = position + page_size - 1
    return count


def follow_up_floor(
    operations: Sequence[Timeline],
    run_times: Sequence[int],
    cadence: Cadence,
    *,
    page_size: int,
    period: int,
) -> FloorFigures:
    if not run_times:
        return FloorFigures(0.0, 0.0, 0.0)
    pairs = completion_times(operations)
    created = [c for c, _ in pairs]
    retention = int(RETENTION.total_seconds())
    first_band = int(cadence.recent_window.total_seconds())
    every_run = banded = in_band = 0.0
    for t in run_times:
        lo, hi = bisect_right(created, t - retention), bisect_right(created, t)
        positions: list[int] = []
        ages: list[int] = []
        for _, done in pairs[lo:hi]:
            if done > t:
                continue
            if t - done < first_band:
                positions.append(len(ages))
            ages.append(t - done)
        every_run += greedy_cover(positions, page_size)
        in_band += len(positions)
        ordered = sorted(ages)
        lower = 0
        # Past the last limit the last interval holds until retention ends (no age reaches retention).
        for limit, interval in (*cadence.bands, (RETENTION, cadence.bands[-1][1])):
            upper = int(limit.total_seconds())
            if interval > timedelta(0):
                n = bisect_left(ordered, upper) - bisect_left(ordered, lower)
                runs_per_interval = max(interval.total_seconds() / period, 1.0)
                banded += -(-n // page_size) / runs_per_interval
            lower = upper
    runs = len(run_times)
    return FloorFigures(
        every_run / runs, banded / runs, in_band / runs, active=active_floor(operations, run_times, page_size)
    )


def main(argv: Sequence[str] | None = None) -> int:
    # The bench's own scenario and run times, so the figures are the performance page's.
    from benchmarks.harness import Workload, build_scenario  # noqa: PLC0415 -- harness imports this module
    from benchmarks.run import CHANGES_PER_MINUTE, SCHEDULE_PERIOD, SEED, WARMUP_RUNS  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.floor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--operations", type=int, default=100_000)
    parser.add_argument("--shape", choices=tuple(SHAPES), default=DEFAULT_SHAPE)
    parser.add_argument("--cadence", default=DEFAULT_CADENCE, help="FOLLOW_UP_CADENCE")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--runs", type=int, default=60, help="runs a minute apart, after an hour")
    args = parser.parse_args(argv)
    workload = Workload(
        "floor",
        args.operations,
        active=args.operations // 100,
        changes_per_minute=CHANGES_PER_MINUTE,
        steady_runs=args.runs,
        shape=args.shape,
        warmup_runs=WARMUP_RUNS,
    )
    scenario = build_scenario(workload, args.seed, SCHEDULE_PERIOD)
    first = scenario.now + WARMUP_RUNS * SCHEDULE_PERIOD
    times = [first + SCHEDULE_PERIOD * (i + 1) for i in range(args.runs)]
    floor = follow_up_floor(
        scenario.operations, times, Cadence.parse(args.cadence), page_size=1000, period=SCHEDULE_PERIOD
    )
    full_scan = -(-args.operations // 1000)
    together = floor.every_run + floor.banded
    active = floor.active or 0.0
    print(
        f"{args.operations:,} operations, shape {args.shape}, cadence {args.cadence}, {args.runs} runs:\n"
        f"  every-run band: {floor.every_run_operations:,.0f} operations, at least {floor.every_run:.1f} "
        f"requests per run\n"
        f"  slower bands, listed on their own: about {floor.banded:.1f} requests per run\n"
        f"  active set: at least {active:.1f} requests per run (a page per 1,000 operations of a status)\n"
        f"  together {together + active:.1f} = {(together + active) / full_scan:.1%} "
        f"of a full scan ({full_scan:,} requests)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
