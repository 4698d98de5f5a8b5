"""Judge what the poller published against what the simulator knows happened (contract §4).

Pure functions over plain values: the simulator's history (every version of every operation, with the
API-clock time it came into being), the events in the order they were published, and the API-clock
times of the *quiet* runs (runs in which no fault was injected). A quiet run sees the API as it is, so
every status, every active operation's stats and every due stall that existed at a quiet run's time must
have been published; a status that existed only between quiet runs may be skipped (contract §3: a status
skipped between two polls is not invented), but never reordered or invented.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

STATUS_CHANGED: Final = "Email Operation Status Changed"
STATS_CHANGED: Final = "Email Operation Stats Changed"
STALLED: Final = "Email Operation Stalled"
ACTIVE: Final = frozenset({"SCHEDULED", "PROCESSING"})


@dataclass(frozen=True)
class TrueVersion:
    """One version of an operation as the simulator served it from ``time`` on (API clock)."""

    time: datetime
    operation_id: str
    status: str
    stats: Mapping[str, int]
    updated_at: str


@dataclass(frozen=True)
class Published:
    """One event accepted by the bus, in publish order."""

    detail_type: str
    detail: Mapping[str, Any]

    @property
    def operation_id(self) -> str:
        return str(self.detail["operationId"])

    @property
    def event_key(self) -> str:
        return str(self.detail["eventKey"])


@dataclass(frozen=True)
class _Span:
    version: TrueVersion
    until: datetime | None  # when the next version replaced it; None: still current


@dataclass
class Verdict:
    """Problems found (empty = every guarantee held) and the counts worth printing."""

    problems: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, limit: int = 20) -> str:
        lines = [f"{name}: {value}" for name, value in sorted(self.counts.items())]
        lines += [f"PROBLEM {text}" for text in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more problems")
        return "\n".join(lines)


def _spans(history: Iterable[TrueVersion]) -> dict[str, list[_Span]]:
    by_operation: dict[str, list[TrueVersion]] = defaultdict(list)
    for version in history:
        by_operation[version.operation_id].append(version)
    spans: dict[str, list[_Span]] = {}
    for operation_id, versions in by_operation.items():
        versions.sort(key=lambda v: v.time)
        spans[operation_id] = [
            _Span(v, versions[i + 1].time if i + 1 < len(versions) else None) for i, v in enumerate(versions)
        ]
    return spans


def _status_path(spans: Sequence[_Span]) -> list[tuple[str, datetime, datetime | None]]:
    """Consecutive distinct statuses with the time each held."""
    path: list[tuple[str, datetime, datetime | None]] = []
    for span in spans:
        if path and path[-1][0] == span.version.status:
            path[-1] = (path[-1][0], path[-1][1], span.until)
        else:
            path.append((span.version.status, span.version.time, span.until))
    return path


def _held_at(start: datetime, until: datetime | None, times: Sequence[datetime]) -> bool:
    """Some time in the sorted ``times`` falls in ``[start, until)``."""
    index = bisect.bisect_left(times, start)
    return index < len(times) and (until is None or times[index] < until)


def _current_at(spans: Sequence[_Span], when: datetime) -> _Span | None:
    for span in spans:
        if span.version.time <= when and (span.until is None or when < span.until):
            return span
    return None


def _stats_key(stats: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((str(k), int(v)) for k, v in stats.items()))


def check(
    history: Iterable[TrueVersion],
    published: Sequence[Published],
    *,
    bootstrap_time: datetime,
    quiet_times: Iterable[datetime],
    stall_after_seconds: int,
) -> Verdict:
    """Compare the published events with the truth. ``bootstrap_time``: the baseline bootstrap run (it
    records silently); operations created later must be announced with ``previousStatus: null``."""
    verdict = Verdict()
    spans = _spans(history)
    quiet = sorted(t for t in quiet_times if t > bootstrap_time)
    counts = verdict.counts
    problems = verdict.problems
    counts["duplicates (same eventKey)"] = 0

    keys_by_identity: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    identity_by_key: dict[str, tuple[Any, ...]] = {}
    first_by_key: dict[str, Published] = {}
    by_operation: dict[str, list[Published]] = defaultdict(list)
    for event in published:
        counts[f"events: {event.detail_type}"] += 1
        d = event.detail
        if event.detail_type == STATUS_CHANGED:
            identity: tuple[Any, ...] = ("status", event.operation_id, d.get("previousStatus"), d["status"])
        elif event.detail_type == STATS_CHANGED:
            identity = ("stats", event.operation_id, d["updatedAt"], _stats_key(d["stats"]))
        elif event.detail_type == STALLED:
            identity = ("stalled", event.operation_id, d["updatedAt"])
        else:
            problems.append(f"unexpected detail-type {event.detail_type!r}")
            continue
        keys_by_identity[identity].add(event.event_key)
        known = identity_by_key.setdefault(event.event_key, identity)
        if known != identity:
            problems.append(f"eventKey {event.event_key} names two changes: {known} and {identity}")
        if event.event_key in first_by_key:
            counts["duplicates (same eventKey)"] += 1
        else:
            first_by_key[event.event_key] = event
            by_operation[event.operation_id].append(event)
    for identity, keys in keys_by_identity.items():
        if len(keys) > 1:
            problems.append(f"one change published under {len(keys)} eventKeys: {identity}")
    counts["events: distinct eventKeys"] = len(first_by_key)

    for operation_id in sorted(set(spans) | set(by_operation)):
        _check_operation(
            operation_id,
            spans.get(operation_id, []),
            by_operation.get(operation_id, []),
            bootstrap_time=bootstrap_time,
            quiet=quiet,
            stall_after_seconds=stall_after_seconds,
            verdict=verdict,
        )
    return verdict


def _check_operation(
    operation_id: str,
    spans: Sequence[_Span],
    events: Sequence[Published],
    *,
    bootstrap_time: datetime,
    quiet: Sequence[datetime],
    stall_after_seconds: int,
    verdict: Verdict,
) -> None:
    problems, counts = verdict.problems, verdict.counts
    if not spans:
        problems.append(f"{operation_id}: events for an operation the API never had")
        return
    versions = {(s.version.status, s.version.updated_at, _stats_key(s.version.stats)) for s in spans}
    baseline = _current_at(spans, bootstrap_time)
    path = _status_path(spans)
    # The status the bootstrap recorded silently is known, not announced; later ones must be.
    baseline_index = -1
    if baseline is not None:
        baseline_index = max(i for i, (_s, start, _u) in enumerate(path) if start <= bootstrap_time)
    announced = path[baseline_index + 1 :]
    rank = {status: i for i, (status, _s, _u) in enumerate(path)}

    # Validity and order of the status changes (first publish of each eventKey, in publish order).
    last_rank = baseline_index
    published_statuses: set[str] = set()
    for event in events:
        d = event.detail
        if (d["status"], d["updatedAt"], _stats_key(d["stats"])) not in versions:
            problems.append(
                f"{operation_id}: {event.detail_type} describes a version the API never served "
                f"({d['status']} at {d['updatedAt']})"
            )
            continue
        if event.detail_type != STATUS_CHANGED:
            continue
        status, previous = str(d["status"]), d.get("previousStatus")
        counts["status changes published"] += 1
        position = rank[status]
        if position <= last_rank:
            problems.append(
                f"{operation_id}: Status Changed to {status} published after a later status "
                "(out of order, or the same change under a new eventKey)"
            )
        last_rank = max(last_rank, position)
        published_statuses.add(status)
        first = len(published_statuses) == 1
        if previous is None:
            if baseline is not None or not first:
                problems.append(
                    f"{operation_id}: previousStatus null for {status}, which is no first sighting"
                )
        elif previous not in rank or rank[previous] >= position:
            problems.append(f"{operation_id}: previousStatus {previous} does not precede {status}")
        elif baseline is None and first:
            problems.append(
                f"{operation_id}: first sighting after bootstrap not announced with previousStatus null"
            )

    for status, start, until in announced:
        counts["true status changes"] += 1
        if _held_at(start, until, quiet):
            counts["true status changes seen by a quiet run"] += 1
            if status not in published_statuses:
                problems.append(
                    f"{operation_id}: status {status} (from {start.isoformat()}) was visible to a quiet run "
                    "but never published"
                )
        elif status not in published_statuses:
            counts["status changes skipped between polls"] += 1

    _check_stats(operation_id, spans, events, baseline, quiet, verdict)
    _check_stalls(operation_id, spans, events, quiet, stall_after_seconds, verdict)


def _check_stats(
    operation_id: str,
    spans: Sequence[_Span],
    events: Sequence[Published],
    baseline: _Span | None,
    quiet: Sequence[datetime],
    verdict: Verdict,
) -> None:
    """Active operations are read every run, so their stats at a quiet run must have been published
    (in a Status Changed or a Stats Changed). Completed ones follow a thinning cadence and are not judged."""
    published = {
        (str(e.detail["status"]), _stats_key(e.detail["stats"])) for e in events if e.detail_type != STALLED
    }
    baseline_key = None if baseline is None else (baseline.version.status, _stats_key(baseline.version.stats))
    for span in spans:
        version = span.version
        key = (version.status, _stats_key(version.stats))
        if version.status not in ACTIVE or key == baseline_key:
            continue
        if _held_at(version.time, span.until, quiet) and key not in published:
            verdict.problems.append(
                f"{operation_id}: {version.status} stats of {version.updated_at} were visible to a quiet run "
                "but never published"
            )


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _check_stalls(
    operation_id: str,
    spans: Sequence[_Span],
    events: Sequence[Published],
    quiet: Sequence[datetime],
    stall_after_seconds: int,
    verdict: Verdict,
) -> None:
    """A stall is a PROCESSING ``updatedAt`` that stays put for ``stall_after_seconds`` of API clock."""
    problems, counts = verdict.problems, verdict.counts
    # updatedAt -> when a version with another updatedAt replaced it (None: never).
    processing: dict[str, datetime | None] = {}
    for span in spans:
        if span.version.status == "PROCESSING":
            processing[span.version.updated_at] = span.until
    stalled = {str(e.detail["updatedAt"]): e for e in events if e.detail_type == STALLED}
    for updated_at, event in stalled.items():
        if updated_at not in processing:
            problems.append(f"{operation_id}: Stalled for updatedAt {updated_at}, which was never PROCESSING")
            continue
        until = processing[updated_at]
        if until is not None and (until - _parse(updated_at)).total_seconds() < stall_after_seconds:
            problems.append(f"{operation_id}: Stalled at {updated_at} but it moved before the stall was due")
        if int(event.detail.get("stalledForSeconds", -1)) < stall_after_seconds:
            problems.append(f"{operation_id}: stalledForSeconds below the threshold at {updated_at}")
    for updated_at, until in processing.items():
        since = _parse(updated_at)
        if until is None or (until - since).total_seconds() >= stall_after_seconds:
            counts["true stalls"] += 1
        # One spare second: the poller truncates the stall age to whole seconds.
        due = since.timestamp() + stall_after_seconds + 1
        if any(t.timestamp() >= due and (until is None or t < until) for t in quiet):
            counts["true stalls seen by a quiet run"] += 1
            if updated_at not in stalled:
                problems.append(
                    f"{operation_id}: stall of updatedAt {updated_at} was due at a quiet run, never published"
                )
    counts["stalls published"] += len(stalled)
