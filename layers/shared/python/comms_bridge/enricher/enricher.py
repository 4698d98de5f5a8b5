"""The errors enricher: read an operation's errors, summarize them, publish the summary, alert.

The orchestration takes all its I/O as small objects (errors source, summary sink, alert targets, a step
ledger, telemetry) so unit tests drive it with fakes and the Lambda handler only wires real ones.

Exactly-once per triggering ``eventKey`` (contract §4) rests on the step ledger: each step -- build the
summary, publish it, alert SNS, alert Slack -- runs at most once to completion per key, and its result is
stored. A Lambda retry after a partial failure replays the finished steps from the ledger (the same
summary, no second post) and runs only the ones that failed.

Failure policy (docs/enricher.md):

- Comms API 404 on the errors list: a summary with ``errorCount`` 0; ``truncated`` is true when the
  trigger counted failures (errors existed that could not be read); alerts say the details are gone.
- Any other Comms failure after the client's own retries (429/503 persisting, 5xx, transport, malformed
  response): the summary is published with what was read, ``truncated`` true, and the alerts say the list
  is incomplete. The alert about a bad send is worth more on time than complete later.
- Publishing the summary fails, or an alert fails in a way that is safe to repeat (nothing was
  delivered): the other steps still run, then the invocation fails so Lambda retries only those steps
  (and, after its retries, the event lands in the on-failure destination).
- An alert that may have been delivered (Slack 5xx, read timeout) or was refused for good (Slack 4xx) is
  recorded as failed, logged and counted, and not retried: a second post could duplicate the alert.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from comms_bridge.comms.exceptions import CommsApiError, CommsNotFound
from comms_bridge.enricher.grouping import MAX_GROUPS, ErrorTally
from comms_bridge.enricher.ports import (
    AlertFailed,
    AlertTarget,
    ErrorsSource,
    StepLedger,
    SummaryNotPublished,
    SummarySink,
    Telemetry,
)
from comms_bridge.enricher.settings import DEFAULT_MAX_ERRORS, DEFAULT_PAGE_SIZE
from comms_bridge.enricher.summary import ErrorsSummary
from comms_bridge.enricher.trigger import TriggerEvent

logger = logging.getLogger("comms_bridge.enricher.enricher")


STEP_SUMMARY: Final = "summary"
STEP_PUBLISH: Final = "publish"

OUTCOME_SENT: Final = "sent"
OUTCOME_FAILED: Final = "failed"


class EnrichmentIncomplete(Exception):
    """Some steps must be retried; the finished ones are recorded and will not run again."""


# -- reading ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorsRead:
    tally: ErrorTally
    truncated: bool
    note: str | None
    pages: int
    skipped: int
    failure: str | None


def read_errors(
    source: ErrorsSource,
    operation_id: str,
    *,
    failed_count: int,
    max_errors: int,
    page_size: int = DEFAULT_PAGE_SIZE,
    time_left: Callable[[], float],
) -> ErrorsRead:
    """Read pages until the list ends, ``max_errors`` were read or ``time_left()`` reaches 0 (it is the
    time left *for reading*: the caller's safety margin is already taken off)."""
    tally = ErrorTally()
    pages = skipped = 0
    out_of_time = False
    failure: str | None = None
    note: str | None = None
    listing = source.list_operation_errors(operation_id, max_items=max_errors, page_size=page_size)
    try:
        for page in listing:
            pages += 1
            tally.extend(page.errors)
            skipped += len(page.skipped)
            if page.next_token and not listing.truncated and time_left() <= 0:
                out_of_time = True
                break
    except CommsNotFound:
        failure = "not_found"
        note = (
            "The error details are no longer available: the Comms API answered 404 for this operation's "
            "error list (past its retention). Counters are from the triggering event."
        )
    except CommsApiError as exc:
        failure = type(exc).__name__
        status = f", HTTP {exc.status}" if exc.status else ""
        note = (
            f"Reading the error list failed after {tally.total} errors ({failure}{status}); "
            "the groups below may be incomplete."
        )
        logger.error(
            "reading the errors of %s failed: %s",
            operation_id,
            exc,
            extra={"operationId": operation_id, "error": failure, "status": exc.status},
        )
    if out_of_time:
        note = f"Stopped reading the error list after {tally.total} errors to stay within the time limit."
    if skipped:
        malformed = f"{skipped} malformed error item(s) from the API were left out."
        note = malformed if note is None else f"{note} {malformed}"
    if failure == "not_found":
        truncated = failed_count > 0
    else:
        truncated = bool(listing.truncated or out_of_time or skipped or failure)
    return ErrorsRead(
        tally=tally, truncated=truncated, note=note, pages=pages, skipped=skipped, failure=failure
    )


def build_summary(trigger: TriggerEvent, read: ErrorsRead) -> ErrorsSummary:
    detail = trigger.detail
    return ErrorsSummary(
        trigger_event_key=detail.event_key,
        trigger_detail_type=trigger.detail_type,
        account_sid=detail.account_sid,
        operation_id=detail.operation_id,
        status=detail.status.value,
        stats=detail.stats.as_dict(),
        error_count=read.tally.total,
        truncated=read.truncated,
        groups=tuple(read.tally.groups(MAX_GROUPS)),
        distinct_groups=read.tally.distinct,
        note=read.note,
    )


# -- the orchestration ------------------------------------------------------------------------------------


class Enricher:
    def __init__(
        self,
        *,
        errors: ErrorsSource,
        sink: SummarySink,
        targets: list[AlertTarget],
        ledger: StepLedger,
        telemetry: Telemetry,
        max_errors: int = DEFAULT_MAX_ERRORS,
        page_size: int = DEFAULT_PAGE_SIZE,
        time_left: Callable[[], float] = lambda: float("inf"),
    ) -> None:
        self._errors = errors
        self._sink = sink
        self._targets = targets
        self._ledger = ledger
        self._telemetry = telemetry
        self._max_errors = max_errors
        self._page_size = page_size
        self._time_left = time_left

    def run(self, trigger: TriggerEvent) -> dict[str, Any]:
        key = trigger.detail.event_key
        summary = ErrorsSummary.from_record(
            self._ledger.once(STEP_SUMMARY, key, lambda: self._summarize(trigger).to_record())
        )
        retry: list[str] = []
        try:
            self._ledger.once(STEP_PUBLISH, key, lambda: self._publish(summary))
            published = True
        except SummaryNotPublished as exc:
            published = False
            retry.append(f"summary event: {exc}")
            logger.error(
                "publishing the errors summary failed: %s", exc, extra={"eventKey": summary.event_key}
            )
        alerts: dict[str, str] = {}
        for target in self._targets:
            try:
                result = self._ledger.once(f"alert-{target.name}", key, _bind(self._deliver, target, summary))
                alerts[target.name] = str(result["outcome"])
            except AlertFailed as exc:
                alerts[target.name] = "retry"
                retry.append(f"{target.name} alert: {exc}")
        if retry:
            raise EnrichmentIncomplete("will be retried: " + "; ".join(retry))
        return {
            "eventKey": summary.event_key,
            "triggerEventKey": key,
            "operationId": summary.operation_id,
            "errorCount": summary.error_count,
            "truncated": summary.truncated,
            "published": published,
            "alerts": alerts,
        }

    def _summarize(self, trigger: TriggerEvent) -> ErrorsSummary:
        read = read_errors(
            self._errors,
            trigger.detail.operation_id,
            failed_count=trigger.detail.stats.failed,
            max_errors=self._max_errors,
            page_size=self._page_size,
            time_left=self._time_left,
        )
        self._telemetry.count("ErrorsRead", read.tally.total)
        self._telemetry.count("ErrorGroups", read.tally.distinct)
        if read.skipped:
            self._telemetry.count("MalformedErrorItems", read.skipped)
        if read.failure:
            self._telemetry.count("ErrorsReadFailures")
        summary = build_summary(trigger, read)
        logger.info(
            "errors summarized",
            extra={
                "operationId": summary.operation_id,
                "eventKey": summary.event_key,
                "errorCount": summary.error_count,
                "groups": summary.distinct_groups,
                "truncated": summary.truncated,
                "pages": read.pages,
            },
        )
        return summary

    def _publish(self, summary: ErrorsSummary) -> dict[str, Any]:
        self._sink.publish(summary)
        self._telemetry.count("SummariesPublished")
        return {"eventKey": summary.event_key}

    def _deliver(self, target: AlertTarget, summary: ErrorsSummary) -> dict[str, Any]:
        try:
            target.send(summary)
        except AlertFailed as exc:
            self._telemetry.count("AlertFailures", target=target.name)
            logger.error(
                "%s alert failed (%s): %s",
                target.name,
                "will be retried" if exc.retryable else "not retried",
                exc,
                extra={"target": target.name, "kind": exc.kind, "retryable": exc.retryable},
            )
            if exc.retryable:
                raise
            return {"outcome": OUTCOME_FAILED, "kind": exc.kind, "reason": str(exc)}
        self._telemetry.count("AlertsSent", target=target.name)
        return {"outcome": OUTCOME_SENT}


def _bind(
    deliver: Callable[[AlertTarget, ErrorsSummary], dict[str, Any]],
    target: AlertTarget,
    summary: ErrorsSummary,
) -> Callable[[], dict[str, Any]]:
    return lambda: deliver(target, summary)
