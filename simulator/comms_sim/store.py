"""The operations of one running simulator: sorted by creation, queried at an instant.

Operations never change after loading (their evolution is a function of time), so the
list is sorted once by ``(created, id)`` and a query bisects to its date window instead of
scanning. Rendered JSON is cached per operation and version: an operation that did not
change since the last request costs one dictionary lookup.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from comms_sim.error_catalog import ErrorRecord, error_records
from comms_sim.timefmt import format_ts
from comms_sim.timeline import STAT_NAMES, OpState, Timeline, Version

RETENTION_SECONDS: Final = 7 * 86400
_STATS_TEMPLATE: Final = ",".join(f'"{name}":%d' for name in STAT_NAMES)


@dataclass(frozen=True, slots=True)
class Rendered:
    key: int
    state: OpState
    item: Mapping[str, Any]  # shared: copy before changing it
    fragment: str  # the item as compact JSON


def _fragment(item: Mapping[str, Any]) -> str:
    """Compact JSON of an operation, written by hand: 100k of them per listing, json.dumps is the hot spot.

    Safe without escaping: ids match the documented pattern, statuses/keys are fixed words, counters ints.
    """
    values = item["stats"]
    if tuple(values) == STAT_NAMES:
        stats = _STATS_TEMPLATE % tuple(values.values())
    else:  # keyframe stats, verbatim (possibly partial)
        stats = ",".join(f'"{name}":{int(value)}' for name, value in values.items())
    return (
        f'{{"id":"{item["id"]}","status":"{item["status"]}","stats":{{{stats}}},'
        f'"createdAt":"{item["createdAt"]}","updatedAt":"{item["updatedAt"]}"}}'
    )


class OperationStore:
    def __init__(self, operations: Sequence[Timeline], anchor: int) -> None:
        """``anchor``: the epoch second of scenario time 0; every ``t`` below is scenario seconds."""
        self.anchor = anchor
        self._ops = sorted(operations, key=lambda op: (op.created, op.id))
        self._created = [op.created for op in self._ops]
        self._keys = [(op.created, op.id) for op in self._ops]
        self._index = {op.id: i for i, op in enumerate(self._ops)}
        self._cache: dict[int, Rendered] = {}

    def __len__(self) -> int:
        return len(self._ops)

    def timeline(self, operation_id: str) -> Timeline | None:
        index = self._index.get(operation_id)
        return None if index is None else self._ops[index]

    @staticmethod
    def visible(timeline: Timeline, t: int) -> bool:
        """Created already, and within retention (kept 7 days after creation)."""
        return t - RETENTION_SECONDS < timeline.created <= t

    def render(self, index: int, t: int) -> Rendered | None:
        timeline = self._ops[index]
        key = timeline.key_at(t)
        if key is None:
            return None
        cached = self._cache.get(index)
        if cached is not None and cached.key == key:
            return cached
        state = timeline.state_for_key(key)
        created_at = format_ts(self.anchor + timeline.created) if cached is None else cached.item["createdAt"]
        item = {
            "id": timeline.id,
            "status": state.status,
            "stats": dict(state.stats),
            "createdAt": created_at,
            "updatedAt": format_ts(self.anchor + state.updated),
        }
        rendered = Rendered(key, state, item, _fragment(item))
        self._cache[index] = rendered
        return rendered

    def get(self, operation_id: str, t: int) -> Rendered | None:
        index = self._index.get(operation_id)
        if index is None or not self.visible(self._ops[index], t):
            return None
        return self.render(index, t)

    def window(self, t: int, start: int | None, end: int | None) -> tuple[int, int]:
        """Index range of the operations visible at ``t`` created in ``[start, end]``."""
        lo = bisect_right(self._created, t - RETENTION_SECONDS)
        if start is not None:
            lo = max(lo, bisect_left(self._created, start))
        hi = bisect_right(self._created, t if end is None else min(t, end))
        return lo, hi

    def after(self, cursor: tuple[int, str] | None) -> int:
        """First index strictly after the cursor ``(created, id)`` (0 without a cursor)."""
        return 0 if cursor is None else bisect_right(self._keys, cursor)

    def page(
        self,
        t: int,
        *,
        start: int | None,
        end: int | None,
        status: str | None,
        cursor: tuple[int, str] | None,
        size: int,
    ) -> tuple[list[Rendered], tuple[int, str] | None]:
        """Up to ``size`` operations after ``cursor``; the cursor for the next page, None at the end."""
        lo, hi = self.window(t, start, end)
        lo = max(lo, self.after(cursor))
        found: list[Rendered] = []
        index = lo
        while index < hi and len(found) < size:
            timeline = self._ops[index]
            if status is None or timeline.status_at(t) == status:
                rendered = self.render(index, t)
                if rendered is not None:
                    found.append(rendered)
            index += 1
        if not found:
            return found, None
        # "next" is null only when nothing follows, so a client never fetches an empty last page.
        if status is None:
            more = index < hi
        else:
            more = any(self._ops[i].status_at(t) == status for i in range(index, hi))
        last = self._ops[index - 1]
        return found, ((last.created, last.id) if more else None)

    def iter_visible(self, t: int) -> Iterator[Rendered]:
        lo, hi = self.window(t, None, None)
        for index in range(lo, hi):
            rendered = self.render(index, t)
            if rendered is not None:
                yield rendered

    def errors(
        self, operation_id: str, t: int, offset: int, size: int
    ) -> tuple[list[ErrorRecord], int] | None:
        """Error records ``offset..offset+size`` and the number existing at ``t``; None if not visible."""
        rendered = self.get(operation_id, t)
        timeline = self.timeline(operation_id)
        if rendered is None or timeline is None:
            return None
        failed = int(rendered.state.stats.get("failed", 0))
        stop = min(offset + size, failed)
        records = error_records(operation_id, offset, stop, timeline.error_weights) if offset < stop else []
        return list(records), failed

    def versions(
        self, since: int | None = None, until: int | None = None
    ) -> Iterator[tuple[Timeline, Version]]:
        """Versions that appeared in ``(since, until]`` (unbounded where None), operation by operation."""
        stop = len(self._ops) if until is None else bisect_right(self._created, until)
        for timeline in self._ops[:stop]:
            if since is not None and timeline.final_time() <= since:
                continue
            for version in timeline.versions():
                if (since is None or version.time > since) and (until is None or version.time <= until):
                    yield timeline, version
