"""The fault suite's judge must itself be right: it accepts correct publishing and names each violation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.product.fault_suite.ground_truth import (
    STALLED,
    STATS_CHANGED,
    STATUS_CHANGED,
    Published,
    TrueVersion,
    Verdict,
    check,
)

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
OP = "comms_operation_01aaaaaaaaaaaaaaaaaaaaaaaa"
NEW = "comms_operation_01bbbbbbbbbbbbbbbbbbbbbbbb"
STALL = 1800


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def stats(sent: int) -> dict[str, int]:
    return {"total": 10, "sent": sent, "delivered": 0}


def version(minutes: float, status: str, sent: int = 0, op: str = OP) -> TrueVersion:
    return TrueVersion(at(minutes), op, status, stats(sent), stamp(at(minutes)))


def event(
    kind: str, v: TrueVersion, previous: str | None = None, key: str | None = None, **extra: Any
) -> Published:
    detail: dict[str, Any] = {
        "operationId": v.operation_id,
        "status": v.status,
        "previousStatus": previous if kind == STATUS_CHANGED else v.status,
        "stats": dict(v.stats),
        "updatedAt": v.updated_at,
        "eventKey": key or f"{kind}|{v.operation_id}|{previous}|{v.status}|{v.updated_at}",
        **extra,
    }
    if kind == STATUS_CHANGED:
        detail["eventKey"] = key or f"status|{v.operation_id}|{previous}|{v.status}"
    return Published(kind, detail)


# OP exists at bootstrap (minute 0, SCHEDULED), goes PROCESSING at 5, sends at 7, completes at 12.
HISTORY = [
    version(-10, "SCHEDULED"),
    version(5, "PROCESSING"),
    version(7, "PROCESSING", sent=5),
    version(12, "COMPLETED", sent=10),
]
QUIET = [at(m) for m in (1, 2, 3, 4, 5, 6, 7, 8, 13, 14)]
GOOD = [
    event(STATUS_CHANGED, HISTORY[1], "SCHEDULED"),
    event(STATS_CHANGED, HISTORY[2]),
    event(STATUS_CHANGED, HISTORY[3], "PROCESSING"),
]


def judge(
    published: list[Published], history: list[TrueVersion] = HISTORY, quiet: list[datetime] = QUIET
) -> Verdict:
    return check(history, published, bootstrap_time=at(0), quiet_times=quiet, stall_after_seconds=STALL)


def test_correct_publishing_passes_and_counts() -> None:
    verdict = judge(GOOD)
    assert verdict.ok, verdict.summary()
    assert verdict.counts["true status changes"] == 2
    assert verdict.counts["status changes published"] == 2


def test_duplicate_with_same_key_is_allowed_and_counted() -> None:
    verdict = judge([GOOD[0], GOOD[0], *GOOD[1:]])
    assert verdict.ok, verdict.summary()
    assert verdict.counts["duplicates (same eventKey)"] == 1


def test_same_change_under_two_keys_is_a_problem() -> None:
    again = event(STATUS_CHANGED, HISTORY[1], "SCHEDULED", key="other")
    verdict = judge([*GOOD, again])
    assert any("2 eventKeys" in p for p in verdict.problems)


def test_missing_status_seen_by_a_quiet_run() -> None:
    verdict = judge([GOOD[0], GOOD[1]])
    assert any("COMPLETED" in p and "never published" in p for p in verdict.problems)


def test_status_skipped_between_polls_is_allowed() -> None:
    # PROCESSING held only between quiet runs at 4 and 13: publishing SCHEDULED -> COMPLETED is right.
    verdict = judge([event(STATUS_CHANGED, HISTORY[3], "SCHEDULED")], quiet=[at(4), at(13)])
    assert verdict.ok, verdict.summary()
    assert verdict.counts["status changes skipped between polls"] == 1


def test_out_of_order_is_a_problem() -> None:
    verdict = judge([GOOD[2], GOOD[0], GOOD[1]])
    assert any("out of order" in p for p in verdict.problems)


def test_invented_version_is_a_problem() -> None:
    phantom = TrueVersion(at(6), OP, "PROCESSING", stats(3), stamp(at(6)))
    verdict = judge([*GOOD, event(STATS_CHANGED, phantom)])
    assert any("never served" in p for p in verdict.problems)


def test_active_stats_seen_by_quiet_run_must_be_published() -> None:
    verdict = judge([GOOD[0], GOOD[2]])
    assert any("stats" in p and "never published" in p for p in verdict.problems)


def test_new_operation_must_be_announced_with_null_previous() -> None:
    history = [*HISTORY, version(3, "SCHEDULED", op=NEW)]
    good = [*GOOD, event(STATUS_CHANGED, history[-1], None)]
    assert judge(good, history=history).ok
    missing = judge(GOOD, history=history)
    assert any(NEW in p and "never published" in p for p in missing.problems)
    wrong = judge([*GOOD, event(STATUS_CHANGED, history[-1], "SCHEDULED")], history=history)
    assert not wrong.ok


def test_null_previous_for_an_operation_known_at_bootstrap_is_a_problem() -> None:
    verdict = judge([event(STATUS_CHANGED, HISTORY[1], None), *GOOD[1:]])
    assert any("no first sighting" in p for p in verdict.problems)


def test_stall_due_at_a_quiet_run_must_be_published() -> None:
    # PROCESSING from minute 5, unchanged until minute 60: stall due at 35.
    history = [version(-10, "SCHEDULED"), version(5, "PROCESSING"), version(60, "COMPLETED", sent=10)]
    quiet = [at(m) for m in range(1, 70, 2)]
    base = [
        event(STATUS_CHANGED, history[1], "SCHEDULED"),
        event(STATUS_CHANGED, history[2], "PROCESSING"),
    ]
    missing = judge(base, history=history, quiet=quiet)
    assert any("stall" in p for p in missing.problems)
    stall = event(STALLED, history[1], stalledForSeconds=1860)
    verdict = judge([base[0], stall, base[1]], history=history, quiet=quiet)
    assert verdict.ok, verdict.summary()
    assert verdict.counts["true stalls seen by a quiet run"] == 1


def test_stall_for_an_operation_that_moved_in_time_is_a_problem() -> None:
    stall = event(STALLED, HISTORY[1], stalledForSeconds=1860)
    verdict = judge([*GOOD, stall])
    assert any("moved before the stall was due" in p for p in verdict.problems)


def test_events_for_unknown_operation_are_a_problem() -> None:
    ghost = version(3, "SCHEDULED", op=NEW)
    verdict = judge([*GOOD, event(STATUS_CHANGED, ghost, None)])
    assert any("never had" in p for p in verdict.problems)
