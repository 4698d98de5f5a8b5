"""In-memory stand-ins for the enricher's ports (``comms_bridge.enricher.ports``) and for Powertools'
idempotency store, shared by the enricher's and the runtime's unit tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

from comms_bridge.comms.exceptions import CommsApiError, CommsNotFound
from comms_bridge.comms.models import EmailOperation, OperationError, OperationErrorsPage, SkippedItem
from comms_bridge.enricher.ports import Alert, AlertFailed, SummaryNotPublished
from comms_bridge.enricher.summary import ErrorsSummary

ACCOUNT_SID = "AC51515151515151515151515151515151"  # the account of events/errors-trigger.json


def page(
    errors: list[OperationError], next_token: str | None = None, skipped: int = 0
) -> OperationErrorsPage:
    return OperationErrorsPage(
        errors=errors,
        skipped=[SkippedItem(index=i, item_id=None, reason="code: bad") for i in range(skipped)],
        next_token=next_token,
        self_token=None,
    )


def errors(n: int, code: int = 62001) -> list[OperationError]:
    return [
        OperationError(code=code, message=f"m{code}", email_id=f"comms_email_{code}_{i}") for i in range(n)
    ]


class FakePages:
    def __init__(self, pages: list[OperationErrorsPage], fail_with: Exception | None, max_items: int) -> None:
        self._pages = pages
        self._fail_with = fail_with
        self._max = max_items
        self.truncated = False

    def __iter__(self) -> Iterator[OperationErrorsPage]:
        read = 0
        for item in self._pages:
            if read + len(item.errors) >= self._max:
                self.truncated = read + len(item.errors) > self._max or item.next_token is not None
                yield item.model_copy(update={"errors": item.errors[: self._max - read]})
                return
            read += len(item.errors)
            yield item
        if self._fail_with is not None:
            raise self._fail_with


class FakeSource:
    def __init__(self, pages: list[OperationErrorsPage], fail_with: Exception | None = None) -> None:
        self.pages = pages
        self.fail_with = fail_with
        self.calls = 0

    def list_operation_errors(self, operation_id: str, *, max_items: int, page_size: int) -> FakePages:
        self.calls += 1
        return FakePages(self.pages, self.fail_with, max_items)


class FakeSink:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.published: list[dict[str, Any]] = []

    def publish(self, summary: ErrorsSummary) -> None:
        if self.failures:
            self.failures -= 1
            raise SummaryNotPublished("PutEvents failed: InternalFailure")
        self.published.append(summary.detail())


class FakeTarget:
    def __init__(self, name: str, failures: list[AlertFailed] | None = None) -> None:
        self.name = name
        self.failures = list(failures or [])
        self.attempts = 0
        self.delivered: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append(alert)


def operation(
    operation_id: str,
    *,
    status: str = "COMPLETED",
    updated_at: str = "2026-01-05T09:22:00Z",
    **stats: int,
) -> EmailOperation:
    counters = {
        "total": 1000,
        "recipients": 1000,
        "attempts": 1000,
        "scheduled": 0,
        "queued": 0,
        "sent": 880,
        "delivered": 865,
        "opened": 300,
        "undelivered": 15,
        "failed": 120,
        "canceled": 0,
    } | stats
    return EmailOperation.model_validate(
        {
            "id": operation_id,
            "status": status,
            "stats": counters,
            "createdAt": "2026-01-05T09:02:00Z",
            "updatedAt": updated_at,
        }
    )


class FakeComms:
    """The Comms API as the confirmation sees it: the operations it knows, its clock, the account."""

    def __init__(
        self,
        operations: Mapping[str, EmailOperation] | None = None,
        *,
        account_sid: str = ACCOUNT_SID,
        now: datetime = datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
        fail_with: CommsApiError | None = None,
        errors: FakeSource | None = None,
    ) -> None:
        self.errors = errors
        self.operations = dict(operations or {})
        self.account_sid = account_sid
        self.clock = now
        self.fail_with = fail_with
        self.fetches = 0

    def fetch_operation(self, operation_id: str) -> EmailOperation:
        self.fetches += 1
        if self.fail_with is not None:
            raise self.fail_with
        if operation_id not in self.operations:
            raise CommsNotFound("Comms API fetch_operation: not found", status=404)
        return self.operations[operation_id]

    def now(self) -> datetime:
        return self.clock

    def list_operation_errors(self, operation_id: str, *, max_items: int, page_size: int) -> FakePages:
        if self.errors is None:
            raise AssertionError("this FakeComms serves no errors")
        return self.errors.list_operation_errors(operation_id, max_items=max_items, page_size=page_size)


class MemoryBudget:
    """The hourly alert cap in memory (one hour, as a test takes less)."""

    def __init__(self, per_hour: int = 3) -> None:
        self.per_hour = per_hour
        self.taken: dict[str, int] = {}

    def take(self, operation_id: str) -> bool:
        if self.taken.get(operation_id, 0) >= self.per_hour:
            return False
        self.taken[operation_id] = self.taken.get(operation_id, 0) + 1
        return True


class MemoryLedger:
    """Powertools semantics in memory: a completed step's result is replayed; a raising step is undone."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], dict[str, Any]] = {}

    def once(self, step: str, event_key: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        key = (step, event_key)
        if key not in self.records:
            self.records[key] = json.loads(json.dumps(action()))
        return self.records[key]


class Counter:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str | None], int] = {}

    def count(self, name: str, value: int = 1, *, target: str | None = None) -> None:
        self.counts[(name, target)] = self.counts.get((name, target), 0) + value


class MemoryPersistenceLayer(BasePersistenceLayer):
    """Powertools' persistence contract in a dict. A put on a key whose record is still live fails, as the
    DynamoDB layer's conditional put does, so Powertools takes the same paths (replay, in progress)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, DataRecord] = {}

    def _get_record(self, idempotency_key: str) -> DataRecord:
        try:
            return self.records[idempotency_key]
        except KeyError:
            raise IdempotencyItemNotFoundError from None

    def _put_record(self, data_record: DataRecord) -> None:
        existing = self.records.get(data_record.idempotency_key)
        if existing is not None and not existing.is_expired:
            raise IdempotencyItemAlreadyExistsError(old_data_record=existing)
        self.records[data_record.idempotency_key] = data_record

    def _update_record(self, data_record: DataRecord) -> None:
        self.records[data_record.idempotency_key] = data_record

    def _delete_record(self, data_record: DataRecord) -> None:
        self.records.pop(data_record.idempotency_key, None)
