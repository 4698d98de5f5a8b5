"""aws.retry.Backoff: the one retry loop of our own AWS retries (state store, publisher)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from comms_bridge.aws.errors import error_code, is_retryable
from comms_bridge.aws.retry import Backoff


def test_attempts_wait_exponentially_and_are_capped() -> None:
    sleeps: list[float] = []
    backoff = Backoff(max_attempts=6, base_delay=0.1, max_delay=0.5, sleep=sleeps.append)
    assert list(backoff.attempts()) == [1, 2, 3, 4, 5, 6]
    assert sleeps == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_no_wait_ends_past_the_deadline() -> None:
    sleeps: list[float] = []
    left = [0.8]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        left[0] -= seconds

    backoff = Backoff(max_attempts=10, base_delay=0.3, max_delay=5.0, sleep=sleep, time_left=lambda: left[0])
    # 0.3, then 0.6 would end at -0.1: the loop stops after the second attempt instead of sleeping past it.
    assert list(backoff.attempts()) == [1, 2]
    assert sleeps == [0.3]


def test_the_first_attempt_is_made_even_without_time_left() -> None:
    assert list(Backoff(time_left=lambda: -1.0).attempts()) == [1]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        Backoff(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        Backoff(base_delay=-1)


def test_error_codes_come_from_the_error_or_its_cause() -> None:
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Query")
    missing = ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "Query")
    assert is_retryable(throttled) and not is_retryable(missing)
    try:
        try:
            raise missing
        except ClientError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert error_code(wrapped) == "ResourceNotFoundException"
    assert error_code(ValueError("x")) == "ValueError"
