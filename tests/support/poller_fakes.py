"""In-memory adapters for the poller's ports (``comms_bridge.poller.ports``), so a whole run can be
unit-tested in milliseconds. They keep the contracts the real adapters keep, not their costs:

* :class:`FakeCommsApi`: operations in memory, listed like the API lists them (``createdAt`` order,
  ``startDate``/``endDate`` inclusive, ``status``, ``pageSize``, ``pageToken``; nothing older than the
  7-day retention), a settable clock as its ``Date`` (trusted within ``MAX_CLOCK_SKEW_SECONDS`` of a
  settable local clock by the real :class:`ApiClock`), pages parsed by the real parser so a corrupted or
  far-future item is skipped the real way;
* :class:`MemoryStateStore` + :class:`MemoryLease`: one account's state, active index and checkpoint, the
  version protocol of state writes, the lease on the checkpoint record (a checkpoint write needs the
  lease, as in DynamoDB);
* :class:`MemoryEventSink`: accepted events in order, a predicate to refuse entries.

They share a :class:`Journal` that records publishes and writes in the order they happened.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from comms_bridge.aws.eventbridge import FailedEvent, OutgoingEvent, PublishResult
from comms_bridge.comms.exceptions import (
    CommsApiError,
    CommsMalformedOperation,
    CommsNotFound,
    CommsServerError,
)
from comms_bridge.comms.models import (
    EmailOperation,
    OperationsPage,
    OperationStatus,
    not_credible,
    parse_operations_page,
    parse_timestamp,
)
from comms_bridge.comms.transport import ApiClock
from comms_bridge.poller.change_detection import TrackedOperation
from comms_bridge.poller.checkpoint import Checkpoint
from comms_bridge.poller.claims import IndexAction, LocalClock, Settle, StateWrite, StoredState
from comms_bridge.poller.config import PollerConfig
from comms_bridge.poller.discovery import RETENTION
from comms_bridge.poller.exceptions import CheckpointConflict, StateStoreError
from comms_bridge.poller.lease import max_lease_ahead
from comms_bridge.poller.run import PollerRun
from comms_bridge.poller.state_store import StoreCounters
from comms_bridge.poller.summary import RunSummary
from comms_bridge.settings import DEFAULT_MAX_CLOCK_SKEW_SECONDS
from tests.support.operation_factory import ACCOUNT_SID, T0


@dataclass
class Journal:
    """``("publish", eventKey)``, ``("write", operationId)``, ``("settle"|"release", operationId)``,
    ``("checkpoint", owner)`` in order."""

    entries: list[tuple[str, str]] = field(default_factory=list)

    def of(self, kind: str) -> list[str]:
        return [value for what, value in self.entries if what == kind]


# -- the Comms API -------------------------------------------------------------------------------------


class FakeCommsApi:
    """One account's operations. ``clock`` is the API's ``Date``; ``put``/``advance``/... change the world.

    It is an operations source itself (no deadline); :meth:`with_deadline` gives a view that shares
    everything (operations, clock, counters, failures) and reads the deadline before every request, as the
    real client does."""

    def __init__(
        self, *, now: datetime = T0, account_sid: str = ACCOUNT_SID, max_clock_skew: float | None = 3600
    ) -> None:
        self.account_sid = account_sid
        self.clock = now
        self.date: datetime | None = None  # the Date header when it is not the clock (a broken API edge)
        self.dates: list[datetime | None] = []  # the Date headers of the next requests (None: as usual)
        self.local_clock: datetime | None = None  # the function's own clock when it is not the API's
        self.api_clock = ApiClock(lambda: self.local_clock or self.clock, max_clock_skew)
        self.items: dict[str, dict[str, Any]] = {}
        self.corrupted: dict[str, int] = {}  # operation id -> listings left that show it malformed
        self.failures: list[list[Any]] = []  # [endpoint, requests to let through first, error]
        self.listings: list[dict[str, str]] = []  # the query of every list request
        self.request_counts: dict[str, int] = {}
        self.deadlines: list[float] = []  # what the deadline said before each request of a view

    # -- driving it ----------------------------------------------------------------------------------

    def put(self, *operations: EmailOperation) -> None:
        for op in operations:
            self.items[op.id] = op.to_api_dict()

    def advance(self, seconds: float) -> None:
        self.clock += timedelta(seconds=seconds)

    def corrupt(self, operation_id: str, *, listings: int = 1) -> None:
        self.corrupted[operation_id] = listings

    def fail_next(
        self, endpoint: str = "list_operations", error: CommsApiError | None = None, *, after: int = 0
    ) -> None:
        """The request to ``endpoint`` after ``after`` more of them fails with ``error`` (a 500)."""
        self.failures.append([endpoint, after, error or CommsServerError("HTTP 500", endpoint=endpoint)])

    # -- the port ------------------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        return sum(self.request_counts.values())

    @property
    def distrusted_dates(self) -> int:
        return self.api_clock.distrusted

    def now(self) -> datetime:
        return self.api_clock.now()

    def with_deadline(self, deadline: Callable[[], float] | None) -> ApiView:
        return ApiView(self, deadline)

    def list_operations(
        self,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        status: OperationStatus | None = None,
        page_size: int = 1000,
    ) -> Iterator[OperationsPage]:
        return ApiView(self, None).list_operations(
            start_date=start_date, end_date=end_date, status=status, page_size=page_size
        )

    def fetch_operation(self, operation_id: str) -> EmailOperation:
        return ApiView(self, None).fetch_operation(operation_id)

    # -- what a request sees -------------------------------------------------------------------------

    def request(self, endpoint: str) -> None:
        self.request_counts[endpoint] = self.request_counts.get(endpoint, 0) + 1
        date = self.dates.pop(0) if self.dates else None
        self.api_clock.observe(date or self.date or self.clock)
        for index, failure in enumerate(self.failures):
            failing, after, error = failure
            if failing != endpoint:
                continue
            if after:
                failure[1] = after - 1
                continue
            del self.failures[index]
            raise error

    def listed(
        self, start: datetime | None, end: datetime | None, status: OperationStatus | None
    ) -> list[dict[str, Any]]:
        found = []
        for item in self.items.values():
            created = parse_timestamp(item["createdAt"])
            if not self.retained(item) or created > self.clock:
                continue
            if (start is not None and created < start) or (end is not None and created > end):
                continue
            if status is not None and item["status"] != status.value:
                continue
            found.append(item)
        return sorted(found, key=lambda item: (item["createdAt"], item["id"]))

    def render(self, item: dict[str, Any]) -> dict[str, Any]:
        left = self.corrupted.get(item["id"], 0)
        if not left:
            return item
        self.corrupted[item["id"]] = left - 1
        return {**item, "stats": {**item["stats"], "total": "many"}}

    def retained(self, item: dict[str, Any]) -> bool:
        return parse_timestamp(item["createdAt"]) >= self.clock - RETENTION


class ApiView:
    """:class:`FakeCommsApi` as one invocation's client sees it: with that invocation's deadline."""

    def __init__(self, api: FakeCommsApi, deadline: Callable[[], float] | None) -> None:
        self.api = api
        self.deadline = deadline

    @property
    def account_sid(self) -> str:
        return self.api.account_sid

    @property
    def request_count(self) -> int:
        return self.api.request_count

    @property
    def distrusted_dates(self) -> int:
        return self.api.distrusted_dates

    def now(self) -> datetime:
        return self.api.now()

    def with_deadline(self, deadline: Callable[[], float] | None) -> ApiView:
        return ApiView(self.api, deadline)

    def list_operations(
        self,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        status: OperationStatus | None = None,
        page_size: int = 1000,
    ) -> Iterator[OperationsPage]:
        query = {"pageSize": str(page_size)}
        if start_date is not None:
            query["startDate"] = start_date.isoformat()
        if end_date is not None:
            query["endDate"] = end_date.isoformat()
        if status is not None:
            query["status"] = status.value
        return self._pages(query, start_date, end_date, status, page_size)

    def fetch_operation(self, operation_id: str) -> EmailOperation:
        self._request("fetch_operation")
        item = self.api.items.get(operation_id)
        if item is None or not self.api.retained(item):
            raise CommsNotFound("HTTP 404", endpoint="fetch_operation")
        operation = EmailOperation.model_validate(item)
        reason = not_credible(operation, self.api.api_clock.latest_credible())
        if reason is not None:
            raise CommsMalformedOperation(reason, endpoint="fetch_operation")
        return operation

    def _pages(
        self,
        query: dict[str, str],
        start: datetime | None,
        end: datetime | None,
        status: OperationStatus | None,
        page_size: int,
    ) -> Iterator[OperationsPage]:
        offset = 0
        while True:
            self._request("list_operations")
            self.api.listings.append(query)
            matching = self.api.listed(start, end, status)
            page = matching[offset : offset + page_size]
            offset += len(page)
            more = offset < len(matching)
            payload = {
                "operations": [self.api.render(item) for item in page],
                "pagination": {"next": f"token-{offset}" if more else None, "self": None},
            }
            yield parse_operations_page(payload, latest=self.api.api_clock.latest_credible())
            if not more:
                return

    def _request(self, endpoint: str) -> None:
        if self.deadline is not None:
            self.api.deadlines.append(self.deadline())
        self.api.request(endpoint)


# -- the state table -----------------------------------------------------------------------------------


class MemoryStateStore:
    """The state table of one account, with the version protocol of ``comms_bridge.poller.claims``: a
    write lands only on the version it expects and on an unclaimed item, a settle only on the claim it
    names. ``fail_writes``/``fail_settles``: raise StateStoreError on state writes / settles.
    ``before_commit``: called with the writes before the next commit is applied, where a test lets another
    writer act between a run's read and its write."""

    def __init__(self, journal: Journal | None = None) -> None:
        self.journal = journal or Journal()
        self.counters = StoreCounters()
        self.states: dict[str, StoredState] = {}
        self.index: dict[str, StoredState] = {}
        self.checkpoint: Checkpoint | None = None
        self.lease_owner: str | None = None
        self.lease_until: float = 0.0
        self.fail_writes = False
        self.fail_settles = False
        self.before_commit: Callable[[Sequence[StateWrite]], None] | None = None

    def seed(self, states: Iterable[TrackedOperation]) -> None:
        """Put states in place as earlier runs would have left them (next version, no claim)."""
        for state in states:
            old = self.states.get(state.operation_id)
            stored = StoredState.of(state, version=(old.version if old else 0) + 1)
            self.states[state.operation_id] = stored
            if state.status.terminal:
                self.index.pop(state.operation_id, None)
            else:
                self.index[state.operation_id] = stored

    def get_states(self, operation_ids: Iterable[str], *, consistent: bool = True) -> dict[str, StoredState]:
        self.counters.count("BatchGetItem")
        found = {op_id: self.states[op_id] for op_id in sorted(set(operation_ids)) if op_id in self.states}
        self.counters.items_read += len(found)
        return found

    def active_index(self) -> dict[str, StoredState]:
        self.counters.count("Query")
        self.counters.items_read += len(self.index)
        return dict(self.index)

    def load_checkpoint(self) -> Checkpoint | None:
        self.counters.count("GetItem")
        return self.checkpoint

    def commit(self, writes: Sequence[StateWrite]) -> set[str]:
        hook, self.before_commit = self.before_commit, None
        if hook is not None:
            hook(writes)
        self.counters.count("TransactWriteItems")
        if self.fail_writes:
            raise StateStoreError("TransactWriteItems cancelled: ThrottlingError")
        refused: set[str] = set()
        for write in writes:
            op_id = write.operation_id
            stored = self.states.get(op_id)
            if (stored.version if stored else 0) != write.expected or (stored and stored.claim):
                refused.add(op_id)
                continue
            self.journal.entries.append(("write", op_id))
            version = write.expected + 1
            self.states[op_id] = StoredState.of(write.state, version=version, claim=write.claim)
            self.counters.items_written += 1
            if write.claim is None:  # with a claim, the index entry follows at the settle
                self._move_index(write.state, version, write.index)
        return refused

    def _move_index(self, state: TrackedOperation, version: int, action: IndexAction) -> None:
        if action is IndexAction.PUT:
            self.index[state.operation_id] = StoredState.of(state, version=version)
        elif action is IndexAction.DELETE:
            self.index.pop(state.operation_id, None)

    def settle(self, settles: Sequence[Settle]) -> set[str]:
        self.counters.count("TransactWriteItems")
        if self.fail_settles:
            raise StateStoreError("TransactWriteItems cancelled: ThrottlingError")
        refused: set[str] = set()
        for settle in settles:
            stored = self.states.get(settle.operation_id)
            if (
                stored is None
                or stored.version != settle.version
                or stored.claim is None
                or stored.claim.owner != settle.owner
            ):
                refused.add(settle.operation_id)
                continue
            claim = stored.claim.model_copy(update={"until": 0}) if settle.release else None
            self.states[settle.operation_id] = stored.model_copy(update={"claim": claim})
            if not settle.release and settle.state is not None:
                self._move_index(settle.state, settle.version, settle.index)
            self.journal.entries.append(("release" if settle.release else "settle", settle.operation_id))
        return refused

    def forget(self, operation_ids: Sequence[str]) -> None:
        self.counters.count("BatchWriteItem")
        for op_id in operation_ids:
            self.journal.entries.append(("forget", op_id))
            self.states.pop(op_id, None)
            self.index.pop(op_id, None)

    def save_checkpoint(
        self, checkpoint: Checkpoint, *, lease_owner: str, release_lease: bool = False
    ) -> None:
        self.counters.count("UpdateItem")
        if self.lease_owner != lease_owner:
            raise CheckpointConflict("the lease was lost; checkpoint not written")
        self.journal.entries.append(("checkpoint", lease_owner))
        if release_lease:
            self.lease_owner = None
        # Through JSON, as DynamoDB keeps it: nothing the run still holds can change it afterwards.
        self.checkpoint = Checkpoint.model_validate_json(checkpoint.model_dump_json(by_alias=True))

    def tracked(self, operation_id: str) -> StoredState | None:
        return self.states.get(operation_id)


