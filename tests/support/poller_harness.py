"""Invoke the poller handler as Lambda would: functions/poller on sys.path, the template's environment, the
stack's resources in moto (behind the AWS fault proxy), the Comms API simulator over HTTP."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from comms_bridge.events.detail_types import POLLER_DETAIL_TYPES
from comms_bridge_tools.local_stack import LocalStack
from comms_bridge_tools.moto_server import FAKE_AWS_ENV, MotoServer
from comms_sim import ManualClock, Scenario, SimulatorServer
from tests.support.aws_fault_proxy import AwsFaultProxy
from tests.support.schemas import validate_detail

ROOT = Path(__file__).resolve().parents[2]
POLLER_APP = ROOT / "functions" / "poller" / "app.py"
# The sample the docs point to; the poller ignores its payload.
SCHEDULE_EVENT: dict[str, Any] = json.loads((ROOT / "events" / "poller-schedule.json").read_text())
_counter = itertools.count()


class FakeContext:
    """What Lambda passes: ``get_remaining_time_in_millis`` is a callable so tests can make it run low."""

    def __init__(self, remaining_ms: Callable[[], int] | int = 60_000) -> None:
        self._remaining = remaining_ms if callable(remaining_ms) else (lambda: remaining_ms)
        self.function_name = "comms-bridge-poller"
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:comms-bridge-poller"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = "/aws/lambda/comms-bridge-poller"
        self.log_stream_name = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return int(self._remaining())


def load_poller_module() -> ModuleType:
    """A fresh copy of functions/poller/app.py: a new Lambda container (cold start)."""
    name = f"poller_app_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, POLLER_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class PollerHarness:
    stack: LocalStack
    proxy: AwsFaultProxy
    simulator: SimulatorServer
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    captured: list[dict[str, Any]] = field(default_factory=list)
    module: ModuleType | None = None

    def set_env(self, **overrides: str) -> None:
        for key, value in overrides.items():
            self.env[key] = value
            self.monkeypatch.setenv(key, value)

    def invoke(self, context: FakeContext | None = None, *, cold: bool = False) -> dict[str, Any]:
        if self.module is None or cold:
            self.module = load_poller_module()
        result: dict[str, Any] = self.module.lambda_handler(dict(SCHEDULE_EVENT), context or FakeContext())
        return result

    def drain(self, wait: float = 0.5) -> list[dict[str, Any]]:
        """New events on the bus since the last drain; each one validated against its JSON Schema."""
        events = [
            event
            for event in self.stack.drain(self.stack.capture_queue_url, wait)
            if event.get("detail", {}).get("accountSid") == self.simulator.account_sid
        ]
        for event in events:
            assert event["detail-type"] in POLLER_DETAIL_TYPES
            assert event["source"] == self.stack.event_source
            # moto leaves "account" out of the envelope it delivers to SQS; the detail is what we own.
            assert {"id", "time", "region", "detail"} <= event.keys()
            validate_detail(event["detail-type"], event["detail"])
        self.captured.extend(events)
        return events

    def state_items(self) -> list[dict[str, Any]]:
        table = self.stack.client("dynamodb")
        items: list[dict[str, Any]] = []
        for page in table.get_paginator("scan").paginate(TableName=self.stack.state_table_name):
            items.extend(item for item in page["Items"] if self.simulator.account_sid in item["pk"]["S"])
        return items


@dataclass
class SharedAws:
    """One fault proxy and one provisioned stack for the whole session: tests keep apart by using their
    own Twilio account (state items are keyed by account; captured events are filtered by it)."""

    proxy: AwsFaultProxy
    stack: LocalStack


@pytest.fixture(scope="session")
def shared_aws(moto_server: MotoServer) -> Iterator[SharedAws]:
    proxy = AwsFaultProxy(moto_server.endpoint_url).start()
    try:
        stack = LocalStack.provision({**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": proxy.endpoint_url})
        yield SharedAws(proxy=proxy, stack=stack)
    finally:
        proxy.stop()


def new_simulator(scenario: Scenario, clock: ManualClock) -> SimulatorServer:
    """A simulator with an account of its own (``AC`` + 32 hex)."""
    account = "AC" + uuid.uuid4().hex
    return SimulatorServer(scenario, clock=clock, credentials={account: uuid.uuid4().hex})


def make_harness(
    shared: SharedAws,
    monkeypatch: pytest.MonkeyPatch,
    simulator: SimulatorServer,
    *,
    extra_env: dict[str, str] | None = None,
) -> Iterator[PollerHarness]:
    proxy, stack = shared.proxy, shared.stack
    proxy.clear()
    aws = {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": proxy.endpoint_url}
    for key, value in aws.items():
        monkeypatch.setenv(key, value)
    secret = stack.client("secretsmanager").create_secret(
        Name=f"{stack.prefix}/twilio-{simulator.account_sid}",
        SecretString=json.dumps({"accountSid": simulator.account_sid, "authToken": simulator.auth_token}),
    )
    env = {**stack.function_environment("PollerFunction"), "COMMS_API_BASE_URL": simulator.base_url}
    env["TWILIO_SECRET_ARN"] = secret["ARN"]
    env.update(extra_env or {})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stack.drain(stack.capture_queue_url, 0)  # whatever earlier tests left behind
    proxy.reset_counts()
    try:
        yield PollerHarness(stack=stack, proxy=proxy, simulator=simulator, env=env, monkeypatch=monkeypatch)
    finally:
        proxy.clear()
