"""What the simulator's API answered: the last requests, and counters of them overall and per account.

One lock guards the log and every counter: request threads record while a test reads.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the simulator saw it. ``at`` is the API clock; ``query`` never holds credentials."""

    at: datetime
    method: str
    path: str
    query: str
    endpoint: str
    status: int
    faults: tuple[str, ...]
    account: str | None = None  # the account the credentials named (None: no known username)


class RequestLog:
    """Keeps the last ``limit`` records and counts them; ``account_counters`` (by SID) are the accounts'
    own counters, updated in place so that each account's view stays current."""

    def __init__(self, limit: int, account_counters: Mapping[str, Counter[str]]) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=limit)
        self._counters: Counter[str] = Counter()
        self._accounts = dict(account_counters)
        self._lock = threading.Lock()

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def counters(self, account: str | None = None) -> dict[str, int]:
        """Every counter, or (``account``: a SID) that account's."""
        with self._lock:
            return dict(self._counters if account is None else self._accounts[account])

    def count(self, key: str) -> int:
        with self._lock:
            return self._counters[key]

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._counters.clear()
            for counters in self._accounts.values():
                counters.clear()

    def add(self, record: RequestRecord) -> None:
        keys = ["total", record.endpoint, f"status_{record.status}", *(f"fault_{f}" for f in record.faults)]
        with self._lock:
            self._records.append(record)
            self._counters.update(keys)
            if record.account is not None:
                self._accounts[record.account].update(keys)
