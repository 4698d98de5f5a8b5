"""The loopback world a poller run happens in, shared by `make bench` and the fault suite.

moto in server mode with a counting (and fault-injecting) proxy in front of it, the stack the template
declares provisioned in moto, and the Comms API simulator on a ManualClock. The handler's environment
is the template's, resolved to these local endpoints, with AWS calls going through the proxy.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from benchmarks.capacity import CapacityMeter, moto_lookup
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
    # DynamoDB capacity units per operation (benchmarks.capacity), when the rig meters them
    read_units: Counter[str] = field(default_factory=Counter)
    write_units: Counter[str] = field(default_factory=Counter)
    event_bytes: int = 0

    def __sub__(self, before: CallCounts) -> CallCounts:
        return CallCounts(
            comms=self.comms - before.comms,
            aws_calls=self.aws_calls - before.aws_calls,
            aws_entries=self.aws_entries - before.aws_entries,
            read_units=self.read_units - before.read_units,
            write_units=self.write_units - before.write_units,
            event_bytes=self.event_bytes - before.event_bytes,
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

    @property
    def put_events_entries(self) -> int:
        """Entries sent in PutEvents calls (retried entries count again)."""
        return self.aws_entries[PUT_EVENTS]


@dataclass
class Rig:
    moto: MotoServer
    proxy: AwsFaultProxy
    stack: LocalStack
    simulator: SimulatorServer
    clock: ManualClock
    meter: CapacityMeter | None = None

    def counts(self) -> CallCounts:
        reads, writes, event_bytes = self.meter.totals() if self.meter is not None else ({}, {}, 0)
        return CallCounts(
            comms=Counter(self.simulator.counters),
            aws_calls=Counter(self.proxy.calls),
            aws_entries=Counter(self.proxy.entries),
            read_units=Counter(reads),
            write_units=Counter(writes),
            event_bytes=event_bytes,
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
        if not self.stack.capture_queue_url:
            return []
        return self.stack.drain(self.stack.capture_queue_url, wait)

    def empty_rule_queues(self) -> int:
        """Take away what the template's rules delivered to their SQS stand-ins: moto's SendMessage slows
        down with the length of the queue, which would show up as the poller's PutEvents time."""
        return sum(len(self.stack.drain(url, 0)) for url in self.stack.rule_queue_urls.values())


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
    capture_all_events: bool = True,
    meter_capacity: bool = False,
) -> Iterator[Rig]:
    """Start what is missing (moto, proxy, simulator), provision the stack directly in moto (setup calls
    are not counted), and tear everything down afterwards. ``meter_capacity``: count DynamoDB's capacity
    units at the proxy (moto must then run in this process, as :class:`MotoServer` does)."""
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
            capture_all_events=capture_all_events,
        )
        meter = None
        if meter_capacity:
            meter = CapacityMeter(moto_lookup())
            proxy.observe(meter)
        yield Rig(moto=moto, proxy=proxy, stack=local, simulator=simulator, clock=clock, meter=meter)


class _NoTableSnapshots:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend: deep copies of items stay, the
    snapshot of a whole table (taken by TransactWriteItems to roll back a failed transaction) goes."""

    def __init__(self) -> None:
        from moto.dynamodb.models.table import Table  # noqa: PLC0415 - moto is a dev-only dependency

        self._table_type = Table

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


@contextmanager
def without_moto_transaction_snapshots() -> Iterator[None]:
    """moto's TransactWriteItems deep-copies every table it touches before writing, so one checkpoint
    write costs O(items in the table): seconds at 100,000 operations, where DynamoDB's cost does not
    depend on the table's size. The benchmark turns that snapshot off; no transaction of a benchmark run
    fails (one invocation at a time, no faults), so the rollback it exists for never happens. The fault
    suite, where transactions do fail, keeps moto as it is."""
    import moto.dynamodb.models as backend  # noqa: PLC0415

    original = backend.__dict__["copy"]
    setattr(backend, "copy", _NoTableSnapshots())  # noqa: B010 - moto does not export it
    try:
        yield
    finally:
        setattr(backend, "copy", original)  # noqa: B010


@contextmanager
def with_moto_partition_queries() -> Iterator[None]:
    """moto answers a Query on a table's key by sorting every item of the table (``Table.all_items``) and
    keeping the partition's, so one Query page costs O(items in the table log items): at 200,000 operations
    the poller's Query of its active index outlives the Lambda's timeout, where DynamoDB reads the
    partition alone. The benchmark lets such a Query see its partition only, in moto's order; an index
    Query (none in the poller) and Scan keep moto's code. The restricted view is the calling thread's, for
    the duration of that one call, so the handlers of many accounts can query the server at once."""
    from moto.dynamodb.models.table import Table  # noqa: PLC0415 - moto is a dev-only dependency

    original_query, original_all_items = Table.query, Table.all_items
    views = threading.local()

    def all_items(self: Any) -> Any:
        partition = getattr(views, "partition", None)
        if partition is not None and partition[0] is self:
            return partition[1]
        return original_all_items(self)

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name is not None or hash_key is None or not self.range_key_attr:
            return original_query(self, hash_key, *args, **kwargs)
        views.partition = (
            self,
            sorted(self.items.get(hash_key, {}).values(), key=lambda item: item.range_key),
        )
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            views.partition = None

    setattr(Table, "all_items", all_items)  # noqa: B010 - moto does not export a hook for it
    setattr(Table, "query", query)  # noqa: B010
    try:
        yield
    finally:
        setattr(Table, "query", original_query)  # noqa: B010
        setattr(Table, "all_items", original_all_items)  # noqa: B010


@contextmanager
def with_moto_condition_lexing_cached() -> Iterator[None]:
    """moto lexes a ConditionExpression again for every item it checks, with regular expressions built per
    token: the poller's conditional state writes (a condition per item of every TransactWriteItems) then
    cost moto milliseconds per item, minutes for a 1M-operation bootstrap, and DynamoDB nothing of the
    kind. The tokens depend on the expression's text only, so the benchmark lexes each text once and hands
    moto a fresh copy of the tokens every time (its parser consumes them)."""
    from moto.dynamodb.comparisons import ConditionExpressionParser  # noqa: PLC0415 - dev-only dependency

    original = ConditionExpressionParser._lex_condition_expression
    lexed: dict[str, tuple[Any, ...]] = {}

    def lex(self: Any) -> deque[Any]:
        tokens = lexed.get(self.condition_expression)
        if tokens is None:
            tokens = lexed[self.condition_expression] = tuple(original(self))
        return deque(token._replace(children=list(token.children)) for token in tokens)

    setattr(ConditionExpressionParser, "_lex_condition_expression", lex)  # noqa: B010
    try:
        yield
    finally:
        setattr(ConditionExpressionParser, "_lex_condition_expression", original)  # noqa: B010
