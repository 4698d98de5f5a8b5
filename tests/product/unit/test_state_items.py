"""What the poller keeps per version outside the state item: the fingerprint in the checkpoint's recently
processed versions, and the parsed timestamps it caches. Both must not change what earlier runs stored."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from comms_bridge.comms.models import (
    STAT_FIELDS,
    EmailOperation,
    EmailOperationStats,
    OperationStatus,
    parse_timestamp,
)
from comms_bridge.poller.state_store import fingerprint

_counters = st.integers(min_value=0, max_value=10**12)
_timestamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S") + st_suffix(moment.microsecond)
)


def st_suffix(microsecond: int) -> str:
    """Second precision as Twilio sends it, or fractions and an offset, which the API might send too."""
    return "Z" if microsecond % 2 else f".{microsecond:06d}+00:00"


def _digest_as_stored_before(op: EmailOperation) -> str:
    """The fingerprint as earlier versions computed it (its digests are in stored checkpoints)."""
    text = json.dumps([op.status.value, op.updated_at, op.stats.as_dict()], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@given(
    counters=st.lists(_counters, min_size=len(STAT_FIELDS), max_size=len(STAT_FIELDS)),
    status=st.sampled_from(list(OperationStatus)),
    updated_at=_timestamps,
)
def test_the_fingerprint_is_the_digest_earlier_versions_stored(
    counters: list[int], status: OperationStatus, updated_at: str
) -> None:
    op = EmailOperation(
        id="comms_operation_01" + "a" * 24,
        status=status,
        stats=EmailOperationStats(**dict(zip(STAT_FIELDS, counters, strict=True))),
        created_at="2026-01-01T00:00:00Z",
        updated_at=updated_at,
    )
    assert fingerprint(op) == _digest_as_stored_before(op)


def test_a_cached_timestamp_is_the_same_moment_and_bad_ones_still_fail() -> None:
    first = parse_timestamp("2026-01-05T09:00:00Z")
    assert parse_timestamp("2026-01-05T09:00:00Z") is first
    assert parse_timestamp("2026-01-05T10:00:00+01:00") == first
    for bad in ("2026-01-05T09:00:00", "yesterday"):
        try:
            parse_timestamp(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
