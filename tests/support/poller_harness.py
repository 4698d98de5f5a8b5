"""Invoke the poller handler as Lambda would: functions/poller on sys.path, the template's environment, the
stack's resources in moto (behind the AWS fault proxy), the Comms API simulator over HTTP."""

from __future__ import annotations

import importlib.util
import itertools
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from comms_bridge.poller_events import POLLER_DETAIL_TYPES
from comms_bridge_tools.local_stack import LocalStack
from comms_sim import SimulatorServer
from tests.support.aws_fault_proxy import AwsFaultProxy
from tests.support.moto_server import FAKE_AWS_ENV, MotoServer
from tests.support.schemas import validate_detail

ROOT = Path(__file__).resolve().parents[2]
POLLER_APP = ROOT / "functions" / "poller" / "app.py"
SCHEDULE_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "Scheduled Event",
    "source": "aws.scheduler",
    "detail": {},
}
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
        events = self.stack.drain(self.stack.capture_queue_url, wait)
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
            items.extend(page["Items"])
        return items


def make_harness(
    moto_server: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    simulator: SimulatorServer,
    *,
    parameters: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[PollerHarness]:
    proxy = AwsFaultProxy(moto_server.endpoint_url).start()
    try:
        aws = {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": proxy.endpoint_url}
        for key, value in aws.items():
            monkeypatch.setenv(key, value)
        stack = LocalStack.provision(
            aws,
            parameters=parameters,
            twilio_secret={"accountSid": simulator.account_sid, "authToken": simulator.auth_token},
        )
        env = {**stack.function_environment("PollerFunction"), "COMMS_API_BASE_URL": simulator.base_url}
        env["TWILIO_SECRET_ARN"] = stack.parameters["TwilioSecretArn"]
        env.update(extra_env or {})
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        proxy.reset_counts()
        yield PollerHarness(stack=stack, proxy=proxy, simulator=simulator, env=env, monkeypatch=monkeypatch)
    finally:
        proxy.stop()
