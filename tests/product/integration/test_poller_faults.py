"""Faults on both sides (Comms API through the simulator, AWS through the fault proxy): nothing observed
is lost, a republish keeps its eventKey, the state ends equal to the API's truth."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from comms_bridge.comms.models import OperationStatus
from comms_bridge.poller.exceptions import CheckpointConflict, StateStoreError
from comms_sim import FaultRule, ManualClock, Scenario
from comms_sim.pytest_plugin import STORY_START
from tests.support.aws_fault_proxy import AwsFault
from tests.support.poller_harness import (
    FakeContext,
    PollerHarness,
    load_poller_module,
    make_harness,
    new_simulator,
    shared_aws,  # noqa: F401 - fixture
)

pytestmark = pytest.mark.integration

STEP = 240  # seconds between polls in these tests: several operations change in each step


@pytest.fixture
def harness(shared_aws, monkeypatch) -> Iterator[PollerHarness]:  # noqa: F811 - the fixture
    with new_simulator(Scenario.story(), ManualClock(STORY_START)) as simulator:
        yield from make_harness(
            shared_aws, monkeypatch, simulator, extra_env={"COMMS_READ_TIMEOUT_SECONDS": "0.3"}
        )


def bootstrap(harness: PollerHarness) -> dict[str, str]:
    summary = harness.invoke()
    assert summary["status"] == "complete" and summary["bootstrapped"]
    return {op["id"]: op["status"] for op in harness.simulator.operations()}


def assert_caught_up(harness: PollerHarness, at_bootstrap: dict[str, str]) -> None:
    """Every status transition since the bootstrap was published (in a consistent chain), and the state
    table holds exactly what the API shows now."""
    by_op: dict[str, list[dict[str, Any]]] = {}
    for event in harness.captured:
        if event["detail-type"] == "Email Operation Status Changed":
            by_op.setdefault(event["detail"]["operationId"], []).append(event["detail"])
    for op in harness.simulator.operations():
        previous = at_bootstrap.get(op["id"])
        distinct = sorted(
            {(d["previousStatus"], d["status"]) for d in by_op.get(op["id"], [])},
            key=lambda p: OperationStatus(p[1]).rank,
        )
        for before, after in distinct:
            assert before == previous, op["id"]
            previous = after
        assert previous == op["status"], f"{op['id']}: last published {previous}, API says {op['status']}"
    states = {
        item["operationId"]["S"]: (item["status"]["S"], item["updatedAt"]["S"])
        for item in harness.state_items()
        if item["sk"]["S"] == "STATE"
    }
    for op in harness.simulator.operations():
        assert states[op["id"]] == (op["status"], op["updatedAt"])


def keys_by_type(events: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(e["detail"]["operationId"], e["detail-type"], e["detail"]["eventKey"]) for e in events}


@pytest.mark.parametrize("kind", ["429", "503"])
def test_api_throttling_is_retried_within_the_run(harness: PollerHarness, kind: str) -> None:
    at_bootstrap = bootstrap(harness)
    harness.simulator.advance(STEP)
    harness.simulator.faults.add(FaultRule(kind=kind, endpoint="list_operations", times=2, retry_after="0"))
    summary = harness.invoke()
    assert summary["status"] == "complete"
    assert harness.simulator.counters[f"fault_{kind}"] == 2
    harness.drain()
    assert_caught_up(harness, at_bootstrap)


@pytest.mark.parametrize(
    "rule",
    [
        FaultRule(kind="500", endpoint="list_operations", times=1, skip=1),
        FaultRule(kind="malformed_json", endpoint="list_operations", times=1, skip=2),
        FaultRule(kind="slow", endpoint="list_operations", times=3, delay=0.5),
    ],
    ids=["500", "malformed-json", "timeouts"],
)
def test_api_failure_keeps_the_watermark_and_the_next_run_catches_up(
    harness: PollerHarness, rule: FaultRule
) -> None:
    at_bootstrap = bootstrap(harness)
    harness.simulator.advance(STEP)
    harness.simulator.faults.add(rule)
    failed = harness.invoke()
    assert failed["status"] in ("partial", "failed") and failed["errors"]
    harness.drain()
    recovered = harness.invoke()
    assert recovered["status"] == "complete"
    harness.drain()
    assert_caught_up(harness, at_bootstrap)


def test_one_timeout_is_retried_by_the_client(harness: PollerHarness) -> None:
    at_bootstrap = bootstrap(harness)
    harness.simulator.advance(STEP)
    harness.simulator.faults.add(FaultRule(kind="slow", endpoint="list_operations", times=1, delay=0.5))
    assert harness.invoke()["status"] == "complete"
    harness.drain()
    assert_caught_up(harness, at_bootstrap)


def test_malformed_items_are_skipped_counted_and_not_lost(harness: PollerHarness) -> None:
    at_bootstrap = bootstrap(harness)
    harness.simulator.advance(STEP)
    harness.simulator.faults.add(
        FaultRule(kind="bad_items", endpoint="list_operations", times=3, items=1, mutation="string_counter")
    )
    summary = harness.invoke()
    assert summary["status"] == "complete"
    assert summary["skipped_malformed"] == 3
    harness.drain()
    again = harness.invoke()
    assert again["skipped_malformed"] == 0
    harness.drain()
    assert_caught_up(harness, at_bootstrap)


def test_put_events_partial_failure_retries_only_failed_entries(harness: PollerHarness) -> None:
    at_bootstrap = bootstrap(harness)
    harness.simulator.advance(STEP)
    fault = harness.proxy.add(
        AwsFault("AWSEvents.PutEvents", "fail_entries", times=1, entries=lambda i, e: i == 0)
    )
    summary = harness.invoke()
    assert fault.fired == 1
    assert summary["status"] == "complete" and summary["publish_failures"] == 0
    events = harness.drain()
    assert summary["events_published"] == len(events) > 1
    assert summary["put_events_calls"] == harness.proxy.calls["AWSEvents.PutEvents"]
    # The retry carried only the failed entry.
    assert harness.proxy.entries["AWSEvents.PutEvents"] == len(events) + 1
    assert_caught_up(harness, at_bootstrap)


def test_put_events_persistent_failure_keeps_the_state_and_republishes_the_same_key(
    harness: PollerHarness,
) -> None:
    at_bootstrap = bootstrap(harness)
    harness.simulator.advance(STEP)
    victim: dict[str, str] = {}

    def first_operation(index: int, entry: dict[str, Any]) -> bool:
        op_id = json.loads(entry["Detail"])["operationId"]
        victim.setdefault("id", op_id)
        if op_id == victim["id"]:
            victim["key"] = json.loads(entry["Detail"])["eventKey"]
            return True
        return False

    harness.proxy.add(AwsFault("AWSEvents.PutEvents", "fail_entries", times=None, entries=first_operation))
    failed = harness.invoke()
    assert failed["status"] == "partial" and failed["publish_failures"] == 1
    first = harness.drain()
    assert victim["id"] not in {e["detail"]["operationId"] for e in first}
    harness.proxy.clear()
    recovered = harness.invoke()
    assert recovered["status"] == "complete"
    second = harness.drain()
    republished = [e for e in second if e["detail"]["operationId"] == victim["id"]]
    assert victim["key"] in {e["detail"]["eventKey"] for e in republished}
    assert_caught_up(harness, at_bootstrap)


def test_dynamodb_throttling_and_conflicting_transactions_are_retried(harness: PollerHarness) -> None:
    at_bootstrap = bootstrap(harness)
    harness.simulator.advance(STEP)
    rules = [
        harness.proxy.add(AwsFault("DynamoDB_20120810.TransactWriteItems", "throttle", times=1)),
        harness.proxy.add(AwsFault("DynamoDB_20120810.BatchGetItem", "throttle", times=1)),
        harness.proxy.add(AwsFault("DynamoDB_20120810.TransactWriteItems", "transaction_conflict", times=1)),
    ]
    summary = harness.invoke()
    assert summary["status"] == "complete"
    assert all(rule.fired == rule.times for rule in rules)
    harness.drain()
    assert_caught_up(harness, at_bootstrap)


def test_crash_between_publish_and_settle_republishes_identical_keys(harness: PollerHarness) -> None:
    """Claim-before-publish: the new states are written with a claim, the events go out, and settling the
    claims fails (the function dies there). Once the claims lapse, the next run publishes the same events
    again under the same keys and settles them; nothing is lost, nothing gets a second key."""
    at_bootstrap = bootstrap(harness)
    harness.simulator.advance(STEP)
    settles = harness.proxy.add(
        AwsFault("DynamoDB_20120810.TransactWriteItems", "500", times=None, body_contains=b"REMOVE #claim")
    )
    single_settles = harness.proxy.add(
        AwsFault("DynamoDB_20120810.UpdateItem", "500", times=None, body_contains=b"REMOVE #claim")
    )
    with pytest.raises(StateStoreError):
        harness.invoke()
    assert settles.fired + single_settles.fired > 0
    # The failed invocation released its lease (the checkpoint item keeps no owner).
    (checkpoint,) = [item for item in harness.state_items() if item["sk"]["S"] == "CHECKPOINT"]
    assert "owner" not in checkpoint
    published = harness.drain()
    assert published
    claimed = [item for item in harness.state_items() if "claim" in item]
    assert claimed, "the claims of the dead invocation are still in the table"
    harness.proxy.clear()
    # Time passes on the local clock until the claims lapse (their writer's deadline plus the margin).
    for item in claimed:
        harness.stack.client("dynamodb").update_item(
            TableName=harness.stack.state_table_name,
            Key={"pk": item["pk"], "sk": item["sk"]},
            UpdateExpression="SET #claim.#until = :zero",
            ExpressionAttributeNames={"#claim": "claim", "#until": "until"},
            ExpressionAttributeValues={":zero": {"N": "0"}},
        )
    summary = harness.invoke()
    assert summary["status"] == "complete" and summary["claims_recovered"] == len(claimed)
    republished = harness.drain()
    # Same changes, same keys: consumers dedupe. Nothing was lost either.
    assert keys_by_type(published) <= keys_by_type(republished)
    assert not [item for item in harness.state_items() if "claim" in item and item["sk"]["S"] == "STATE"]
    assert_caught_up(harness, at_bootstrap)


def test_two_overlapping_invocations_publish_once(harness: PollerHarness) -> None:
    at_bootstrap = bootstrap(harness)
    harness.simulator.advance(STEP)
    # Slow listings keep the first run busy while the second one starts.
    harness.simulator.faults.add(FaultRule(kind="slow", endpoint="list_operations", times=None, delay=0.3))
    harness.set_env(COMMS_READ_TIMEOUT_SECONDS="5")
    modules = [load_poller_module(), load_poller_module()]
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def invoke(module: Any) -> None:
        barrier.wait()
        results.append(module.lambda_handler({}, FakeContext()))

    threads = [threading.Thread(target=invoke, args=(m,)) for m in modules]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(r["status"] for r in results) == ["complete", "contended"]
    contended = next(r for r in results if r["status"] == "contended")
    assert contended["events_published"] == 0 and contended["comms_requests"] == 1
    events = harness.drain()
    keys = [e["detail"]["eventKey"] for e in events]
    assert len(keys) == len(set(keys)) > 0
    harness.simulator.faults.clear()
    assert_caught_up(harness, at_bootstrap)


# A's looks at its remaining time: 1 before its lease (B runs first), 3 taking the lease, 5 before its
# last listing request, 6 computing its claims' deadline between deciding and writing (the race itself).
CLAIM_CALL = 6


@pytest.mark.parametrize("after_calls", [1, 3, 5, CLAIM_CALL])
def test_a_lease_taken_over_while_a_run_is_live_publishes_nothing_twice(
    harness: PollerHarness, after_calls: int
) -> None:
    """Run A outlives its lease (the API clock jumps past it mid-run) and run B takes over and finishes;
    then A goes on. The version protocol refuses A's writes where B was first, so no change is published
    twice and no Stats Changed double-counts; A's checkpoint is refused (the lease is B's). Four points
    of A's run for the takeover (its n-th look at its remaining time)."""
    at_bootstrap = bootstrap(harness)
    harness.simulator.advance(STEP)
    takeover = load_poller_module()
    taken: list[dict[str, Any]] = []
    calls = 0

    def remaining() -> int:
        nonlocal calls
        calls += 1
        if calls == after_calls and not taken:
            harness.simulator.advance(2 * 900)  # past any lease A can hold (LEASE_SECONDS at most 900 + 30)
            taken.append(takeover.lambda_handler({}, FakeContext()))
        return 60_000

    try:
        first = harness.invoke(FakeContext(remaining))
    except CheckpointConflict:
        first = None  # A finished its work and found its lease gone: nothing of it is kept
    assert taken and taken[0]["status"] == "complete", "B took the lease over and finished"
    events = harness.drain()
    keys = [e["detail"]["eventKey"] for e in events]
    assert len(keys) == len(set(keys)), "a change published twice"
    stats_by_op: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["detail-type"] == "Email Operation Stats Changed":
            stats_by_op.setdefault(event["detail"]["operationId"], []).append(event["detail"])
    for chain in stats_by_op.values():  # deltas a consumer sums: each starts where the previous ended
        for before, after in itertools.pairwise(chain):
            assert after["previousStats"] == before["stats"]
    if first is not None:
        assert first["status"] in ("complete", "partial", "contended")
    if after_calls == CLAIM_CALL:
        # B wrote the states A had decided on: A's conditional writes were refused, A published nothing.
        assert len(events) == taken[0]["events_published"] > 0
    harness.invoke()
    harness.drain()
    assert_caught_up(harness, at_bootstrap)
