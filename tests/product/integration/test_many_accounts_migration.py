"""An existing single-account stack upgrades in place (issue 16): no second bootstrap, nothing announced
again, the checkpoint kept.

Before: the poller as the single-account template ran it (its environment without ``TWILIO_SECRET_ARNS``,
SAM's schedule event without any input) bootstraps and publishes a change; the items it leaves have the
shapes the released version writes (pinned below). After: a new container with the new template's
environment, started with the input the account's schedule now holds in moto (``twilioSecretArn``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comms_bridge.poller.checkpoint import checkpoint_from_item
from comms_bridge_tools.local_stack import LocalStack
from comms_bridge_tools.moto_server import MotoServer
from comms_sim import ManualClock, Scenario
from comms_sim.pytest_plugin import STORY_START
from tests.support.poller_harness import FakeContext, load_poller_module, new_simulator

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
# What SAM's ScheduleV2 event (no Input) delivered to the single-account poller.
OLD_SCHEDULE_EVENT: dict[str, Any] = json.loads((ROOT / "events" / "poller-schedule.json").read_text())
STEP = 5 * 60


def items(stack: LocalStack) -> list[dict[str, Any]]:
    return list(stack.client("dynamodb").scan(TableName=stack.state_table_name)["Items"])


def invoke(env: dict[str, str], event: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A cold start with ``env``, then one invocation."""
    for key in ("TWILIO_SECRET_ARN", "TWILIO_SECRET_ARNS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result: dict[str, Any] = load_poller_module().lambda_handler(dict(event), FakeContext())
    return result


@pytest.fixture
def stack(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalStack, Any]]:
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    with new_simulator(Scenario.story(), ManualClock(STORY_START)) as sim:
        local = LocalStack.provision(
            moto_server.env(), twilio_secret={"accountSid": sim.account_sid, "authToken": sim.auth_token}
        )
        local.drain(local.capture_queue_url, 0)
        yield local, sim


def test_a_single_account_stack_upgrades_in_place(
    stack: tuple[LocalStack, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    local, sim = stack
    new_env = {**local.function_environment("PollerFunction"), "COMMS_API_BASE_URL": sim.base_url}
    old_env = {k: v for k, v in new_env.items() if k != "TWILIO_SECRET_ARNS"}  # the released template's

    # Before the upgrade: bootstrap, then a change published.
    first = invoke(old_env, OLD_SCHEDULE_EVENT, monkeypatch)
    assert first["status"] == "complete" and first["bootstrapped"] and first["events_published"] == 0
    sim.advance(STEP)
    second = invoke(old_env, OLD_SCHEDULE_EVENT, monkeypatch)
    assert second["events_published"] > 0
    before = local.drain(local.capture_queue_url, 0.5)
    account = sim.account_sid
    written = items(local)
    kinds = {
        (i["pk"]["S"].split("#")[0], i["sk"]["S"] if i["pk"]["S"].startswith("CHECK") else "*")
        for i in written
    }
    # The item shapes the released version writes, which the new code must read as they are.
    assert kinds == {("CHECKPOINT", "CHECKPOINT"), ("OP", "*"), ("ACTIVE", "*")}
    assert all(i["pk"]["S"].split("#")[1] == account for i in written)
    (checkpoint,) = [i for i in written if i["pk"]["S"] == f"CHECKPOINT#{account}"]

    # The upgrade: the account's schedule now passes its secret; a new container runs the new code.
    (schedule_input,) = local.schedule_inputs().values()
    assert schedule_input == {"twilioSecretArn": new_env["TWILIO_SECRET_ARN"]}
    sim.advance(STEP)
    third = invoke(new_env, schedule_input, monkeypatch)
    assert third["status"] == "complete" and third["accountSid"] == account
    after = local.drain(local.capture_queue_url, 0.5)

    # No second bootstrap: the change since is published (a baseline bootstrap would publish nothing) ...
    assert third["events_published"] > 0 and len(after) == third["events_published"]
    # ... once, and nothing published before is announced again.
    keys_before = {e["detail"]["eventKey"] for e in before}
    keys_after = [e["detail"]["eventKey"] for e in after]
    assert len(keys_after) == len(set(keys_after)) and not keys_before & set(keys_after)
    # The checkpoint is the same item, moved forward; no item of another shape or account appeared.
    (moved,) = [i for i in items(local) if i["pk"]["S"] == f"CHECKPOINT#{account}"]
    old_mark, new_mark = (checkpoint_from_item(item) for item in (checkpoint, moved))
    assert old_mark is not None and new_mark is not None and old_mark.bootstrapped
    assert new_mark.seen_through is not None and old_mark.seen_through is not None
    assert new_mark.seen_through > old_mark.seen_through
    assert all(i["pk"]["S"].split("#")[1] == account for i in items(local))
    # What the stored state says agrees with the API for every operation the new run saw change.
    stored = {
        i["pk"]["S"].split("#")[2]: i["status"]["S"] for i in items(local) if i["pk"]["S"].startswith("OP#")
    }
    for event in after:
        detail = event["detail"]
        if event["detail-type"] == "Email Operation Status Changed":
            assert stored[detail["operationId"]] == detail["status"]
