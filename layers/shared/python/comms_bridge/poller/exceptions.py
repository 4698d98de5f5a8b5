"""Failures of the poller's state table that the run must tell apart."""

from __future__ import annotations


class StateStoreError(RuntimeError):
    """DynamoDB kept refusing a read or write after the retries."""


class CheckpointConflict(RuntimeError):
    """The checkpoint was not written because this run no longer holds the lease."""
