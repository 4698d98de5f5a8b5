"""The stream consumer's own I/O beyond the poller's ports (:mod:`comms_bridge.poller.ports`), as a Protocol
so unit tests drive a batch with in-memory fakes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from comms_bridge.stream.ledger import TestEventRecord, TypeSeen


class StreamLedger(Protocol):
    def record_test_event(self, event: TestEventRecord, *, expires_at: int) -> None: ...

    def record_types(self, seen: Mapping[str, TypeSeen], *, expires_at: int) -> None: ...
