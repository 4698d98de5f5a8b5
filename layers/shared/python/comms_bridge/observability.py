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
from dataclasses import dataclass
from typing import Final

from aws_lambda_powertools import Logger, Metrics, Tracer

DEFAULT_NAMESPACE: Final = "CommsBridge"
SECRET_LEAKING_LOGGERS: Final = ("urllib3", "botocore")
TRACED_MODULES: Final = ("botocore",)
"""What X-Ray patches when tracing is on: the AWS calls. Not ``requests``: its patch records each request's
URL, and a Slack incoming webhook's URL is its secret (contract section 6: secrets never reach traces)."""


@dataclass(frozen=True)
class Observability:
    logger: Logger
    tracer: Tracer
    metrics: Metrics
    service: str
    namespace: str

    def add(self, name: str, unit: str, value: float) -> None:
        """``MetricsSink`` for the run code."""
        self.metrics.add_metric(name=name, unit=unit, value=value)


def build(service: str) -> Observability:
    service = os.environ.get("POWERTOOLS_SERVICE_NAME") or service
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
