"""The real rule patterns of template.yaml, on a moto event bus: which events reach the errors enricher and
the alert topic. The targets are SQS queues standing in for the function and the topic."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comms_bridge_tools.local_stack import LocalStack
from comms_bridge_tools.moto_server import MotoServer

pytestmark = pytest.mark.integration

STATUS_CHANGED = "Email Operation Status Changed"
STATS_CHANGED = "Email Operation Stats Changed"
STALLED = "Email Operation Stalled"
SUMMARIZED = "Email Operation Errors Summarized"


def _detail(
    status: str = "COMPLETED", failed: int = 10, total: int = 200, new_failed: int | None = None, **extra: Any
) -> dict[str, Any]:
    rate = round(failed / total, 4) if total else 0
    return {
        "delta": {"failed": failed if new_failed is None else new_failed},
        "schemaVersion": "1.0",
        "eventKey": uuid.uuid4().hex,
        "operationId": "comms_operation_01h9krwprkeee8fzqspvwy6nq8",
        "status": status,
        "stats": {"total": total, "failed": failed, "delivered": total - failed},
        "rates": {"failed": rate, "delivered": round(1 - rate, 4) if total else 0},
        "terminal": status in {"COMPLETED", "CANCELED"},
        **extra,
    }


@pytest.fixture(scope="module")
def shared_stack(moto_server: MotoServer) -> LocalStack:
    return LocalStack.provision(moto_server.env(), prefix=f"rule-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def stack(shared_stack: LocalStack) -> LocalStack:
    """The module's stack with empty queues (each test drains what it published)."""
    for url in (shared_stack.errors_trigger_queue_url, shared_stack.stalled_alert_queue_url):
        shared_stack.drain(url, wait=0)
    shared_stack.drain(shared_stack.capture_queue_url, wait=0)
    return shared_stack


def _triggered(stack: LocalStack) -> list[dict[str, Any]]:
    # moto delivers rule targets while handling PutEvents: no waiting needed.
    return stack.drain(stack.errors_trigger_queue_url, wait=0)


@pytest.mark.parametrize("detail_type", [STATUS_CHANGED, STATS_CHANGED])
def test_completed_operation_above_both_thresholds_triggers(stack: LocalStack, detail_type: str) -> None:
    detail = _detail(failed=30, total=200)  # 30 >= 10 and 0.15 >= 0.05
    stack.put_event(detail_type, detail)
    (event,) = _triggered(stack)
    assert event["detail-type"] == detail_type
    assert event["source"] == "twilio.comms"
    assert event["detail"]["eventKey"] == detail["eventKey"]


def test_late_stats_alert_only_when_failures_grew(stack: LocalStack) -> None:
    """Late opens and deliveries after COMPLETED move the stats every poll: only new failures re-alert."""
    stack.put_event(STATS_CHANGED, _detail(failed=50, total=100, new_failed=0))  # opens arrived
    stack.put_event(STATS_CHANGED, _detail(failed=52, total=100, new_failed=2))  # two more failed
    (event,) = _triggered(stack)
    assert event["detail"]["delta"]["failed"] == 2


def test_thresholds_are_inclusive(stack: LocalStack) -> None:
    stack.put_event(STATUS_CHANGED, _detail(failed=10, total=200))  # exactly 10 and exactly 0.05
    assert len(_triggered(stack)) == 1


@pytest.mark.parametrize(
    ("why", "detail_type", "detail"),
    [
        ("count below", STATUS_CHANGED, _detail(failed=9, total=20)),  # rate 0.45 but only 9 failed
        ("rate below", STATUS_CHANGED, _detail(failed=40, total=1000)),  # 40 failed but rate 0.04
        ("both below", STATS_CHANGED, _detail(failed=1, total=1000)),
        ("stats changed without new failures", STATS_CHANGED, _detail(failed=50, total=100, new_failed=0)),
        ("not completed", STATUS_CHANGED, _detail(status="PROCESSING", failed=50, total=100)),
        ("canceled", STATUS_CHANGED, _detail(status="CANCELED", failed=50, total=100)),
        ("stalled is not a trigger", STALLED, _detail(failed=50, total=100)),
        ("own summary never loops", SUMMARIZED, _detail(failed=50, total=100)),
    ],
)
def test_below_either_threshold_or_other_events_do_not_trigger(
    stack: LocalStack, why: str, detail_type: str, detail: dict[str, Any]
) -> None:
    stack.put_event(detail_type, detail)
    assert _triggered(stack) == [], why
    assert len(stack.drain(stack.capture_queue_url, wait=0)) == 1, "the event itself was published"


