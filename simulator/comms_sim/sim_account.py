"""The accounts one simulator serves: each with its credentials, its operations and its ground truth.

Instants here are epoch seconds; each account turns them into the scenario seconds of its own store,
since accounts may play scenarios anchored at different times.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from comms_sim.api import EmailOperationsApi, basic_username
from comms_sim.clock import Clock
from comms_sim.scenario import Scenario
from comms_sim.store import OperationStore
from comms_sim.timefmt import epoch, format_ts, from_epoch


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """Ground truth: one version of one operation (``time`` = when it appeared = its ``updatedAt``)."""

    time: datetime
    operation_id: str
    name: str
    status: str
    stats: Mapping[str, int]
    updated_at: str


class SimAccount:
    """One account the simulator serves: its credentials, its operations and its own request counters."""

    def __init__(
        self, sid: str, scenario: Scenario, credentials: Mapping[str, str], anchor: int, name: str
    ) -> None:
        self.sid = sid
        self.name = name
        self.scenario = scenario
        self.credentials = dict(credentials)
        self.store = OperationStore(scenario.operations, anchor)
        self.api = EmailOperationsApi(self.store, self.credentials)
        self.counters: Counter[str] = Counter()

    @classmethod
    def playing(
        cls, sid: str, scenario: Scenario, credentials: Mapping[str, str], name: str, clock: Clock
    ) -> SimAccount:
        """An account whose scenario starts at its ``start``, or (without one) is ``now`` seconds in."""
        start = scenario.start
        anchor = epoch(start) if start is not None else epoch(clock.now()) - scenario.now
        return cls(sid, scenario, credentials, anchor, name)

    @property
    def auth_token(self) -> str:
        return self.credentials[self.sid]

    @property
    def anchor(self) -> datetime:
        return from_epoch(self.store.anchor)

    def set_credential(self, username: str, secret: str) -> None:
        self.credentials[username] = secret
        self.api.set_credential(username, secret)

    def env(self, base_url: str) -> dict[str, str]:
        return {
            "COMMS_API_BASE_URL": base_url,
            "TWILIO_ACCOUNT_SID": self.sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
        }

    def __repr__(self) -> str:
        return f"SimAccount({self.name!r}, {self.sid}, {self.scenario!r})"

    # -- ground truth at an epoch second ------------------------------------------------------------

    def visible_count(self, at: int) -> int:
        return sum(1 for _ in self.store.iter_visible(at - self.store.anchor))

    def operations(self, at: int) -> list[dict[str, Any]]:
        return [dict(rendered.item) for rendered in self.store.iter_visible(at - self.store.anchor)]

    def operation(self, operation_id: str, at: int) -> dict[str, Any] | None:
        rendered = self.store.get(operation_id, at - self.store.anchor)
        return None if rendered is None else dict(rendered.item)

    def operation_id(self, name: str) -> str:
        for timeline in self.scenario.operations:
            if timeline.name == name:
                return timeline.id
        raise KeyError(f"no operation named {name!r} in {self.scenario.name}")

    def errors(self, operation_id: str, at: int) -> list[dict[str, Any]]:
        found = self.store.errors(operation_id, at - self.store.anchor, 0, sys.maxsize)
        return [] if found is None else [record.to_api_dict() for record in found[0]]

    def history_between(self, since: int | None, until: int) -> list[HistoryEntry]:
        anchor = self.store.anchor
        entries = [
            HistoryEntry(
                time=from_epoch(anchor + version.time),
                operation_id=timeline.id,
                name=timeline.name,
                status=version.status,
                stats=version.stats,
                updated_at=format_ts(anchor + version.time),
            )
            for timeline, version in self.store.versions(
                None if since is None else since - anchor, until - anchor
            )
        ]
        entries.sort(key=lambda entry: (entry.time, entry.operation_id))
        return entries


class AccountRegistry:
    """The accounts of one simulator, in the order given (the first is the default one), found by SID,
    name, or a Basic-auth username (the SID or one of the account's API keys)."""

    def __init__(self, accounts: Iterable[SimAccount]) -> None:
        self._by_sid = {account.sid: account for account in accounts}
        self._by_username = {
            user: account for account in self._by_sid.values() for user in account.credentials
        }

    def __iter__(self) -> Iterator[SimAccount]:
        return iter(self._by_sid.values())

    def get(self, sid: str | None = None) -> SimAccount:
        if sid is None:
            return next(iter(self._by_sid.values()))
        found = self._by_sid.get(sid) or next((a for a in self._by_sid.values() if a.name == sid), None)
        if found is None:
            raise KeyError(f"no account {sid!r} in this simulator")
        return found

    def with_username(self, username: str | None) -> SimAccount | None:
        return None if username is None else self._by_username.get(username)

    def of(self, authorization: str | None) -> SimAccount | None:
        return self.with_username(basic_username(authorization))
