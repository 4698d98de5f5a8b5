"""Retention, time budget and steady-state cost of the poller handler."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from benchmarks.floor import follow_up_floor
from comms_bridge.poller.discovery import DEFAULT_CADENCE, Cadence
from comms_bridge.poller.state_store import checkpoint_key
from comms_sim import ManualClock, Scenario
from comms_sim.pytest_plugin import STORY_START
from tests.support.poller_harness import (
    FakeContext,
    PollerHarness,
    make_harness,
    new_simulator,
    shared_aws,  # noqa: F401 - fixture
)

pytestmark = pytest.mark.integration
PAGE = 10


AGING = Scenario.from_dict(
    {
        "name": "aging",
        "operations": [
            # PROCESSING forever: stalls 5 minutes in; leaves Twilio's 7-day retention 10 minutes from now.
            {
                "name": "stuck",
                "created": "-6d23h50m",
                "total": 100,
                "duration": "1h",
                "step": "1m",
                "stall": {"at": "-6d23h45m", "for": None},
            },
            {"name": "fresh", "created": "-5m", "total": 10, "duration": "20m", "step": "1m"},
        ],
    }
)


@pytest.fixture
def aging(shared_aws, monkeypatch) -> Iterator[PollerHarness]:  # noqa: F811 - the fixture
    with new_simulator(AGING, ManualClock(STORY_START)) as simulator:
        yield from make_harness(shared_aws, monkeypatch, simulator)


def test_an_active_operation_that_ages_out_is_dropped_without_inventing_a_status(
    aging: PollerHarness,
) -> None:
    sim = aging.simulator
    stuck = sim.operation_id("stuck")
    first = aging.invoke()
    assert first["status"] == "complete"
    sim.advance(60)
    second = aging.invoke()  # the due stall is reported now
    stalled = [e for e in aging.drain() if e["detail"]["operationId"] == stuck]
    assert [e["detail-type"] for e in stalled] == ["Email Operation Stalled"]
    assert second["retention_dropped"] == 0

    sim.advance(15 * 60)  # past 7 days after creation: the API answers 404 for it
    assert sim.operation(stuck) is None
    third = aging.invoke()
    assert third["status"] == "complete"
    assert third["departures"] == 1 and third["retention_dropped"] == 1
    assert all(e["detail"]["operationId"] != stuck for e in aging.drain())
    keys = {item["pk"]["S"] + "|" + item["sk"]["S"] for item in aging.state_items()}
    assert not any(stuck in key for key in keys), "state and active index entry are gone"
    fourth = aging.invoke()
    assert fourth["departures"] == 0 and fourth["comms_requests"] <= 4


@pytest.fixture
def story(shared_aws, monkeypatch) -> Iterator[PollerHarness]:  # noqa: F811 - the fixture
    with new_simulator(Scenario.story(), ManualClock(STORY_START)) as simulator:
        yield from make_harness(shared_aws, monkeypatch, simulator, extra_env={"PAGE_SIZE": "2"})


def test_time_budget_stops_early_and_the_next_run_carries_on(story: PollerHarness) -> None:
    sim = story.simulator
    calls = {"n": 0}

    def remaining() -> int:
        # Plenty at first, then below POLLER_SAFETY_MARGIN_SECONDS after a few checks.
        calls["n"] += 1
        return 60_000 if calls["n"] <= 4 else 3_000

    short = story.invoke(FakeContext(remaining))
    assert short["stopped_reason"] == "time budget"
    assert not short["bootstrapped"] and short["buckets_due_left"] > 0

    full = story.invoke(FakeContext(60_000))
    assert full["status"] == "complete" and full["bootstrapped"]
    assert story.drain(wait=0.2) == []  # baseline: silent however many runs the bootstrap takes

    # A run cut short in steady state publishes what it decided and redoes the rest next time.
    sim.advance(300)
    calls["n"] = 0
    story.invoke(FakeContext(remaining))
    sim.advance(0)
    after = story.invoke(FakeContext(60_000))
    assert after["status"] == "complete"
    story.drain()
    truth = {op["id"]: (op["status"], op["updatedAt"]) for op in sim.operations()}
    states = {
        item["operationId"]["S"]: (item["status"]["S"], item["updatedAt"]["S"])
        for item in story.state_items()
        if item["sk"]["S"] == "STATE"
    }
    assert all(states[op_id] == value for op_id, value in truth.items())

    low = story.invoke(FakeContext(1_000))  # below the margin from the start: nothing is started
    assert low["stopped_reason"] == "time budget" and low["comms_requests"] == 0


WARMUP_RUNS = 60  # a baseline bootstrap does not know when operations completed: an hour to learn it
MEASURED_RUNS = 60  # an hour: every follow-up cadence (every run, 15 min, 1 h) exactly once


@pytest.fixture(params=["on-arrival", "scheduled"])
def week(request, shared_aws, monkeypatch) -> Iterator[PollerHarness]:  # noqa: F811 - the fixture
    # 1/100 of the target (100,000 operations, 1,000 active, ~100 changes a minute) with pages of 10
    # instead of 1,000, so that pages per bucket and per listing are what they are at full scale.
    scenario = Scenario.generate(
        n_operations=1000, days=7, active=10, changes_per_minute=1, seed=7, shape=request.param
    )
    with new_simulator(scenario, ManualClock(STORY_START)) as simulator:
        yield from make_harness(shared_aws, monkeypatch, simulator, extra_env={"PAGE_SIZE": str(PAGE)})


def test_steady_state_cost_counts_calls_not_time(week: PollerHarness) -> None:
    sim = week.simulator
    full_scan_pages = math.ceil(len(sim.operations()) / PAGE)
    boot = week.invoke()
    assert boot["status"] == "complete" and boot["bootstrapped"]
    for _ in range(WARMUP_RUNS):
        sim.advance(60)
        assert week.invoke()["status"] == "complete"
    week.drain()
    week.proxy.reset_counts()

    runs = []
    run_times = []
    changed_ops = 0
    for _ in range(MEASURED_RUNS):
        before = sim.now()
        sim.advance(60)
        changed_ops += len({e.operation_id for e in sim.history_between(before, sim.now())})
        run_times.append(round((sim.now() - sim.anchor).total_seconds()))
        runs.append(week.invoke())
    events = week.drain()
    assert all(r["status"] == "complete" for r in runs)

    requests = sum(r["comms_requests"] for r in runs) / len(runs)
    floor = follow_up_floor(
        sim.scenario.operations, run_times, Cadence.parse(DEFAULT_CADENCE), page_size=PAGE, period=60
    )
    # Scaled down 100x, an hour holds ~6 completions instead of ~600, so the every-run band is cheap in
    # both shapes here; the full-scale figures (9.0 and 12.8 requests a run) come from `make bench`.
    assert requests <= 0.10 * full_scan_pages, (requests, full_scan_pages, floor)
    assert requests >= floor.every_run
    # DynamoDB: no item of an unchanged operation is read or written (the active index Query aside).
    state_reads = week.proxy.entries["DynamoDB_20120810.BatchGetItem"]
    assert state_reads <= changed_ops
    # Conditional state writes: a change with events is a claimed state write (1 item), then its settle (the
    # claim removed and the index entry, 2); each run also takes and releases its lease and writes its
    # checkpoint (UpdateItem or a transaction of two).
    writes = (
        week.proxy.entries["DynamoDB_20120810.TransactWriteItems"]
        + week.proxy.calls["DynamoDB_20120810.PutItem"]
        + week.proxy.calls["DynamoDB_20120810.UpdateItem"]
    )
    stalls = sum(1 for e in events if e["detail-type"].endswith("Stalled"))
    assert writes <= 3 * changed_ops + 3 * stalls + 5 * len(runs)
    # PutEvents: ceil(events / 10) per publish round, nothing more without failures.
    put_calls = week.proxy.calls["AWSEvents.PutEvents"]
    assert len(events) == sum(r["events_published"] for r in runs)
    assert put_calls <= sum(math.ceil(r["events_published"] / 10) + 1 for r in runs if r["events_published"])
    print(
        f"\n1k ops, pageSize {PAGE} (full scan {full_scan_pages} pages): {requests:.1f} requests/run "
        f"(floor of the cadence {floor.every_run:.1f} + {floor.banded:.1f}), "
        f"{state_reads} state items read and {writes} written for {changed_ops} changed operations, "
        f"{len(events)} events in {put_calls} PutEvents calls over {len(runs)} runs; "
        f"bootstrap {boot['comms_requests']} requests in {boot['duration_ms']} ms"
    )


STALLED_AT_BOOTSTRAP = Scenario.from_dict(
    {
        "name": "stalled-at-bootstrap",
        "operations": [
            # PROCESSING and not moving for 3 days already when the poller is first deployed.
            {
                "name": "stuck",
                "created": "-3d",
                "total": 100,
                "duration": "1h",
                "step": "1m",
                "stall": {"at": "-2d23h50m", "for": None},
            },
            {"name": "fresh", "created": "-5m", "total": 10, "duration": "20m", "step": "1m"},
        ],
    }
)


@pytest.fixture
def stalled(shared_aws, monkeypatch) -> Iterator[PollerHarness]:  # noqa: F811 - the fixture
    # The API clock near the local one, as in production: the very first listing of a cold start, before
    # any API Date header is known, takes its startDate from the local clock.
    start = datetime.now(UTC).replace(microsecond=0)
    with new_simulator(STALLED_AT_BOOTSTRAP, ManualClock(start)) as simulator:
        yield from make_harness(shared_aws, monkeypatch, simulator, extra_env={"BOOTSTRAP_MODE": "baseline"})


def test_a_baseline_bootstrap_over_two_runs_reports_an_old_stall_only_afterwards(
    stalled: PollerHarness,
) -> None:
    sim = stalled.simulator
    stuck = sim.operation_id("stuck")

    dynamodb = stalled.stack.client("dynamodb")
    active_key = {"pk": {"S": f"ACTIVE#{sim.account_sid}"}, "sk": {"S": stuck}}
    seen: list[bool] = []

    def recorded() -> bool:
        # Asked at every deadline check: one GetItem of its active-index entry (a scan each time took ~50 s).
        if not seen and "Item" in dynamodb.get_item(TableName=stalled.stack.state_table_name, Key=active_key):
            seen.append(True)
        return bool(seen)

    def remaining() -> int:
        # Plenty until the stuck operation is recorded (active index), then below the safety margin.
        return 3_000 if recorded() else 60_000

    # The first run records the stuck operation and stops before every bucket is listed; the second one,
    # still baseline, meets it again as a tracked PROCESSING operation (the stall check's path).
    short = stalled.invoke(FakeContext(remaining))
    assert short["stopped_reason"] == "time budget" and not short["bootstrapped"]
    assert recorded()
    full = stalled.invoke(FakeContext(60_000))
    assert full["status"] == "complete" and full["bootstrapped"]
    assert stalled.drain(wait=0.2) == [], "a baseline bootstrap publishes nothing, stalls included"

    sim.advance(60)
    after = stalled.invoke()
    assert after["status"] == "complete"
    events = [e for e in stalled.drain() if e["detail"]["operationId"] == stuck]
    assert [e["detail-type"] for e in events] == ["Email Operation Stalled"]


def test_debug_logging_never_shows_secrets(
    story: PollerHarness, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # At DEBUG botocore would log GetSecretValue's response body (the auth token): it stays at INFO.
    caplog.set_level(logging.DEBUG)
    for name in ("botocore", "urllib3"):  # as in a fresh container, whatever imported earlier set
        caplog.set_level(logging.DEBUG, logger=name)
    story.set_env(POWERTOOLS_LOG_LEVEL="DEBUG")
    summary = story.invoke(cold=True)
    assert logging.getLogger("botocore").level >= logging.INFO
    assert summary["status"] == "complete"
    output = capsys.readouterr()
    everything = caplog.text + output.out + output.err
    assert "poller run finished" in everything
    assert story.simulator.auth_token not in everything


def test_a_checkpoint_in_the_earlier_recent_layout_is_read_and_rewritten_compact(
    story: PollerHarness,
) -> None:
    # The layout that outgrew 400 KB after a burst (operation id -> "<updatedAt> <fingerprint>"): a
    # deployment stuck with it recovers, the entries are dropped (each costs a state read at most).
    assert story.invoke()["status"] == "complete"
    db = story.stack.client("dynamodb")
    key = checkpoint_key(story.simulator.account_sid)
    item = db.get_item(TableName=story.stack.state_table_name, Key=key)["Item"]
    doc = json.loads(item["doc"]["S"])
    doc["recent"] = {
        f"comms_operation_{n:026d}": f"2026-01-05T08:59:{n % 60:02d}Z {n:016x}" for n in range(3000)
    }
    db.update_item(
        TableName=story.stack.state_table_name,
        Key=key,
        UpdateExpression="SET doc = :doc",
        ExpressionAttributeValues={":doc": {"S": json.dumps(doc)}},
    )
    story.simulator.advance(60)
    for _ in range(2):
        assert story.invoke()["status"] == "complete"
        item = db.get_item(TableName=story.stack.state_table_name, Key=key)["Item"]
        recent = json.loads(item["doc"]["S"])["recent"]
        assert not any(minute.startswith("comms_operation_") for minute in recent)
        assert len(item["doc"]["S"]) < 50_000