def test_other_sources_do_not_trigger(stack: LocalStack) -> None:
    stack.put_event(STATUS_CHANGED, _detail(failed=50, total=100), source="someone.else")
    assert _triggered(stack) == []


def test_string_numbers_do_not_match_numeric_filters(stack: LocalStack) -> None:
    """Contract section 3: numbers are JSON numbers. A string "50" would silently never trigger."""
    detail = _detail(failed=50, total=100)
    detail["stats"]["failed"] = "50"
    stack.put_event(STATUS_CHANGED, detail)
    assert _triggered(stack) == []


def test_thresholds_come_from_the_parameters(moto_server: MotoServer) -> None:
    stack = LocalStack.provision(
        moto_server.env(),
        prefix=f"rule-{uuid.uuid4().hex[:8]}",
        parameters={"FailedCountThreshold": "1", "FailedRateThreshold": "0.5"},
    )
    stack.put_event(STATUS_CHANGED, _detail(failed=2, total=4))
    stack.put_event(STATUS_CHANGED, _detail(failed=30, total=100))  # 0.3 < 0.5
    (event,) = _triggered(stack)
    assert event["detail"]["stats"]["failed"] == 2


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    failed=st.integers(min_value=0, max_value=40),
    total=st.integers(min_value=0, max_value=400),
    status=st.sampled_from(["SCHEDULED", "PROCESSING", "COMPLETED", "CANCELED"]),
)
def test_trigger_matches_exactly_the_documented_condition(
    stack: LocalStack, failed: int, total: int, status: str
) -> None:
    failed = min(failed, total)
    detail = _detail(status=status, failed=failed, total=total)
    stack.put_event(STATUS_CHANGED, detail)
    expected = status == "COMPLETED" and failed >= 10 and detail["rates"]["failed"] >= 0.05
    assert len(_triggered(stack)) == int(expected)


def test_stalled_events_go_to_the_alerter(stack: LocalStack) -> None:
    """StalledAlertRule feeds ErrorsQueue, like ErrorsTriggerRule: the alerter confirms and formats stalls."""
    stalled = _detail(status="PROCESSING", failed=0, stalledForSeconds=1800)
    stack.put_event(STALLED, stalled)
    stack.put_event(STATUS_CHANGED, _detail(status="PROCESSING", failed=0))
    stack.put_event(STALLED, stalled, source="someone.else")
    (event,) = stack.drain(stack.stalled_alert_queue_url, wait=0)
    assert event["detail-type"] == STALLED
    assert event["detail"]["eventKey"] == stalled["eventKey"]


def test_existing_bus_parameter(moto_server: MotoServer, stack: LocalStack) -> None:
    bus = f"existing-{uuid.uuid4().hex[:8]}"
    stack.client("events").create_event_bus(Name=bus)
    on_existing = LocalStack.provision(
        moto_server.env(), prefix=f"rule-{uuid.uuid4().hex[:8]}", parameters={"EventBusName": bus}
    )
    assert on_existing.bus_name == bus
    assert on_existing.function_environment("PollerFunction")["EVENT_BUS_NAME"] == bus
    assert on_existing.function_environment("ErrorsFunction")["EVENT_BUS_NAME"] == bus
    on_existing.put_event(STATUS_CHANGED, _detail(failed=50, total=100))
    assert len(_triggered(on_existing)) == 1
    assert stack.drain(stack.capture_queue_url, wait=0) == [], "the stacks' buses are apart"
