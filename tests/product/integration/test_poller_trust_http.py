"""What the deployed poller believes (contract §6), through its real handler against the simulator over HTTP
and the template's resources in moto: a ``Date`` far from the Lambda clock advances nothing and is counted,
a far-future ``updatedAt`` is skipped and never stored, a rotated secret is picked up after one 401, and a
run that still cannot authenticate fails the invocation (the function's error alarm).

Unlike the other simulator tests, these play on the machine's clock (``MAX_CLOCK_SKEW_SECONDS=3600``, the
deployed default): the simulator's clock starts at the real now.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from comms_bridge.comms.exceptions import CommsUnauthorized
from comms_sim import ManualClock, Scenario
from tests.support.poller_harness import (
    PollerHarness,
    make_harness,
    new_simulator,
    shared_aws,  # noqa: F401 - fixture
)

pytestmark = pytest.mark.integration

STEP = 240
YEAR_2099 = datetime(2099, 1, 1, tzinfo=UTC)


@pytest.fixture
def harness(shared_aws, monkeypatch) -> Iterator[PollerHarness]:  # noqa: F811 - the fixture
    real_now = datetime.now(UTC).replace(microsecond=0)
    with new_simulator(Scenario.story(), ManualClock(real_now)) as simulator:
        yield from make_harness(
            shared_aws, monkeypatch, simulator, extra_env={"MAX_CLOCK_SKEW_SECONDS": "3600"}
        )


def bootstrapped(harness: PollerHarness) -> PollerHarness:
    first = harness.invoke()
    assert first["status"] == "complete" and first["bootstrapped"] and not first.get("clock_skew_detected")
    harness.drain(0)
    return harness


def checkpoint_item(harness: PollerHarness) -> dict[str, object]:
    (item,) = [i for i in harness.state_items() if i["sk"]["S"] == "CHECKPOINT"]
    return {k: v for k, v in item.items() if k not in ("owner", "leaseUntil")}


def test_a_2099_date_advances_nothing_and_the_next_run_catches_up(harness: PollerHarness) -> None:
    """Before: a Date of 2099 was taken as now; the checkpoint and lease were written in 2099, real
    changes were delayed by 40 minutes and CheckpointLagSeconds, clamped at 0, showed nothing."""
    sim = bootstrapped(harness).simulator
    before = checkpoint_item(harness)
    sim.clock.advance(STEP)
    sim.faults.add(kind="bad_date", date=YEAR_2099)  # every answer of this run
    bad = harness.invoke()
    assert bad["status"] == "partial" and bad["stopped_reason"] == "API clock distrusted"
    assert bad["clock_skew_detected"] == 1 and bad["checkpoint_lag_seconds"] is None
    assert harness.drain(0.2) == [] and checkpoint_item(harness) == before
    fired = [r for r in sim.request_log if "bad_date" in r.faults]
    assert len(fired) == 1, "the fault fired, once: the run stopped at the first answer"
    sim.faults.clear()
    good = harness.invoke()
    assert good["status"] == "complete" and good["clock_skew_detected"] == 0
    assert good["checkpoint_lag_seconds"] is not None and good["checkpoint_lag_seconds"] < 3600
    assert harness.drain(), "the changes of the distrusted run are published by the next one"


def test_a_far_future_updated_at_is_skipped_and_never_stored(harness: PollerHarness) -> None:
    """Before: one version dated 8 days ahead was stored, and every real later version looked stale for
    8 days (no event, no alert)."""
    sim = bootstrapped(harness).simulator
    sim.clock.advance(STEP)
    rule = sim.faults.add(
        kind="bad_items", endpoint="*", mutation="future_updated_at", ahead=8 * 86_400, items=50, times=1
    )
    skipped = harness.invoke()
    assert rule.fired == 1 and skipped["skipped_malformed"] >= 1
    future = (sim.clock.now() + timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert not any(future in json.dumps(item) for item in harness.state_items()), "never stored"
    sim.clock.advance(STEP)
    after = harness.invoke()
    assert after["status"] == "complete" and after["skipped_malformed"] == 0
    assert harness.drain(), "the real versions are published"


def test_a_rotated_secret_is_read_again_after_one_401(harness: PollerHarness) -> None:
    sim = bootstrapped(harness).simulator
    rotated = "rotated-" + sim.auth_token[::-1]
    sim.rotate_credential(rotated)
    harness.stack.client("secretsmanager").put_secret_value(
        SecretId=harness.env["TWILIO_SECRET_ARN"],
        SecretString=json.dumps({"accountSid": sim.account_sid, "authToken": rotated}),
    )
    sim.clock.advance(STEP)
    summary = harness.invoke()  # the same container: its credentials were cached
    assert summary["status"] == "complete"
    statuses = [r.status for r in sim.request_log]
    assert statuses.count(401) == 1, statuses


def test_a_run_that_cannot_authenticate_fails_the_invocation(harness: PollerHarness) -> None:
    """Before: a 401 was one more failed listing; the run reported "failed" and returned normally, so only
    the lag alarm (three periods later) noticed. Now the invocation raises: the error alarm fires."""
    sim = bootstrapped(harness).simulator
    sim.rotate_credential("revoked-" + sim.auth_token)
    sim.clock.advance(STEP)
    with pytest.raises(CommsUnauthorized):
        harness.invoke()
    assert [r.status for r in sim.request_log].count(401) == 1, "one 401, one re-read, no second try"
