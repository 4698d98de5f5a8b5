"""The simulator's Event Streams deliveries: one per status transition, with delay, reordering,
duplicates and drops as configured (seeded, so every run is the same)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from comms_sim import STORY_START, ManualClock, Scenario, SimulatorServer
from comms_sim.event_streams import DeliveryFaults, plan_deliveries, transitions


@pytest.fixture(scope="module")
def sim():
    with SimulatorServer(Scenario.story(), clock=ManualClock(STORY_START)) as server:
        yield server


def test_one_delivery_per_status_entered_after_the_delay(sim) -> None:
    until = STORY_START + timedelta(hours=3)
    found = transitions(sim, None, until)
    by_op: dict[str, list[str]] = {}
    for t in found:
        by_op.setdefault(t.operation_id, []).append(t.status)
    for statuses in by_op.values():
        assert len(statuses) == len(set(statuses)), "a status is entered once"
    history = {(e.operation_id, e.status) for e in sim.history_between(None, until)}
    assert {(t.operation_id, t.status) for t in found} == history
    deliveries = plan_deliveries(found, DeliveryFaults(delay_seconds=2))
    assert len(deliveries) == sum(1 for t in found if t.status != "CANCELED")
    for d in deliveries:
        assert d.due - d.transition.at == timedelta(seconds=2)
        envelope = json.loads(d.data)
        assert envelope["type"] == f"com.twilio.comms-api.operation.{d.transition.status.lower()}"
        assert envelope["data"] == {"operation_id": d.transition.operation_id}
    as_text = plan_deliveries(found, DeliveryFaults(data_as_string=True))
    assert json.loads(json.loads(as_text[0].data)["data"]) == {
        "operation_id": as_text[0].transition.operation_id
    }


def test_drops_duplicates_and_reordering_are_seeded(sim) -> None:
    found = transitions(sim, None, STORY_START + timedelta(hours=3))
    faults = DeliveryFaults(
        delay_seconds=2, reorder_seconds=3600, duplicate_share=0.5, drop_share=0.3, seed=7
    )
    first, again = plan_deliveries(found, faults), plan_deliveries(found, faults)
    assert first == again
    delivered = {d.event_id for d in first}
    assert 0 < len(delivered) < len(found)
    assert any(d.duplicate for d in first)
    order = [d.transition.at for d in first]
    assert order != sorted(order), "some later change arrives first"
    assert [d.due for d in first] == sorted(d.due for d in first)


def test_shares_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="drop_share"):
        DeliveryFaults(drop_share=1.5)
