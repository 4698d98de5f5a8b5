"""The enricher's I/O as small Protocols, so unit tests drive a whole run with in-memory fakes and the
runtime wires the real adapters (``adapters.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from comms_bridge.comms.models import OperationErrorsPage
from comms_bridge.enricher.summary import ErrorsSummary


class ErrorPagesLike(Protocol):
    truncated: bool

    def __iter__(self) -> Iterator[OperationErrorsPage]: ...


class ErrorsSource(Protocol):
    def list_operation_errors(
        self, operation_id: str, *, max_items: int, page_size: int
    ) -> ErrorPagesLike: ...


class SummarySink(Protocol):
    def publish(self, summary: ErrorsSummary) -> None:
        """Raise :class:`SummaryNotPublished` when the event did not make it onto the bus."""


class AlertTarget(Protocol):
    name: str

    def send(self, summary: ErrorsSummary) -> None:
        """Raise :class:`AlertFailed` when the alert was not (knowingly) delivered."""


class StepLedger(Protocol):
    def once(self, step: str, event_key: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``action`` unless this step already completed for ``event_key``; return its stored result.
        An exception from ``action`` leaves the step undone."""


class Telemetry(Protocol):
    def count(self, name: str, value: int = 1, *, target: str | None = None) -> None: ...


class SummaryNotPublished(Exception):
    pass


class AlertFailed(Exception):
    """``retryable``: nothing was delivered, so trying again (on a Lambda retry) cannot duplicate."""

    def __init__(self, summary: str, *, retryable: bool, kind: str) -> None:
        super().__init__(summary)
        self.retryable = retryable
        self.kind = kind
