"""The poller handler end to end on the story scenario: bootstrap, an hour of changes, ground truth."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import pytest

from comms_bridge.comms.models import OperationStatus
from comms_sim import ManualClock, Scenario
from comms_sim.pytest_plugin import STORY_START
from tests.support.poller_harness import (
    PollerHarness,
    make_harness,
    new_simulator,
    shared_aws,  # noqa: F401 - fixture
)

pytestmark = pytest.mark.integration


@pytest.fixture
def harness(shared_aws, monkeypatch) -> Iterator[PollerHarness]:  # noqa: F811 - the fixture
    with new_simulator(Scenario.story(), ManualClock(STORY_START)) as simulator:
        yield from make_harness(shared_aws, monkeypatch, simulator, extra_env={"STALL_AFTER_SECONDS": "600"})


def recorded_states(harness: PollerHarness) -> dict[str, dict[str, object]]:
    states = {}
    for item in harness.state_items():
        if item["sk"]["S"] == "STATE":
            states[item["operationId"]["S"]] = {
                "status": item["status"]["S"],
                "updatedAt": item["updatedAt"]["S"],
                "stats": {k: int(v["N"]) for k, v in item["stats"]["M"].items()},
            }
    return states


def test_baseline_bootstrap_then_an_hour_of_changes(harness: PollerHarness) -> None:
    sim = harness.simulator
    first = harness.invoke()
    assert first["status"] == "complete" and first["bootstrapped"]
    assert first["events_published"] == 0
    assert harness.drain(wait=0.2) == []
    at_bootstrap = {op["id"]: op["status"] for op in sim.operations()}

    summaries = []
    for _ in range(16):
        sim.advance(240)
        summaries.append(harness.invoke())
    assert all(s["status"] == "complete" for s in summaries)
    events = harness.drain()
    keys = [e["detail"]["eventKey"] for e in events]
    assert len(keys) == len(set(keys)), "no duplicates without faults"

    by_op: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_op[event["detail"]["operationId"]].append(event)

    # Status Changed events chain from the bootstrap status, never skip back, never invent a status.
    for op_id, op_events in by_op.items():
        changes = sorted(
            (e["detail"] for e in op_events if e["detail-type"] == "Email Operation Status Changed"),
            key=lambda d: OperationStatus(d["status"]).rank,
        )
        previous = at_bootstrap.get(op_id)
        for detail in changes:
            assert detail["previousStatus"] == previous
            previous = detail["status"]
        real = {entry.status for entry in sim.history_of(op_id)}
        assert {d["status"] for d in changes} <= real

    # The state table ends equal to the API's truth for every operation still visible.
    states = recorded_states(harness)
    for op in sim.operations():
        assert states[op["id"]] == {
            "status": op["status"],
            "updatedAt": op["updatedAt"],
            "stats": op["stats"],
        }

    names = {sim.operation_id(n): n for n in ("canceled", "stalled", "late-opens", "reminder", "newsletter")}
    types = {n: [e["detail-type"] for e in by_op[i]] for i, n in names.items()}
    assert types["stalled"].count("Email Operation Stalled") == 1
    canceled = [e["detail"] for e in by_op[sim.operation_id("canceled")]]
    assert [(d["previousStatus"], d["status"]) for d in canceled] == [("SCHEDULED", "CANCELED")]
    # Late opens after COMPLETED are reported as Stats Changed.
    late = [
        e["detail"]
        for e in by_op[sim.operation_id("late-opens")]
        if e["detail-type"].endswith("Stats Changed")
    ]
    assert late and all(d["status"] == "COMPLETED" and d["delta"]["opened"] >= 0 for d in late)
    # Every run in steady state listed the active set and the recent set: a handful of requests.
    assert max(s["comms_requests"] for s in summaries) <= 8


def test_emit_bootstrap_publishes_every_operation_once(harness: PollerHarness) -> None:
    harness.set_env(BOOTSTRAP_MODE="emit")
    summary = harness.invoke()
    events = harness.drain()
    visible = {op["id"]: op for op in harness.simulator.operations()}
    assert summary["events_published"] == len(visible) == len(events)
    for event in events:
        detail = event["detail"]
        assert event["detail-type"] == "Email Operation Status Changed"
        assert detail["previousStatus"] is None and detail["previousStats"] is None
        assert detail["status"] == visible[detail["operationId"]]["status"]
    # A second run right away has nothing new to say.
    again = harness.invoke()
    assert again["events_published"] == 0 and harness.drain(wait=0.2) == []
