"""The loopback world a poller run happens in, shared by `make bench` and the fault suite.

moto in server mode with a counting (and fault-injecting) proxy in front of it, the stack the template
declares provisioned in moto, and the Comms API simulator on a ManualClock. The handler's environment
is the template's, resolved to these local endpoints, with AWS calls going through the proxy.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from benchmarks.support import AwsFaultProxy, LocalStack
from comms_bridge_tools.moto_server import FAKE_AWS_ENV, MotoServer
from comms_sim import ManualClock, Scenario, SimulatorServer

DYNAMODB_PREFIX: Final = "DynamoDB_20120810."
PUT_EVENTS: Final = "AWSEvents.PutEvents"

SCHEDULED_EVENT: Final[dict[str, Any]] = {
    "version": "0",
    "id": "00000000-0000-0000-0000-000000000000",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "1970-01-01T00:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/comms-bridge-poller"],
    "detail": {},
}


def scheduled_event(at: datetime) -> dict[str, Any]:
    return {**SCHEDULED_EVENT, "id": str(uuid.uuid4()), "time": at.strftime("%Y-%m-%dT%H:%M:%SZ")}


@dataclass
class CallCounts:
    """A snapshot of what crossed the wire: Comms requests (simulator side) and AWS calls (proxy side)."""

    comms: Counter[str] = field(default_factory=Counter)
    aws_calls: Counter[str] = field(default_factory=Counter)
    aws_entries: Counter[str] = field(default_factory=Counter)

    def __sub__(self, before: CallCounts) -> CallCounts:
        return CallCounts(
            comms=self.comms - before.comms,
            aws_calls=self.aws_calls - before.aws_calls,
            aws_entries=self.aws_entries - before.aws_entries,
        )

    @property
    def comms_requests(self) -> int:
        return self.comms["total"]

    @property
    def comms_by_endpoint(self) -> dict[str, int]:
        endpoints = ("list_operations", "fetch_operation", "list_errors", "unknown")
        return {name: self.comms[name] for name in endpoints if self.comms[name]}

    @property
    def dynamodb_by_operation(self) -> dict[str, int]:
        return {
            target.removeprefix(DYNAMODB_PREFIX): count
            for target, count in sorted(self.aws_calls.items())
            if target.startswith(DYNAMODB_PREFIX)
        }

    @property
    def dynamodb_calls(self) -> int:
        return sum(self.dynamodb_by_operation.values())

    @property
    def put_events_calls(self) -> int:
        return self.aws_calls[PUT_EVENTS]


@dataclass
class Rig:
    moto: MotoServer
    proxy: AwsFaultProxy
    stack: LocalStack
    simulator: SimulatorServer
    clock: ManualClock

    def counts(self) -> CallCounts:
        return CallCounts(
            comms=Counter(self.simulator.counters),
            aws_calls=Counter(self.proxy.calls),
            aws_entries=Counter(self.proxy.entries),
        )

    def function_environment(self, logical_id: str, **overrides: str) -> dict[str, str]:
        """The template's environment for the function, AWS calls routed through the proxy."""
        env = dict(self.stack.function_environment(logical_id))
        env.update(FAKE_AWS_ENV)
        env["AWS_ENDPOINT_URL"] = self.proxy.endpoint_url
        env.update(overrides)
        return env

    def published(self, wait: float = 0.0) -> list[dict[str, Any]]:
        """Events the bus accepted since the last call (catch-all rule into SQS), in delivery order."""
        return self.stack.drain(self.stack.capture_queue_url, wait)


@contextmanager
def running_rig(
    scenario: Scenario,
    clock: ManualClock,
    *,
    prefix: str,
    parameters: Mapping[str, str] | None = None,
    slack_webhook_url: str | None = None,
    moto: MotoServer | None = None,
    simulator_seed: int = 0,
) -> Iterator[Rig]:
    """Start what is missing (moto, proxy, simulator), provision the stack directly in moto (setup calls
    are not counted), and tear everything down afterwards."""
    with ExitStack() as stack:
        if moto is None:
            moto = MotoServer().start()
            stack.callback(moto.stop)
        proxy = AwsFaultProxy(moto.endpoint_url).start()
        stack.callback(proxy.stop)
        simulator = SimulatorServer(scenario, clock=clock, seed=simulator_seed).start()
        stack.callback(simulator.stop)
        local = LocalStack.provision(
            moto.env(),
            prefix=prefix,
            parameters={"CommsApiBaseUrl": simulator.base_url, **(parameters or {})},
            twilio_secret={"accountSid": simulator.account_sid, "authToken": simulator.auth_token},
            slack_webhook_url=slack_webhook_url,
        )
        yield Rig(moto=moto, proxy=proxy, stack=local, simulator=simulator, clock=clock)
