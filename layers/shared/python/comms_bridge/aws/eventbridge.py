"""EventBridge publishing with the PutEvents limits and per-entry failure handling.

PutEvents can accept a request and still reject single entries (``FailedEntryCount`` > 0, an
``ErrorCode`` on the entry). Only those entries are retried, with backoff; whatever is still failing
after ``max_attempts`` comes back in :class:`PublishResult` so the caller can keep its state unchanged
and redo the work next time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from comms_bridge.aws.errors import error_code, error_message
from comms_bridge.aws.retry import Backoff
from comms_bridge.events.details import detail_json, entry_size_bytes

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

DEFAULT_PUBLISH_RETRY: Final = Backoff(max_attempts=4, base_delay=0.2, max_delay=5.0)
"""Failed entries are put again up to 3 times, 0.2 s, 0.4 s and 0.8 s apart."""
MAX_ENTRIES_PER_CALL: Final = 10
MAX_REQUEST_BYTES: Final = 256 * 1024
"""EventBridge's limit for one entry and for a whole PutEvents request."""

logger = logging.getLogger("comms_bridge.aws.eventbridge")


class EventTooLargeError(ValueError):
    """An event is bigger than EventBridge accepts; it is never dropped silently."""


@dataclass(frozen=True)
class OutgoingEvent:
    detail_type: str
    detail: Mapping[str, Any]
    event_key: str
    resources: tuple[str, ...] = ()


@dataclass(frozen=True)
class FailedEvent:
    event: OutgoingEvent
    error_code: str
    error_message: str


@dataclass(frozen=True)
class PublishResult:
    accepted: list[OutgoingEvent]
    failed: list[FailedEvent]

    @property
    def ok(self) -> bool:
        return not self.failed


class EventPublisher:
    """Puts events on one bus with one ``source``. ``put_events_calls`` counts requests (retries too)."""

    def __init__(
        self,
        events_client: EventBridgeClient,
        *,
        bus_name: str,
        source: str,
        retry: Backoff | None = None,
    ) -> None:
        self._client = events_client
        self.bus_name = bus_name
        self.source = source
        self.retry = retry or DEFAULT_PUBLISH_RETRY
        self.put_events_calls = 0

    def with_deadline(self, time_left: Callable[[], float] | None) -> EventPublisher:
        """This publisher with retries that stop at ``time_left`` (one invocation's), its own call count."""
        return EventPublisher(
            self._client,
            bus_name=self.bus_name,
            source=self.source,
            retry=self.retry.with_deadline(time_left),
        )

    def size_of(self, event: OutgoingEvent) -> int:
        return entry_size_bytes(
            event.detail_type, event.detail, source=self.source, resources=event.resources
        )

    def check(self, events: Sequence[OutgoingEvent]) -> None:
        """Raise :class:`EventTooLargeError` before anything is sent if one event cannot be put at all."""
        for event in events:
            size = self.size_of(event)
            if size > MAX_REQUEST_BYTES:
                raise EventTooLargeError(
                    f"event {event.event_key} ({event.detail_type}) is {size} bytes; "
                    f"EventBridge accepts at most {MAX_REQUEST_BYTES}"
                )

    def publish(self, events: Sequence[OutgoingEvent]) -> PublishResult:
        """Put ``events`` in as few requests as the limits allow; retry failed entries only."""
        self.check(events)
        accepted: list[OutgoingEvent] = []
        pending: list[OutgoingEvent] = list(events)
        errors: dict[str, tuple[str, str]] = {}
        for attempt in self.retry.attempts():
            retry: list[OutgoingEvent] = []
            for batch in self._batches(pending):
                ok, failed = self._put(batch)
                accepted.extend(ok)
                for event, code, message in failed:
                    errors[event.event_key] = (code, message)
                    retry.append(event)
            pending = retry
            if not pending:
                break
            logger.warning(
                "PutEvents: %d entr(y/ies) failed on attempt %d of %d",
                len(pending),
                attempt,
                self.retry.max_attempts,
                extra={"failed": len(pending), "attempt": attempt},
            )
        failed_events = [FailedEvent(event, *errors[event.event_key]) for event in pending]
        return PublishResult(accepted=accepted, failed=failed_events)

    def _batches(self, events: Sequence[OutgoingEvent]) -> Iterator[list[OutgoingEvent]]:
        batch: list[OutgoingEvent] = []
        size = 0
        for event in events:
            entry_size = self.size_of(event)
            if batch and (len(batch) == MAX_ENTRIES_PER_CALL or size + entry_size > MAX_REQUEST_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(event)
            size += entry_size
        if batch:
            yield batch

    def _entry(self, event: OutgoingEvent) -> PutEventsRequestEntryTypeDef:
        entry: PutEventsRequestEntryTypeDef = {
            "Source": self.source,
            "DetailType": event.detail_type,
            "Detail": detail_json(event.detail),
            "EventBusName": self.bus_name,
        }
        if event.resources:
            entry["Resources"] = list(event.resources)
        return entry

    def _put(
        self, batch: list[OutgoingEvent]
    ) -> tuple[list[OutgoingEvent], list[tuple[OutgoingEvent, str, str]]]:
        self.put_events_calls += 1
        try:
            response = self._client.put_events(Entries=[self._entry(event) for event in batch])
        except ClientError as exc:
            # The whole request failed (throttled after botocore's own retries, a 500): every entry is
            # retried like a failed entry.
            return [], [(event, error_code(exc), error_message(exc)) for event in batch]
        except BotoCoreError as exc:
            return [], [(event, type(exc).__name__, str(exc)) for event in batch]
        results = response.get("Entries", [])
        if len(results) != len(batch):
            # Cannot tell which entries went through: treat all as failed (a republish keeps its eventKey).
            return [], [
                (e, "MalformedResponse", "PutEvents returned a different number of entries") for e in batch
            ]
        ok: list[OutgoingEvent] = []
        failed: list[tuple[OutgoingEvent, str, str]] = []
        for event, result in zip(batch, results, strict=True):
            if result.get("ErrorCode") or not result.get("EventId"):
                failed.append(
                    (event, str(result.get("ErrorCode", "Unknown")), str(result.get("ErrorMessage", "")))
                )
            else:
                ok.append(event)
        return ok, failed