class MemoryLease:
    """The lease on the store's checkpoint record, taken with the API clock like the real one."""

    def __init__(self, store: MemoryStateStore, owner: str | None = None) -> None:
        self.store = store
        self.owner = owner or uuid.uuid4().hex
        self.held = False

    def acquire(self, now: datetime, seconds: float) -> Checkpoint | None:
        self.store.counters.count("UpdateItem")
        store = self.store
        # A lease reaching further ahead than any run takes one counts as lapsed, as in DynamoLease.
        ceiling = now.timestamp() + max_lease_ahead(DEFAULT_MAX_CLOCK_SKEW_SECONDS)
        held = store.lease_owner not in (None, self.owner) and now.timestamp() <= store.lease_until <= ceiling
        if held:
            return None
        store.lease_owner, store.lease_until = self.owner, now.timestamp() + max(int(seconds), 1)
        self.held = True
        return store.checkpoint or Checkpoint()

    def released_with_checkpoint(self) -> None:
        self.held = False

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self.store.lease_owner == self.owner:
            self.store.lease_owner = None


# -- the bus -------------------------------------------------------------------------------------------


class MemoryEventSink:
    """Accepts events (10 per PutEvents call) unless ``refuse(event)`` says otherwise."""

    def __init__(self, journal: Journal | None = None) -> None:
        self.journal = journal or Journal()
        self.events: list[OutgoingEvent] = []
        self.put_events_calls = 0
        self.refuse: Callable[[OutgoingEvent], bool] = lambda event: False

    def publish(self, events: Sequence[OutgoingEvent]) -> PublishResult:
        self.put_events_calls += -(-len(events) // 10)
        accepted, failed = [], []
        for event in events:
            if self.refuse(event):
                failed.append(FailedEvent(event, "InternalFailure", "refused by the test"))
                continue
            accepted.append(event)
            self.events.append(event)
            self.journal.entries.append(("publish", event.event_key))
        return PublishResult(accepted=accepted, failed=failed)

    def drain(self) -> list[OutgoingEvent]:
        events, self.events = self.events, []
        return events


# -- a whole world -------------------------------------------------------------------------------------


class FakeContext:
    """``remaining_ms``: a number, or a callable asked every time (to make the time run out)."""

    def __init__(self, remaining_ms: Callable[[], int] | int = 60_000) -> None:
        self._remaining = remaining_ms if callable(remaining_ms) else (lambda: remaining_ms)

    def get_remaining_time_in_millis(self) -> int:
        return int(self._remaining())


class FakeWall:
    """The local clock of the world's invocations (claims are judged by it), moved by hand; ``sleep``
    moves it too, so a run waiting for another writer's claim takes no real time."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> LocalClock:
        return LocalClock(self.time, self.sleep)


@dataclass
class PollerWorld:
    """The API, the table and the bus of one account; :meth:`run` is one scheduled invocation."""

    api: FakeCommsApi = field(default_factory=FakeCommsApi)
    journal: Journal = field(default_factory=Journal)
    env: dict[str, str] = field(default_factory=dict)
    store: MemoryStateStore = field(init=False)
    sink: MemoryEventSink = field(init=False)
    metrics: list[tuple[str, float]] = field(default_factory=list)
    wall: FakeWall = field(default_factory=FakeWall)

    def __post_init__(self) -> None:
        self.store = MemoryStateStore(self.journal)
        self.sink = MemoryEventSink(self.journal)

    @property
    def config(self) -> PollerConfig:
        return PollerConfig.from_env(self.env)

    def run(self, context: FakeContext | None = None, *, lease: MemoryLease | None = None) -> RunSummary:
        self.store.counters = StoreCounters()  # a new adapter per invocation, as in the runtime
        self.api.api_clock.max_skew = timedelta(seconds=self.config.max_clock_skew_seconds)
        return PollerRun(
            source=self.api,
            store=self.store,
            lease=lease or MemoryLease(self.store),
            sink=self.sink,
            config=self.config,
            context=context,
            metrics=self,
            local=self.wall.clock(),
        ).run()

    def add(self, name: str, unit: str, value: float) -> None:
        self.metrics.append((name, value))
