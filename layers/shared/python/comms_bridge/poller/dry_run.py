"""A poller run that reads everything and writes nothing: ``comms-bridge poll --dry-run``.

The run itself is the real one (:class:`comms_bridge.poller.run.PollerRun`); only the three writing
ports get other adapters: the event sink records the events instead of putting them, the state store
reads the table but never writes it, and the lease is held without being written (a dry run must not
block a real one).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, cast

from comms_bridge.aws.eventbridge import EventPublisher, OutgoingEvent, PublishResult
from comms_bridge.poller.checkpoint import Checkpoint
from comms_bridge.poller.claims import Settle, StateWrite
from comms_bridge.poller.ports import LambdaContextLike, StateStore
from comms_bridge.poller.run import run
from comms_bridge.poller.state_store import DynamoStateStore
from comms_bridge.poller.summary import RunSummary

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

    from comms_bridge.poller.runtime import PollerRuntime


class RecordingPublisher(EventPublisher):
    """Accepts every event (after the same size checks as the real publisher) and keeps it in ``recorded``."""

    def __init__(self, *, bus_name: str, source: str) -> None:
        super().__init__(cast("EventBridgeClient", None), bus_name=bus_name, source=source)
        self.recorded: list[OutgoingEvent] = []

    def publish(self, events: Sequence[OutgoingEvent]) -> PublishResult:
        self.check(events)
        self.recorded.extend(events)
        return PublishResult(accepted=list(events), failed=[])


class ReadOnlyStateStore(DynamoStateStore):
    """Reads the state table; every write is left out (and reported as done, so the run goes on as the
    real one would)."""

    def commit(self, writes: Sequence[StateWrite]) -> set[str]:
        return set()

    def settle(self, settles: Sequence[Settle]) -> set[str]:
        return set()

    def forget(self, operation_ids: Sequence[str]) -> None:
        return None

    def save_checkpoint(self, checkpoint: Checkpoint, *, lease_owner: str) -> None:
        return None


class UnwrittenLease:
    """Always acquired, never written: a dry run neither waits for nor blocks a real run. The checkpoint
    comes from ``store`` (the real lease reads it in the same call that takes the lease)."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.owner = uuid.uuid4().hex
        self.held = False

    def acquire(self, now: datetime, seconds: float) -> Checkpoint | None:
        self.held = True
        return self._store.load_checkpoint() or Checkpoint()

    def release(self) -> None:
        self.held = False


def dry_run(
    runtime: PollerRuntime, context: LambdaContextLike | None, *, secret_arn: str | None = None
) -> tuple[RunSummary, list[OutgoingEvent]]:
    """One poller run with ``runtime``'s clients and configuration that writes nothing; returns its summary
    and the events the real run would have published, in order. ``secret_arn``: the account's secret, as
    in the poller's event (the only watched one when None)."""
    config = runtime.config
    comms = runtime.comms(secret_arn)
    store = ReadOnlyStateStore(
        runtime.dynamodb, table_name=config.require_state_table(), account_sid=comms.account_sid
    )
    publisher = RecordingPublisher(bus_name=config.event_bus_name, source=config.event_source)
    summary = run(
        source=comms,
        store=store,
        lease=UnwrittenLease(store),
        sink=publisher,
        config=config,
        context=context,
    )
    return summary, publisher.recorded
