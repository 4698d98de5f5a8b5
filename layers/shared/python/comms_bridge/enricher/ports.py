"""The enricher's I/O as small Protocols, so unit tests drive a whole run with in-memory fakes and the
runtime wires the real adapters (``adapters.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Protocol

from comms_bridge.comms.models import EmailOperation, OperationErrorsPage
from comms_bridge.enricher.stall import StallAlert
from comms_bridge.enricher.summary import ErrorsSummary

Alert = ErrorsSummary | StallAlert
"""What an alert target is given: an operation's errors summarized, or a confirmed stall."""


class ErrorPagesLike(Protocol):
    truncated: bool

    def __iter__(self) -> Iterator[OperationErrorsPage]: ...


class ErrorsSource(Protocol):
    def list_operation_errors(
        self, operation_id: str, *, max_items: int, page_size: int
    ) -> ErrorPagesLike: ...


class OperationSource(Protocol):
    """The Comms API as the confirmation needs it (``CommsClient`` is one)."""

    @property
    def account_sid(self) -> str: ...

    def fetch_operation(self, operation_id: str) -> EmailOperation:
        """Raise ``CommsNotFound`` for an operation the API does not know."""

    def now(self) -> datetime:
        """The API's clock (the ``Date`` of its latest response)."""


class CommsSource(ErrorsSource, OperationSource, Protocol):
    """Both: one client per invocation confirms the trigger and reads the errors."""


class SummarySink(Protocol):
    def publish(self, summary: ErrorsSummary) -> None:
        """Raise :class:`SummaryNotPublished` when the event did not make it onto the bus."""


class AlertTarget(Protocol):
    name: str

    def send(self, alert: Alert) -> None:
        """Raise :class:`AlertFailed` when the alert was not (knowingly) delivered."""


class AlertBudget(Protocol):
    def take(self, operation_id: str) -> bool:
        """Count one alert for the operation in the current hour; False when its hourly cap is reached."""


class StepLedger(Protocol):
    def once(self, step: str, event_key: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``action`` unless this step already completed for ``event_key``; return its stored result.
        An exception from ``action`` leaves the step undone."""


class Telemetry(Protocol):
    def count(self, name: str, value: int = 1, *, target: str | None = None) -> None: ...


class SummaryNotPublished(Exception):
    pass


class AlertFailed(Exception):
    """``retryable``: a transient failure (timeout, connection error, 5xx, 429, a secret that could not be
    read), retried until the target has the alert once; otherwise permanent (a revoked webhook, another
    4xx): recorded, counted as ``PermanentAlertFailures`` (an alarm) and not retried."""

    def __init__(self, summary: str, *, retryable: bool, kind: str) -> None:
        super().__init__(summary)
        self.retryable = retryable
        self.kind = kind
