"""The poller's I/O as small Protocols, so unit tests drive a whole run with in-memory fakes
(``tests/support/poller_fakes.py``) and the runtime wires the real adapters: :class:`CommsClient`,
:class:`DynamoStateStore`, :class:`DynamoLease` and :class:`EventPublisher`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Protocol

from comms_bridge.aws.eventbridge import OutgoingEvent, PublishResult
from comms_bridge.comms.models import EmailOperation, OperationsPage, OperationStatus
from comms_bridge.poller.checkpoint import Checkpoint
from comms_bridge.poller.claims import Settle, StateWrite, StoredState
from comms_bridge.poller.state_store import StoreCounters


class OperationsSource(Protocol):
    """The Comms API's Email Operations, as seen by one account's credentials."""

    @property
    def account_sid(self) -> str: ...

    @property
    def request_count(self) -> int:
        """Requests sent so far (retries included): what a run costs."""

    @property
    def distrusted_dates(self) -> int:
        """Responses so far whose ``Date`` was farther from the local clock than ``MAX_CLOCK_SKEW_SECONDS``
        (contract §6): counted, and not taken as the API's clock."""

    def now(self) -> datetime:
        """The API's clock: the ``Date`` of its latest response within the bound (contract §3, §6)."""

    def list_operations(
        self,
        *,
        start_date: datetime | None = ...,
        end_date: datetime | None = ...,
        status: OperationStatus | None = ...,
        page_size: int = ...,
    ) -> Iterator[OperationsPage]: ...

    def fetch_operation(self, operation_id: str) -> EmailOperation:
        """Raise ``CommsNotFound`` for an operation the API does not have (any more)."""

    def with_deadline(self, deadline: Callable[[], float] | None) -> OperationsSource:
        """The same source (counters and clock shared) whose requests end within ``deadline()`` seconds."""


class StateStore(Protocol):
    """Per-operation state, the active index and the checkpoint of one account. State writes follow the
    version protocol of :mod:`comms_bridge.poller.claims`."""

    @property
    def counters(self) -> StoreCounters: ...

    def get_states(self, operation_ids: Iterable[str], *, consistent: bool = True) -> dict[str, StoredState]:
        """``consistent``: a state another writer stored a moment ago is seen; otherwise the read may lag
        (half the cost; the conditional writes catch what it missed)."""

    def active_index(self) -> dict[str, StoredState]: ...

    def load_checkpoint(self) -> Checkpoint | None: ...

    def commit(self, writes: Sequence[StateWrite]) -> set[str]:
        """Each write only if its item is still at ``expected`` and unclaimed (with its index entry, at
        once); the operations whose write was refused."""

    def settle(self, settles: Sequence[Settle]) -> set[str]:
        """End claims still held at that version by that owner; the refused ones."""

    def forget(self, operation_ids: Sequence[str]) -> None: ...

    def save_checkpoint(
        self, checkpoint: Checkpoint, *, lease_owner: str, release_lease: bool = False
    ) -> None:
        """Raise ``CheckpointConflict`` unless ``lease_owner`` still holds the lease; ``release_lease``: give
        it up in the same write."""


class Lease(Protocol):
    """At most one run per account publishes at a time."""

    @property
    def owner(self) -> str: ...

    @property
    def held(self) -> bool: ...

    def acquire(self, now: datetime, seconds: float) -> Checkpoint | None:
        """Take the lease until ``now + seconds``; return the checkpoint stored with it (an empty one before
        the first run), or None when another owner holds an unexpired lease."""

    def release(self) -> None: ...

    def released_with_checkpoint(self) -> None:
        """The checkpoint write gave the lease up (``release_lease``): nothing is left to release."""


class EventSink(Protocol):
    @property
    def put_events_calls(self) -> int: ...

    def publish(self, events: Sequence[OutgoingEvent]) -> PublishResult:
        """Entries that were not accepted come back in ``failed``; nothing is dropped silently."""


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class MetricsSink(Protocol):
    def add(self, name: str, unit: str, value: float) -> None: ...


class NullMetrics:
    def add(self, name: str, unit: str, value: float) -> None:
        return None
