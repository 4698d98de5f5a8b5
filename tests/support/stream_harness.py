"""The push path end to end on loopback: the stack provisioned from template.yaml with EnableEventStreams
true in moto, records put into a moto Kinesis stream, read back by :class:`KinesisPump` as Lambda's event
source mapping would, and handed to functions/stream/app.py (fresh module: a cold container) with the
template's environment; the poller handler shares the table and the bus."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from comms_bridge.events.detail_types import POLLER_DETAIL_TYPES
from comms_bridge_tools.kinesis_events import KinesisPump
from comms_bridge_tools.local_stack import LocalStack
from comms_bridge_tools.moto_server import MotoServer
from comms_sim import SimulatorServer
from tests.support.poller_harness import SCHEDULE_EVENT, FakeContext, load_poller_module
from tests.support.schemas import validate_detail

ROOT = Path(__file__).resolve().parents[2]
STREAM_APP = ROOT / "functions" / "stream" / "app.py"
EXTERNAL_ID = "comms-bridge-test-external-id-0123"
_counter = itertools.count()


def load_stream_module() -> ModuleType:
    name = f"stream_app_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, STREAM_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stream_stack(moto_server: MotoServer) -> LocalStack:
    return LocalStack.provision(
        moto_server.env(), parameters={"EnableEventStreams": "true", "EventStreamsExternalId": EXTERNAL_ID}
    )


@dataclass
class StreamHarness:
    stack: LocalStack
    simulator: SimulatorServer
    stream_name: str
    env: dict[str, str]
    stream: ModuleType = field(default_factory=load_stream_module)
    poller: ModuleType = field(default_factory=load_poller_module)
    captured: list[dict[str, Any]] = field(default_factory=list)
    pump: KinesisPump = field(init=False)
    _next_key: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.pump = KinesisPump(self.kinesis, self.stream_name, self.invoke_stream)

    @property
    def kinesis(self) -> Any:
        return self.stack.client("kinesis")

    def put(self, datas: Sequence[bytes], partition_keys: Sequence[str] | None = None) -> None:
        keys = partition_keys or [f"k{next(self._next_key)}" for _ in datas]
        self.kinesis.put_records(
            StreamName=self.stream_name,
            Records=[{"Data": data, "PartitionKey": key} for data, key in zip(datas, keys, strict=True)],
        )

    def invoke_stream(self, event: dict[str, Any]) -> Mapping[str, Any]:
        response: Mapping[str, Any] = self.stream.lambda_handler(event, FakeContext())
        return response

    def poll(self) -> dict[str, Any]:
        result: dict[str, Any] = self.poller.lambda_handler(dict(SCHEDULE_EVENT), FakeContext())
        return result

    def drain(self) -> list[dict[str, Any]]:
        events = [
            event
            for event in self.stack.drain(self.stack.capture_queue_url, 0)
            if event.get("detail", {}).get("accountSid") == self.simulator.account_sid
        ]
        for event in events:
            assert event["detail-type"] in POLLER_DETAIL_TYPES
            validate_detail(event["detail-type"], event["detail"])
        self.captured.extend(events)
        return events

    def state_item(self, sk: str, pk_prefix: str = "STREAM#") -> dict[str, Any] | None:
        response = self.stack.client("dynamodb").get_item(
            TableName=self.stack.state_table_name,
            Key={"pk": {"S": f"{pk_prefix}{self.simulator.account_sid}"}, "sk": {"S": sk}},
        )
        item: dict[str, Any] | None = response.get("Item")
        return item


def make_stream_harness(
    stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
    simulator: SimulatorServer,
    aws_env: Mapping[str, str],
    **extra_env: str,
) -> Iterator[StreamHarness]:
    for key, value in aws_env.items():
        monkeypatch.setenv(key, value)
    secret = stack.client("secretsmanager").create_secret(
        Name=f"{stack.prefix}/twilio-{simulator.account_sid}",
        SecretString=json.dumps({"accountSid": simulator.account_sid, "authToken": simulator.auth_token}),
    )
    env = {**stack.function_environment("StreamFunction"), "COMMS_API_BASE_URL": simulator.base_url}
    env["TWILIO_SECRET_ARN"] = secret["ARN"]
    env.update(extra_env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # A stream of its own per test (the template's stream is there too: provisioning is tested with it).
    name = f"{stack.prefix}-events-{uuid.uuid4().hex[:8]}"
    stack.client("kinesis").create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    stack.drain(stack.capture_queue_url, 0)
    yield StreamHarness(stack=stack, simulator=simulator, stream_name=name, env=env)
