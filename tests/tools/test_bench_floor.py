"""The cadence floor the benchmark prints: the greedy cover and what counts as due (no server)."""

from __future__ import annotations

import pytest

from benchmarks.floor import active_floor, completion_times, follow_up_floor, greedy_cover
from benchmarks.results import FloorFigures
from comms_bridge.poller.discovery import Cadence
from comms_sim.timeline import SendPlan

HOUR = 3600
CADENCE = Cadence.parse("1h:0,24h:15m,7d:1h")


def plan(index: int, created: int, *, start: int | None = None, cancel: int | None = None) -> SendPlan:
    return SendPlan(
        id=f"op{index}", created=created, total=10, start=start, duration=60, step=60, cancel=cancel
    )


@pytest.mark.parametrize(
    ("positions", "page_size", "expected"),
    [
        ([], 1000, 0),
        ([0], 1000, 1),
        ([0, 999], 1000, 1),
        ([0, 1000], 1000, 2),
        ([5, 6, 7, 3000, 3001, 9000], 1000, 3),
        ([0, 1, 2, 3], 2, 2),
    ],
)
def test_greedy_cover_counts_windows_of_consecutive_positions(
    positions: list[int], page_size: int, expected: int
) -> None:
    assert greedy_cover(positions, page_size) == expected


def test_completion_times_skip_canceled_and_unfinished_operations() -> None:
    operations = [
        plan(0, 100),
        plan(1, 50, start=500),
        plan(2, 10, start=900, cancel=400),
    ]
    assert completion_times(operations) == [(50, 560), (100, 160)]


def test_every_run_band_holds_only_operations_completed_within_the_first_band() -> None:
    now = 10 * 24 * HOUR
    # Completed 10 min ago, 30 min ago and 2 h ago; one still processing; one past retention.
    operations = [
        plan(0, now - 3 * HOUR, start=now - 10 * 60 - 60),
        plan(1, now - 5 * HOUR, start=now - 30 * 60 - 60),
        plan(2, now - 6 * HOUR, start=now - 2 * HOUR - 60),
        plan(3, now - 20),
        plan(4, now - 8 * 24 * HOUR),
    ]
    floor = follow_up_floor(operations, [now], CADENCE, page_size=1000, period=60)
    assert floor.every_run_operations == 2
    assert floor.every_run == 1  # both fit one page of COMPLETED operations
    one_per_page = follow_up_floor(operations, [now], CADENCE, page_size=1, period=60)
    assert one_per_page.every_run == 2
    # One operation in the 15-minute band: a page every 15 runs.
    assert floor.banded == pytest.approx(1 / 15)


def test_past_the_last_limit_the_last_interval_holds_until_retention() -> None:
    now = 10 * 24 * HOUR
    # Completed 2 h ago (the 15-minute band) and 2 days ago (past 24 h: the 15-minute band for the
    # short cadence, the hourly band for the default one).
    operations = [
        plan(0, now - 3 * HOUR, start=now - 2 * HOUR - 60),
        plan(1, now - 3 * 24 * HOUR, start=now - 2 * 24 * HOUR - 60),
    ]
    short = follow_up_floor(operations, [now], Cadence.parse("1h:0,24h:15m"), page_size=1000, period=60)
    assert short.banded == pytest.approx(2 / 15)
    assert follow_up_floor(operations, [now], CADENCE, page_size=1000, period=60).banded == pytest.approx(
        1 / 15 + 1 / 60
    )
    assert follow_up_floor(operations, [now], Cadence.parse("1h:0"), page_size=1000, period=60).banded == 0


def test_no_runs_no_floor() -> None:
    assert follow_up_floor([plan(0, 0)], [], CADENCE, page_size=1000, period=60).every_run == 0
    assert follow_up_floor([plan(0, 0)], [], CADENCE, page_size=1000, period=60) == FloorFigures(0, 0, 0)


def test_the_active_floor_is_a_page_per_page_size_of_each_status_in_use() -> None:
    # At t=100: two PROCESSING (0 and 1), one SCHEDULED (2); at t=700 all done; at t=550 one PROCESSING.
    operations = [plan(0, 0), plan(1, 50), plan(2, 10, start=500)]
    operations[0] = SendPlan(id="op0", created=0, total=10, start=None, duration=200, step=200)
    operations[1] = SendPlan(id="op1", created=50, total=10, start=None, duration=200, step=200)
    assert active_floor(operations, [100], page_size=1000) == 2  # a PROCESSING page and a SCHEDULED one
    assert active_floor(operations, [100], page_size=1) == 3
    assert active_floor(operations, [550], page_size=1000) == 1  # nobody SCHEDULED: no page for it
    assert active_floor(operations, [700], page_size=1000) == 0
    assert active_floor(operations, [100, 550], page_size=1000) == 1.5
    floor = follow_up_floor(operations, [100], CADENCE, page_size=1000, period=60)
    assert floor.active == 2 and floor.total == floor.every_run + floor.banded + 2
