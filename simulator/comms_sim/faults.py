"""Fault injection: rules that turn a request into a throttle, an outage, a slow or a broken response.

A rule matches an endpoint (or ``"*"``), lets ``skip`` matching requests through, then fires
on each further match with ``probability`` (drawn from the simulator's seeded RNG) until it
has fired ``times`` times (``None``: forever). A rule with an ``account`` matches only that account's
requests (a simulator can serve several: comms_sim.accounts). Several rules can fire on one request:
``slow`` adds its delay, the first status rule (401/429/503/500) replaces the response (401: as if the
credentials had been revoked), the body
rules (``malformed_json``, ``bad_items``, ``shuffle``, ``oversize``) change a successful response,
``bad_date`` changes its ``Date`` header and ``drip`` the pace at which its body is sent.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

FaultKind = Literal[
    "401",
    "429",
    "503",
    "500",
    "slow",
    "malformed_json",
    "bad_items",
    "shuffle",
    "bad_date",
    "oversize",
    "drip",
]
FAULT_KINDS: Final = (
    "401", "429", "503", "500", "slow", "malformed_json", "bad_items", "shuffle", "bad_date", "oversize",
    "drip",
)  # fmt: skip
STATUS_KINDS: Final = ("401", "429", "503", "500")
ENDPOINTS: Final = ("list_operations", "fetch_operation", "list_errors", "*")
MUTATIONS: Final = (
    "drop_stats",
    "bad_id",
    "string_counter",
    "missing_updated_at",
    "bad_status",
    "not_an_object",
)
CLOCK_MUTATIONS: Final = ("future_updated_at",)
"""Valid items dated in the future: only when asked for by name (never drawn at random)."""
ERROR_MUTATIONS: Final = ("string_code", "not_an_object")
MALFORMED: Final = ("truncated", "html", "empty")
_ACCOUNT_SID_RE: Final = re.compile(r"^AC[0-9a-f]{32}$")


@dataclass
class FaultRule:
    """One fault. ``kind``: 401 | 429 | 503 | 500 | slow | malformed_json | bad_items | shuffle | ...

    * ``account``: only requests authenticated as this account (its SID or one of its API keys); None:
      every account.

    * ``retry_after`` (429/503): header value -- seconds (``"1"``, ``2.5`` -> ``"3"``), a datetime
      (sent as an HTTP-date), any other string verbatim, or None for no header. With
      ``retry_after_date=True`` a number of seconds is sent as the HTTP-date ``clock now + seconds``.
    * ``delay`` (slow): real seconds to sleep before answering; (drip) real seconds between the
      bytes of the body, sent one at a time after the headers.
    * ``mutation``: for bad_items one of ``MUTATIONS`` (operations) / ``ERROR_MUTATIONS`` (error
      items), None = a different random one per broken item, or ``future_updated_at`` (a valid
      operation whose ``updatedAt`` is ``ahead`` seconds after the API clock); for malformed_json one
      of ``MALFORMED`` (default ``truncated``).
    * ``items`` (bad_items): how many items of a page to break (fetch: the one operation).
    * ``date`` (bad_date): the ``Date`` header: a datetime or RFC 3339 text (that instant), or a
      number (seconds added to the API clock). The response itself is computed at the API clock.
    * ``size`` (oversize): the body is padded (with a ``padding`` string the client ignores) to at
      least this many bytes; still valid JSON.
    """

    kind: FaultKind
    endpoint: str = "*"
    times: int | None = None
    probability: float = 1.0
    skip: int = 0
    retry_after: str | float | datetime | None = "1"
    retry_after_date: bool = False
    delay: float = 0.0
    mutation: str | None = None
    items: int = 1
    date: datetime | str | float | None = None
    size: int = 0
    ahead: float = 8 * 86_400.0
    account: str | None = None
    seen: int = field(default=0, compare=False)
    fired: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {FAULT_KINDS}")
        if self.account is not None and _ACCOUNT_SID_RE.fullmatch(self.account) is None:
            raise ValueError(f"account {self.account!r} is not an Account SID (AC + 32 hex digits)")
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {self.endpoint!r}; one of {ENDPOINTS}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 (or None for unlimited)")
        allowed = {
            "bad_items": MUTATIONS + CLOCK_MUTATIONS + ERROR_MUTATIONS,
            "malformed_json": MALFORMED,
        }.get(self.kind, ())
        if self.mutation is not None and self.mutation not in allowed:
            raise ValueError(f"mutation {self.mutation!r} does not apply to {self.kind}; one of {allowed}")
        if self.kind == "bad_date" and self.date is None:
            raise ValueError("a bad_date rule needs a date (an instant, or seconds from the API clock)")
        if self.kind == "oversize" and self.size < 1:
            raise ValueError("an oversize rule needs a size in bytes")
        if self.kind == "drip" and self.delay <= 0:
            raise ValueError("a drip rule needs a delay (seconds between bytes)")

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


class FaultInjector:
    """The active rules of one simulator. Thread-safe; decisions come from one seeded RNG."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule | None = None, /, **fields: Any) -> FaultRule:
        """``add(FaultRule(...))`` or ``add(kind="429", endpoint="list_operations", times=2)``."""
        added = rule if rule is not None else FaultRule(**fields)
        with self._lock:
            self._rules.append(added)
        return added

    def remove(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.remove(rule)

    def clear(self, account: str | None = None) -> int:
        """Remove every rule (or only those of ``account``); how many were removed."""
        with self._lock:
            kept = [] if account is None else [rule for rule in self._rules if rule.account != account]
            removed = len(self._rules) - len(kept)
            self._rules[:] = kept
        return removed

    def reseed(self, seed: int) -> None:
        with self._lock:
            self.rng.seed(seed)

    def __iter__(self) -> Iterator[FaultRule]:
        with self._lock:
            return iter(list(self._rules))

    def __len__(self) -> int:
        with self._lock:
            return len(self._rules)

    def select(self, endpoint: str, account: str | None = None) -> list[FaultRule]:
        """The rules firing on this request of ``account`` (and count them)."""
        firing = []
        with self._lock:
            for rule in self._rules:
                if rule.endpoint not in ("*", endpoint) or rule.exhausted:
                    continue
                if rule.account is not None and rule.account != account:
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                if rule.probability >= 1.0 or self.rng.random() < rule.probability:
                    rule.fired += 1
                    firing.append(rule)
        return firing

    # -- body changes ---------------------------------------------------------------------------

    def shuffle(self, items: list[str]) -> None:
        with self._lock:
            self.rng.shuffle(items)

    def pick(self, population: int, count: int) -> list[int]:
        with self._lock:
            return sorted(self.rng.sample(range(population), min(count, population)))

    def choice(self, options: tuple[str, ...]) -> str:
        with self._lock:
            return self.rng.choice(options)


def break_operation(item: dict[str, Any], mutation: str, *, future: str = "2099-01-01T00:00:00Z") -> object:
    """An operation item that violates the documented schema in one specific way (or, for
    ``future_updated_at``, is valid but dated ``future``)."""
    if mutation == "future_updated_at":
        item["updatedAt"] = future
    elif mutation == "drop_stats":
        item.pop("stats", None)
    elif mutation == "bad_id":
        item["id"] = "comms_operation_NOT-A-VALID-ID"
    elif mutation == "string_counter":
        stats = dict(item.get("stats") or {})
        stats["total"] = str(stats.get("total", 0))
        item["stats"] = stats
    elif mutation == "missing_updated_at":
        item.pop("updatedAt", None)
    elif mutation == "bad_status":
        item["status"] = "EXPLODED"
    elif mutation == "not_an_object":
        return "comms_operation_as_a_bare_string"
    return item


def break_error_item(item: dict[str, Any], mutation: str) -> object:
    if mutation == "string_code":
        item["code"] = str(item.get("code"))
        return item
    return ["not", "an", "object"]


def malformed_body(body: bytes, mutation: str) -> bytes:
    if mutation == "html":
        return b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    if mutation == "empty":
        return b""
    return body[: max(1, len(body) // 2)]


def padded(body: bytes, size: int) -> bytes:
    """A JSON object body grown to at least ``size`` bytes by a leading ``"padding"`` member."""
    if not body.startswith(b"{") or len(body) >= size:
        return body
    filler = b"x" * max(size - len(body) - len(b'"padding":"",'), 0)
    separator = b"" if body[1:].lstrip().startswith(b"}") else b","
    return b'{"padding":"' + filler + b'"' + separator + body[1:]


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
