"""Grouping an operation's errors and the summary built from them (contract §3, *Errors Summarized*).

Pure code, no I/O: the enricher feeds pages of ``OperationError`` in, the renderers and the publisher read
the ``ErrorsSummary`` out. The summary round-trips through a plain dict (``to_record``/``from_record``) so
it can be stored in the idempotency record and replayed unchanged on a Lambda retry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from comms_bridge.comms.models import OperationError

MAX_GROUPS: Final = 20
"""Contract §3: at most 20 groups in the event."""
MAX_SAMPLES: Final = 5
MAX_MESSAGE_CHARS: Final = 1000
"""Messages are cut here before grouping: 20 groups of unbounded text could exceed EventBridge's 256 KB."""
MAX_SAMPLE_ID_CHARS: Final = 128
"""A Twilio email id is about 40 characters; a longer "id" is not one, and is not kept as a sample (a cut
id would name no email). 20 groups of 5 such samples stay under 13 KB of the event."""
ELLIPSIS: Final = "…"


def clip(text: str, limit: int, ellipsis: str = ELLIPSIS) -> str:
    """``text`` cut to at most ``limit`` characters, marking the cut with ``ellipsis``."""
    if len(text) <= limit:
        return text
    keep = max(limit - len(ellipsis), 0)
    return text[:keep] + ellipsis[: limit - keep]


@dataclass(frozen=True)
class ErrorGroup:
    code: int | None
    message: str | None
    count: int
    sample_email_ids: tuple[str, ...] = ()

    def to_detail(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "count": self.count,
            "sampleEmailIds": list(self.sample_email_ids),
        }

    @classmethod
    def from_detail(cls, value: Mapping[str, Any]) -> ErrorGroup:
        return cls(
            code=value["code"],
            message=value["message"],
            count=int(value["count"]),
            sample_email_ids=tuple(value["sampleEmailIds"]),
        )


@dataclass
class _Bucket:
    first_seen: int
    count: int = 0
    samples: list[str] = field(default_factory=list)


class ErrorTally:
    """Counts errors by ``(code, message)``. Ties in count keep the order the API listed them in, so the
    same errors always give the same groups."""

    def __init__(self, *, max_samples: int = MAX_SAMPLES, max_message_chars: int = MAX_MESSAGE_CHARS) -> None:
        self._max_samples = max_samples
        self._max_message_chars = max_message_chars
        self._buckets: dict[tuple[int | None, str | None], _Bucket] = {}
        self.total = 0

    def add(self, error: OperationError) -> None:
        message = None if error.message is None else clip(error.message, self._max_message_chars)
        key = (error.code, message)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(first_seen=len(self._buckets))
        bucket.count += 1
        self.total += 1
        email_id = error.email_id
        if (
            email_id
            and len(email_id) <= MAX_SAMPLE_ID_CHARS
            and len(bucket.samples) < self._max_samples
            and email_id not in bucket.samples
        ):
            bucket.samples.append(email_id)

    def extend(self, errors: Iterable[OperationError]) -> None:
        for error in errors:
            self.add(error)

    @property
    def distinct(self) -> int:
        return len(self._buckets)

    def groups(self, limit: int = MAX_GROUPS) -> list[ErrorGroup]:
        """The ``limit`` most frequent groups, most frequent first."""
        ranked = sorted(self._buckets.items(), key=lambda item: (-item[1].count, item[1].first_seen))
        return [
            ErrorGroup(code=code, message=message, count=bucket.count, sample_email_ids=tuple(bucket.samples))
            for (code, message), bucket in ranked[:limit]
        ]


def group_errors(
    errors: Iterable[OperationError], *, limit: int = MAX_GROUPS, max_samples: int = MAX_SAMPLES
) -> list[ErrorGroup]:
    tally = ErrorTally(max_samples=max_samples)
    tally.extend(errors)
    return tally.groups(limit)
