"""Powertools Logger, Tracer and Metrics (EMF, namespace ``CommsBridge``) for one function: the one
builder every ``app.py`` uses.

Created per container from ``POWERTOOLS_SERVICE_NAME`` / ``POWERTOOLS_METRICS_NAMESPACE``; tracing is off
when ``POWERTOOLS_TRACE_DISABLED=true`` (local runs and tests). The layer's code logs through the
standard ``logging`` module under ``comms_bridge.*``; :func:`route_library_logs` sends those records
through the Powertools JSON formatter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from aws_lambda_powertools import Logger, Metrics, Tracer

DEFAULT_NAMESPACE: Final = "CommsBridge"
SECRET_LEAKING_LOGGERS: Final = ("urllib3", "botocore")
TRACED_MODULES: Final = ("botocore",)
"""What X-Ray patches when tracing is on: the AWS calls. Not ``requests``: its patch records each request's
URL, and a Slack incoming webhook's URL is its secret (contract section 6: secrets never reach traces)."""


EMITTED_METRICS: Final[Mapping[str, frozenset[str]]] = {
    "poller": frozenset(
        {
            "EventsPublished",
            "PublishFailures",
            "CommsApiRequests",
            "RunDurationMs",
            "CheckpointLagSeconds",
            "ClockSkewDetected",
            "IncompleteRuns",
            "SkippedMalformedItems",  # contract §4: a malformed operation is skipped with a metric
        }
    ),
    "errors": frozenset(
        {
            "ErrorsRead",
            "SummariesPublished",
            "PublishFailures",
            "ErrorsReadFailures",
            "PermanentAlertFailures",
            "AlertsSent",
            "AlertFailures",
        }
    ),
    # Not graphed yet: the one an operator would alarm on (its batches also land in the failure queue and
    # show in the IteratorAge alarm), and the skips contract §7 says are counted by a metric.
    "stream": frozenset({"PublishFailures", "StreamRecordsSkipped"}),
}
TARGET_METRICS: Final = frozenset({"AlertsSent", "AlertFailures"})  # one metric per alert target


def custom_metric_count(*, slack: bool = True, stream: bool = False) -> int:
    """Custom metrics the stack emits (each name and dimension set is one): the poller's and the errors
    enricher's, the per-target ones once per alert target, the stream consumer's when it is enabled."""
    targets = 2 if slack else 1
    errors = EMITTED_METRICS["errors"]
    count = (
        len(EMITTED_METRICS["poller"]) + len(errors - TARGET_METRICS) + targets * len(errors & TARGET_METRICS)
    )
    return count + (len(EMITTED_METRICS["stream"]) if stream else 0)


"""The counts each function sends to CloudWatch as metrics: those an alarm or the dashboard's metric
widgets read. Each name and dimension set is a custom metric billed $0.30 a month, so every other count
is a field of the function's logs only (docs/observability.md says which field replaced which metric):
the poller's ``poller run finished`` summary, the stream consumer's ``stream batch finished`` outcome,
and for the errors enricher a ``counted`` line per count (``counter``, ``value``)."""


@dataclass(frozen=True)
class Observability:
    logger: Logger
    tracer: Tracer
    metrics: Metrics
    service: str
    namespace: str
    emitted: frozenset[str] = field(default_factory=frozenset)

    def add(self, name: str, unit: str, value: float) -> None:
        """``MetricsSink`` for the run code: a metric when it is one of ``emitted``; the others are
        already in the invocation's summary log line."""
        if name in self.emitted:
            self.metrics.add_metric(name=name, unit=unit, value=value)


def build(function: str) -> Observability:
    """``function``: poller, errors or stream (which metrics it emits, its default service name)."""
    service = os.environ.get("POWERTOOLS_SERVICE_NAME") or function
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
    logger = Logger(service=service)
    route_library_logs(logger)
    quiet_secret_leaking_loggers()
    return Observability(
        logger=logger,
        tracer=Tracer(service=service, patch_modules=TRACED_MODULES),
        metrics=Metrics(namespace=namespace, service=service),
        service=service,
        namespace=namespace,
        emitted=EMITTED_METRICS.get(function, frozenset()),
    )


def route_library_logs(logger: Logger) -> None:
    """Give the ``comms_bridge`` loggers the Powertools handler (JSON lines, Lambda context keys)."""
    library = logging.getLogger("comms_bridge")
    # Replaced, not added to: where two functions share a process (the demo, tests) each record must be
    # written once, by the function built last. In Lambda a process holds one function.
    library.handlers[:] = logger.handlers
    library.setLevel(logger.log_level)
    library.propagate = False


def quiet_secret_leaking_loggers() -> None:
    """Keep ``urllib3`` and ``botocore`` at INFO or above, whatever the function's log level: at DEBUG,
    urllib3 logs request URLs (a Slack webhook's path is its secret) and botocore logs response bodies
    (GetSecretValue's is the secret value)."""
    for name in SECRET_LEAKING_LOGGERS:
        library = logging.getLogger(name)
        library.setLevel(max(library.getEffectiveLevel(), logging.INFO))
